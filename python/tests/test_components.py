"""Each bound component against an independent NumPy reference."""

import numpy as np
import pytest

import redraft

from conftest import KJV_HEAD


def ancestors_or_self(parent, i):
    out = set()
    while i >= 0:
        out.add(i)
        i = parent[i]
    return out


def two_request_tree():
    # Request 0: root 7 with children 1 (child 2) and 3; request 1: a chain 9 -> 4 -> 4.
    return redraft.build_tree_from_parents(
        np.array([0, 4, 7], dtype=np.int32),
        np.array([-1, 0, 1, 0, -1, 0, 1], dtype=np.int32),
        np.array([7, 1, 2, 3, 9, 4, 4], dtype=np.int32),
    )


def test_build_tree_dedups_shared_prefixes():
    beams = np.array([[[5, 1, 2], [5, 1, 3], [5, 4, 2]], [[8, 8, 8], [8, 8, 8], [8, 0, 1]]], dtype=np.int32)
    t = redraft.build_tree(beams)
    assert t.batch == 2 and t.beam_width == 3 and t.beam_length == 3
    assert t.node_offsets.tolist() == [0, 6, 11]
    assert t.token.tolist() == [5, 1, 2, 3, 4, 2, 8, 8, 8, 0, 1]
    assert t.parent.tolist() == [-1, 0, 1, 1, 0, 4, -1, 0, 1, 0, 3]
    assert t.depth.tolist() == [0, 1, 2, 2, 1, 2, 0, 1, 2, 1, 2]
    # beam_to_node maps every beam position to a node holding that token.
    for b in range(2):
        first = t.node_offsets[b]
        for w in range(3):
            for l in range(3):
                assert t.token[first + t.beam_to_node[b, w, l]] == beams[b, w, l]


def test_static_tree_from_choices():
    candidates = np.array([[[10, 11], [20, 21]]], dtype=np.int32)  # [B=1, D=2, K=2]
    t = redraft.build_tree_from_choices([[0], [1], [0, 0], [0, 1]], np.array([3], dtype=np.int32), candidates)
    assert t.token.tolist() == [3, 10, 11, 20, 21]
    assert t.parent.tolist() == [-1, 0, 0, 1, 1]
    assert t.depth.tolist() == [0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="build_tree_from_choices"):
        redraft.build_tree_from_choices([[0, 0]], np.array([3], dtype=np.int32), candidates)


def test_masks_and_positions_match_the_parent_array():
    t = two_request_tree()
    bits, offsets = redraft.build_dense_tree_mask(t)
    packed = redraft.build_packed_tree_mask(t)
    padding = np.array([[1, 1, 0], [0, 1, 1]], dtype=np.int32)  # [B, P]
    ctx_bits, ctx_offsets = redraft.build_attention_mask(t, padding)
    padded = redraft.build_padded_attention_mask(t, padding)
    positions = redraft.build_positions(t, np.array([10, 20], dtype=np.int32))
    n_max = 4
    assert packed.shape == (7, 1) and padded.shape == (2, n_max, 3 + n_max)
    for b in range(2):
        first, n = t.node_offsets[b], t.num_nodes(b)
        parent = t.parent[first : first + n]
        dense = bits[offsets[b] : offsets[b + 1]].reshape(n, n)
        ctx = ctx_bits[ctx_offsets[b] : ctx_offsets[b + 1]].reshape(n, 3 + n)
        for i in range(n):
            expected = np.zeros(n, dtype=np.uint8)
            expected[list(ancestors_or_self(parent, i))] = 1
            assert dense[i].tolist() == expected.tolist()
            word = int(packed[first + i, 0])
            assert [(word >> j) & 1 for j in range(n)] == expected.tolist()
            assert ctx[i].tolist() == padding[b].tolist() + expected.tolist()
            assert padded[b, i].tolist() == padding[b].tolist() + expected.tolist() + [0] * (n_max - n)
            assert positions[first + i] == [10, 20][b] + t.depth[first + i]
        assert padded[b, n:].sum() == 0


def test_verify_greedy_walks_the_argmax():
    t = two_request_tree()
    logits = np.zeros((7, 12), dtype=np.float32)
    logits[0, 1] = 1  # request 0: root predicts 1 (a child), node 1 predicts 2 (a child), node 2 predicts 11
    logits[1, 2] = 1
    logits[2, 11] = 1
    logits[4, 5] = 1  # request 1: root predicts 5, not its child 4
    a = redraft.verify_greedy(t, logits)
    assert a.accepted_len.tolist() == [2, 0]
    assert a.emitted(0) == [1, 2, 11] and a.emitted(1) == [5]
    assert a.next_token.tolist() == [11, 5]
    assert a.accepted_nodes[0, :3].tolist() == [0, 1, 2]
    assert a.hidden_row.tolist() == [2, 4]  # global rows of the last accepted nodes
    plan = redraft.make_kv_plan(a, np.array([3, 0], dtype=np.int32), np.array([5, 8], dtype=np.int32))
    assert plan.offsets.tolist() == [0, 3, 4]
    assert plan.slot.tolist() == [3, 0]
    assert plan.source_node.tolist() == [0, 1, 2, 0]
    assert plan.destination.tolist() == [5, 6, 7, 8]


def test_apply_kv_plan_moves_the_accepted_entries():
    beams = np.array([[[1, 2, 3], [1, 4, 5]]], dtype=np.int32)  # nodes 0:1 1:2 2:3 3:4 4:5
    t = redraft.build_tree(beams)
    logits = np.zeros((5, 8), dtype=np.float32)
    logits[0, 4] = 1  # accept node 3 (token 4), then node 4 (token 5), then emit 7
    logits[3, 5] = 1
    logits[4, 7] = 1
    a = redraft.verify_greedy(t, logits)
    assert a.emitted(0) == [4, 5, 7]
    committed = 2
    plan = redraft.make_kv_plan(a, np.array([0], dtype=np.int32), np.array([committed], dtype=np.int32))
    cache = np.arange(1 * 1 * 2 * 1 * 8 * 2, dtype=np.float32).reshape(1, 1, 2, 1, 8, 2)
    before = cache.copy()
    redraft.apply_kv_plan(plan, cache)
    # Kept nodes 0, 3, 4 (at committed + node) move to positions 2, 3, 4.
    for dst, node in zip([2, 3, 4], [0, 3, 4]):
        assert (cache[..., dst, :] == before[..., committed + node, :]).all()
    assert (cache[..., :2, :] == before[..., :2, :]).all()


def test_logits_processing_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 9)).astype(np.float32)
    log_probs = redraft.to_log_probs(x)
    reference = x - x.max(1, keepdims=True)
    reference = reference - np.log(np.exp(reference).sum(1, keepdims=True))
    assert np.allclose(log_probs, reference, atol=1e-5)
    assert np.allclose(redraft.to_probs(x), np.exp(reference), atol=1e-6)
    y = x.copy()
    redraft.warp_top_k(y, 3)
    kth = np.sort(x, 1)[:, -3][:, None]
    assert (y == np.where(x >= kth, x, -50000.0)).all()
    z = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32))
    redraft.apply_top_p(z, 0.75)
    assert np.isfinite(z[0, :2]).all() and np.isneginf(z[0, 2:]).all()


def test_sampling_verifiers_are_reproducible_and_checked():
    t = two_request_tree()
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(7, 12)).astype(np.float32)
    a = redraft.verify_lossless(t, logits, temperature=0.7, seed=5, step=3)
    b = redraft.verify_lossless(t, logits, temperature=0.7, seed=5, step=3)
    assert a.emitted_tokens.tolist() == b.emitted_tokens.tolist()
    typical = redraft.verify_typical(t, logits, epsilon=0.0, delta=0.0)
    assert typical.batch == 2
    with pytest.raises(ValueError, match="uniforms"):
        redraft.verify_lossless(t, logits, uniforms=np.full((2, 6), 1.5, dtype=np.float32))
    beams = np.array([[[1, 2, 3], [1, 4, 5]]], dtype=np.int32)
    bt = redraft.build_tree(beams)
    draft_log_probs = np.log(np.full((1, 2, 2, 12), 1 / 12, dtype=np.float32))
    r = redraft.verify_redrafter(bt, rng.normal(size=(5, 12)).astype(np.float32), draft_log_probs, seed=1)
    assert 0 <= r.accepted_len[0] <= 2 and r.best_beam[0] in (0, 1)


def test_draft_head_and_beam_search(torch):
    head = redraft.DraftHead.load(str(KJV_HEAD))
    assert (head.vocab_size, head.hidden_size, head.recurrence) == (256, 256, "silu")
    names = head.parameter_names()
    assert "rnn_w.weight" in names
    assert head.get_parameter("rnn_w.weight").shape == (256, 256)
    rng = np.random.default_rng(3)
    hidden = rng.normal(size=(2, 256)).astype(np.float32)
    embedding = torch.from_numpy(rng.normal(size=(256, 256)).astype(np.float32))
    roots = np.array([65, 32], dtype=np.int32)
    beams, scores, log_probs = redraft.beam_search(head, hidden, roots, embedding, 4, 5, want_log_probs=True)
    assert beams.shape == (2, 4, 5) and scores.shape == (2, 4) and log_probs.shape == (2, 4, 4, 256)
    assert (beams[:, :, 0] == roots[:, None]).all()
    assert (np.diff(scores, axis=1) <= 0).all()  # best first
    # Each beam's score is the sum of the log-probs of its drafted tokens.
    for b in range(2):
        for w in range(4):
            s = sum(log_probs[b, w, k, beams[b, w, k + 1]] for k in range(4))
            assert abs(s - scores[b, w]) < 1e-3
    with pytest.raises(ValueError, match="beam_width 60 exceeds the draft head's logit_top_k 50"):
        redraft.beam_search(head, hidden, roots, embedding, 60, 5)


def test_distillation_losses_match_torch(torch):
    rng = np.random.default_rng(4)
    next_n, b, t, v = 2, 1, 6, 5
    logits = rng.normal(size=(next_n, b, t, v)).astype(np.float32)
    labels = rng.integers(0, v, size=(b, t)).astype(np.int32)
    out = redraft.drafter_cross_entropy(logits, labels, want_grad=True)
    ref = 0.0
    lt = torch.from_numpy(logits).requires_grad_(True)
    for i in range(next_n):
        rows = [(0, s) for s in range(t) if s + i + 2 < t]
        ce = torch.nn.functional.cross_entropy(
            torch.stack([lt[i, bb, s] for bb, s in rows]), torch.tensor([int(labels[bb, s + i + 2]) for bb, s in rows])
        )
        ref = ref + ce
    ref.backward()
    assert abs(out["loss"] - ref.item()) < 1e-5
    assert np.allclose(out["grad"], lt.grad.numpy(), atol=1e-6)
    # distill_loss (stacked rows) with cross-entropy equals the same numbers on its layout.
    m = 4
    z = rng.normal(size=(next_n * m, v)).astype(np.float32)
    y = rng.integers(0, v, size=(m, next_n)).astype(np.int32)
    ce = redraft.distill_loss(z, y, kind="ce", logit_top_k=v)
    expected = sum(
        torch.nn.functional.cross_entropy(torch.from_numpy(z[i * m : (i + 1) * m]), torch.from_numpy(y[:, i]).long()).item()
        for i in range(next_n)
    )
    assert abs(ce["loss"] - expected) < 1e-5
    p = np.log(np.full((m, next_n, v), 1.0 / v, dtype=np.float32))
    kl = redraft.distill_loss(z, y, kind="kl", target_log_probs=p, logit_top_k=v)
    assert kl["loss"] > 0
    with pytest.raises(ValueError, match="kl loss needs the target's log-probabilities"):
        redraft.distill_loss(z, y, kind="kl")
