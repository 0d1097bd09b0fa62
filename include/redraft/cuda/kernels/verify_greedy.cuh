// redraft/cuda/kernels/verify_greedy.cuh: greedy verification, one block per request.
//
// Grid: B blocks of kernel_tuning::verify_threads threads. Thread 0 builds the request's children
// lists (O(n_b), global scratch) and makes each step's decision; all threads compute the
// block-wide checked argmax of the current node's logits row (coalesced strided reads, one CUB
// reduction). Only the rows on the accepted path are read: (accepted_len + 1) * V floats per
// request. Block logic: cuda/block/greedy_walk.hpp (its host-run twin is what the Thrust host
// backend runs). nvcc only.
#pragma once

#include <cuda_runtime.h>

#include "redraft/cuda/block/greedy_walk.hpp"
#include "redraft/cuda/kernels/block_collectives.cuh"
#include "redraft/cuda/tuning.hpp"

namespace redraft::kernels {

template <int Threads, class T>
__global__ void __launch_bounds__(Threads) verify_greedy_kernel(step::greedy_walk<T> walk) {
  const std::int32_t b = static_cast<std::int32_t>(blockIdx.x);
  __shared__ step::greedy_state state;
  if (threadIdx.x == 0) walk.begin(b, state);
  const index_t vocab = walk.logits.extent(1);
  for (;;) {
    __syncthreads();
    if (state.done) return;  // uniform: every thread reads the same shared flag
    const row_ops::argmax_partial best = block_all_reduce<Threads>(
        row_ops::thread_argmax(walk.row(b, state), vocab, threadIdx.x, Threads),
        row_ops::argmax_combine{});
    if (threadIdx.x == 0) walk.advance(b, row_ops::finish_argmax(best), state);
  }
}

template <class T>
cudaError_t launch_verify_greedy(const step::greedy_walk<T>& walk, cudaStream_t stream) {
  constexpr int t = kernel_tuning::verify_threads;
  verify_greedy_kernel<t, T><<<static_cast<unsigned>(walk.tree.batch), t, 0, stream>>>(walk);
  return cudaGetLastError();
}

}  // namespace redraft::kernels
