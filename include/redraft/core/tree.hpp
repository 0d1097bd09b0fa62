// redraft/core/tree.hpp: the token tree that every drafter produces and every verifier consumes.
//
// A batch of B requests, each with its own tree, stored as CSR:
//   node_offsets [B + 1]   nodes of request b are the rows [node_offsets[b], node_offsets[b+1])
//   token        [n_total] token id of each node
//   parent       [n_total] request-local index of the parent node, -1 at the root (node 0)
//   depth        [n_total] distance from the root; the node's position id is base + depth
//   beam_to_node [B, W, L] request-local node of beam w's token at position l (only for trees
//                          built from beams: W = L = 0 otherwise). Apple's `unpacker`,
//                          TensorRT-LLM's `draft_indices`. -1 past the length of a beam shorter
//                          than L (build_tree's beam_lengths; short_beams is then true).
// Nodes are in packed order: a parent always precedes its children, and for beam trees nodes are
// numbered in creation order while inserting beams 0..W-1 into a trie.
#pragma once

#include <cstdint>
#include <vector>

#include "redraft/core/macros.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

// Owning tree in the memory of backend B.
template <class B>
struct tree {
  using int_buffer = typename B::template buffer<std::int32_t>;

  std::int32_t batch = 0;        // B
  std::int32_t beam_width = 0;   // W (0 when the tree was not built from beams)
  std::int32_t beam_length = 0;  // L (0 when the tree was not built from beams)

  int_buffer node_offsets;   // [B + 1], backend memory
  int_buffer token;          // [n_total]
  int_buffer parent;         // [n_total]
  int_buffer depth;          // [n_total]
  int_buffer beam_to_node;   // [B, W, L]
  bool short_beams = false;  // built with beam_lengths: beams may end before L (beam_to_node -1)

  // NOTE: a host copy of node_offsets. Every consumer sizes its outputs (masks, logits rows) from
  // the node counts, so the tree keeps them on the host instead of making each caller copy.
  std::vector<std::int32_t> host_node_offsets;  // [B + 1]

  std::int32_t num_nodes(std::int32_t request) const {
    return host_node_offsets[static_cast<std::size_t>(request) + 1] -
           host_node_offsets[static_cast<std::size_t>(request)];
  }
  std::int32_t total_nodes() const { return batch == 0 ? 0 : host_node_offsets.back(); }
  std::int32_t max_nodes() const {
    std::int32_t n = 0;
    for (std::int32_t b = 0; b < batch; ++b) n = num_nodes(b) > n ? num_nodes(b) : n;
    return n;
  }
};

// Non-owning view of a tree, trivially copyable into functors and kernels.
struct tree_view {
  std::int32_t batch = 0;
  std::int32_t beam_width = 0;
  std::int32_t beam_length = 0;
  const std::int32_t* node_offsets = nullptr;  // [B + 1]
  const std::int32_t* token = nullptr;         // [n_total]
  const std::int32_t* parent = nullptr;        // [n_total]
  const std::int32_t* depth = nullptr;         // [n_total]
  const std::int32_t* beam_to_node = nullptr;  // [B, W, L]

  REDRAFT_HOST_DEVICE std::int32_t first_node(std::int32_t request) const {
    return node_offsets[request];
  }
  REDRAFT_HOST_DEVICE std::int32_t num_nodes(std::int32_t request) const {
    return node_offsets[request + 1] - node_offsets[request];
  }
};

template <class B>
tree_view view_of(const tree<B>& t) {
  return tree_view{t.batch,        t.beam_width,    t.beam_length,  t.node_offsets.data(),
                   t.token.data(), t.parent.data(), t.depth.data(), t.beam_to_node.data()};
}

}  // namespace redraft

namespace redraft {

// The tree's attention masks, in the two formats engines consume (built by tree/masks.hpp).
//
// Dense, ragged: request b's ancestor-or-self mask is [n_b, n_b] uint8 row-major at
//   bits[offsets[b] .. offsets[b] + n_b * n_b); entry (i, j) = 1 iff node j is an ancestor of, or
//   equal to, node i.
template <class B>
struct dense_tree_mask {
  typename B::template buffer<std::uint8_t> bits;     // [sum_b n_b^2]
  typename B::template buffer<std::int64_t> offsets;  // [B + 1]
  std::vector<std::int64_t> host_offsets;             // [B + 1]
};

// Bit-packed (TensorRT-LLM's spec_decoding_packed_mask): one row per node, rows of consecutive
// requests back to back, each row `words_per_row` = ceil(n_max / 32) uint32 words; bit (j % 32)
// of word (j / 32) of a node's row is set iff request-local node j is an ancestor-or-self.
template <class B>
struct packed_tree_mask {
  typename B::template buffer<std::uint32_t> words;  // [n_total, words_per_row]
  std::int32_t words_per_row = 0;
};

}  // namespace redraft
