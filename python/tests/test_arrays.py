"""Zero-copy in and out, dtype / shape checks, and redraft::error as ValueError."""

import gc

import numpy as np
import pytest

import redraft
from redraft import _redraft


def beams_example():
    # [B=1, W=3, L=3]: beams (5 1 2), (5 1 3), (5 4 2) share the root 5 and the prefix 5 1.
    return np.array([[[5, 1, 2], [5, 1, 3], [5, 4, 2]]], dtype=np.int32)


def test_numpy_input_is_not_copied():
    a = np.zeros((3, 7), dtype=np.float32)
    assert _redraft._data_address(a) == a.ctypes.data


def test_torch_input_is_not_copied(torch):
    t = torch.zeros(3, 7)
    assert _redraft._data_address(t) == t.data_ptr()
    # A contiguous slice is read in place too (its own offset).
    assert _redraft._data_address(t[1:]) == t[1:].data_ptr()


def test_in_place_ops_write_the_callers_memory(torch):
    t = torch.tensor([[2.0, 4.0, -8.0]])
    before = t.data_ptr()
    redraft.apply_temperature(t, 2.0)
    assert t.data_ptr() == before
    assert t.tolist() == [[1.0, 2.0, -4.0]]
    n = np.array([[2.0, 4.0, -8.0, 1.0]], dtype=np.float32)
    redraft.apply_top_k(n, 2)
    assert n[0, 0] == 2.0 and n[0, 1] == 4.0 and n[0, 2] == -np.inf and n[0, 3] == -np.inf


def test_outputs_own_their_memory_and_wrap_without_copy(torch):
    tokens = redraft.build_tree(beams_example()).token  # the tree object itself is dropped here
    gc.collect()
    assert tokens.tolist() == [5, 1, 2, 3, 4, 2]
    assert not tokens.flags.writeable  # a view of the tree's memory, read-only
    probs = redraft.to_probs(np.zeros((2, 4), dtype=np.float32))
    wrapped = torch.from_numpy(probs)
    assert wrapped.data_ptr() == probs.ctypes.data
    assert np.allclose(probs, 0.25)


def test_wrong_dtype_is_a_value_error(torch):
    with pytest.raises(ValueError, match="build_tree: beams has dtype int64 but must be int32"):
        redraft.build_tree(beams_example().astype(np.int64))
    tree = redraft.build_tree(beams_example())
    with pytest.raises(ValueError, match="verify_greedy: logits has dtype float64 but must be float32"):
        redraft.verify_greedy(tree, torch.zeros(6, 8, dtype=torch.float64))


def test_wrong_rank_and_layout_are_value_errors(torch):
    with pytest.raises(ValueError, match=r"beams has shape \[3, 3\] but must have 3 dimensions \[B, W, L\]"):
        redraft.build_tree(beams_example()[0])
    tree = redraft.build_tree(beams_example())
    with pytest.raises(ValueError, match="not C-contiguous"):
        redraft.verify_greedy(tree, torch.zeros(8, 6).t())


def test_redraft_error_message_is_kept():
    bad = np.array([[[5, 1], [6, 1]]], dtype=np.int32)
    with pytest.raises(ValueError) as info:
        redraft.build_tree(bad)
    assert str(info.value) == (
        "build_tree: beams[0, 1, 0] = 6 differs from beams[0, 0, 0] = 5 "
        "(all beams of a request start at the same root token)"
    )


def test_logits_rows_must_match_the_tree():
    tree = redraft.build_tree(beams_example())
    with pytest.raises(ValueError, match="verify_greedy"):
        redraft.verify_greedy(tree, np.zeros((5, 8), dtype=np.float32))
