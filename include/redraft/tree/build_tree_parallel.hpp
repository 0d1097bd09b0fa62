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
// code touches only backend memory. The beams are validated on the backend too (check_beams'
// checks, into a status record [B, 4]); the one transfer reads that record back together with the
// B + 1 node offsets, which tree<B> keeps on the host.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

namespace detail {

// The status codes of the beams' checks (a record [B, 4] per request: code, a, b, c).
enum beam_status_code : std::int32_t {
  beam_ok = 0,
  beam_root_differs = 1,    // a = beam w, b = beams[r, w, 0], c = beams[r, 0, 0]
  beam_bad_length = 2,      // a = beam w, b = its length, c = L
  beam_negative_token = 3,  // a = beam w, b = position l, c = the token
  beam_wrong_root = 4,      // a = beams[r, 0, 0], b = roots[r] (only with expected roots)
};

// Pass 0, one call per request r: check_beams' checks in its order (then, when `roots` is set,
// that the beams start at roots[r]), the first error kept in status (sticky: a record that
// already holds an error is left alone). Writes the lengths the later passes use: a length
// outside [1, L] becomes 1 (and is reported), so no pass indexes past a beam.
struct beam_check_functor {
  const std::int32_t* beams;    // [B, W, L]
  const std::int32_t* lengths;  // [B, W] or nullptr: all L
  const std::int32_t* roots;    // [B] or nullptr: no expected roots
  std::int32_t* valid_length;   // [B, W]
  std::int32_t* status;         // [B, 4]
  std::int32_t width;
  std::int32_t length;

  REDRAFT_HOST_DEVICE void set(index_t r, std::int32_t code, std::int32_t a, std::int32_t b,
                               std::int32_t c) const {
    std::int32_t* s = status + 4 * r;
    if (s[0] != beam_ok) return;
    s[0] = code;
    s[1] = a;
    s[2] = b;
    s[3] = c;
  }

  REDRAFT_HOST_DEVICE void operator()(index_t r) const {
    const std::int32_t* first = beams + r * width * length;
    bool ok = true;
    for (std::int32_t w = 0; w < width; ++w) {
      const std::int32_t* beam = first + static_cast<index_t>(w) * length;
      const std::int32_t n = lengths == nullptr ? length : lengths[r * width + w];
      const bool length_ok = n >= 1 && n <= length;
      valid_length[r * width + w] = length_ok ? n : 1;
      if (!ok) continue;
      if (beam[0] != first[0]) {
        set(r, beam_root_differs, w, beam[0], first[0]);
        ok = false;
      } else if (!length_ok) {
        set(r, beam_bad_length, w, n, length);
        ok = false;
      } else {
        for (std::int32_t l = 0; l < n && ok; ++l) {
          if (beam[l] < 0) {
            set(r, beam_negative_token, w, l, beam[l]);
            ok = false;
          }
        }
      }
    }
    if (ok && roots != nullptr && first[0] != roots[r])
      set(r, beam_wrong_root, first[0], roots[r], 0);
  }
};
static_assert(std::is_trivially_copyable_v<beam_check_functor>);

// Throws redraft::error for the first request whose beam status (a host copy, [batch, 4]) is not
// ok, with check_beams' messages; request_ids (nullable) name the requests in the wrong-root one.
inline void throw_on_beam_status(const char* fn, const std::int32_t* status, std::int32_t batch,
                                 const std::int32_t* request_ids) {
  for (std::int32_t r = 0; r < batch; ++r) {
    const std::int32_t* e = status + 4 * static_cast<index_t>(r);
    switch (e[0]) {
      case beam_ok:
        break;
      case beam_root_differs:
        throw_error(fn, ": beams[", r, ", ", e[1], ", 0] = ", e[2], " differs from beams[", r,
                    ", 0, 0] = ", e[3], " (all beams of a request start at the same root token)");
      case beam_bad_length:
        throw_error(fn, ": beam_lengths[", r, ", ", e[1], "] = ", e[2], " is outside [1, ", e[3],
                    "] (the root counts; 1 = no drafted token)");
      case beam_negative_token:
        throw_error(fn, ": beams[", r, ", ", e[1], ", ", e[2], "] = ", e[3],
                    " is not a valid token id (must be >= 0)");
      case beam_wrong_root:
        throw_error(fn, ": the drafter's beams for request ",
                    request_ids == nullptr ? r : request_ids[r], " start with token ", e[1],
                    " instead of the root ", e[2]);
      default:
        throw_error(fn, ": internal beam status ", e[0], " at request ", r);
    }
  }
}

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

  REDRAFT_HOST_DEVICE std::int32_t valid(index_t bw) const {
    return lengths == nullptr ? length : lengths[bw];
  }

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
  const std::int32_t* rank;    // [B * W * (L-1)] inclusive scan of `created`
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

namespace detail {

// build_tree_parallel with an optional check that request r's beams start at roots[r] (backend
// memory [B], or nullptr), reported in the same status transfer as the other beam checks, so a
// decoder validates its drafter's roots without reading the tree back. request_ids (host [B], or
// nullptr) name the requests in that error. fn names the caller in every message.
template <Backend B>
tree<B> build_tree_parallel_checked(const char* fn, const B& backend,
                                    view<const std::int32_t, 3> beams,
                                    matrix_view<const std::int32_t> beam_lengths,
                                    const std::int32_t* roots, const std::int32_t* request_ids) {
  const index_t batch = beams.extent(0), width = beams.extent(1), length = beams.extent(2);
  REDRAFT_REQUIRE(beams.size() < std::numeric_limits<std::int32_t>::max(), fn, ": beams hold ",
                  beams.size(), " tokens, more than int32 node indices can number");
  REDRAFT_REQUIRE(width >= 1, fn, ": beam_width ", width, " must be at least 1");
  REDRAFT_REQUIRE(length >= 2, fn, ": beam_length ", length,
                  " must be at least 2 (the root plus one drafted token)");
  const bool short_beams = !(beam_lengths.empty() && beam_lengths.data() == nullptr);
  REDRAFT_REQUIRE(
      !short_beams || (beam_lengths.extent(0) == batch && beam_lengths.extent(1) == width), fn,
      ": beam_lengths is [", beam_lengths.extent(0), ", ", beam_lengths.extent(1), "], expected [",
      batch, ", ", width, "] (one length per beam) or empty");

  const std::int32_t w32 = static_cast<std::int32_t>(width);
  const std::int32_t l32 = static_cast<std::int32_t>(length);
  const index_t drafted = batch * width * (length - 1);

  // The node offsets [B + 1] and the beams' status [B, 4], read back in one transfer.
  auto record = backend.template allocate<std::int32_t>(batch + 1 + 4 * batch);
  std::int32_t* status = record.data() + batch + 1;
  backend.fill(status, 4 * batch, std::int32_t{0});
  auto valid_length = backend.template allocate<std::int32_t>(batch * width);  // [B, W]
  backend.for_each_index(
      batch, detail::beam_check_functor{beams.data(), short_beams ? beam_lengths.data() : nullptr,
                                        roots, valid_length.data(), status, w32, l32});
  auto owner = backend.template allocate<std::int32_t>(beams.size());  // [B, W, L]
  auto created = backend.template allocate<std::int32_t>(drafted);     // [B, W, L-1]
  auto rank = backend.template allocate<std::int32_t>(drafted);        // [B, W, L-1]
  backend.for_each_index(batch * width,
                         detail::beam_owner_functor{beams.data(), valid_length.data(), owner.data(),
                                                    created.data(), w32, l32});
  backend.inclusive_scan(vector_view<const std::int32_t>(created.data(), drafted),
                         vector_view<std::int32_t>(rank.data(), drafted));
  backend.for_each_index(batch + 1, detail::beam_node_offsets_functor{rank.data(), record.data(),
                                                                      width * (length - 1)});
  std::vector<std::int32_t> host_record(static_cast<std::size_t>(record.size()));
  backend.copy_to_host(record.data(), record.size(), host_record.data());
  detail::throw_on_beam_status(fn, host_record.data() + batch + 1, static_cast<std::int32_t>(batch),
                               request_ids);

  tree<B> out;
  out.batch = static_cast<std::int32_t>(batch);
  out.beam_width = w32;
  out.beam_length = l32;
  out.short_beams = short_beams;
  out.node_offsets = backend.template allocate<std::int32_t>(batch + 1);  // [B + 1]
  backend.copy(record.data(), batch + 1, out.node_offsets.data());
  out.host_node_offsets.assign(host_record.begin(),
                               host_record.begin() + static_cast<std::ptrdiff_t>(batch) + 1);

  const index_t n_total = out.host_node_offsets.back();
  out.token = backend.template allocate<std::int32_t>(n_total);              // [n_total]
  out.parent = backend.template allocate<std::int32_t>(n_total);             // [n_total]
  out.depth = backend.template allocate<std::int32_t>(n_total);              // [n_total]
  out.beam_to_node = backend.template allocate<std::int32_t>(beams.size());  // [B, W, L]
  backend.for_each_index(
      beams.size(), detail::beam_scatter_functor{beams.data(), owner.data(), created.data(),
                                                 rank.data(), out.node_offsets.data(),
                                                 out.beam_to_node.data(), out.token.data(),
                                                 out.parent.data(), out.depth.data(), w32, l32});
  return out;
}

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
// Scratch: 3 int32 arrays of B*W*L elements. One transfer: the node offsets and the beams' status.
// Throws redraft::error, before any output is allocated, for beam_width < 1, beam_length < 2,
// token ids < 0, differing root tokens within a request, or B*W*L >= 2^31.
template <Backend B>
tree<B> build_tree_parallel(const B& backend, view<const std::int32_t, 3> beams,
                            matrix_view<const std::int32_t> beam_lengths = {}) {
  return detail::build_tree_parallel_checked("build_tree_parallel", backend, beams, beam_lengths,
                                             nullptr, nullptr);
}

}  // namespace redraft
