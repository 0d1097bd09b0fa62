// redraft/verify/tree_walk.hpp: the host side every verifier entry point shares: argument checks,
// output and scratch allocation, the path length L, and turning the steps' status record
// (step/walk.hpp) into a redraft::error.
// Internal to verify/ (namespace redraft::detail), not a public API.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/step/walk.hpp"
#include "redraft/verify/acceptance.hpp"

namespace redraft::detail {

// Scratch and outputs of one verifier call.
template <class B>
struct verify_buffers {
  acceptance<B> result;
  typename B::template buffer<std::int32_t> status;        // [B, 3]
  typename B::template buffer<std::int32_t> first_child;   // [n_total]
  typename B::template buffer<std::int32_t> next_sibling;  // [n_total]
  typename B::template buffer<std::int32_t> scratch;       // [n_total], verifier-specific

  step::acceptance_view out() {
    return step::acceptance_view{result.path_length,           result.accepted_len.data(),
                                 result.best_beam.data(),      result.accepted_nodes.data(),
                                 result.emitted_tokens.data(), result.next_token.data(),
                                 result.hidden_row.data()};
  }
  step::status_view status_out() { return step::status_view{status.data()}; }
};

// The walk struct of a verifier over call buffers v: greedy's (no rule arguments), or a sampling
// walk's (its params and uniforms, then the scratch for the residual tokens).
template <class Walk, class B, class E, class... Rule>
Walk make_walk(verify_buffers<B>& v, const tree<B>& t, matrix_view<const E> logits,
               const Rule&... rule) {
  if constexpr (sizeof...(Rule) == 0) {
    return Walk{view_of(t), logits,        v.first_child.data(), v.next_sibling.data(),
                v.out(),    v.status_out()};
  } else {
    return Walk{
        view_of(t),       logits,  rule...,       v.first_child.data(), v.next_sibling.data(),
        v.scratch.data(), v.out(), v.status_out()};
  }
}

// L: beam_length for beam trees, max depth + 1 otherwise (one host copy of the depths).
template <class B>
std::int32_t path_length_of(const B& backend, const tree<B>& t) {
  if (t.beam_width > 0) return t.beam_length;
  const std::int32_t n = t.total_nodes();
  if (n == 0) return 1;
  std::vector<std::int32_t> depth(static_cast<std::size_t>(n));
  backend.copy_to_host(t.depth.data(), n, depth.data());
  return *std::max_element(depth.begin(), depth.end()) + 1;
}

// The shared argument checks: the tree's shape and the logits matrix.
template <class B, class T>
void check_tree_and_logits(const char* fn, const tree<B>& t, matrix_view<const T> logits) {
  REDRAFT_REQUIRE(
      t.batch >= 0 && t.host_node_offsets.size() == static_cast<std::size_t>(t.batch) + 1, fn,
      ": tree has batch ", t.batch, " but ", t.host_node_offsets.size(),
      " node offsets (expected batch + 1)");
  for (std::int32_t b = 0; b < t.batch; ++b) {
    REDRAFT_REQUIRE(t.num_nodes(b) >= 1, fn, ": request ", b, " of the tree has ", t.num_nodes(b),
                    " nodes (every tree has at least the root)");
  }
  REDRAFT_REQUIRE(logits.extent(0) == t.total_nodes(), fn, ": logits has ", logits.extent(0),
                  " rows but the tree has ", t.total_nodes(), " nodes");
  REDRAFT_REQUIRE(logits.extent(1) >= 1, fn, ": logits has ", logits.extent(1),
                  " columns (the vocabulary must not be empty)");
}

template <class B>
verify_buffers<B> allocate_verify_buffers(const B& backend, const tree<B>& t,
                                          std::int32_t path_length) {
  verify_buffers<B> v;
  const index_t nb = t.batch, nt = t.total_nodes();
  v.result.batch = t.batch;
  v.result.path_length = path_length;
  v.result.accepted_len = backend.template allocate<std::int32_t>(nb);
  v.result.best_beam = backend.template allocate<std::int32_t>(nb);
  v.result.accepted_nodes = backend.template allocate<std::int32_t>(nb * path_length);
  v.result.emitted_tokens = backend.template allocate<std::int32_t>(nb * path_length);
  v.result.next_token = backend.template allocate<std::int32_t>(nb);
  v.result.hidden_row = backend.template allocate<std::int32_t>(nb);
  v.status = backend.template allocate<std::int32_t>(3 * nb);
  backend.fill(v.status.data(), 3 * nb, std::int32_t{0});
  v.first_child = backend.template allocate<std::int32_t>(nt);
  v.next_sibling = backend.template allocate<std::int32_t>(nt);
  v.scratch = backend.template allocate<std::int32_t>(nt);
  return v;
}

// Throws redraft::error for the first request whose status is not ok, from a host copy of the
// status record s [batch, 3] and the tree's node offsets [batch + 1] (host memory).
inline void throw_on_host_status(const char* fn, const std::int32_t* s, std::int32_t batch,
                                 const std::int32_t* host_node_offsets) {
  for (std::int32_t b = 0; b < batch; ++b) {
    const std::int32_t code = s[3 * b], node = s[3 * b + 1], detail = s[3 * b + 2];
    const std::int32_t row = host_node_offsets[b] + node;
    switch (code) {
      case step::status_ok:
        break;
      case step::status_non_finite_logit:
        throw_error(fn, ": logits[", row, ", ", detail, "] (request ", b, ", node ", node,
                    ") is NaN or +inf");
      case step::status_no_finite_logit:
        throw_error(fn, ": logits row ", row, " (request ", b, ", node ", node,
                    ") has no finite value");
      case step::status_token_out_of_range:
        throw_error(fn, ": tree token ", detail, " at request ", b, ", node ", node,
                    " is outside the vocabulary [0, V)");
      case step::status_bad_parent:
        throw_error(fn, ": tree parent ", detail, " of request ", b, ", node ", node,
                    " must precede the node (and be -1 only at the root)");
      case step::status_duplicate_sibling:
        throw_error(fn, ": request ", b, ", node ", node,
                    " repeats the token of an earlier child of node ", detail,
                    " (duplicate sibling tokens)");
      case step::status_bad_depth:
        throw_error(fn, ": tree depth ", detail, " of request ", b, ", node ", node,
                    " is not its parent's depth + 1 (0 at the root)");
      case step::status_scaled_logit_overflow:
        throw_error(fn, ": logits row ", row, " (request ", b, ", node ", node,
                    ") divided by the temperature overflows float (|logit| > FLT_MAX * T)");
      case step::status_non_finite_draft:
        throw_error(fn, ": draft_log_probs is NaN or +inf at request ", b, ", beam position ", node,
                    ", token ", detail);
      default:
        throw_error(fn, ": internal status ", code, " at request ", b);
    }
  }
}

// Throws redraft::error for the first request whose status is not ok (one transfer).
template <class B>
void throw_on_status(const B& backend, const char* fn, const verify_buffers<B>& v,
                     const tree<B>& t) {
  const std::size_t n = static_cast<std::size_t>(3 * t.batch);
  std::vector<std::int32_t> s(n);
  if (n > 0) backend.copy_to_host(v.status.data(), static_cast<index_t>(n), s.data());
  throw_on_host_status(fn, s.data(), t.batch, t.host_node_offsets.data());
}

}  // namespace redraft::detail
