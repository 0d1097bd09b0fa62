// redraft/cuda/block/tree_mask.cuh: the bit-packed ancestor mask of one request by one block.
//
// The block stages the request's parent array in shared memory once (n_b int32), then every
// thread builds whole packed rows: zero the row's words, then set bit j of word j / 32 for each
// ancestor-or-self j, walking parent links in shared memory instead of global memory. Output is
// tree/masks.hpp's build_packed_tree_mask layout, bit for bit.
//
// host_packed_mask_request is the host-run twin; the kernel is cuda/kernels/tree_mask.cuh.
#pragma once

#include <cstdint>
#include <vector>

#include "redraft/core/macros.hpp"
#include "redraft/tree/masks.hpp"

namespace redraft::block {

// Row i of a request whose (request-local) parents are in `parents`: words_per_row uint32 words.
REDRAFT_HOST_DEVICE inline void packed_mask_row(const std::int32_t* parents, std::int32_t i,
                                                std::uint32_t* row, std::int32_t words_per_row) {
  for (std::int32_t k = 0; k < words_per_row; ++k) row[k] = 0u;
  for (std::int32_t j = i; j >= 0; j = parents[j]) row[j / 32] |= 1u << (j % 32);
}

// The host-run twin for request b (threads only change which thread builds which row).
inline void host_packed_mask_request(const detail::packed_mask_row_functor& f, std::int32_t b) {
  const std::int32_t first = f.t.node_offsets[b], n = f.t.num_nodes(b);
  const std::vector<std::int32_t> parents(f.t.parent + first, f.t.parent + first + n);  // "shared"
  for (std::int32_t i = 0; i < n; ++i) {
    packed_mask_row(parents.data(), i,
                    f.out + (static_cast<index_t>(first) + i) * f.words_per_row, f.words_per_row);
  }
}

}  // namespace redraft::block
