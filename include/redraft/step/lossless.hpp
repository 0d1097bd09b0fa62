// redraft/step/lossless.hpp: the per-request walk of verify_lossless's rule (verify/lossless.hpp),
// as steps over a small state, written once for the one-thread-per-request functor (operator()) and
// the block-per-request kernels (cuda/block/sampling_walk.hpp), which split each step's row passes
// over the block in the same blocked summation order (row_ops::blocked_sum) and so make the same
// decisions. The structs are the public arguments of a fused backend's run_fused (clause 10 of
// core/backend.hpp); the rule, its proof and the entry point are in the verify/ header.
#pragma once

#include <cstdint>

#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/step/row_ops.hpp"
#include "redraft/step/uniforms.hpp"
#include "redraft/step/walk.hpp"

namespace redraft {

namespace step {

// The walk of one request, kept by the deciding thread (in shared memory on a GPU).
struct lossless_state {
  std::int32_t node;           // current node u (request-local)
  std::int32_t len;            // accepted drafted tokens so far
  std::int32_t excluded;       // children tokens written to `sorted` for the residual draw
  std::int32_t last_positive;  // the last child of u with positive probability, -1 if none
  bool done;
};

// The rule as steps over a state, shared by the one-thread-per-request functor (operator()) and
// the block-per-request kernels (cuda/block/sampling_walk.hpp), which compute the row sums of
// each step with the whole block in the same blocked order (row_ops::blocked_sum).
template <logit_element T>
struct lossless_walk {
  using element_type = T;
  tree_view tree;
  matrix_view<const T> logits;  // [n_total, V]
  sampling_params params;
  uniform_source uniforms;
  std::int32_t* first_child;   // [n_total] scratch
  std::int32_t* next_sibling;  // [n_total] scratch
  std::int32_t* sorted;        // [n_total] scratch: the stopping node's child tokens, ascending
  acceptance_view out;
  status_view status;

  REDRAFT_HOST_DEVICE index_t count() const { return tree.batch; }

  // Children lists and the root; false (status set, done) if the tree is malformed.
  REDRAFT_HOST_DEVICE bool begin(std::int32_t b, lossless_state& s) const {
    s = lossless_state{0, 0, 0, -1, false};
    if (!build_children(tree, b, logits.extent(1), first_child, next_sibling, status)) {
      s.done = true;
      return false;
    }
    out.nodes_row(b)[0] = 0;
    return true;
  }

  REDRAFT_HOST_DEVICE const T* row(std::int32_t b, const lossless_state& s) const {
    return &logits(tree.first_node(b) + s.node, 0);
  }

  // After the row's processing (p with its norm): records a bad row, or draws among the
  // children. Returns true if the residual draw is needed (then `sorted` holds the children's
  // tokens, s.excluded of them); otherwise the walk has descended or finished.
  REDRAFT_HOST_DEVICE bool choose_child(std::int32_t b, const row_ops::processed_row& p,
                                        lossless_state& s) const {
    if (!p.ok()) {
      status.set_row(b, s.node, p.bad_column);
      s.done = true;
      return false;
    }
    const std::int32_t off = tree.first_node(b);
    const T* r = row(b, s);
    // Children as one-hot proposals, in node order.
    const float u = uniforms.draw(b, 2 * static_cast<index_t>(s.len));
    double cumulative = 0.0;
    s.last_positive = -1;
    for (std::int32_t c = first_child[off + s.node]; c >= 0; c = next_sibling[off + c]) {
      const double q = p.prob(to_float(r[tree.token[off + c]]));
      if (q > 0.0) s.last_positive = c;
      cumulative += q;
      if (static_cast<double>(u) < cumulative) {
        descend_or_finish(b, c, -1, s);
        return false;
      }
    }
    // Residual: p without the children's tokens, renormalised, fresh uniform.
    std::int32_t m = 0;
    for (std::int32_t c = first_child[off + s.node]; c >= 0; c = next_sibling[off + c]) {
      const std::int32_t tok = tree.token[off + c];
      std::int32_t at = m++;
      while (at > 0 && sorted[off + at - 1] > tok) {
        sorted[off + at] = sorted[off + at - 1];
        --at;
      }
      sorted[off + at] = tok;
    }
    s.excluded = m;
    return true;
  }

  // The residual's weights (children's tokens excluded) and uniform.
  REDRAFT_HOST_DEVICE row_ops::residual_weight<T> residual(std::int32_t b,
                                                           const row_ops::processed_row& p,
                                                           const lossless_state& s) const {
    return row_ops::residual_weight<T>{row(b, s), p, sorted + tree.first_node(b), s.excluded};
  }
  REDRAFT_HOST_DEVICE float residual_uniform(std::int32_t b, const lossless_state& s) const {
    return uniforms.draw(b, 2 * static_cast<index_t>(s.len) + 1);
  }

  // After the residual draw (next = -1: the residual weight is exactly 0).
  REDRAFT_HOST_DEVICE void after_residual(std::int32_t b, std::int32_t next,
                                          lossless_state& s) const {
    // NOTE: residual exactly 0 (children cover the support) -> the last positive child.
    descend_or_finish(b, next < 0 ? s.last_positive : -1, next, s);
  }

  REDRAFT_HOST_DEVICE void descend_or_finish(std::int32_t b, std::int32_t accepted,
                                             std::int32_t next, lossless_state& s) const {
    if (accepted < 0 || s.len + 1 >= out.path_length) {
      out.finish(tree, b, s.len, next);
      s.done = true;
      return;
    }
    s.node = accepted;
    out.nodes_row(b)[++s.len] = accepted;
  }

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const std::int32_t b = static_cast<std::int32_t>(i);
    const index_t vocab = logits.extent(1);
    lossless_state s{};
    if (!begin(b, s)) return;
    while (!s.done) {
      const row_ops::processed_row p = row_ops::process_row(row(b, s), vocab, params);
      if (!choose_child(b, p, s)) continue;
      double residual_weight = 0.0;
      const std::int32_t next =
          row_ops::sample_excluding(row(b, s), vocab, p, sorted + tree.first_node(b), s.excluded,
                                    residual_uniform(b, s), &residual_weight);
      after_residual(b, next, s);
    }
  }
};

}  // namespace step
}  // namespace redraft
