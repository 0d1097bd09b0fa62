"""Test helpers shared by the loop tests: a bigram target over V = 4 tokens (exact laws are easy
to enumerate) and a drafter that proposes any beam width and length."""

import itertools

import numpy as np

V = 4


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def markov_chi_square(counts, p, last, length, pool_below=0.0):
    """Pearson's chi-square of `counts` {token tuple: runs} against the bigram law p [V, V] of the
    `length` tokens that follow token `last`, and its degrees of freedom. Sequences expected
    fewer than `pool_below` times are pooled into one cell (rare cells give the statistic a
    heavy tail, so a bound from the chi-square law would be too tight)."""
    runs = sum(counts.values())
    chi2, cells, pooled_count, pooled_expected = 0.0, 0, 0, 0.0
    for seq in itertools.product(range(V), repeat=length):
        expected, prev = float(runs), last
        for t in seq:
            expected *= p[prev, t]
            prev = t
        if expected < pool_below:
            pooled_count += counts.get(seq, 0)
            pooled_expected += expected
            continue
        chi2 += (counts.get(seq, 0) - expected) ** 2 / expected
        cells += 1
    if pooled_expected > 0:
        chi2 += (pooled_count - pooled_expected) ** 2 / pooled_expected
        cells += 1
    return chi2, cells - 1


def chi_square_bound(df, sigmas):
    """The chi-square quantile `sigmas` standard normal deviations up (Wilson-Hilferty)."""
    c = 2.0 / (9.0 * df)
    return df * (1.0 - c + sigmas * c ** 0.5) ** 3


class MarkovTarget:
    """A bigram target over V tokens: the logits after token t are table[t]; hidden = one-hot."""

    vocab_size = V
    hidden_size = V
    max_context = 64

    def __init__(self, table):
        self.table = table  # [V, V] float32
        self.commits = 0
        self.committed = {}

    def embedding(self):
        return np.eye(V, dtype=np.float32)

    def prefill(self, slots, token_offsets, tokens):
        last = tokens[token_offsets[1:] - 1]
        for r, s in enumerate(slots):
            self.committed[int(s)] = int(token_offsets[r + 1] - token_offsets[r])
        return self.table[last], np.eye(V, dtype=np.float32)[last]

    def verify(self, batch):
        for r, s in enumerate(batch.slots):
            first = batch.node_offsets[r]
            assert batch.positions[first] == self.committed[int(s)]  # root at the committed length
        assert (batch.positions - batch.depths == np.repeat(batch.positions[batch.node_offsets[:-1]],
                                                            np.diff(batch.node_offsets))).all()
        return self.table[batch.tokens], np.eye(V, dtype=np.float32)[batch.tokens]

    def commit(self, plan):
        self.commits += 1
        for r, s in enumerate(plan.slot):
            self.committed[int(s)] = int(plan.destination[plan.offsets[r + 1] - 1]) + 1


class AnyShapeDrafter:
    """Proposes W beams of L tokens for any W < V and L: token c of beam j is
    root + c (1 + j) (mod V), so column 0 is the root and the beams differ from column 1 on.
    Records the shapes it was asked for."""

    def __init__(self):
        self.shapes = []

    def draft(self, hidden, roots, slots, beam_width, beam_length, want_log_probs):
        assert hidden.shape == (len(roots), V) and 1 <= beam_width < V and beam_length >= 2
        self.shapes.append((beam_width, beam_length))
        stride = 1 + np.arange(beam_width)[None, :, None]  # [1, W, 1]
        column = np.arange(beam_length)[None, None, :]  # [1, 1, L]
        return ((roots[:, None, None] + column * stride) % V).astype(np.int32)  # [R, W, L]
