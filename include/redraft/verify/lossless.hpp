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
#include "redraft/step/lossless.hpp"
#include "redraft/step/run_step.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/logits_processing.hpp"
#include "redraft/verify/tree_walk.hpp"
#include "redraft/verify/uniforms.hpp"

namespace redraft {

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
  // A backend may run the same walk fused (clause 10; e.g. CUDA: one block per request,
  // cuda/block/sampling_walk.hpp).
  step::run_step(backend,
                 detail::make_walk<step::lossless_walk<E>>(v, tree, logits, params, uniforms));
  detail::throw_on_status(backend, "verify_lossless", v, tree);
  return std::move(v.result);
}

}  // namespace redraft
