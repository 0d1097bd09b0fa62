// redraft/verify/redrafter.hpp: ReDrafter's stochastic verification (Apple's rule), kept for
// parity with existing deployments. Reproduces Apple's decisions bit for bit given the same
// uniforms (pinned by the `redrafter_accept` golden cases).
//
// Rule, per request, with beams [W, L] (column 0 the root) and the tree built from them:
//   p_k   = log_softmax(warp_top_k(logits at beam position k) / T)           [V]
//           where "logits at beam position k" is row beam_to_node[b, w, k] (the node holding the
//           beam's k-th token: its logits predict token k+1)
//   q_k   = draft_log_probs[b, w, k]                                          [V]
//   token k+1 of beam w (x = beams[w, k+1]) is accepted iff u[b, w, k] < exp(p_k(x) - q_k(x));
//   the beam's accepted length is its leading run of accepts; best beam = the first beam with
//   the longest run (n = its run).
//   next token: if n = L-1, sample p_{L-1} (the row of the beam's last node); otherwise sample
//   relu(exp(p_n) - exp(q_n)) (the residual at the first rejected position of the best beam).
//   Sampling is by inverse CDF: the smallest i with cumsum(w)[i] > u * sum(w), clamped to V-1.
//
// Why it is NOT distribution-preserving: the accept/residual pair is the Leviathan/Chen rule,
// which is exact for ONE sampled draft token x ~ q. Here the W beams come from beam search (the
// drafted tokens are the top-scoring continuations, not samples from q), all W beams are tested
// independently and the longest run wins, which favours whichever beam happens to pass more
// tests; and the residual relu(p - q) is taken against q at a position where several distinct
// tokens were proposed by different beams, not the one token that was rejected. The emitted
// token's law is therefore a mixture that depends on the drafter and the tree. Example: one
// position, two beams proposing a and b with q(a) = q(b) = 1/2 and p = q: both are always
// accepted (ratio 1), best beam = beam 0, so token a is emitted with probability 1 instead of 1/2.
// Use verify_lossless when the output law must equal the target's.
//
// Uniform draw layout (philox_uniforms or caller uniforms [B, W (L-1) + 1]): draw w (L-1) + k is
// u[b, w, k]; draw W (L-1) is the sampling uniform.
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
#include "redraft/step/redrafter.hpp"
#include "redraft/step/run_step.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/logits_processing.hpp"
#include "redraft/verify/tree_walk.hpp"
#include "redraft/verify/uniforms.hpp"

namespace redraft {

namespace detail {

// The checks verify_redrafter and verify_redrafter_deferred share (fn prefixes the messages): a
// tree built from full beams, draft_log_probs [B, W, L-1, V], and usable parameters.
template <Backend B>
void check_redrafter_inputs(const char* fn, const tree<B>& tree,
                            view<const float, 4> draft_log_probs, index_t vocab,
                            const redrafter_params& params) {
  REDRAFT_REQUIRE(tree.beam_width > 0 && tree.beam_length >= 2, fn, ": the tree has beam_width ",
                  tree.beam_width, " and beam_length ", tree.beam_length,
                  " (it must be built by build_tree from beams)");
  REDRAFT_REQUIRE(
      !tree.short_beams, fn,
      ": the tree was built with beam_lengths (beams shorter than L, e.g. from a "
      "model-free drafter); Apple's rule needs every beam position and its draft log-probs");
  const index_t width = tree.beam_width, length = tree.beam_length;
  REDRAFT_REQUIRE(draft_log_probs.extent(0) == tree.batch && draft_log_probs.extent(1) == width &&
                      draft_log_probs.extent(2) == length - 1 && draft_log_probs.extent(3) == vocab,
                  fn, ": draft_log_probs is [", draft_log_probs.extent(0), ", ",
                  draft_log_probs.extent(1), ", ", draft_log_probs.extent(2), ", ",
                  draft_log_probs.extent(3), "] but expected [", tree.batch, ", ", width, ", ",
                  length - 1, ", ", vocab, "]");
  REDRAFT_REQUIRE(temperature_is_usable(params.temperature), fn, ": temperature ",
                  params.temperature,
                  " must be finite and > 0 with a finite 1 / T (use verify_greedy for T = 0)");
  REDRAFT_REQUIRE(params.logit_top_k >= 0, fn, ": logit_top_k ", params.logit_top_k,
                  " must be >= 0 (0 disables the warp)");
  REDRAFT_REQUIRE(std::isfinite(params.logit_mask_value), fn, ": logit_mask_value ",
                  params.logit_mask_value, " must be finite");
}

}  // namespace detail

// verify_redrafter(backend, tree, logits [n_total, V], draft_log_probs [B, W, L-1, V], params,
//                  uniforms) -> acceptance.
//   tree: built by build_tree from the beams [B, W, L] the draft head produced (beam_to_node is
//   required); logits: raw target logits per packed node; draft_log_probs: the draft head's
//   log-distribution that produced beam position k+1 (after its warp and log_softmax).
//   uniforms: philox_uniforms or caller uniforms [B, >= W (L-1) + 1] (layout above).
// Outputs: accepted_len, best_beam (Apple's: the first beam with the longest run), accepted
//   nodes, emitted tokens, next token, hidden row.
// Errors (redraft::error): a tree without beams or with short beams (beam_lengths), shape
// mismatches, temperature <= 0,
//   logit_top_k < 0, uniforms of the wrong shape or outside [0, 1), NaN / +inf logits (or a logit /
//   T overflowing float) in any row (every non-leaf row is read) or in the draft log-probs of a
//   tested token.
// Determinism: a pure function of its inputs; identical decisions on every backend.
// Complexity: every node's row is read 3 times (scan+top-k for k <= 64, max, log-sum), per
//   request O(W L) tests, and 2 passes over one row (+ one q row) for the next token.
template <Backend B, class T = const float>  // the default serves braced {data, rows, V}
requires logit_element<std::remove_const_t<T>> acceptance<B> verify_redrafter(
    const B& backend, const tree<B>& tree, matrix_view<T> logits_in,
    view<const float, 4> draft_log_probs, const redrafter_params& params,
    const uniform_source& uniforms) {
  using E = std::remove_const_t<T>;
  const matrix_view<const E> logits(logits_in);
  detail::check_tree_and_logits("verify_redrafter", tree, logits);
  detail::check_redrafter_inputs("verify_redrafter", tree, draft_log_probs, logits.extent(1),
                                 params);
  const index_t width = tree.beam_width, length = tree.beam_length;
  detail::check_uniforms(backend, "verify_redrafter", uniforms, tree.batch,
                         width * (length - 1) + 1);

  auto v = detail::allocate_verify_buffers(backend, tree, tree.beam_length);
  const index_t nt = tree.total_nodes();
  auto threshold = backend.template allocate<float>(nt);   // [n_total]
  auto max = backend.template allocate<float>(nt);         // [n_total]
  auto log_sum = backend.template allocate<float>(nt);     // [n_total]
  auto bad = backend.template allocate<std::int32_t>(nt);  // [n_total]
  const step::redrafter_rows<E> rows{logits,     params,         threshold.data(),
                                     max.data(), log_sum.data(), bad.data()};
  // A backend may compute the row statistics with one block per node.
  step::run_step(backend, rows);
  const step::redrafter_walk<E> walk{
      view_of(tree), logits,         draft_log_probs, params,  uniforms,      threshold.data(),
      max.data(),    log_sum.data(), bad.data(),      v.out(), v.status_out()};
  // A backend may run the same walk with one block per request (cuda/block/sampling_walk.hpp).
  step::run_step(backend, walk);
  detail::throw_on_status(backend, "verify_redrafter", v, tree);
  return std::move(v.result);
}

}  // namespace redraft
