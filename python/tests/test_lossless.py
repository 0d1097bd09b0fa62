"""Sampling is lossless: the exact law of verify_lossless at a small vocabulary, enumerated over
its uniforms, and a seeded check of SpeculativeDecoder's sampled output through a Python target
and a Python drafter."""

import numpy as np
import pytest

import redraft
from markov import V, MarkovTarget, markov_chi_square, softmax


def enumerate_outcomes(parent, tokens, p, path_length):
    """Every decision path of the lossless rule: (probability, uniforms [2 L], emitted tokens).
    Uniforms are the midpoints of the intervals on which the rule's decision is constant."""
    children = {u: [c for c in range(len(parent)) if parent[c] == u] for u in range(len(parent))}
    out = []

    def walk(u, depth, mass, uniforms, emitted):
        kids = children[u]
        cut = np.concatenate([[0.0], np.cumsum([p[u][tokens[c]] for c in kids])])
        for j, c in enumerate(kids):  # draw 2d < cumulative mass: accept child j
            u2 = dict(uniforms)
            u2[2 * depth] = (cut[j] + cut[j + 1]) / 2
            walk(c, depth + 1, mass * (cut[j + 1] - cut[j]), u2, emitted + [tokens[c]])
        rest = 1.0 - cut[-1]
        if rest <= 0:
            return
        q = p[u].copy()
        q[[tokens[c] for c in kids]] = 0
        q /= q.sum()
        cdf = np.concatenate([[0.0], np.cumsum(q)])
        for x in range(V):  # no child accepted: draw 2d + 1 samples the residual
            if q[x] == 0:
                continue
            u2 = dict(uniforms)
            u2[2 * depth] = (cut[-1] + 1.0) / 2
            u2[2 * depth + 1] = (cdf[x] + cdf[x + 1]) / 2
            vec = np.full(2 * path_length, 0.5, dtype=np.float32)
            for k, val in u2.items():
                vec[k] = val
            out.append((mass * rest * q[x], vec, emitted + [x]))

    walk(0, 0, 1.0, {}, [])
    return out


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_verify_lossless_exact_law(temperature):
    rng = np.random.default_rng(7)
    beams = np.array([[[2, 1, 3], [2, 1, 0], [2, 3, 3]]], dtype=np.int32)  # nodes: 2 1 3 0 3 3
    tree = redraft.build_tree(beams)
    parent, tokens = tree.parent.tolist(), tree.token.tolist()
    logits = rng.normal(scale=1.5, size=(tree.total_nodes, V)).astype(np.float32)
    p = [softmax(logits[u].astype(np.float64) / temperature) for u in range(tree.total_nodes)]
    outcomes = enumerate_outcomes(parent, tokens, p, path_length=3)
    law = {}
    for mass, uniforms, expected in outcomes:
        a = redraft.verify_lossless(tree, logits, temperature=temperature, uniforms=uniforms[None])
        assert a.emitted(0) == expected  # the rule's decision on this interval of the uniforms
        law[tuple(expected)] = law.get(tuple(expected), 0.0) + mass
    assert abs(sum(law.values()) - 1.0) < 1e-9
    # The law of every emitted prefix is the target's: p_root(x1) p_{x1}(x2) ... along tree paths.
    node_of = {(): 0}
    for u in range(1, len(parent)):
        path = []
        v = u
        while v > 0:
            path.append(tokens[v])
            v = parent[v]
        node_of[tuple(reversed(path))] = u
    checked = 0
    for prefix, node in node_of.items():
        for x in range(V):
            got = sum(m for e, m in law.items() if e[: len(prefix) + 1] == prefix + (x,))
            want = p[node][x]
            for j in range(len(prefix)):
                want *= p[node_of[prefix[:j]]][prefix[j]]
            assert abs(got - want) < 1e-6, (prefix, x, got, want)
            checked += 1
    assert checked == V * len(node_of)


class ShiftDrafter:
    """Proposes two beams per request: root, root+1, root+2 and root, root+3, root (mod V)."""

    def draft(self, hidden, roots, slots, beam_width, beam_length, want_log_probs):
        assert hidden.shape == (len(roots), V) and beam_width == 2 and beam_length == 3
        r = roots[:, None]
        beams = np.stack([np.concatenate([r, (r + 1) % V, (r + 2) % V], 1),
                          np.concatenate([r, (r + 3) % V, r], 1)], 1)
        return beams.astype(np.int32)


def test_speculative_sampling_follows_the_target_law():
    rng = np.random.default_rng(11)
    table = rng.normal(scale=1.2, size=(V, V)).astype(np.float32)
    p = np.array([softmax(row.astype(np.float64)) for row in table])
    target = MarkovTarget(table)
    decoder = redraft.SpeculativeDecoder(target, ShiftDrafter(),
                                         redraft.DecodeOptions(beam_width=2, beam_length=3, verifier="lossless"))
    prompt_last = 1
    counts = {}
    runs = 3000
    for seed in range(runs):
        decoder.options.seed = seed
        out = decoder.generate([[3, prompt_last]], max_new_tokens=3).tokens[0]
        counts[tuple(out)] = counts.get(tuple(out), 0) + 1
    assert target.commits > 0
    # Pearson chi-square over the 64 sequences of 3 tokens; 63 degrees of freedom, the 0.999
    # quantile is 103.4. The seeds are fixed, so the test is deterministic.
    chi2, _ = markov_chi_square(counts, p, prompt_last, 3)
    assert chi2 < 103.4, chi2


def test_greedy_through_python_target_equals_plain_greedy():
    rng = np.random.default_rng(12)
    table = rng.normal(size=(V, V)).astype(np.float32)
    target = MarkovTarget(table)
    result = redraft.SpeculativeDecoder(target, ShiftDrafter(), redraft.DecodeOptions(beam_width=2, beam_length=3))
    seen = []
    out = result.generate([[0], [2, 3]], max_new_tokens=[7, 5], on_token=lambda r, t: seen.append((r, t)))
    for r, (prompt, n) in enumerate([([0], 7), ([2, 3], 5)]):
        expected, last = [], prompt[-1]
        for _ in range(n):
            last = int(np.argmax(table[last]))
            expected.append(last)
        assert out.tokens[r] == expected
        assert [t for q, t in seen if q == r] == expected
    assert out.requests[0].stop_reason == "max_new_tokens"
    assert sum(s.emitted for s in out.steps) + 2 == out.total_emitted


def test_target_errors_reach_python():
    class WrongShape(MarkovTarget):
        def verify(self, batch):
            return self.table[batch.tokens][:, :3].copy(), np.eye(V, dtype=np.float32)[batch.tokens]

    class Raises(MarkovTarget):
        def commit(self, plan):
            raise KeyError("engine failure")

    table = np.zeros((V, V), dtype=np.float32)
    options = redraft.DecodeOptions(beam_width=2, beam_length=3)
    with pytest.raises(ValueError, match=r"returned logits \[\d+, 3\], expected \[\d+, 4\]"):
        redraft.SpeculativeDecoder(WrongShape(table), ShiftDrafter(), options).generate([[1]], max_new_tokens=4)
    with pytest.raises(KeyError, match="engine failure"):
        redraft.SpeculativeDecoder(Raises(table), ShiftDrafter(), options).generate([[1]], max_new_tokens=4)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        redraft.SpeculativeDecoder(MarkovTarget(table), ShiftDrafter(), options).generate([[9]], max_new_tokens=4)
    with pytest.raises(ValueError, match="verifier 'fast' is not one of"):
        redraft.DecodeOptions(verifier="fast")
