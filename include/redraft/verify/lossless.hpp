// redraft/verify/lossless.hpp: distribution-preserving verification of a token tree.
//
// The deterministic-candidate rule (docs/verify.md). At node u let p be the processed target
// distribution of logits row u (temperature, top-k, top-p: sampling_params) and c_1 .. c_m the
// children of u in node order, holding tokens t_1 .. t_m (distinct). Each child is a one-hot
// proposal. Draw one uniform r:
//   accept c_j for the smallest j with r < p(t_1) + ... + p(t_j), and continue the walk at c_j;
//   if no child is accepted (r >= p(t_1) + ... + p(t_m)), draw a fresh uniform and sample the
//   next token from p with t_1 .. t_m removed and renormalised; stop.
// A leaf (m = 0) is the same rule: the next token is sampled from p itself.
//
// Why it is exact: P(emit t_j at u) = p(t_j) (the interval of r), and for a token y that no child
// holds, P(emit y) = (1 - sum_j p(t_j)) * p(y) / (1 - sum_j p(t_j)) = p(y). So the first token
// emitted at u has law p whatever the tree and whatever the drafter, and by induction (the walk
// continues at the accepted child with that child's own target distribution) the whole emitted
// sequence has the law of sampling the target token by token. The drafter's probabilities are
// not needed: with deterministic (one-hot) proposals the accept test is just the target mass.
//
// Uniform draw layout (philox_uniforms or caller uniforms [B, 2 * L]): at the node of depth d,
// draw 2d chooses among the children and draw 2d + 1 samples the residual (or the leaf).
//
// Corner cases, explicitly:
//  * p one-hot on token x: a child holding x is accepted with certainty (p(x) = 1 exactly and
//    r < 1); if no child holds x, r >= 0 = sum p(t_j) rejects every child and the residual is x.
//  * children covering all of p's support: the residual is empty and, mathematically, some child
//    is always accepted. In floating point the running sum may end a few ulps below 1 and r may
//    land in that gap. NOTE: fallback: when the residual weight is exactly 0 the last child with
//    positive probability is accepted (the gap belongs to the last interval), and the walk goes
//    on. The residual weight is summed directly over the non-child tokens, never computed as
//    1 - sum, so "exactly 0" means every non-child token has zero weight in float.
//  * zero-probability children are never accepted (their intervals are empty).
//  * duplicate sibling tokens: redraft::error (the tree is malformed: the rule would count the
//    token's mass twice).
#pragma once

#include <cstdint>
#include <type_traits>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/logits_processing.hpp"
#include "redraft/verify/tree_walk.hpp"
#include "redraft/verify/uniforms.hpp"

namespace redraft {

namespace detail {

// The walk of one request, kept by the deciding thread (in shared memory on a GPU).
struct lossless_state {
  std::int32_t node;           // current node u (request-local)
  std::int32_t len;            // accepted drafted tokens so far
  std::int32_t excluded;       // children tokens written to `sorted` for the residual draw
  std::int32_t last_positive;  // the last child of u with positive probability, -1 if none
  bool done;
};

// The rule as steps over a state, shared by the one-thread-per-request functor (operator()) and
// the block-per-request kernels (cuda/block/sampling_walk.cuh), which compute the row sums of
// each step with the whole block in the same blocked order (row_ops::blocked_sum).
template <logit_element T>
struct lossless_functor {
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

}  // namespace detail

// verify_lossless(backend, tree, logits [n_total, V], params, uniforms) -> acceptance.
//   tree: any tree; logits row i = packed node i (raw target logits of float, half or bfloat16;
//   params are applied here, row by row, only to the rows the walk reads).
//   params: temperature > 0, top_k >= 0 (0 off), top_p in (0, 1] (1 off).
//   uniforms: philox_uniforms{seed, step} (request b draws from philox_stream{seed, b, step}) or
//   caller uniforms [B, >= 2L] in [0, 1) with the layout above.
// Outputs: see acceptance.hpp; best_beam is the lowest beam through the accepted path (-1 if the
//   tree has no beams).
// Errors (redraft::error, nothing returned): as verify_greedy, plus bad sampling params and
//   caller uniforms of the wrong shape or outside [0, 1).
// Determinism: a pure function of (logits, tree, params, uniforms); the same decisions on every
//   backend for the same seed.
// Complexity: per request, for each node on the path, 2 passes over its row (scan, normaliser;
//   top-k adds 1 pass for k <= 64 and 4 above, top-p 5: see row_ops::process_row), and 2 more at
//   the stopping node (residual total, inverse CDF); O(n_b + sum of squared fan-outs) for the tree.
template <Backend B, class T = const float>  // the default serves braced {data, rows, V}
requires logit_element<std::remove_const_t<T>> acceptance<B> verify_lossless(
    const B& backend, const tree<B>& tree, matrix_view<T> logits_in, const sampling_params& params,
    const uniform_source& uniforms) {
  using E = std::remove_const_t<T>;
  const matrix_view<const E> logits(logits_in);
  detail::check_tree_and_logits("verify_lossless", tree, logits);
  detail::check_sampling_params("verify_lossless", params);
  const std::int32_t path_length = detail::path_length_of(backend, tree);
  detail::check_uniforms(backend, "verify_lossless", uniforms, tree.batch, 2 * path_length);

  auto v = detail::allocate_verify_buffers(backend, tree, path_length);
  const detail::lossless_functor<E> walk{
      view_of(tree),         logits,           params,  uniforms,      v.first_child.data(),
      v.next_sibling.data(), v.scratch.data(), v.out(), v.status_out()};
  // A backend may run the same walk with one block per request (cuda/block/sampling_walk.cuh).
  if constexpr (requires { backend.verify_lossless_fused(walk); }) {
    backend.verify_lossless_fused(walk);
  } else {
    backend.for_each_index(tree.batch, walk);
  }
  detail::throw_on_status(backend, "verify_lossless", v, tree);
  return std::move(v.result);
}

}  // namespace redraft
