// redraft/verify/typical.hpp: Medusa's typical acceptance over a token tree. Opt-in and LOSSY.
//
// Rule (Cai et al., "Medusa", 2024, §2.3.1): with p = softmax(logits / T) at node u and its
// entropy H(p) = -sum_x p(x) log p(x) (nats), a child holding token x is accepted iff
//     p(x) > min(epsilon, delta * exp(-H(p))).
// A node is on an accepted path iff it and all its ancestors are accepted. The chosen path is
// the longest accepted one; among equally long ones the one ending at the lowest node index (for
// beam trees: the lowest-index beam, since nodes of one depth are numbered in beam order).
// The next token at the path's last node is the target's argmax (sample_next_token = false,
// Medusa's default) or a sample from p (sample_next_token = true; one uniform, draw index 0).
//
// Lossy: a token is accepted whenever it is "typical enough", not with probability equal to its
// target mass, so the output law is not the target's (e.g. with p = (0.6, 0.4) and both tokens
// drafted as siblings, the first is always accepted: it is emitted with probability 1, not 0.6).
// It trades fidelity for longer accepted runs at high temperature. Differences from Medusa's
// code: the entropy is exact (Medusa adds 1e-5 inside the log), and ties between equally long
// paths go to the lowest node index (Medusa: the first candidate row).
// Parameters: epsilon (Medusa's posterior_threshold, 0.09), delta (posterior_alpha, 0.3 =
// sqrt(epsilon)), temperature (> 0).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/step/run_step.hpp"
#include "redraft/step/typical.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/logits_processing.hpp"
#include "redraft/verify/tree_walk.hpp"
#include "redraft/verify/uniforms.hpp"

namespace redraft {

namespace detail {

// The parameter checks verify_typical and verify_typical_deferred share (fn prefixes the messages).
inline void check_typical_params(const char* fn, const typical_params& params) {
  REDRAFT_REQUIRE(temperature_is_usable(params.temperature), fn, ": temperature ",
                  params.temperature, " must be finite and > 0 with a finite 1 / T");
  REDRAFT_REQUIRE(std::isfinite(params.epsilon) && params.epsilon >= 0.0f, fn, ": epsilon ",
                  params.epsilon, " must be finite and >= 0");
  REDRAFT_REQUIRE(std::isfinite(params.delta) && params.delta >= 0.0f, fn, ": delta ", params.delta,
                  " must be finite and >= 0");
}

}  // namespace detail

// verify_typical(backend, tree, logits [n_total, V], params, uniforms) -> acceptance.
//   tree: any tree; logits row i = packed node i. uniforms are only used when
//   params.sample_next_token (draw 0 of request b; caller uniforms [B, >= 1], or
//   philox_uniforms{seed, step}). Without uniforms (the overload below) the next token must be the
//   argmax: a default Philox stream would draw the same numbers on every call.
// Outputs: see acceptance.hpp. Errors: as verify_greedy, plus temperature <= 0, epsilon or delta
//   not finite or negative, caller uniforms of the wrong shape or outside [0, 1).
// Determinism: a pure function of its inputs; identical on every backend.
// Complexity: per request one pass over the row of every accepted node that has children (2
//   passes: process + entropy), one more row for the next token, O(n_b) for the tree.
template <Backend B, class T = const float>  // the default serves braced {data, rows, V}
requires logit_element<std::remove_const_t<T>> acceptance<B> verify_typical(
    const B& backend, const tree<B>& tree, matrix_view<T> logits_in, const typical_params& params,
    const uniform_source& uniforms) {
  using E = std::remove_const_t<T>;
  const matrix_view<const E> logits(logits_in);
  detail::check_tree_and_logits("verify_typical", tree, logits);
  detail::check_typical_params("verify_typical", params);
  const std::int32_t path_length = detail::path_length_of(backend, tree);
  if (params.sample_next_token) {
    detail::check_uniforms(backend, "verify_typical", uniforms, tree.batch, 1);
  }

  auto v = detail::allocate_verify_buffers(backend, tree, path_length);
  // A backend may run the same walk fused (clause 10; e.g. CUDA: one block per request,
  // cuda/block/sampling_walk.hpp).
  step::run_step(backend,
                 detail::make_walk<step::typical_walk<E>>(v, tree, logits, params, uniforms));
  detail::throw_on_status(backend, "verify_typical", v, tree);
  return std::move(v.result);
}

// verify_typical(backend, tree, logits [n_total, V], params) -> acceptance: the argmax next token
// (params.sample_next_token must be false; a sampled next token needs the caller's uniforms).
template <Backend B, class T = const float>
requires logit_element<std::remove_const_t<T>> acceptance<B> verify_typical(
    const B& backend, const tree<B>& tree, matrix_view<T> logits, const typical_params& params) {
  REDRAFT_REQUIRE(
      !params.sample_next_token,
      "verify_typical: params.sample_next_token is true but no uniforms were given; pass "
      "philox_uniforms{seed, step} or caller uniforms [B, >= 1]");
  return verify_typical(backend, tree, logits, params, philox_uniforms{});
}

}  // namespace redraft
