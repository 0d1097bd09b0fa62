// redraft/cuda/kernels/block_collectives.cuh: block-wide all-reduce on top of cub::BlockReduce,
// the device counterpart of block::host_block_reduce. nvcc only.
#pragma once

#include <cub/block/block_reduce.cuh>

namespace redraft::kernels {

// Every thread of the block gets combine(partial of thread 0, ..., partial of thread T-1).
// Call from all threads; reusable any number of times in one kernel.
template <int Threads, class T, class Combine>
__device__ T block_all_reduce(const T& partial, Combine combine) {
  using reduce = cub::BlockReduce<T, Threads>;
  __shared__ typename reduce::TempStorage storage;
  __shared__ T result;
  const T r = reduce(storage).Reduce(partial, combine);
  if (threadIdx.x == 0) result = r;
  __syncthreads();
  const T out = result;
  __syncthreads();  // storage and result may be reused by the next call
  return out;
}

}  // namespace redraft::kernels
