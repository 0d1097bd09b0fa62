// redraft/cuda/kernels/tree_mask.cuh: the bit-packed tree mask, one block per request.
//
// Grid: B blocks of kernel_tuning::mask_threads threads; dynamic shared memory n_max int32.
// The block stages its request's parents in shared memory (one coalesced read of n_b int32),
// then thread t builds rows t, t + T, ...: zero words_per_row words, then one OR per ancestor,
// all parent lookups in shared memory. Global traffic: n_b * 4 bytes in, n_b * words_per_row * 4
// bytes out. Block logic: cuda/block/tree_mask.hpp. nvcc only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "redraft/cuda/block/tree_mask.hpp"
#include "redraft/cuda/tuning.hpp"

namespace redraft::kernels {

template <int Threads>
__global__ void __launch_bounds__(Threads) packed_tree_mask_kernel(step::packed_mask_rows f) {
  extern __shared__ std::int32_t parents[];
  const std::int32_t b = static_cast<std::int32_t>(blockIdx.x);
  const std::int32_t first = f.t.node_offsets[b], n = f.t.num_nodes(b);
  for (std::int32_t i = threadIdx.x; i < n; i += Threads) parents[i] = f.t.parent[first + i];
  __syncthreads();
  for (std::int32_t i = threadIdx.x; i < n; i += Threads) {
    step::packed_mask_row(parents, i, f.out + (static_cast<index_t>(first) + i) * f.words_per_row,
                          f.words_per_row);
  }
}

// max_nodes <= kernel_tuning::mask_max_nodes (the shared-memory stage).
inline cudaError_t launch_packed_tree_mask(const step::packed_mask_rows& f, std::int32_t max_nodes,
                                           cudaStream_t stream) {
  constexpr int t = kernel_tuning::mask_threads;
  const std::size_t shared = static_cast<std::size_t>(max_nodes) * sizeof(std::int32_t);
  packed_tree_mask_kernel<t><<<static_cast<unsigned>(f.t.batch), t, shared, stream>>>(f);
  return cudaGetLastError();
}

}  // namespace redraft::kernels
