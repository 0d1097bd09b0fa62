// redraft/tree/masks.hpp: attention masks and position ids of a token tree.
//
// A tree node may attend to itself and its ancestors (the prefix it continues) and, with context,
// to the request's real context tokens. Everything here is computed from the tree's parent array
// in backend memory by Backend::for_each_index functors, one call per output row:
//
//   build_dense_tree_mask     ragged [n_b, n_b] uint8 per request       (dense_tree_mask<B>)
//   build_packed_tree_mask    [n_total, ceil(n_max / 32) or wider] uint32 rows
//   (packed_tree_mask<B>) build_attention_mask      ragged [n_b, P + n_b] uint8 per request (Apple
//   ReDrafter layout) build_padded_attention_mask  [B, n_max, P + n_max] uint8            (golden
//   `attention_mask`;
//                                with P = 0 it is the golden padded `tree_mask`)
//   build_positions           [n_total] int32: base position of the request + depth
//
// NOTE: each row is filled by walking the node's ancestors (parent links) rather than by copying
// the parent's row. The walk costs O(depth) extra per row but makes every row independent of the
// others, so rows can be computed in any order and concurrently (a GPU thread per row), and a
// backend that runs for_each_index backwards or in parallel gets the same bits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/transfer.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/step/packed_mask.hpp"
#include "redraft/step/run_step.hpp"

namespace redraft {

// Attention mask of the tree against the whole key sequence of each request, Apple ReDrafter's
// layout: request b's mask is [n_b, P + n_b] uint8 row-major at bits[offsets[b] ...]; column
// c < P is the request's padding_mask[b, c] (1 = real context token, 0 = left pad), column P + j
// is 1 iff node j is an ancestor of, or equal to, the row's node.
template <class B>
struct context_tree_mask {
  typename B::template buffer<std::uint8_t> bits;     // [sum_b n_b (P + n_b)]
  typename B::template buffer<std::int64_t> offsets;  // [B + 1]
  std::vector<std::int64_t> host_offsets;             // [B + 1]
  std::int32_t context_length = 0;                    // P
};

// The same mask padded to a rectangle, as the golden vectors (and batched attention kernels that
// take one [B, rows, cols] tensor) store it: [B, n_max, P + n_max] uint8; rows and tree columns
// past n_b are 0 (the context columns of a padding row are 0 too).
template <class B>
struct padded_attention_mask {
  typename B::template buffer<std::uint8_t> bits;  // [B, n_max, P + n_max]
  std::int32_t batch = 0;                          // B
  std::int32_t rows = 0;                           // n_max
  std::int32_t context_length = 0;                 // P
  std::int32_t cols = 0;                           // P + n_max
};

namespace detail {

// One call per global node: its row of request b's [n_b, P + n_b] block at out + offsets[b]:
// P context entries copied from the padding mask, then 0 everywhere but the ancestors-or-self.
struct dense_mask_row_functor {
  tree_view t;
  const std::int64_t* offsets;       // [B + 1] start of each request's block in `out`
  const std::int32_t* padding_mask;  // [B, P] or nullptr when P = 0
  std::uint8_t* out;
  std::int32_t context_length;  // P

  REDRAFT_HOST_DEVICE void operator()(index_t node) const {
    const std::int32_t b = step::request_of_node(t.node_offsets, t.batch, node);
    const std::int32_t first = t.node_offsets[b];
    const std::int32_t n = t.num_nodes(b);
    const std::int32_t i = static_cast<std::int32_t>(node - first);
    const index_t stride = static_cast<index_t>(context_length) + n;
    std::uint8_t* row = out + offsets[b] + i * stride;
    for (std::int32_t c = 0; c < context_length; ++c) {
      row[c] = padding_mask[static_cast<index_t>(b) * context_length + c] != 0 ? 1 : 0;
    }
    std::uint8_t* tree_row = row + context_length;
    for (std::int32_t j = 0; j < n; ++j) tree_row[j] = 0;
    for (std::int32_t j = i; j >= 0; j = t.parent[first + j]) tree_row[j] = 1;
  }
};
static_assert(std::is_trivially_copyable_v<dense_mask_row_functor>);

// One call per (request, padded row): the [P + n_max] row of the padded mask.
struct padded_mask_row_functor {
  tree_view t;
  const std::int32_t* padding_mask;  // [B, P] or nullptr when P = 0
  std::uint8_t* out;                 // [B, n_max, P + n_max]
  std::int32_t context_length;       // P
  std::int32_t rows;                 // n_max

  REDRAFT_HOST_DEVICE void operator()(index_t flat_row) const {
    const std::int32_t b = static_cast<std::int32_t>(flat_row / rows);
    const std::int32_t i = static_cast<std::int32_t>(flat_row % rows);
    const index_t cols = static_cast<index_t>(context_length) + rows;
    std::uint8_t* row = out + flat_row * cols;
    for (index_t c = 0; c < cols; ++c) row[c] = 0;
    if (i >= t.num_nodes(b)) return;  // padding row: all 0
    for (std::int32_t c = 0; c < context_length; ++c) {
      row[c] = padding_mask[static_cast<index_t>(b) * context_length + c] != 0 ? 1 : 0;
    }
    const std::int32_t first = t.node_offsets[b];
    for (std::int32_t j = i; j >= 0; j = t.parent[first + j]) row[context_length + j] = 1;
  }
};
static_assert(std::is_trivially_copyable_v<padded_mask_row_functor>);

struct positions_functor {
  tree_view t;
  const std::int32_t* base_positions;  // [B]
  std::int32_t* positions;             // [n_total]

  REDRAFT_HOST_DEVICE void operator()(index_t node) const {
    const std::int32_t b = step::request_of_node(t.node_offsets, t.batch, node);
    positions[node] = base_positions[b] + t.depth[node];
  }
};
static_assert(std::is_trivially_copyable_v<positions_functor>);

template <class B>
void check_tree(const char* fn, const tree<B>& t) {
  REDRAFT_REQUIRE(t.batch >= 0, fn, ": tree batch ", t.batch, " is negative");
  REDRAFT_REQUIRE(t.host_node_offsets.size() == static_cast<std::size_t>(t.batch) + 1, fn,
                  ": tree has batch ", t.batch, " but ", t.host_node_offsets.size(),
                  " host node offsets (expected batch + 1)");
  for (std::int32_t b = 0; b < t.batch; ++b) {
    REDRAFT_REQUIRE(t.num_nodes(b) >= 1, fn, ": request ", b, " of the tree has ", t.num_nodes(b),
                    " nodes (every tree has at least its root)");
  }
}

// Validates a [B, P] 0/1 padding mask against the tree (on a host copy).
template <class B>
void check_padding_mask(const char* fn, const B& backend, const tree<B>& t,
                        view<const std::int32_t, 2> padding_mask) {
  REDRAFT_REQUIRE(padding_mask.extent(0) == t.batch, fn, ": padding_mask has ",
                  padding_mask.extent(0), " rows but the tree has batch ", t.batch);
  REDRAFT_REQUIRE(padding_mask.extent(1) < (index_t{1} << 30), fn, ": padding_mask has ",
                  padding_mask.extent(1), " columns, too many");
  std::vector<std::int32_t> host(static_cast<std::size_t>(padding_mask.size()));  // [B, P]
  backend.copy_to_host(padding_mask.data(), padding_mask.size(), host.data());
  for (std::size_t k = 0; k < host.size(); ++k) {
    REDRAFT_REQUIRE(host[k] == 0 || host[k] == 1, fn, ": padding_mask[",
                    static_cast<index_t>(k) / padding_mask.extent(1), ", ",
                    static_cast<index_t>(k) % padding_mask.extent(1), "] = ", host[k],
                    " is not 0 or 1");
  }
}

}  // namespace detail

// build_dense_tree_mask(backend, tree) -> dense_tree_mask<B>.
//
//   tree    batch B, n_b nodes per request (packed order: parents precede children)
//   -> bits (sum_b n_b * n_b) uint8: request b's [n_b, n_b] block at offsets[b], entry (i, j) = 1
//      iff node j is an ancestor of node i or j == i; offsets / host_offsets (B + 1) int64.
//
// Deterministic. O(sum_b n_b (n_b + depth)) work, one for_each_index call per node.
// Throws redraft::error if the tree's host offsets do not match its batch or a request is empty.
template <Backend B>
dense_tree_mask<B> build_dense_tree_mask(const B& backend, const tree<B>& t) {
  detail::check_tree("build_dense_tree_mask", t);

  std::vector<std::int64_t> offsets(static_cast<std::size_t>(t.batch) + 1, 0);  // [B + 1]
  for (std::int32_t b = 0; b < t.batch; ++b) {
    const std::int64_t n = t.num_nodes(b);
    offsets[static_cast<std::size_t>(b) + 1] = offsets[static_cast<std::size_t>(b)] + n * n;
  }
  dense_tree_mask<B> out;
  out.bits = backend.template allocate<std::uint8_t>(offsets.back());  // [sum n_b^2]
  out.offsets = to_backend(backend, offsets);                          // [B + 1]
  backend.for_each_index(
      t.total_nodes(),
      detail::dense_mask_row_functor{view_of(t), out.offsets.data(), nullptr, out.bits.data(), 0});
  out.host_offsets = std::move(offsets);
  return out;
}

// build_packed_tree_mask(backend, tree, words_per_row = 0) -> packed_tree_mask<B>.
//
//   tree           batch B, n_b nodes per request, n_max = max_b n_b
//   words_per_row  0 (the default) for ceil(n_max / 32), the least that holds every row (0 when
//                  the batch is empty); or a larger fixed width, e.g. ceil(max_decoding_tokens /
//                  32) for an engine whose buffers are sized for the largest tree it accepts
//   -> words (n_total, words_per_row) uint32: the row of global node r = node_offsets[b] + i has
//      bit (j % 32) of word (j / 32) set iff request-local node j is an ancestor-or-self of node
//      i, LSB first; bits past n_b are 0. TensorRT-LLM's spec_decoding_packed_mask layout, rows of
//      consecutive requests back to back. Any n_b (also > 32, > 64).
//
// Deterministic. O(n_total (words_per_row + depth)) work, one for_each_index call per node.
// Throws redraft::error if the tree's host offsets do not match its batch, a request is empty, or
// words_per_row is neither 0 nor at least ceil(n_max / 32).
template <Backend B>
packed_tree_mask<B> build_packed_tree_mask(const B& backend, const tree<B>& t,
                                           std::int32_t words_per_row = 0) {
  detail::check_tree("build_packed_tree_mask", t);
  const std::int32_t needed = (t.max_nodes() + 31) / 32;
  REDRAFT_REQUIRE(words_per_row == 0 || words_per_row >= needed,
                  "build_packed_tree_mask: words_per_row ", words_per_row, " cannot hold ",
                  t.max_nodes(), " nodes (needs at least ", needed, ", or 0 for that minimum)");

  packed_tree_mask<B> out;
  out.words_per_row = words_per_row == 0 ? needed : words_per_row;
  out.words = backend.template allocate<std::uint32_t>(
      static_cast<index_t>(t.total_nodes()) * out.words_per_row);  // [n_total, words_per_row]
  // A backend may build the rows fused (clause 10 of core/backend.hpp; e.g. CUDA: one block per
  // request, parents in shared memory); same bits.
  step::run_step(backend, step::packed_mask_rows{view_of(t), out.words.data(), out.words_per_row,
                                                 t.total_nodes(), t.max_nodes()});
  return out;
}

// build_attention_mask(backend, tree, padding_mask) -> context_tree_mask<B>, Apple's layout.
//
//   tree          batch B, n_b nodes per request
//   padding_mask  (B, P) int32 0/1, backend memory: 1 = real context token, 0 = left pad
//   -> bits (sum_b n_b (P + n_b)) uint8: request b's [n_b, P + n_b] block at offsets[b]; columns
//      [0, P) of every row copy padding_mask[b], column P + j is the dense tree mask entry (i, j).
//      P = 0 gives the dense tree mask itself.
//
// Deterministic. O(sum_b n_b (P + n_b + depth)) work, one for_each_index call per node.
// Throws redraft::error (before allocating) if padding_mask has another batch than the tree or a
// value other than 0/1, or the tree is malformed as in build_dense_tree_mask.
template <Backend B>
context_tree_mask<B> build_attention_mask(const B& backend, const tree<B>& t,
                                          view<const std::int32_t, 2> padding_mask) {
  detail::check_tree("build_attention_mask", t);
  detail::check_padding_mask("build_attention_mask", backend, t, padding_mask);

  const std::int64_t context = padding_mask.extent(1);
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(t.batch) + 1, 0);  // [B + 1]
  for (std::int32_t b = 0; b < t.batch; ++b) {
    const std::int64_t n = t.num_nodes(b);
    offsets[static_cast<std::size_t>(b) + 1] =
        offsets[static_cast<std::size_t>(b)] + n * (context + n);
  }
  context_tree_mask<B> out;
  out.context_length = static_cast<std::int32_t>(context);
  out.bits = backend.template allocate<std::uint8_t>(offsets.back());  // [sum n_b (P + n_b)]
  out.offsets = to_backend(backend, offsets);                          // [B + 1]
  backend.for_each_index(t.total_nodes(),
                         detail::dense_mask_row_functor{view_of(t), out.offsets.data(),
                                                        context > 0 ? padding_mask.data() : nullptr,
                                                        out.bits.data(), out.context_length});
  out.host_offsets = std::move(offsets);
  return out;
}

// build_padded_attention_mask(backend, tree, padding_mask) -> padded_attention_mask<B>.
//
//   tree          batch B, n_b nodes per request, n_max = max_b n_b
//   padding_mask  (B, P) int32 0/1, backend memory (P may be 0)
//   -> bits (B, n_max, P + n_max) uint8: row i < n_b of request b is [padding_mask[b], tree mask
//      row i padded with 0 to n_max]; rows i >= n_b are all 0. This is the golden `pack` case's
//      `attention_mask`, and with P = 0 its `tree_mask`.
//
// Deterministic. O(B n_max (P + n_max)) work, one for_each_index call per padded row.
// Throws redraft::error as build_attention_mask.
template <Backend B>
padded_attention_mask<B> build_padded_attention_mask(const B& backend, const tree<B>& t,
                                                     view<const std::int32_t, 2> padding_mask) {
  detail::check_tree("build_padded_attention_mask", t);
  detail::check_padding_mask("build_padded_attention_mask", backend, t, padding_mask);

  padded_attention_mask<B> out;
  out.batch = t.batch;
  out.rows = t.max_nodes();
  out.context_length = static_cast<std::int32_t>(padding_mask.extent(1));
  out.cols = out.context_length + out.rows;
  const index_t padded_rows = static_cast<index_t>(t.batch) * out.rows;
  out.bits =
      backend.template allocate<std::uint8_t>(padded_rows * out.cols);  // [B, n_max, P + n_max]
  backend.for_each_index(padded_rows,
                         detail::padded_mask_row_functor{
                             view_of(t), out.context_length > 0 ? padding_mask.data() : nullptr,
                             out.bits.data(), out.context_length, out.rows});
  return out;
}

// build_positions(backend, tree, base_positions) -> position ids.
//
//   tree            batch B, n_total nodes
//   base_positions  (B) int32, backend memory: the position of request b's root token (for
//                   ReDrafter: the number of real context tokens, left padding excluded)
//   -> (n_total) int32 in backend memory: positions[node_offsets[b] + i] = base_positions[b] +
//      depth[i], the RoPE position of each packed node.
//
// Deterministic. O(n_total log B) work, one for_each_index call per node.
// Throws redraft::error if base_positions does not have B entries, one is negative, base + depth
// of a node exceeds INT32_MAX (positions never wrap), or the tree is malformed as in
// build_dense_tree_mask.
template <Backend B>
typename B::template buffer<std::int32_t> build_positions(
    const B& backend, const tree<B>& t, view<const std::int32_t, 1> base_positions) {
  detail::check_tree("build_positions", t);
  REDRAFT_REQUIRE(base_positions.extent(0) == t.batch, "build_positions: base_positions has ",
                  base_positions.extent(0), " entries but the tree has batch ", t.batch);
  std::vector<std::int32_t> host_base(static_cast<std::size_t>(t.batch));  // [B]
  backend.copy_to_host(base_positions.data(), t.batch, host_base.data());
  for (std::int32_t b = 0; b < t.batch; ++b) {
    REDRAFT_REQUIRE(host_base[static_cast<std::size_t>(b)] >= 0, "build_positions: base_positions[",
                    b, "] = ", host_base[static_cast<std::size_t>(b)], " is negative");
  }
  // NOTE: base + depth must not wrap int32. depth < n_b, so the cheap bound base + n_b - 1 clears
  // every realistic request; only a base within n_b of INT32_MAX pays for a host copy of that
  // request's depths to decide exactly.
  for (std::int32_t b = 0; b < t.batch; ++b) {
    const std::int64_t base = host_base[static_cast<std::size_t>(b)];
    constexpr std::int64_t limit = std::numeric_limits<std::int32_t>::max();
    if (base + t.num_nodes(b) - 1 <= limit) continue;
    std::vector<std::int32_t> depth(static_cast<std::size_t>(t.num_nodes(b)));  // [n_b]
    backend.copy_to_host(t.depth.data() + t.host_node_offsets[static_cast<std::size_t>(b)],
                         t.num_nodes(b), depth.data());
    const std::int64_t max_depth = *std::max_element(depth.begin(), depth.end());
    REDRAFT_REQUIRE(base + max_depth <= limit, "build_positions: base_positions[", b, "] = ", base,
                    " plus the tree depth ", max_depth, " exceeds the largest int32 position ",
                    limit);
  }

  auto positions = backend.template allocate<std::int32_t>(t.total_nodes());  // [n_total]
  backend.for_each_index(t.total_nodes(), detail::positions_functor{
                                              view_of(t), base_positions.data(), positions.data()});
  return positions;
}

}  // namespace redraft
