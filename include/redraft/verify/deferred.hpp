// redraft/verify/deferred.hpp: verification with no allocation, no transfer and no
// synchronisation, for a decoding step that is captured in a CUDA graph (opt-in).
//
// The ordinary verifiers allocate their outputs and scratch, read the tree depths back when the
// path length is not known, validate caller uniforms on the host, and copy the status record
// back to throw at the end of the call. The deferred forms take all of that out of the call:
//
//   verify_workspace<B> ws(backend, max_batch, max_nodes, path_length);   // once, fixed capacity
//   per step:
//     verify_lossless_deferred(backend, tree, logits, params, philox_uniforms{seed, step}, ws);
//     ... the acceptance stays in ws.result() (device memory), feeding the KV plan ...
//   once per step, or once at the end:
//     check_verify_status(backend, "step", ws, tree);   // one transfer; throws the first error
//
// A deferred call issues only kernels / for_each_index (and one fill of nothing: the status is
// sticky, reset by check_verify_status), so it can be recorded into a CUDA graph and replayed.
// Errors found on the device (malformed tree, NaN / +inf logits, bad draft log-probs) go to the
// workspace's status record [max_batch, 3] and stay there until checked: the outputs of a request
// with an error are unspecified. Check once per step to get the step's node numbers in the
// message (a later check reports them against the tree it is given). Errors the host can see
// without a transfer (shapes, parameters, capacity) still throw at once. Limits of the deferred
// forms: uniforms come from Philox (caller matrices would need a host validation); the path length
// is the workspace's (beam trees: beam_length; other trees: an upper bound on depth + 1 chosen by
// the caller, deeper paths are cut there). The decisions are those of the ordinary verifiers, bit
// for bit (tests/test_deferred_verify.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/greedy.hpp"
#include "redraft/verify/lossless.hpp"
#include "redraft/verify/redrafter.hpp"
#include "redraft/verify/tree_walk.hpp"
#include "redraft/verify/typical.hpp"
#include "redraft/verify/uniforms.hpp"

namespace redraft {

// Outputs and scratch of the deferred verifiers, allocated once for at most max_batch requests
// and max_nodes packed nodes with paths of path_length.
template <Backend B>
class verify_workspace {
 public:
  verify_workspace(const B& backend, std::int32_t max_batch, std::int32_t max_nodes,
                   std::int32_t path_length)
      : max_batch_(max_batch), max_nodes_(max_nodes) {
    REDRAFT_REQUIRE(max_batch >= 0 && max_nodes >= max_batch && path_length >= 1,
                    "verify_workspace: max_batch ", max_batch, ", max_nodes ", max_nodes,
                    " and path_length ", path_length,
                    " must satisfy 0 <= max_batch <= max_nodes and path_length >= 1");
    const index_t nb = max_batch, nt = max_nodes;
    acceptance<B>& r = v_.result;
    r.batch = max_batch;
    r.path_length = path_length;
    r.accepted_len = backend.template allocate<std::int32_t>(nb);
    r.best_beam = backend.template allocate<std::int32_t>(nb);
    r.accepted_nodes = backend.template allocate<std::int32_t>(nb * path_length);
    r.emitted_tokens = backend.template allocate<std::int32_t>(nb * path_length);
    r.next_token = backend.template allocate<std::int32_t>(nb);
    r.hidden_row = backend.template allocate<std::int32_t>(nb);
    v_.status = backend.template allocate<std::int32_t>(3 * nb);
    backend.fill(v_.status.data(), 3 * nb, std::int32_t{0});
    v_.first_child = backend.template allocate<std::int32_t>(nt);
    v_.next_sibling = backend.template allocate<std::int32_t>(nt);
    v_.scratch = backend.template allocate<std::int32_t>(nt);
    threshold_ = backend.template allocate<float>(nt);
    max_ = backend.template allocate<float>(nt);
    log_sum_ = backend.template allocate<float>(nt);
    bad_ = backend.template allocate<std::int32_t>(nt);
  }

  std::int32_t max_batch() const { return max_batch_; }
  std::int32_t max_nodes() const { return max_nodes_; }
  std::int32_t path_length() const { return v_.result.path_length; }
  // The last call's acceptance: rows [0, tree.batch) are that call's requests (device memory).
  const acceptance<B>& result() const { return v_.result; }

  // Internal: the buffers the deferred verifiers write.
  detail::verify_buffers<B>& buffers() { return v_; }
  const detail::verify_buffers<B>& buffers() const { return v_; }
  float* threshold() { return threshold_.data(); }
  float* max() { return max_.data(); }
  float* log_sum() { return log_sum_.data(); }
  std::int32_t* bad_column() { return bad_.data(); }

 private:
  std::int32_t max_batch_ = 0, max_nodes_ = 0;
  detail::verify_buffers<B> v_;
  typename B::template buffer<float> threshold_, max_, log_sum_;  // [max_nodes] (redrafter)
  typename B::template buffer<std::int32_t> bad_;                 // [max_nodes] (redrafter)
};

namespace detail {

// The host-side checks of a deferred call: shapes and capacity, no transfer.
template <class B, class T>
void check_deferred(const char* fn, const tree<B>& t, matrix_view<const T> logits,
                    const verify_workspace<B>& ws) {
  check_tree_and_logits(fn, t, logits);
  REDRAFT_REQUIRE(t.batch <= ws.max_batch() && t.total_nodes() <= ws.max_nodes(), fn,
                  ": the tree has ", t.batch, " requests and ", t.total_nodes(),
                  " nodes but the workspace holds ", ws.max_batch(), " and ", ws.max_nodes());
  REDRAFT_REQUIRE(t.beam_width == 0 || t.beam_length == ws.path_length(), fn,
                  ": the tree's beam_length ", t.beam_length,
                  " differs from the workspace's path_length ", ws.path_length());
}

// The body the deferred greedy, lossless and typical forms share: shape and capacity checks,
// then the rule's walk over the workspace's buffers, fused or generic (step::run_step).
template <class Walk, class B, class E, class... Rule>
void run_deferred_walk(const B& backend, const char* fn, const tree<B>& t,
                       matrix_view<const E> logits, verify_workspace<B>& ws, const Rule&... rule) {
  check_deferred(fn, t, logits, ws);
  step::run_step(backend, make_walk<Walk>(ws.buffers(), t, logits, rule...));
}

}  // namespace detail

// verify_greedy_deferred(backend, tree, logits [n_total, V], ws): verify_greedy into ws.
template <Backend B, class T = const float>
requires logit_element<std::remove_const_t<T>>
void verify_greedy_deferred(const B& backend, const tree<B>& tree, matrix_view<T> logits,
                            verify_workspace<B>& ws) {
  using E = std::remove_const_t<T>;
  detail::run_deferred_walk<step::greedy_walk<E>>(backend, "verify_greedy_deferred", tree,
                                                  matrix_view<const E>(logits), ws);
}

// verify_lossless_deferred(backend, tree, logits [n_total, V], params, philox, ws).
template <Backend B, class T = const float>
requires logit_element<std::remove_const_t<T>>
void verify_lossless_deferred(const B& backend, const tree<B>& tree, matrix_view<T> logits,
                              const sampling_params& params, const philox_uniforms& uniforms,
                              verify_workspace<B>& ws) {
  using E = std::remove_const_t<T>;
  detail::check_sampling_params("verify_lossless_deferred", params);
  detail::run_deferred_walk<step::lossless_walk<E>>(backend, "verify_lossless_deferred", tree,
                                                    matrix_view<const E>(logits), ws, params,
                                                    uniform_source(uniforms));
}

// verify_typical_deferred(backend, tree, logits [n_total, V], params, philox, ws).
template <Backend B, class T = const float>
requires logit_element<std::remove_const_t<T>>
void verify_typical_deferred(const B& backend, const tree<B>& tree, matrix_view<T> logits,
                             const typical_params& params, const philox_uniforms& uniforms,
                             verify_workspace<B>& ws) {
  using E = std::remove_const_t<T>;
  detail::check_typical_params("verify_typical_deferred", params);
  detail::run_deferred_walk<step::typical_walk<E>>(backend, "verify_typical_deferred", tree,
                                                   matrix_view<const E>(logits), ws, params,
                                                   uniform_source(uniforms));
}

// verify_redrafter_deferred(backend, tree, logits [n_total, V], draft_log_probs [B, W, L-1, V],
//                           params, philox, ws).
template <Backend B, class T = const float>
requires logit_element<std::remove_const_t<T>>
void verify_redrafter_deferred(const B& backend, const tree<B>& tree, matrix_view<T> logits_in,
                               view<const float, 4> draft_log_probs, const redrafter_params& params,
                               const philox_uniforms& uniforms, verify_workspace<B>& ws) {
  using E = std::remove_const_t<T>;
  const matrix_view<const E> logits(logits_in);
  detail::check_deferred("verify_redrafter_deferred", tree, logits, ws);
  detail::check_redrafter_inputs("verify_redrafter_deferred", tree, draft_log_probs,
                                 logits.extent(1), params);
  auto& v = ws.buffers();
  step::run_step(backend, step::redrafter_rows<E>{logits, params, ws.threshold(), ws.max(),
                                                  ws.log_sum(), ws.bad_column()});
  step::run_step(backend,
                 step::redrafter_walk<E>{view_of(tree), logits, draft_log_probs, params,
                                         uniform_source(uniforms), ws.threshold(), ws.max(),
                                         ws.log_sum(), ws.bad_column(), v.out(), v.status_out()});
}

// check_verify_status(backend, fn, ws, tree): one transfer of the status record [batch, 3]; throws
// redraft::error (prefixed by fn) for the first request with an error since the last check, with
// the ordinary verifiers' messages, then (on success or failure) clears the record.
template <Backend B>
void check_verify_status(const B& backend, const char* fn, verify_workspace<B>& ws,
                         const tree<B>& tree) {
  auto& v = ws.buffers();
  const index_t n = 3 * static_cast<index_t>(ws.max_batch());
  try {
    detail::throw_on_status(backend, fn, v, tree);
  } catch (...) {
    backend.fill(v.status.data(), n, std::int32_t{0});
    throw;
  }
  backend.fill(v.status.data(), n, std::int32_t{0});
}

}  // namespace redraft
