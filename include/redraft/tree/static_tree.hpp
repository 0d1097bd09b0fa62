// redraft/tree/static_tree.hpp: trees that do not come from beams, in the same tree<B> type.
//
// Drafters other than ReDrafter's beam search propose token trees directly. Two input forms:
//
//   build_tree_from_choices  a static tree shape shared by the batch, as a Medusa-style choice list
//                            (each node a path of child ranks from the root), filled per request
//                            from per-depth top-k candidate tables;
//   build_tree_from_parents  any tree per request, as an explicit parent array plus tokens (CSR).
//
// The result has beam_width = beam_length = 0 and an empty beam_to_node; masks, positions,
// verification and KV plans treat it like a beam tree.
#pragma once

#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/transfer.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

namespace detail {

inline std::string path_text(const std::vector<std::int32_t>& path) {
  std::ostringstream os;
  os << '{';
  for (std::size_t k = 0; k < path.size(); ++k) os << (k ? ", " : "") << path[k];
  os << '}';
  return os.str();
}

// One call per (request, node) of a choice tree: replicate the shared shape and pick the token.
struct choice_fill_functor {
  const std::int32_t* shape_parent;  // [n] shared by every request
  const std::int32_t* shape_depth;   // [n]
  const std::int32_t* shape_rank;    // [n] child rank (the last path entry), 0 at the root
  const std::int32_t* root_tokens;   // [B]
  const std::int32_t* candidates;    // [B, D, K]
  std::int32_t* node_offsets;        // [B + 1]
  std::int32_t* token;               // [B * n]
  std::int32_t* parent;              // [B * n]
  std::int32_t* depth;               // [B * n]
  std::int32_t nodes;                // n = 1 + number of choices
  std::int32_t max_depth;            // D
  std::int32_t top_k;                // K

  REDRAFT_HOST_DEVICE void operator()(index_t flat) const {
    const index_t b = flat / nodes;
    const std::int32_t i = static_cast<std::int32_t>(flat % nodes);
    if (i == 0) {
      node_offsets[b + 1] = static_cast<std::int32_t>((b + 1) * nodes);
      if (b == 0) node_offsets[0] = 0;
    }
    parent[flat] = shape_parent[i];
    depth[flat] = shape_depth[i];
    token[flat] = i == 0
                      ? root_tokens[b]
                      : candidates[(b * max_depth + (shape_depth[i] - 1)) * top_k + shape_rank[i]];
  }
};
static_assert(std::is_trivially_copyable_v<choice_fill_functor>);

// One call per request of a parent-array tree: depth[i] = depth[parent[i]] + 1, in node order
// (valid because a parent precedes its children).
struct parent_depth_functor {
  const std::int32_t* node_offsets;  // [B + 1]
  const std::int32_t* parent;        // [n_total]
  std::int32_t* depth;               // [n_total]

  REDRAFT_HOST_DEVICE void operator()(index_t b) const {
    const std::int32_t first = node_offsets[b], last = node_offsets[b + 1];
    depth[first] = 0;
    for (std::int32_t i = first + 1; i < last; ++i) depth[i] = depth[first + parent[i]] + 1;
  }
};
static_assert(std::is_trivially_copyable_v<parent_depth_functor>);

}  // namespace detail

// build_tree_from_choices(backend, choices, root_tokens, candidates) -> tree<B> (Medusa-style).
//
//   choices      host list of C paths; path {r_1, ..., r_d} is the node reached from the root by
//                taking the child of rank r_1, then of rank r_2, ... (depth d). The root is
//                implicit (never listed). Node 0 is the root and choices[c] becomes node c + 1,
//                so the list order is the packed order: every path's parent path (the path minus
//                its last entry) must appear earlier in the list. Medusa's published choice lists
//                (sorted by length, then lexicographically) satisfy this.
//   root_tokens  (B) int32, backend memory: the root token of each request
//   candidates   (B, D, K) int32, backend memory: candidates[b, d - 1, r] is the token of every
//                depth-d node whose last rank is r, i.e. the rank-r token of Medusa head d - 1
//                (top-k of the head that predicts d tokens ahead). D >= the deepest path, K > the
//                largest rank. For tokens that depend on the whole path, use
//                build_tree_from_parents.
//   -> tree<B> with n_b = 1 + C for every request: token, parent, depth (B (1 + C)), node_offsets
//      (B + 1); beam_width = beam_length = 0 and an empty beam_to_node.
//
// Example: choices {{0}, {1}, {0, 0}, {0, 1}}, K = 2: nodes root, a0, a1, a0b0, a0b1 where a_r =
// candidates[b, 0, r], b_r = candidates[b, 1, r]; parents -1, 0, 0, 1, 1; depths 0, 1, 1, 2, 2.
// Deterministic. O(C log C * depth) host work to check the list, then O(B (1 + C)) in one
// for_each_index pass.
// Throws redraft::error, before any output is allocated, for an empty path, a rank < 0 or >= K, a
// path deeper than D, a duplicate path, a path whose parent path is missing or listed after it,
// a root_tokens / candidates batch mismatch, or a token id < 0 (in root_tokens or candidates).
template <Backend B>
tree<B> build_tree_from_choices(const B& backend,
                                const std::vector<std::vector<std::int32_t>>& choices,
                                view<const std::int32_t, 1> root_tokens,
                                view<const std::int32_t, 3> candidates) {
  const char* fn = "build_tree_from_choices";
  const index_t batch = root_tokens.extent(0);
  const index_t max_depth = candidates.extent(1), top_k = candidates.extent(2);
  REDRAFT_REQUIRE(candidates.extent(0) == batch, fn, ": candidates has batch ",
                  candidates.extent(0), " but root_tokens has ", batch);
  REDRAFT_REQUIRE(choices.size() < (std::size_t{1} << 30), fn, ": ", choices.size(),
                  " choices are too many");
  const std::int32_t nodes = static_cast<std::int32_t>(choices.size()) + 1;
  REDRAFT_REQUIRE(batch * nodes < (index_t{1} << 31), fn, ": batch ", batch, " times ", nodes,
                  " nodes exceeds int32 node indices");
  std::vector<std::int32_t> shape_parent(static_cast<std::size_t>(nodes), -1);  // [n]
  std::vector<std::int32_t> shape_depth(static_cast<std::size_t>(nodes), 0);    // [n]
  std::vector<std::int32_t> shape_rank(static_cast<std::size_t>(nodes), 0);     // [n]
  std::map<std::vector<std::int32_t>, std::int32_t> node_of_path;
  for (std::size_t c = 0; c < choices.size(); ++c) {
    const std::vector<std::int32_t>& path = choices[c];
    REDRAFT_REQUIRE(!path.empty(), fn, ": choices[", c,
                    "] is empty (the root is implicit; list only drafted nodes)");
    REDRAFT_REQUIRE(static_cast<index_t>(path.size()) <= max_depth, fn, ": choices[", c,
                    "] = ", detail::path_text(path), " has depth ", path.size(),
                    " but candidates hold only ", max_depth, " depths");
    for (std::size_t k = 0; k < path.size(); ++k) {
      REDRAFT_REQUIRE(path[k] >= 0 && path[k] < top_k, fn, ": choices[", c,
                      "] = ", detail::path_text(path), " has rank ", path[k], " outside [0, ",
                      top_k, ") (candidates hold top-", top_k, ")");
    }
    const std::int32_t node = static_cast<std::int32_t>(c) + 1;
    REDRAFT_REQUIRE(node_of_path.count(path) == 0, fn, ": choices[", c,
                    "] = ", detail::path_text(path), " repeats choices[", node_of_path[path] - 1,
                    "]");
    std::int32_t parent_node = 0;
    if (path.size() > 1) {
      const std::vector<std::int32_t> parent_path(path.begin(), path.end() - 1);
      const auto it = node_of_path.find(parent_path);
      if (it == node_of_path.end()) {
        for (std::size_t later = c + 1; later < choices.size(); ++later) {
          REDRAFT_REQUIRE(choices[later] != parent_path, fn, ": choices[", c,
                          "] = ", detail::path_text(path), " comes before its parent path ",
                          detail::path_text(parent_path), " (choices[", later,
                          "]); list parents before children");
        }
        detail::throw_error(fn, ": choices[", c, "] = ", detail::path_text(path),
                            " has no parent: its parent path ", detail::path_text(parent_path),
                            " is missing from the list");
      }
      parent_node = it->second;
    }
    node_of_path.emplace(path, node);
    shape_parent[static_cast<std::size_t>(node)] = parent_node;
    shape_depth[static_cast<std::size_t>(node)] = static_cast<std::int32_t>(path.size());
    shape_rank[static_cast<std::size_t>(node)] = path.back();
  }
  std::vector<std::int32_t> host_roots(static_cast<std::size_t>(batch));  // [B]
  std::vector<std::int32_t> host_candidates(
      static_cast<std::size_t>(candidates.size()));  // [B, D, K]
  backend.copy_to_host(root_tokens.data(), batch, host_roots.data());
  backend.copy_to_host(candidates.data(), candidates.size(), host_candidates.data());
  for (index_t b = 0; b < batch; ++b) {
    REDRAFT_REQUIRE(host_roots[static_cast<std::size_t>(b)] >= 0, fn, ": root_tokens[", b,
                    "] = ", host_roots[static_cast<std::size_t>(b)],
                    " is not a valid token id (must be >= 0)");
  }
  for (std::size_t k = 0; k < host_candidates.size(); ++k) {
    const index_t flat = static_cast<index_t>(k);
    REDRAFT_REQUIRE(host_candidates[k] >= 0, fn, ": candidates[", flat / (max_depth * top_k), ", ",
                    flat / top_k % max_depth, ", ", flat % top_k, "] = ", host_candidates[k],
                    " is not a valid token id (must be >= 0)");
  }

  const auto shape_parent_d = to_backend(backend, shape_parent);
  const auto shape_depth_d = to_backend(backend, shape_depth);
  const auto shape_rank_d = to_backend(backend, shape_rank);
  const index_t n_total = batch * nodes;
  tree<B> out;
  out.batch = static_cast<std::int32_t>(batch);
  out.node_offsets = backend.template allocate<std::int32_t>(batch + 1);  // [B + 1]
  out.token = backend.template allocate<std::int32_t>(n_total);           // [n_total]
  out.parent = backend.template allocate<std::int32_t>(n_total);          // [n_total]
  out.depth = backend.template allocate<std::int32_t>(n_total);           // [n_total]
  out.beam_to_node = backend.template allocate<std::int32_t>(0);          // [0]
  if (batch == 0) {
    const std::int32_t zero = 0;
    backend.copy_from_host(&zero, 1, out.node_offsets.data());
  }
  backend.for_each_index(
      n_total, detail::choice_fill_functor{
                   shape_parent_d.data(), shape_depth_d.data(), shape_rank_d.data(),
                   root_tokens.data(), candidates.data(), out.node_offsets.data(), out.token.data(),
                   out.parent.data(), out.depth.data(), nodes, static_cast<std::int32_t>(max_depth),
                   static_cast<std::int32_t>(top_k)});
  out.host_node_offsets.resize(static_cast<std::size_t>(batch) + 1);
  for (index_t b = 0; b <= batch; ++b) {
    out.host_node_offsets[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(b * nodes);
  }
  return out;
}

// build_tree_from_parents(backend, node_offsets, parent, token) -> tree<B>.
//
//   node_offsets (B + 1) int32, backend memory: request b's nodes are [node_offsets[b],
//                node_offsets[b + 1]); node_offsets[0] = 0, every request has n_b >= 1 nodes
//   parent       (n_total) int32, backend memory, request-local: -1 for node 0 (the root), and
//                0 <= parent[i] < i for every other node (packed order: parents first)
//   token        (n_total) int32, backend memory: token id of every node (>= 0)
//   -> tree<B> holding copies of the three arrays plus depth (n_total) (root 0, child = parent +
//   1);
//      beam_width = beam_length = 0 and an empty beam_to_node.
//
// Deterministic. O(n_total) host validation, then an O(n_total) for_each_index pass over requests.
// Throws redraft::error, before any output is allocated, if the offsets do not start at 0, a
// request is empty, the offsets do not end at the parent/token length, parent and token lengths
// differ, a root's parent is not -1, another node's parent is not in [0, i), or a token is < 0.
template <Backend B>
tree<B> build_tree_from_parents(const B& backend, view<const std::int32_t, 1> node_offsets,
                                view<const std::int32_t, 1> parent,
                                view<const std::int32_t, 1> token) {
  const char* fn = "build_tree_from_parents";
  REDRAFT_REQUIRE(node_offsets.extent(0) >= 1, fn,
                  ": node_offsets is empty (it has batch + 1 entries)");
  REDRAFT_REQUIRE(parent.extent(0) == token.extent(0), fn, ": parent has ", parent.extent(0),
                  " entries but token has ", token.extent(0));
  REDRAFT_REQUIRE(parent.extent(0) < (index_t{1} << 31), fn, ": ", parent.extent(0),
                  " nodes exceed int32 node indices");
  const index_t batch = node_offsets.extent(0) - 1;
  std::vector<std::int32_t> host_offsets(static_cast<std::size_t>(batch) + 1);        // [B + 1]
  std::vector<std::int32_t> host_parent(static_cast<std::size_t>(parent.extent(0)));  // [n_total]
  std::vector<std::int32_t> host_token(static_cast<std::size_t>(token.extent(0)));    // [n_total]
  backend.copy_to_host(node_offsets.data(), batch + 1, host_offsets.data());
  backend.copy_to_host(parent.data(), parent.extent(0), host_parent.data());
  backend.copy_to_host(token.data(), token.extent(0), host_token.data());
  REDRAFT_REQUIRE(host_offsets[0] == 0, fn, ": node_offsets[0] = ", host_offsets[0],
                  " (must be 0)");
  for (index_t b = 0; b < batch; ++b) {
    const std::int32_t first = host_offsets[static_cast<std::size_t>(b)];
    const std::int32_t last = host_offsets[static_cast<std::size_t>(b) + 1];
    REDRAFT_REQUIRE(last > first, fn, ": request ", b, " has ", last - first,
                    " nodes (node_offsets[", b, "] = ", first, ", node_offsets[", b + 1,
                    "] = ", last, "); every request needs at least its root");
    REDRAFT_REQUIRE(last <= parent.extent(0), fn, ": node_offsets[", b + 1, "] = ", last,
                    " exceeds the ", parent.extent(0), " nodes of parent/token");
    REDRAFT_REQUIRE(host_parent[static_cast<std::size_t>(first)] == -1, fn, ": parent[", first,
                    "] = ", host_parent[static_cast<std::size_t>(first)], " but node 0 of request ",
                    b, " is its root (parent -1)");
    for (std::int32_t i = first + 1; i < last; ++i) {
      const std::int32_t p = host_parent[static_cast<std::size_t>(i)];
      REDRAFT_REQUIRE(p >= 0 && p < i - first, fn, ": parent[", i, "] = ", p, " of node ",
                      i - first, " of request ", b, " is outside [0, ", i - first,
                      ") (request-local, parents precede children)");
    }
  }
  REDRAFT_REQUIRE(host_offsets.back() == parent.extent(0), fn, ": node_offsets[", batch,
                  "] = ", host_offsets.back(), " but parent/token have ", parent.extent(0),
                  " nodes");
  for (std::size_t i = 0; i < host_token.size(); ++i) {
    REDRAFT_REQUIRE(host_token[i] >= 0, fn, ": token[", i, "] = ", host_token[i],
                    " is not a valid token id (must be >= 0)");
  }

  const index_t n_total = parent.extent(0);
  tree<B> out;
  out.batch = static_cast<std::int32_t>(batch);
  out.node_offsets = backend.template allocate<std::int32_t>(batch + 1);  // [B + 1]
  out.token = backend.template allocate<std::int32_t>(n_total);           // [n_total]
  out.parent = backend.template allocate<std::int32_t>(n_total);          // [n_total]
  out.depth = backend.template allocate<std::int32_t>(n_total);           // [n_total]
  out.beam_to_node = backend.template allocate<std::int32_t>(0);          // [0]
  backend.copy(node_offsets.data(), batch + 1, out.node_offsets.data());
  backend.copy(parent.data(), n_total, out.parent.data());
  backend.copy(token.data(), n_total, out.token.data());
  backend.for_each_index(batch, detail::parent_depth_functor{out.node_offsets.data(),
                                                             out.parent.data(), out.depth.data()});
  out.host_node_offsets = std::move(host_offsets);
  return out;
}

}  // namespace redraft
