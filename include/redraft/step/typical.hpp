// redraft/step/typical.hpp: the per-request walk of verify_typical's rule (verify/typical.hpp), as
// steps over a small state, written once for the one-thread-per-request functor (operator()) and
// the block-per-request kernels (cuda/block/sampling_walk.hpp), which split each step's row passes
// over the block in the same blocked summation order (row_ops::blocked_sum) and so make the same
// decisions. The structs are the public arguments of a fused backend's run_fused (clause 10 of
// core/backend.hpp); the rule, its proof and the entry point are in the verify/ header.
#pragma once

#include <cmath>
#include <cstdint>

#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/step/row_ops.hpp"
#include "redraft/step/uniforms.hpp"
#include "redraft/step/walk.hpp"

namespace redraft {

struct typical_params {
  float temperature = 1.0f;        // > 0
  float epsilon = 0.09f;           // hard threshold (posterior_threshold)
  float delta = 0.3f;              // entropy-scaled threshold factor (posterior_alpha)
  bool sample_next_token = false;  // false: argmax; true: sample p with uniform draw 0
};

namespace step {

// Column t's term w z of the entropy sum (w the weight, z = (x - max) / T), in the blocked order.
template <logit_element T>
struct entropy_term {
  const T* row;
  row_ops::processed_row p;
  REDRAFT_HOST_DEVICE double operator()(index_t t) const {
    const float x = to_float(row[t]);
    const double w = p.weight(x);
    return w > 0.0 ? w * static_cast<double>((x - p.max) * p.inv_temperature) : 0.0;
  }
};

// min(epsilon, delta exp(-H)) from the normaliser and the entropy sum.
REDRAFT_HOST_DEVICE inline double typical_cut(const typical_params& params, double norm,
                                              double wz) {
  const double entropy = std::log(norm) - wz / norm;
  const double eps = static_cast<double>(params.epsilon);
  const double scaled = static_cast<double>(params.delta) * std::exp(-entropy);
  return eps < scaled ? eps : scaled;
}

// The walk of one request, kept by the deciding thread (in shared memory on a GPU).
struct typical_state {
  std::int32_t node;  // the next node to examine (request-local, packed order)
  std::int32_t best;  // the deepest accepted node so far (lowest index on ties)
  bool done;
};

// The rule as steps over a state, shared by the one-thread-per-request functor (operator()) and
// the block-per-request kernels (cuda/block/sampling_walk.hpp), which compute the row sums with
// the whole block in the same blocked order.
template <logit_element T>
struct typical_walk {
  using element_type = T;
  tree_view tree;
  matrix_view<const T> logits;  // [n_total, V]
  typical_params params;
  uniform_source uniforms;
  std::int32_t* first_child;   // [n_total] scratch
  std::int32_t* next_sibling;  // [n_total] scratch
  std::int32_t* accepted;      // [n_total] scratch: 1 iff the node is on an accepted path
  acceptance_view out;
  status_view status;

  REDRAFT_HOST_DEVICE index_t count() const { return tree.batch; }

  REDRAFT_HOST_DEVICE sampling_params sampling() const {
    sampling_params sp;
    sp.temperature = params.temperature;
    return sp;
  }

  REDRAFT_HOST_DEVICE bool begin(std::int32_t b, typical_state& s) const {
    s = typical_state{0, 0, false};
    const std::int32_t off = tree.first_node(b), n = tree.num_nodes(b);
    if (!build_children(tree, b, logits.extent(1), first_child, next_sibling, status)) {
      s.done = true;
      return false;
    }
    for (std::int32_t u = 0; u < n; ++u) accepted[off + u] = u == 0 ? 1 : 0;
    return true;
  }

  // Moves to the next accepted node with children (packed order: parents before children),
  // updating the deepest accepted node on the way. False when every node has been examined.
  REDRAFT_HOST_DEVICE bool next_parent(std::int32_t b, typical_state& s) const {
    const std::int32_t off = tree.first_node(b), n = tree.num_nodes(b);
    for (; s.node < n; ++s.node) {
      if (!accepted[off + s.node]) continue;
      if (tree.depth[off + s.node] > tree.depth[off + s.best]) s.best = s.node;
      if (first_child[off + s.node] >= 0) return true;
    }
    return false;
  }

  REDRAFT_HOST_DEVICE const T* row(std::int32_t b, std::int32_t node) const {
    return &logits(tree.first_node(b) + node, 0);
  }

  // After the row of s.node is processed (p with its norm; wz the entropy sum): the children's
  // accept flags, then on to the next node.
  REDRAFT_HOST_DEVICE void decide_children(std::int32_t b, const row_ops::processed_row& p,
                                           double wz, typical_state& s) const {
    if (!p.ok()) {
      status.set_row(b, s.node, p.bad_column);
      s.done = true;
      return;
    }
    const std::int32_t off = tree.first_node(b);
    const T* r = row(b, s.node);
    const double cut = typical_cut(params, p.norm, wz);
    for (std::int32_t c = first_child[off + s.node]; c >= 0; c = next_sibling[off + c]) {
      accepted[off + c] = p.prob(to_float(r[tree.token[off + c]])) > cut ? 1 : 0;
    }
    ++s.node;
  }

  // The path to s.best, root first, and the next token; finish_bad: a bad row at s.best.
  REDRAFT_HOST_DEVICE void finish(std::int32_t b, std::int32_t next, typical_state& s) const {
    const std::int32_t off = tree.first_node(b);
    const std::int32_t len = tree.depth[off + s.best];
    std::int32_t* nodes = out.nodes_row(b);
    for (std::int32_t u = s.best, d = len; d >= 0; u = tree.parent[off + u], --d) nodes[d] = u;
    out.finish(tree, b, len, next);
    s.done = true;
  }
  REDRAFT_HOST_DEVICE void finish_bad(std::int32_t b, std::int64_t bad_column,
                                      typical_state& s) const {
    status.set_row(b, s.best, bad_column);
    s.done = true;
  }

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const std::int32_t b = static_cast<std::int32_t>(i);
    const index_t vocab = logits.extent(1);
    typical_state s{};
    if (!begin(b, s)) return;
    while (next_parent(b, s)) {
      const T* r = row(b, s.node);
      const row_ops::processed_row p = row_ops::process_row(r, vocab, sampling());
      // H = log(norm) - sum(w z) / norm with z = (x - max) / T and w = exp(z).
      const double wz = p.ok() ? row_ops::blocked_sum(entropy_term<T>{r, p}, vocab) : 0.0;
      decide_children(b, p, wz, s);
      if (s.done) return;
    }
    const T* r = row(b, s.best);
    if (params.sample_next_token) {
      const row_ops::processed_row p = row_ops::process_row(r, vocab, sampling());
      if (!p.ok()) return finish_bad(b, p.bad_column, s);
      double residual = 0.0;
      finish(b, row_ops::sample_excluding(r, vocab, p, nullptr, 0, uniforms.draw(b, 0), &residual),
             s);
    } else {
      const row_ops::row_argmax_result am = row_ops::argmax_checked(r, vocab);
      if (am.bad_column != -1) return finish_bad(b, am.bad_column, s);
      finish(b, am.index, s);
    }
  }
};

}  // namespace step
}  // namespace redraft
