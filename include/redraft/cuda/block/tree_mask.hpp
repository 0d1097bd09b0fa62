// redraft/cuda/block/tree_mask.hpp: the bit-packed ancestor mask of one request by one block.
//
// The block stages the request's parent array in shared memory once (n_b int32), then every
// thread builds whole packed rows with step::packed_mask_row (step/packed_mask.hpp), walking
// parent links in shared memory instead of global memory. Output is build_packed_tree_mask's
// layout, bit for bit.
//
// host_packed_mask_request is the host-run twin; the kernel is cuda/kernels/tree_mask.cuh.
#pragma once

#include <cstdint>
#include <vector>

#include "redraft/step/packed_mask.hpp"

namespace redraft::block {

// The host-run twin for request b (threads only change which thread builds which row).
inline void host_packed_mask_request(const step::packed_mask_rows& f, std::int32_t b) {
  const std::int32_t first = f.t.node_offsets[b], n = f.t.num_nodes(b);
  const std::vector<std::int32_t> parents(f.t.parent + first, f.t.parent + first + n);  // "shared"
  for (std::int32_t i = 0; i < n; ++i) {
    step::packed_mask_row(parents.data(), i,
                          f.out + (static_cast<index_t>(first) + i) * f.words_per_row,
                          f.words_per_row);
  }
}

}  // namespace redraft::block
