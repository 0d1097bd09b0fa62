// redraft/step/walk.hpp: the pieces every verifier step shares, on the device side.
//
//  * a status record per request [B, 3] = (code, node, detail) that steps fill instead of
//    throwing (device code never throws), turned into a redraft::error on the host afterwards
//    (verify/tree_walk.hpp);
//  * children lists built from the parent array, per request, in O(n_b) (first_child /
//    next_sibling, children in node order), with the tree's validity checks on the way
//    (parent precedes child, token ids in [0, V), no two siblings with the same token);
//  * writing the accepted path into the acceptance buffers (verify/acceptance.hpp's layout).
#pragma once

#include <cstdint>

#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"

namespace redraft::step {

enum verify_status_code : std::int32_t {
  status_ok = 0,
  status_non_finite_logit = 1,       // node, column: NaN or +inf
  status_no_finite_logit = 2,        // node: the whole row is -inf
  status_token_out_of_range = 3,     // node, token
  status_bad_parent = 4,             // node, parent
  status_duplicate_sibling = 5,      // node, parent
  status_non_finite_draft = 6,       // beam * L + position, token (verify_redrafter's q)
  status_bad_depth = 7,              // node, depth
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
  REDRAFT_HOST_DEVICE void set_row(std::int32_t b, std::int32_t node,
                                   std::int64_t bad_column) const {
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
                                                   const std::int32_t* next_sibling, std::int32_t u,
                                                   std::int32_t token) {
  for (std::int32_t c = first_child[off + u]; c >= 0; c = next_sibling[off + c]) {
    if (t.token[off + c] == token) return c;
  }
  return -1;
}

// Views of the acceptance buffers, for functors.
struct acceptance_view {
  std::int32_t path_length;      // L
  std::int32_t* accepted_len;    // [B]
  std::int32_t* best_beam;       // [B]
  std::int32_t* accepted_nodes;  // [B, L]
  std::int32_t* emitted_tokens;  // [B, L]
  std::int32_t* next_token;      // [B]
  std::int32_t* hidden_row;      // [B]

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

}  // namespace redraft::step
