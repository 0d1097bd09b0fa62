// redraft/tree/build_tree.hpp: trie dedup of draft beams ("dynamic tree attention").
//
// W beams that share prefixes are merged into one token tree so every shared prefix is verified
// once. Beams are inserted in order 0..W-1 into a trie keyed by (parent node, token); a node is
// numbered when it is first created, which defines the packed order (docs/glossary.md).
//
//   beams [B, W, L] int32, column 0 the root token (equal across the beams of a request)
//   beam_lengths [B, W] int32 in [1, L], optional: beam w of request b holds only its first
//                beam_lengths[b, w] tokens (root included); later positions are ignored. Model-free
//                drafters use it for candidates shorter than L, and length 1 for no candidate.
//   -> tree<B> (core/tree.hpp) with beam_to_node [B, W, L] (-1 past a beam's length)
//
// n_b <= 1 + W (L - 1). Complexity O(B W L) expected (an open-addressing hash of (parent, token)).
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/transfer.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/tree/beam_checks.hpp"
// build_tree dispatches to the parallel form on device memory.
#include "redraft/tree/build_tree_parallel.hpp"

namespace redraft {

namespace detail {

// The sequential trie over host memory. Writes request-local indices.
//   beams [B, W, L], lengths [B, W] or nullptr
//   -> node_offsets [B + 1], token/parent/depth [n_total], beam_to_node [B, W, L] (-1 past a
//   length)
inline void build_tree_trie(const std::int32_t* beams, const std::int32_t* lengths,
                            std::int32_t batch, std::int32_t width, std::int32_t length,
                            std::vector<std::int32_t>& node_offsets,
                            std::vector<std::int32_t>& token, std::vector<std::int32_t>& parent,
                            std::vector<std::int32_t>& depth,
                            std::vector<std::int32_t>& beam_to_node) {
  const std::int64_t max_nodes = 1 + static_cast<std::int64_t>(width) * (length - 1);
  // Open addressing, capacity a power of two at least twice the node bound, keys (parent, token).
  std::size_t capacity = 16;
  while (capacity < static_cast<std::size_t>(2 * max_nodes)) capacity *= 2;
  std::vector<std::uint64_t> keys(capacity);
  std::vector<std::int32_t> values(capacity, -1);
  std::vector<std::size_t> used;
  used.reserve(static_cast<std::size_t>(max_nodes));

  node_offsets.assign(static_cast<std::size_t>(batch) + 1, 0);
  token.clear();
  parent.clear();
  depth.clear();
  token.reserve(static_cast<std::size_t>(batch * max_nodes));
  parent.reserve(token.capacity());
  depth.reserve(token.capacity());
  beam_to_node.assign(static_cast<std::size_t>(batch) * width * length, 0);

  for (std::int32_t b = 0; b < batch; ++b) {
    const std::int32_t base = static_cast<std::int32_t>(token.size());
    const std::int32_t* req = beams + static_cast<std::int64_t>(b) * width * length;
    token.push_back(req[0]);
    parent.push_back(-1);
    depth.push_back(0);
    std::int32_t count = 1;
    for (std::int32_t w = 0; w < width; ++w) {
      std::int32_t node = 0;
      std::int32_t* b2n = beam_to_node.data() + (static_cast<std::int64_t>(b) * width + w) * length;
      b2n[0] = 0;
      const std::int32_t valid =
          lengths == nullptr ? length : lengths[static_cast<std::int64_t>(b) * width + w];
      for (std::int32_t l = valid; l < length; ++l) b2n[l] = -1;
      for (std::int32_t l = 1; l < valid; ++l) {
        const std::int32_t tok = req[static_cast<std::int64_t>(w) * length + l];
        const std::uint64_t key =
            (static_cast<std::uint64_t>(static_cast<std::uint32_t>(node)) << 32) |
            static_cast<std::uint32_t>(tok);
        std::size_t slot =
            static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 40) & (capacity - 1);
        while (values[slot] != -1 && keys[slot] != key) slot = (slot + 1) & (capacity - 1);
        if (values[slot] == -1) {
          keys[slot] = key;
          values[slot] = count;
          used.push_back(slot);
          token.push_back(tok);
          parent.push_back(node);
          depth.push_back(l);
          ++count;
        }
        node = values[slot];
        b2n[l] = node;
      }
    }
    for (std::size_t slot : used) values[slot] = -1;  // reset only what this request touched
    used.clear();
    node_offsets[static_cast<std::size_t>(b) + 1] = base + count;
  }
}

}  // namespace detail

// build_tree(backend, beams [B, W, L], beam_lengths [B, W] or empty) -> tree with beam_to_node.
// Throws redraft::error (before allocating any output) for W < 1, L < 2, B W L >= 2^31 (int32
// node indices), negative token ids (within a beam's length), beams of one request with
// different root tokens, beam_lengths of the wrong shape or outside [1, L].
//
// Where backend memory is not host-accessible (Backend clause 8, e.g. CUDA) build_tree returns
// build_tree_parallel(backend, beams), which is identical element for element and keeps the
// work on the device (its errors still name build_tree); the trie below runs only on
// host-accessible memory.
template <Backend B>
tree<B> build_tree(const B& backend, view<const std::int32_t, 3> beams,
                   matrix_view<const std::int32_t> beam_lengths = {}) {
  if constexpr (!backend_memory_is_host_accessible_v<B>) {
    return detail::build_tree_parallel_checked("build_tree", backend, beams, beam_lengths, nullptr,
                                               nullptr);
  }
  const index_t batch = beams.extent(0), width = beams.extent(1), length = beams.extent(2);
  // NOTE: node indices and node_offsets are int32 and n_total <= B W L, so B W L < 2^31 keeps
  // every index (and the trie's int32 counters) in range; checked before the beams are copied.
  REDRAFT_REQUIRE(batch >= 0 && width >= 0 && length >= 0 &&
                      (width == 0 || length == 0 ||
                       batch <= std::numeric_limits<std::int32_t>::max() / width / length),
                  "build_tree: beams [", batch, ", ", width, ", ", length,
                  "] hold 2^31 or more tokens (node indices are int32)");
  std::vector<std::int32_t> host_beams(static_cast<std::size_t>(beams.size()));
  backend.copy_to_host(beams.data(), beams.size(), host_beams.data());
  const std::vector<std::int32_t> host_lengths =
      detail::host_beam_lengths(backend, "build_tree", beam_lengths, batch, width);
  const std::int32_t* lengths = host_lengths.empty() ? nullptr : host_lengths.data();
  detail::check_beams("build_tree", host_beams.data(), lengths, batch, width, length);

  std::vector<std::int32_t> offsets, token, parent, depth, beam_to_node;
  detail::build_tree_trie(host_beams.data(), lengths, static_cast<std::int32_t>(batch),
                          static_cast<std::int32_t>(width), static_cast<std::int32_t>(length),
                          offsets, token, parent, depth, beam_to_node);
  tree<B> out;
  out.batch = static_cast<std::int32_t>(batch);
  out.beam_width = static_cast<std::int32_t>(width);
  out.beam_length = static_cast<std::int32_t>(length);
  out.node_offsets = to_backend(backend, offsets);
  out.token = to_backend(backend, token);
  out.parent = to_backend(backend, parent);
  out.depth = to_backend(backend, depth);
  out.beam_to_node = to_backend(backend, beam_to_node);
  out.host_node_offsets = std::move(offsets);
  out.short_beams = lengths != nullptr;
  return out;
}

}  // namespace redraft
