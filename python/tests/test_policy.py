"""SpeculativeDecoder's policy: 'fixed' (the options' shape every step), 'plain' (nothing drafted)
and AdaptivePolicy, which picks each step's draft shape from measured costs and acceptance and
keeps what it learned across generate() calls. Greedy output stays plain greedy decoding's and
sampling stays lossless whatever shapes it picks."""

import itertools

import numpy as np
import pytest

import redraft
from markov import V, AnyShapeDrafter, MarkovTarget, chi_square_bound, markov_chi_square, softmax


def greedy_reference(table, prompt, n):
    out, last = [], prompt[-1]
    for _ in range(n):
        last = int(np.argmax(table[last]))
        out.append(last)
    return out


def shapes_of(result):
    return [(s.beam_width, s.beam_length) for s in result.steps]


def test_fixed_is_the_default_and_every_step_uses_the_options_shape():
    table = np.random.default_rng(1).normal(size=(V, V)).astype(np.float32)
    drafter = AnyShapeDrafter()
    decoder = redraft.SpeculativeDecoder(MarkovTarget(table), drafter,
                                         redraft.DecodeOptions(beam_width=2, beam_length=3))
    assert decoder.policy == "fixed"
    result = decoder.generate([[0], [2, 1]], max_new_tokens=9)
    assert set(shapes_of(result)) == {(2, 3)}
    assert set(drafter.shapes) == {(2, 3)}
    assert result.tokens == [greedy_reference(table, [0], 9), greedy_reference(table, [2, 1], 9)]


def test_plain_policy_never_drafts_and_emits_plain_greedy():
    class NoDrafts:
        def draft(self, *args):
            raise AssertionError("a plain step drafted")

    table = np.random.default_rng(2).normal(size=(V, V)).astype(np.float32)
    decoder = redraft.SpeculativeDecoder(MarkovTarget(table), NoDrafts(), policy="plain")
    result = decoder.generate([[3], [1, 2]], max_new_tokens=[6, 4])
    assert result.tokens == [greedy_reference(table, [3], 6), greedy_reference(table, [1, 2], 4)]
    assert set(shapes_of(result)) == {(1, 1)}
    # One token per request per step after the prefill's: 3 steps of both requests, then 2 of the
    # first alone (the second has its 4 tokens).
    assert [s.emitted for s in result.steps] == [2, 2, 2, 1, 1]


def test_adaptive_policy_keeps_greedy_exact_and_persists_across_calls(kjv_model, kjv_head):
    from redraft.hf import HFTarget, hf_greedy_generate

    prompts = [list(p.encode()) for p in
               ("And God said unto Moses, ", "The LORD is my shepherd; ", "In the beginning ")]
    n = 120
    reference = [hf_greedy_generate(kjv_model, p, n) for p in prompts]
    policy = redraft.AdaptivePolicy(widths=[1, 2], lengths=[2, 4, 6])
    decoder = redraft.SpeculativeDecoder(HFTarget(kjv_model), kjv_head, policy=policy)
    assert decoder.policy is policy

    first = decoder.generate([prompts[0]], max_new_tokens=n)
    assert first.tokens[0] == reference[0]
    shapes = shapes_of(first)
    # Calibration, once per policy: plain, the narrowest-longest tree, plain.
    assert shapes[:3] == [(1, 1), (1, 6), (1, 1)]
    assert set(shapes) <= {(1, 1)} | set(itertools.product([1, 2], [2, 4, 6]))
    counts = policy.choice_counts
    assert counts["calibrate"] == 3 and sum(counts.values()) == len(first.steps)
    assert policy.elapsed_s > 0 and policy.verify_cost(4) > 0

    # The second call starts from what the first measured: no second calibration.
    second = decoder.generate(prompts, max_new_tokens=n)
    assert second.tokens == reference
    counts = policy.choice_counts
    assert counts["calibrate"] == 3
    assert sum(counts.values()) == len(first.steps) + len(second.steps)


def test_a_copied_policy_is_independent_and_does_not_calibrate_again():
    table = np.random.default_rng(3).normal(size=(V, V)).astype(np.float32)
    policy = redraft.AdaptivePolicy(widths=[1, 2], lengths=[2, 3])
    redraft.SpeculativeDecoder(MarkovTarget(table), AnyShapeDrafter(), policy=policy).generate(
        [[0]], max_new_tokens=12)
    before = policy.choice_counts
    assert before["calibrate"] == 3
    seeded = policy.copy()
    assert seeded.choice_counts == before
    result = redraft.SpeculativeDecoder(MarkovTarget(table), AnyShapeDrafter(), policy=seeded).generate(
        [[1]], max_new_tokens=12)
    assert result.tokens[0] == greedy_reference(table, [1], 12)
    assert seeded.choice_counts["calibrate"] == 3
    assert sum(seeded.choice_counts.values()) == sum(before.values()) + len(result.steps)
    assert policy.choice_counts == before  # the original did not move


def test_a_policy_serves_one_generate_call_at_a_time():
    table = np.random.default_rng(4).normal(size=(V, V)).astype(np.float32)
    policy = redraft.AdaptivePolicy(widths=[1], lengths=[2, 3])
    outer = redraft.SpeculativeDecoder(MarkovTarget(table), AnyShapeDrafter(), policy=policy)
    inner = redraft.SpeculativeDecoder(MarkovTarget(table), AnyShapeDrafter(), policy=policy)
    # A call inside a call (here from on_token; threads sharing a policy meet the same check)
    # would interleave the two calls' choose() and observe().
    with pytest.raises(ValueError, match=r"AdaptivePolicy is in use by another generate\(\) call"):
        outer.generate([[0]], max_new_tokens=4, on_token=lambda r, t: inner.generate([[1]], max_new_tokens=2))
    # Released when the call ends, also by an error; a copy may run inside.
    assert inner.generate([[1]], max_new_tokens=2).tokens[0] == greedy_reference(table, [1], 2)
    other = redraft.SpeculativeDecoder(MarkovTarget(table), AnyShapeDrafter(), policy=policy.copy())
    inside = []
    result = outer.generate([[0]], max_new_tokens=4,
                            on_token=lambda r, t: inside.append(other.generate([[1]], max_new_tokens=2).tokens[0]))
    assert result.tokens[0] == greedy_reference(table, [0], 4)
    assert inside == [greedy_reference(table, [1], 2)] * 4


def test_adaptive_sampling_follows_the_target_law():
    rng = np.random.default_rng(11)
    table = rng.normal(scale=1.2, size=(V, V)).astype(np.float32)
    p = np.array([softmax(row.astype(np.float64)) for row in table])
    drafter = AnyShapeDrafter()
    policy = redraft.AdaptivePolicy(widths=[1, 2], lengths=[2, 3, 4])
    decoder = redraft.SpeculativeDecoder(MarkovTarget(table), drafter,
                                         redraft.DecodeOptions(verifier="lossless"), policy=policy)
    prompt_last = 2
    counts = {}
    shapes = set()
    runs = 3000
    for seed in range(runs):
        decoder.options.seed = seed
        result = decoder.generate([[0, prompt_last]], max_new_tokens=3)
        counts[tuple(result.tokens[0])] = counts.get(tuple(result.tokens[0]), 0) + 1
        shapes.update(shapes_of(result))
    # The calibration alone runs plain steps and 1 x 4; the rest is the policy's choice.
    assert {(1, 1), (1, 4)} <= shapes and len(drafter.shapes) > 0
    # Pearson chi-square over the sequences of 3 tokens, those expected fewer than 5 times pooled.
    # The shapes depend on measured times, so runs differ from one another: the bound is the
    # 5.5 sigma point of the chi-square law, which a lossless sampler exceeds about once in 10^8
    # runs once the rare cells are pooled (unpooled, cells expected 0.2 times give the statistic a
    # tail that crosses the same bound about once in 3 x 10^4); a verifier that kept a drafted
    # token more often than the target's law moves the statistic by hundreds at 3000 runs.
    chi2, df = markov_chi_square(counts, p, prompt_last, 3, pool_below=5.0)
    assert chi2 < chi_square_bound(df, 5.5), (chi2, df)


def test_policy_errors_name_the_argument():
    table = np.zeros((V, V), dtype=np.float32)
    with pytest.raises(ValueError, match="policy 'adaptive' is not 'fixed', 'plain' or an AdaptivePolicy instance"):
        redraft.SpeculativeDecoder(MarkovTarget(table), AnyShapeDrafter(), policy="adaptive")
    with pytest.raises(ValueError, match=r"policy 3 \(int\) is not"):
        redraft.SpeculativeDecoder(MarkovTarget(table), AnyShapeDrafter(), policy=3)
    with pytest.raises(ValueError, match=r"policy <class 'redraft._redraft.AdaptivePolicy'> \(.*\) is not 'fixed', 'plain' or an AdaptivePolicy instance"):
        redraft.SpeculativeDecoder(MarkovTarget(table), AnyShapeDrafter(), policy=redraft.AdaptivePolicy)
    with pytest.raises(ValueError, match=r"^AdaptivePolicy: widths must be ascending and >= 1 \(widths\[1\] = 1\)"):
        redraft.AdaptivePolicy(widths=[2, 1])
    with pytest.raises(ValueError, match=r"lengths must be ascending and >= 2 \(lengths\[0\] = 1\)"):
        redraft.AdaptivePolicy(lengths=[1, 2])
    with pytest.raises(ValueError, match=r"widths and lengths need at least one candidate each"):
        redraft.AdaptivePolicy(widths=[])
    with pytest.raises(ValueError, match=r"^AdaptivePolicy: decay 0 must be in \(0, 1\]"):
        redraft.AdaptivePolicy(decay=0)
    with pytest.raises(TypeError):
        redraft.AdaptivePolicy([1, 2])  # keyword-only


def test_adaptive_policy_defaults_match_the_library():
    policy = redraft.AdaptivePolicy()
    assert policy.widths == [1, 2, 4, 8, 16] and policy.lengths == [2, 3, 4, 5, 6]
    assert policy.allow_plain and policy.plain_margin == pytest.approx(0.05)
    assert policy.choice_counts == {"calibrate": 0, "exploit": 0, "probe": 0}
    assert "AdaptivePolicy(widths=[1, 2, 4, 8, 16]" in repr(policy)
