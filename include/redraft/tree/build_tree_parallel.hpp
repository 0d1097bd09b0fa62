// redraft/tree/build_tree_parallel.hpp: trie dedup of draft beams as data-parallel passes.
//
// The same result as build_tree (tree/build_tree.hpp), bit for bit, computed without a trie so
// that it runs on any backend, a GPU included (docs/tree.md, "the parallel form"):
//
//   1. owner:  for every (request b, beam w, position l >= 1) within beam w's length, the lowest
//              beam w' that is longer than l and whose first l + 1 tokens equal beam w's. The
//              position is the first occurrence of its prefix (it creates a trie node) iff
//              owner == w. Positions past a beam's length (optional beam_lengths) create nothing.
//   2. scan:   an inclusive scan of the "creates a node" flags over (b, w, l) in row-major order.
//              The trie numbers nodes in exactly this order (beams 0..W-1, positions 1..L-1), so
//              the scan value is the node's creation rank.
//   3. scatter: node index of (b, w, l) = rank of (b, owner, l) within request b; the node's
//              token, parent (the node of (b, w, l - 1)) and depth (l) follow.
//
// Every pass is a Backend::for_each_index functor (or the backend's inclusive_scan), so the
// code touches only backend memory. The only host work is validation (detail::check_beams of
// tree/beam_checks.hpp on a host copy of the beams, shared with build_tree) and reading the B + 1
// node offsets back, which tree<B> keeps on the host.
#pragma once

#include <cstdint>
#include <limits>
#include <utility>
#include <type_traits>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/tree/beam_checks.hpp"

namespace redraft {

namespace detail {

// Pass 1, one call per (request, beam): owner[b, w, l] for l in [1, L), and the node flag
// created[b, w, l - 1] = (owner == w).
// NOTE: owner(w, l) is non-decreasing in l (fewer beams share a longer prefix), so scanning the
// lower beams w' = 0..w-1 in order and giving each the depths (filled, lcp(w', w)] it is the
// first to reach finds every lowest owner in O(W L) per beam: O(B W^2 L) work in all.
struct beam_owner_functor {
  const std::int32_t* beams;    // [B, W, L]
  const std::int32_t* lengths;  // [B, W] or nullptr: all L
  std::int32_t* owner;          // [B, W, L]   column 0 unused; -1 past the beam's length
  std::int32_t* created;        // [B, W, L-1] 1 where (b, w, l) creates a node
  std::int32_t width;
  std::int32_t length;

  REDRAFT_HOST_DEVICE std::int32_t valid(index_t bw) const { return lengths == nullptr ? length : lengths[bw]; }

  REDRAFT_HOST_DEVICE void operator()(index_t bw) const {
    const index_t b = bw / width;
    const std::int32_t w = static_cast<std::int32_t>(bw % width);
    const std::int32_t* mine = beams + bw * length;
    const std::int32_t my_valid = valid(bw);
    std::int32_t* my_owner = owner + bw * length;
    std::int32_t filled = 0;  // depths 1..filled already have an owner below w
    for (std::int32_t other = 0; other < w && filled < my_valid - 1; ++other) {
      const std::int32_t* theirs = beams + (b * width + other) * length;
      const std::int32_t their_valid = valid(b * width + other);
      const std::int32_t limit = (my_valid < their_valid ? my_valid : their_valid) - 1;
      std::int32_t common = 0;  // drafted tokens in common (the roots are equal)
      while (common < limit && theirs[common + 1] == mine[common + 1]) ++common;
      for (std::int32_t l = filled + 1; l <= common; ++l) my_owner[l] = other;
      if (common > filled) filled = common;
    }
    for (std::int32_t l = filled + 1; l < my_valid; ++l) my_owner[l] = w;
    for (std::int32_t l = my_valid; l < length; ++l) my_owner[l] = -1;
    my_owner[0] = 0;
    for (std::int32_t l = 1; l < length; ++l) {
      created[bw * (length - 1) + (l - 1)] = my_owner[l] == w ? 1 : 0;
    }
  }
};
static_assert(std::is_trivially_copyable_v<beam_owner_functor>);

// Pass 2b, one call per request and one more: node_offsets[b] = b + (nodes created before
// request b), i.e. one root per request plus the drafted nodes.
struct beam_node_offsets_functor {
  const std::int32_t* rank;  // [B * W * (L-1)] inclusive scan of `created`
  std::int32_t* node_offsets;  // [B + 1]
  index_t per_request;         // W * (L - 1)

  REDRAFT_HOST_DEVICE void operator()(index_t b) const {
    const std::int32_t before = b == 0 ? 0 : rank[b * per_request - 1];
    node_offsets[b] = static_cast<std::int32_t>(b) + before;
  }
};
static_assert(std::is_trivially_copyable_v<beam_node_offsets_functor>);

// Pass 3, one call per (request, beam, position): beam_to_node, and for the positions that
// create a node, its token, parent and depth. Request-local node index of a created position =
// its inclusive rank minus the nodes created before the request (the root takes index 0).
struct beam_scatter_functor {
  const std::int32_t* beams;         // [B, W, L]
  const std::int32_t* owner;         // [B, W, L]
  const std::int32_t* created;       // [B, W, L-1]
  const std::int32_t* rank;          // [B, W, L-1]
  const std::int32_t* node_offsets;  // [B + 1]
  std::int32_t* beam_to_node;        // [B, W, L]
  std::int32_t* token;               // [n_total]
  std::int32_t* parent;              // [n_total]
  std::int32_t* depth;               // [n_total]
  std::int32_t width;
  std::int32_t length;

  REDRAFT_HOST_DEVICE std::int32_t local_node(index_t b, std::int32_t w, std::int32_t l) const {
    if (l == 0) return 0;
    const index_t per_request = static_cast<index_t>(width) * (length - 1);
    const std::int32_t before = b == 0 ? 0 : rank[b * per_request - 1];
    const std::int32_t o = owner[(b * width + w) * length + l];
    return rank[(b * width + o) * (length - 1) + (l - 1)] - before;
  }

  REDRAFT_HOST_DEVICE void operator()(index_t bwl) const {
    const index_t bw = bwl / length;
    const std::int32_t l = static_cast<std::int32_t>(bwl % length);
    const index_t b = bw / width;
    const std::int32_t w = static_cast<std::int32_t>(bw % width);
    if (l > 0 && owner[bwl] < 0) {  // past the beam's length
      beam_to_node[bwl] = -1;
      return;
    }
    const std::int32_t node = local_node(b, w, l);
    beam_to_node[bwl] = node;
    const std::int32_t first = node_offsets[b];
    if (l == 0) {
      if (w == 0) {  // the root, written once per request
        token[first] = beams[bwl];
        parent[first] = -1;
        depth[first] = 0;
      }
      return;
    }
    if (created[bw * (length - 1) + (l - 1)] == 0) return;
    token[first + node] = beams[bwl];
    parent[first + node] = local_node(b, w, l - 1);
    depth[first + node] = l;
  }
};
static_assert(std::is_trivially_copyable_v<beam_scatter_functor>);

}  // namespace detail

// build_tree_parallel(backend, beams) -> tree<B>: the trie dedup of build_tree in parallel passes.
//
//   beams        (batch, beam_width, beam_length) int32, backend memory; column 0 the root token,
//                equal across the beams of a request
//   beam_lengths (batch, beam_width) int32 in [1, beam_length], backend memory, or empty (all
//                beam_length): positions past a beam's length are ignored
//   -> tree<B>:  node_offsets (batch + 1), token/parent/depth (n_total),
//                beam_to_node (batch, beam_width, beam_length); n_b <= 1 + W (L - 1)
//
// Output: identical to build_tree(backend, beams), element for element (packed order, parents,
// depths, beam_to_node). Deterministic: every pass writes each output element from one call, so
// the result does not depend on the order or concurrency of for_each_index.
// Complexity: O(B W^2 L) work in B*W-way parallel calls (the owner search), plus an O(B W L) scan
// and scatter; the trie's O(B W L) is better on one CPU thread, this form is for wide hardware.
// Scratch: 3 int32 arrays of B*W*L elements.
// Throws redraft::error, before any output is allocated, for beam_width < 1, beam_length < 2,
// token ids < 0, differing root tokens within a request, or B*W*L >= 2^31.
template <Backend B>
tree<B> build_tree_parallel(const B& backend, view<const std::int32_t, 3> beams,
                            matrix_view<const std::int32_t> beam_lengths = {}) {
  const index_t batch = beams.extent(0), width = beams.extent(1), length = beams.extent(2);
  REDRAFT_REQUIRE(beams.size() < std::numeric_limits<std::int32_t>::max(),
                  "build_tree_parallel: beams hold ", beams.size(),
                  " tokens, more than int32 node indices can number");
  std::vector<std::int32_t> host_beams(static_cast<std::size_t>(beams.size()));  // [B, W, L]
  backend.copy_to_host(beams.data(), beams.size(), host_beams.data());
  const std::vector<std::int32_t> host_lengths =
      detail::host_beam_lengths(backend, "build_tree_parallel", beam_lengths, batch, width);
  detail::check_beams("build_tree_parallel", host_beams.data(), host_lengths.empty() ? nullptr : host_lengths.data(),
                      batch, width, length);
  const std::int32_t* lengths = host_lengths.empty() ? nullptr : beam_lengths.data();  // [B, W] backend memory

  const std::int32_t w32 = static_cast<std::int32_t>(width);
  const std::int32_t l32 = static_cast<std::int32_t>(length);
  const index_t drafted = batch * width * (length - 1);

  auto owner = backend.template allocate<std::int32_t>(beams.size());  // [B, W, L]
  auto created = backend.template allocate<std::int32_t>(drafted);     // [B, W, L-1]
  auto rank = backend.template allocate<std::int32_t>(drafted);        // [B, W, L-1]
  backend.for_each_index(batch * width, detail::beam_owner_functor{beams.data(), lengths, owner.data(),
                                                                   created.data(), w32, l32});
  backend.inclusive_scan(vector_view<const std::int32_t>(created.data(), drafted),
                         vector_view<std::int32_t>(rank.data(), drafted));

  tree<B> out;
  out.batch = static_cast<std::int32_t>(batch);
  out.beam_width = w32;
  out.beam_length = l32;
  out.short_beams = lengths != nullptr;
  out.node_offsets = backend.template allocate<std::int32_t>(batch + 1);  // [B + 1]
  backend.for_each_index(batch + 1, detail::beam_node_offsets_functor{
                                        rank.data(), out.node_offsets.data(), width * (length - 1)});
  out.host_node_offsets.resize(static_cast<std::size_t>(batch) + 1);
  backend.copy_to_host(out.node_offsets.data(), batch + 1, out.host_node_offsets.data());

  const index_t n_total = out.host_node_offsets.back();
  out.token = backend.template allocate<std::int32_t>(n_total);                // [n_total]
  out.parent = backend.template allocate<std::int32_t>(n_total);               // [n_total]
  out.depth = backend.template allocate<std::int32_t>(n_total);                // [n_total]
  out.beam_to_node = backend.template allocate<std::int32_t>(beams.size());    // [B, W, L]
  backend.for_each_index(
      beams.size(),
      detail::beam_scatter_functor{beams.data(), owner.data(), created.data(), rank.data(),
                                   out.node_offsets.data(), out.beam_to_node.data(),
                                   out.token.data(), out.parent.data(), out.depth.data(), w32,
                                   l32});
  backend.synchronize();  // the scratch buffers die at return
  return out;
}

}  // namespace redraft
