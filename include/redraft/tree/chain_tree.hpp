// redraft/tree/chain_tree.hpp: trees that are one path per request, built without a drafter.
//
// A chain of n nodes is a path: node i has parent i - 1 (-1 at the root) and depth i, so its
// ancestor-or-self mask is the lower triangle. Two kinds of caller need such trees:
//   * a step with nothing drafted, one node per request holding its root token (plain decoding,
//     the speculative loop's prefill and plain steps): build_one_node_tree;
//   * a pass that scores a known sequence at every position with one TargetModel::verify
//     (distillation's chain pass): build_chain_tree.
// The result is an ordinary tree<B> (core/tree.hpp), so masks and positions come from
// tree/masks.hpp like those of any other tree.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/transfer.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

// build_chain_tree(backend, tokens, node_offsets) -> tree<B> of B chains.
//
//   tokens        (n_total) int32, host: request b's path is tokens[node_offsets[b] ..
//                 node_offsets[b + 1]), root first
//   node_offsets  (B + 1) int32, host: 0 first, increasing (every request has at least its root),
//                 n_total last
//   -> tree<B>:   node_offsets (B + 1), token (n_total) = tokens, parent (n_total) = i - 1 for the
//                 request-local node i (-1 at the root), depth (n_total) = i; beam_width =
//                 beam_length = 0 (not built from beams), no beam_to_node.
//
// Deterministic. O(n_total) host work and four host-to-backend copies.
// Throws redraft::error, before allocating, for node_offsets empty or not starting at 0, a
// request without a node, node_offsets not ending at tokens.size(), n_total >= 2^31, or a token id
// < 0.
template <Backend B>
tree<B> build_chain_tree(const B& backend, std::span<const std::int32_t> tokens,
                         std::span<const std::int32_t> node_offsets) {
  constexpr const char* fn = "build_chain_tree";
  REDRAFT_REQUIRE(!node_offsets.empty() && node_offsets[0] == 0, fn,
                  ": node_offsets must start with 0 (it has ", node_offsets.size(), " entries)");
  REDRAFT_REQUIRE(
      tokens.size() < static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()), fn, ": ",
      tokens.size(), " tokens, more than int32 node indices can number");
  const std::size_t batch = node_offsets.size() - 1;
  for (std::size_t b = 0; b < batch; ++b) {
    REDRAFT_REQUIRE(node_offsets[b + 1] > node_offsets[b], fn, ": request ", b, " has ",
                    node_offsets[b + 1] - node_offsets[b], " nodes (node_offsets[", b,
                    "] = ", node_offsets[b], ", node_offsets[", b + 1, "] = ", node_offsets[b + 1],
                    "); every chain has at least its root");
  }
  REDRAFT_REQUIRE(static_cast<std::size_t>(node_offsets[batch]) == tokens.size(), fn,
                  ": node_offsets end at ", node_offsets[batch], " but there are ", tokens.size(),
                  " tokens");
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    REDRAFT_REQUIRE(tokens[i] >= 0, fn, ": tokens[", i, "] = ", tokens[i],
                    " is not a valid token id (must be >= 0)");
  }

  std::vector<std::int32_t> parent(tokens.size()), depth(tokens.size());  // [n_total]
  for (std::size_t b = 0; b < batch; ++b) {
    for (std::int32_t i = 0; i < node_offsets[b + 1] - node_offsets[b]; ++i) {
      const std::size_t node = static_cast<std::size_t>(node_offsets[b] + i);
      parent[node] = i - 1;
      depth[node] = i;
    }
  }
  tree<B> out;
  out.batch = static_cast<std::int32_t>(batch);
  out.node_offsets = to_backend(backend, node_offsets);  // [B + 1]
  out.token = to_backend(backend, tokens);               // [n_total]
  out.parent = to_backend(backend, parent);              // [n_total]
  out.depth = to_backend(backend, depth);                // [n_total]
  out.host_node_offsets.assign(node_offsets.begin(), node_offsets.end());
  return out;
}

// build_one_node_tree(backend, tokens) -> tree<B> of B one-node trees: request b's only node is
// its root tokens[b] (B = tokens.size()). build_chain_tree with one node per request; a tree built
// from beams cannot express it (a beam holds at least the root and one drafted token).
// Throws redraft::error for a token id < 0.
template <Backend B>
tree<B> build_one_node_tree(const B& backend, std::span<const std::int32_t> tokens) {
  std::vector<std::int32_t> offsets(tokens.size() + 1);  // [B + 1]
  for (std::size_t b = 0; b < offsets.size(); ++b) offsets[b] = static_cast<std::int32_t>(b);
  return build_chain_tree(backend, tokens, offsets);
}

}  // namespace redraft
