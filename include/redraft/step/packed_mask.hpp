// redraft/step/packed_mask.hpp: rows of the bit-packed ancestor mask (tree/masks.hpp's
// build_packed_tree_mask), written once for every way of running them.
//
// packed_mask_row builds one row from a request's parent array; packed_mask_rows is the argument
// struct of the whole mask: one invocation per global node (count() = n_total) builds that node's
// row. A fused backend may instead run one block per request with the parents staged in shared
// memory (cuda/block/tree_mask.hpp), calling the same packed_mask_row: same bits.
#pragma once

#include <cstdint>
#include <type_traits>

#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"

namespace redraft::step {

// The request that owns global node `node`: the b with node_offsets[b] <= node < node_offsets[b+1]
// (binary search; empty requests, if any, are skipped correctly).
// NOTE: written without a data-dependent branch (the select compiles to a conditional move on
// the CPU and to a predicated instruction on a GPU): with B = 64 the branchy search mispredicted
// on most steps and made build_positions 10x slower per node than with B = 1.
REDRAFT_HOST_DEVICE inline std::int32_t request_of_node(const std::int32_t* node_offsets,
                                                        std::int32_t batch, index_t node) {
  std::int32_t lo = 0, count = batch;  // answer in [lo, lo + count)
  while (count > 1) {
    const std::int32_t half = count / 2;
    lo = node_offsets[lo + half] <= node ? lo + half : lo;
    count -= half;
  }
  return lo;
}

// Row i of a request whose request-local parents are parents[0 .. n_b): words_per_row uint32
// words, bit (j % 32) of word (j / 32) set for every ancestor-or-self j of i, the rest 0.
REDRAFT_HOST_DEVICE inline void packed_mask_row(const std::int32_t* parents, std::int32_t i,
                                                std::uint32_t* row, std::int32_t words_per_row) {
  for (std::int32_t k = 0; k < words_per_row; ++k) row[k] = 0u;
  for (std::int32_t j = i; j >= 0; j = parents[j]) row[j / 32] |= 1u << (j % 32);
}

// The whole mask: one call per global node builds its row.
struct packed_mask_rows {
  tree_view t;
  std::uint32_t* out;          // [n_total, words_per_row]
  std::int32_t words_per_row;  // >= ceil(max_nodes / 32)
  index_t total_nodes;         // n_total (a host value: t's offsets live in backend memory)
  std::int32_t max_nodes;      // n_max, the largest request (sizes a fused kernel's staging)

  REDRAFT_HOST_DEVICE index_t count() const { return total_nodes; }

  REDRAFT_HOST_DEVICE void operator()(index_t node) const {
    const std::int32_t b = request_of_node(t.node_offsets, t.batch, node);
    const std::int32_t first = t.node_offsets[b];
    packed_mask_row(t.parent + first, static_cast<std::int32_t>(node - first),
                    out + node * words_per_row, words_per_row);
  }
};
static_assert(std::is_trivially_copyable_v<packed_mask_rows>);

}  // namespace redraft::step
