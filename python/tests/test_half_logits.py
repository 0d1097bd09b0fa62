"""float16 and bfloat16 logits: viewed in place, every decision equal to float32 on the same values."""

import numpy as np
import pytest

import redraft

from test_components import two_request_tree


def representable_logits(rng, shape):
    # Multiples of 1/8 in [-8, 8]: exact in float16, bfloat16 and float32, so every type holds the
    # same values and any difference in a decision would be a bug, not rounding.
    return (rng.integers(-64, 65, size=shape) / 8.0).astype(np.float32)


def as_dtype(torch, x, dtype):
    return torch.from_numpy(x).to(dtype)


HALF_TYPES = ["float16", "bfloat16"]


@pytest.mark.parametrize("name", HALF_TYPES)
def test_verifiers_decide_as_float32(torch, name):
    dtype = getattr(torch, name)
    t = two_request_tree()
    rng = np.random.default_rng(11)
    beams = np.array([[[1, 2, 3], [1, 4, 5]]], dtype=np.int32)
    bt = redraft.build_tree(beams)
    draft_log_probs = np.log(np.full((1, 2, 2, 12), 1 / 12, dtype=np.float32))
    for trial in range(20):
        x = representable_logits(rng, (7, 12))
        h = as_dtype(torch, x, dtype)
        assert (h.float().numpy() == x).all()
        pairs = [
            (redraft.verify_greedy(t, x), redraft.verify_greedy(t, h)),
            (redraft.verify_lossless(t, x, temperature=0.5, top_k=5, seed=trial),
             redraft.verify_lossless(t, h, temperature=0.5, top_k=5, seed=trial)),
            (redraft.verify_typical(t, x, sample_next_token=True, seed=trial),
             redraft.verify_typical(t, h, sample_next_token=True, seed=trial)),
        ]
        y = representable_logits(rng, (5, 12))
        pairs.append((redraft.verify_redrafter(bt, y, draft_log_probs, seed=trial),
                      redraft.verify_redrafter(bt, as_dtype(torch, y, dtype), draft_log_probs, seed=trial)))
        for a, b in pairs:
            assert a.accepted_len.tolist() == b.accepted_len.tolist()
            assert a.emitted_tokens.tolist() == b.emitted_tokens.tolist()
            assert a.next_token.tolist() == b.next_token.tolist()


@pytest.mark.parametrize("name", HALF_TYPES)
def test_logits_ops_in_place_and_out(torch, name):
    dtype = getattr(torch, name)
    rng = np.random.default_rng(12)
    x = representable_logits(rng, (3, 40))
    h = as_dtype(torch, x, dtype)
    assert np.array_equal(redraft.to_log_probs(h), redraft.to_log_probs(x))
    assert np.array_equal(redraft.to_probs(h), redraft.to_probs(x))
    xf, hh = x.copy(), h.clone()
    redraft.apply_top_k(xf, 4)
    redraft.apply_top_k(hh, 4)  # in place on the caller's tensor
    assert (hh.float().numpy() == xf).all()
    xf, hh = x.copy(), h.clone()
    redraft.apply_temperature(xf, 0.5)  # dividing by 0.5 stays representable
    redraft.apply_temperature(hh, 0.5)
    assert (hh.float().numpy() == xf).all()


def test_numpy_float16_is_accepted_and_other_dtypes_are_named():
    t = two_request_tree()
    x = representable_logits(np.random.default_rng(13), (7, 12))
    assert redraft.verify_greedy(t, x.astype(np.float16)).emitted_tokens.tolist() == \
        redraft.verify_greedy(t, x).emitted_tokens.tolist()
    with pytest.raises(ValueError, match="float64 but must be float32, float16 or bfloat16"):
        redraft.verify_greedy(t, x.astype(np.float64))
