// redraft/verify/tree_walk.hpp: the pieces every verifier's per-request functor shares.
//
//  * children lists built from the parent array, per request, in O(n_b) (first_child /
//    next_sibling, children in node order), with the tree's validity checks on the way
//    (parent precedes child, token ids in [0, V), no two siblings with the same token);
//  * a status record per request [B, 3] = (code, node, detail) that functors fill instead of
//    throwing (device code never throws), turned into a redraft::error on the host afterwards;
//  * writing the accepted path into the acceptance buffers;
//  * host helpers: argument checks, output allocation, the path length L.
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
#include "redraft/verify/acceptance.hpp"

namespace redraft::detail {

enum verify_status_code : std::int32_t {
  status_ok = 0,
  status_non_finite_logit = 1,   // node, column: NaN or +inf
  status_no_finite_logit = 2,    // node: the whole row is -inf
  status_token_out_of_range = 3, // node, token
  status_bad_parent = 4,         // node, parent
  status_duplicate_sibling = 5,  // node, parent
  status_non_finite_draft = 6,   // beam * L + position, token (verify_redrafter's q)
  status_bad_depth = 7,          // node, depth
  status_scaled_logit_overflow = 8,  // node: a logit / temperature overflows float (redrafter)
};

// Per-request status, [B, 3] int32 in backend memory.
struct status_view {
  std::int32_t* data;
  REDRAFT_HOST_DEVICE void set(std::int32_t b, std::int32_t code, std::int64_t node,
                               std::int64_t detail) const {
    data[3 * b] = code;
    data[3 * b + 1] = static_cast<std::int32_t>(node);
    data[3 * b + 2] = static_cast<std::int32_t>(detail);
  }
  // Records a row problem reported by row_ops (bad_column >= 0: NaN/+inf; -2: no finite value).
  REDRAFT_HOST_DEVICE void set_row(std::int32_t b, std::int32_t node, std::int64_t bad_column) const {
    if (bad_column >= 0) {
      set(b, status_non_finite_logit, node, bad_column);
    } else {
      set(b, status_no_finite_logit, node, 0);
    }
  }
};

// Children lists of request b (request-local indices) in scratch arrays of n_total entries:
// first_child[off + u] is u's first child (-1: none), next_sibling[off + c] the next child of the
// same parent; children come in increasing node order. Also validates the request's nodes.
// Returns false (and sets the status) if the tree is malformed. O(n_b + sum of squared fan-outs).
REDRAFT_HOST_DEVICE inline bool build_children(const tree_view& t, std::int32_t b, index_t vocab,
                                               std::int32_t* first_child,
                                               std::int32_t* next_sibling,
                                               const status_view& status) {
  const std::int32_t off = t.first_node(b), n = t.num_nodes(b);
  for (std::int32_t i = 0; i < n; ++i) {
    first_child[off + i] = -1;
    const std::int32_t tok = t.token[off + i];
    if (tok < 0 || tok >= vocab) {
      status.set(b, status_token_out_of_range, i, tok);
      return false;
    }
    const std::int32_t p = t.parent[off + i];
    if (i == 0 ? p != -1 : (p < 0 || p >= i)) {
      status.set(b, status_bad_parent, i, p);
      return false;
    }
    const std::int32_t d = t.depth[off + i];
    if (i == 0 ? d != 0 : d != t.depth[off + p] + 1) {
      status.set(b, status_bad_depth, i, d);
      return false;
    }
  }
  for (std::int32_t i = n - 1; i >= 1; --i) {
    const std::int32_t p = t.parent[off + i];
    next_sibling[off + i] = first_child[off + p];
    first_child[off + p] = i;
  }
  // Duplicate sibling tokens make "the child holding token x" ambiguous: a malformed tree.
  for (std::int32_t u = 0; u < n; ++u) {
    for (std::int32_t c = first_child[off + u]; c >= 0; c = next_sibling[off + c]) {
      for (std::int32_t d = next_sibling[off + c]; d >= 0; d = next_sibling[off + d]) {
        if (t.token[off + c] == t.token[off + d]) {
          status.set(b, status_duplicate_sibling, d, u);
          return false;
        }
      }
    }
  }
  return true;
}

// The child of u holding `token`, or -1.
REDRAFT_HOST_DEVICE inline std::int32_t find_child(const tree_view& t, std::int32_t off,
                                                   const std::int32_t* first_child,
                                                   const std::int32_t* next_sibling,
                                                   std::int32_t u, std::int32_t token) {
  for (std::int32_t c = first_child[off + u]; c >= 0; c = next_sibling[off + c]) {
    if (t.token[off + c] == token) return c;
  }
  return -1;
}

// Views of the acceptance buffers, for functors.
struct acceptance_view {
  std::int32_t path_length;       // L
  std::int32_t* accepted_len;     // [B]
  std::int32_t* best_beam;        // [B]
  std::int32_t* accepted_nodes;   // [B, L]
  std::int32_t* emitted_tokens;   // [B, L]
  std::int32_t* next_token;       // [B]
  std::int32_t* hidden_row;       // [B]

  REDRAFT_HOST_DEVICE std::int32_t* nodes_row(std::int32_t b) const {
    return accepted_nodes + static_cast<index_t>(b) * path_length;
  }

  // Completes request b given accepted_nodes row [0 .. len] already written: pads, fills the
  // emitted tokens, the next token, the hidden row and the best beam (the lowest-index beam whose
  // position len is the last accepted node: nodes identify prefixes, so that beam holds the path).
  REDRAFT_HOST_DEVICE void finish(const tree_view& t, std::int32_t b, std::int32_t len,
                                  std::int32_t next) const {
    const std::int32_t off = t.first_node(b);
    std::int32_t* nodes = nodes_row(b);
    std::int32_t* emitted = emitted_tokens + static_cast<index_t>(b) * path_length;
    for (std::int32_t i = len + 1; i < path_length; ++i) nodes[i] = -1;
    for (std::int32_t i = 0; i < len; ++i) emitted[i] = t.token[off + nodes[i + 1]];
    emitted[len] = next;
    for (std::int32_t i = len + 1; i < path_length; ++i) emitted[i] = -1;
    accepted_len[b] = len;
    next_token[b] = next;
    hidden_row[b] = off + nodes[len];
    std::int32_t beam = -1;
    if (t.beam_width > 0) {
      for (std::int32_t w = 0; w < t.beam_width; ++w) {
        const index_t at = (static_cast<index_t>(b) * t.beam_width + w) * t.beam_length + len;
        if (t.beam_to_node[at] == nodes[len]) {
          beam = w;
          break;
        }
      }
    }
    best_beam[b] = beam;
  }
};

// Scratch and outputs of one verifier call.
template <class B>
struct verify_buffers {
  acceptance<B> result;
  typename B::template buffer<std::int32_t> status;        // [B, 3]
  typename B::template buffer<std::int32_t> first_child;   // [n_total]
  typename B::template buffer<std::int32_t> next_sibling;  // [n_total]
  typename B::template buffer<std::int32_t> scratch;       // [n_total], verifier-specific

  acceptance_view out() {
    return acceptance_view{result.path_length,        result.accepted_len.data(),
                           result.best_beam.data(),   result.accepted_nodes.data(),
                           result.emitted_tokens.data(), result.next_token.data(),
                           result.hidden_row.data()};
  }
  status_view status_out() { return status_view{status.data()}; }
};

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
  REDRAFT_REQUIRE(t.batch >= 0 && t.host_node_offsets.size() == static_cast<std::size_t>(t.batch) + 1,
                  fn, ": tree has batch ", t.batch, " but ", t.host_node_offsets.size(),
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
      case status_ok:
        break;
      case status_non_finite_logit:
        throw_error(fn, ": logits[", row, ", ", detail, "] (request ", b, ", node ", node,
                    ") is NaN or +inf");
      case status_no_finite_logit:
        throw_error(fn, ": logits row ", row, " (request ", b, ", node ", node,
                    ") has no finite value");
      case status_token_out_of_range:
        throw_error(fn, ": tree token ", detail, " at request ", b, ", node ", node,
                    " is outside the vocabulary [0, V)");
      case status_bad_parent:
        throw_error(fn, ": tree parent ", detail, " of request ", b, ", node ", node,
                    " must precede the node (and be -1 only at the root)");
      case status_duplicate_sibling:
        throw_error(fn, ": request ", b, ", node ", node, " repeats the token of an earlier child of node ",
                    detail, " (duplicate sibling tokens)");
      case status_bad_depth:
        throw_error(fn, ": tree depth ", detail, " of request ", b, ", node ", node,
                    " is not its parent's depth + 1 (0 at the root)");
      case status_scaled_logit_overflow:
        throw_error(fn, ": logits row ", row, " (request ", b, ", node ", node,
                    ") divided by the temperature overflows float (|logit| > FLT_MAX * T)");
      case status_non_finite_draft:
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
