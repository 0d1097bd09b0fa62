// redraft/cuda/kernels/row_ops.cuh: the CUDA backend's row primitives, one block per row.
//
//   row_max / row_sum / row_argmax   one block-wide reduction of strided partials
//   log_softmax                      max, then sum of exp in double, then one write pass
//   row_top_k                        radix select + collect + rank sort (block/top_k.hpp), the
//                                    k candidates in dynamic shared memory (k <= max_block_top_k)
//
// Layers: launch_* (cudaError_t, never throws; the backend wraps them in REDRAFT_CUDA_CHECK) ->
// *_kernel -> the block helpers of cuda/block/, which are also run on the host by the
// Thrust host backend (their host-run twins). Launch parameters: kernel_tuning. nvcc only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cub/block/block_scan.cuh>

#include "redraft/core/view.hpp"
#include "redraft/cuda/block/row_reduce.hpp"
#include "redraft/cuda/block/top_k.hpp"
#include "redraft/cuda/kernels/block_collectives.cuh"
#include "redraft/cuda/tuning.hpp"

namespace redraft::kernels {

template <int Threads>
__global__ void __launch_bounds__(Threads)
    row_max_kernel(const float* x, index_t cols, float* out) {
  const float* row = x + static_cast<index_t>(blockIdx.x) * cols;
  const float m = block_all_reduce<Threads>(block::thread_max(row, cols, threadIdx.x, Threads),
                                            block::max_of{});
  if (threadIdx.x == 0) out[blockIdx.x] = m;
}

template <int Threads>
__global__ void __launch_bounds__(Threads)
    row_sum_kernel(const float* x, index_t cols, float* out) {
  const float* row = x + static_cast<index_t>(blockIdx.x) * cols;
  const float s = block_all_reduce<Threads>(block::thread_sum(row, cols, threadIdx.x, Threads),
                                            block::sum_of<float>{});
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

template <int Threads>
__global__ void __launch_bounds__(Threads)
    log_softmax_kernel(const float* x, float* y, index_t cols) {
  const float* in = x + static_cast<index_t>(blockIdx.x) * cols;
  float* out = y + static_cast<index_t>(blockIdx.x) * cols;
  const float max =
      block_all_reduce<Threads>(block::thread_max(in, cols, threadIdx.x, Threads), block::max_of{});
  const double sum = block_all_reduce<Threads>(
      block::thread_exp_sum(in, cols, max, threadIdx.x, Threads), block::sum_of<double>{});
  const float log_sum = static_cast<float>(::log(sum));
  for (index_t c = threadIdx.x; c < cols; c += Threads) out[c] = (in[c] - max) - log_sum;
}

template <int Threads>
__global__ void __launch_bounds__(Threads)
    row_argmax_kernel(const float* x, index_t cols, std::int32_t* out) {
  const float* row = x + static_cast<index_t>(blockIdx.x) * cols;
  const block::best_entry best = block_all_reduce<Threads>(
      block::thread_best(row, cols, threadIdx.x, Threads), block::best_of{});
  if (threadIdx.x == 0) out[blockIdx.x] = best.index;
}

// Dynamic shared memory: top_k_slots(k) floats + top_k_slots(k) int32 (the candidates).
//
// NOTE: nvcc (CUDA 13.0, sm_90) unrolls sorted_slot's loop by 4 and reads the remainder of the
// candidate values with one 16-byte LDS.128, up to 3 floats past entry k - 1 (compute-sanitizer's
// memcheck reported the over-read on an H200 with k = 1). Rounding each array up to a multiple of
// 4 entries keeps every such read inside the allocation; the padding is never written or used.
__host__ __device__ constexpr int top_k_slots(int k) { return (k + 3) / 4 * 4; }

template <int Threads>
__global__ void __launch_bounds__(Threads)
    row_top_k_kernel(const float* x, index_t cols, int k, float* values, std::int32_t* indices) {
  using scan = cub::BlockScan<index_t, Threads>;
  __shared__ typename scan::TempStorage scan_storage;
  __shared__ std::uint32_t histogram[256];
  __shared__ std::uint32_t prefix;
  __shared__ index_t remaining;
  extern __shared__ __align__(16) unsigned char candidates_raw[];
  float* cand_values = reinterpret_cast<float*>(candidates_raw);
  std::int32_t* cand_columns = reinterpret_cast<std::int32_t*>(cand_values + top_k_slots(k));
  const int tid = threadIdx.x;
  const float* row = x + static_cast<index_t>(blockIdx.x) * cols;

  // Phase 1: radix select of the k-th largest key.
  if (tid == 0) {
    prefix = 0;
    remaining = k;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = tid; d < 256; d += Threads) histogram[d] = 0;
    __syncthreads();
    const std::uint32_t p = prefix;
    block::thread_digit_histogram(row, cols, tid, Threads, p, shift,
                                  [](std::uint32_t bin) { atomicAdd(&histogram[bin], 1u); });
    __syncthreads();
    if (tid == 0) {
      std::uint32_t pr = prefix;
      index_t rem = remaining;
      block::select_digit(histogram, shift, pr, rem);
      prefix = pr;
      remaining = rem;
    }
    __syncthreads();
  }
  const std::uint32_t threshold = prefix;
  const index_t need_equal = remaining;

  // Phase 2: collect in tiles, slots from two exclusive scans.
  index_t equal_total = 0, kept_total = 0;
  for (index_t base = 0; base < cols; base += Threads) {
    const block::collect_flags f = block::flags_of(row, cols, base + tid, threshold);
    index_t equal_before = 0, equal_tile = 0;
    scan(scan_storage).ExclusiveSum(static_cast<index_t>(f.equal), equal_before, equal_tile);
    __syncthreads();
    const bool keep = block::kept(f, equal_total + equal_before, need_equal);
    index_t slot = 0, kept_tile = 0;
    scan(scan_storage).ExclusiveSum(static_cast<index_t>(keep ? 1 : 0), slot, kept_tile);
    __syncthreads();
    if (keep) {
      cand_values[kept_total + slot] = row[base + tid];
      cand_columns[kept_total + slot] = static_cast<std::int32_t>(base + tid);
    }
    equal_total += equal_tile;
    kept_total += kept_tile;
  }
  __syncthreads();

  // Phase 3: rank sort into the outputs.
  float* out_values = values + static_cast<index_t>(blockIdx.x) * k;
  std::int32_t* out_indices = indices + static_cast<index_t>(blockIdx.x) * k;
  for (int i = tid; i < k; i += Threads) {
    const int slot = block::sorted_slot(cand_values, cand_columns, k, i);
    out_values[slot] = cand_values[i];
    out_indices[slot] = cand_columns[i];
  }
}

// ---- Launchers: the cudaError_t tier ----

inline cudaError_t launch_row_max(const float* x, index_t rows, index_t cols, float* out,
                                  cudaStream_t stream) {
  constexpr int t = kernel_tuning::row_threads;
  row_max_kernel<t><<<static_cast<unsigned>(rows), t, 0, stream>>>(x, cols, out);
  return cudaGetLastError();
}

inline cudaError_t launch_row_sum(const float* x, index_t rows, index_t cols, float* out,
                                  cudaStream_t stream) {
  constexpr int t = kernel_tuning::row_threads;
  row_sum_kernel<t><<<static_cast<unsigned>(rows), t, 0, stream>>>(x, cols, out);
  return cudaGetLastError();
}

inline cudaError_t launch_log_softmax(const float* x, float* y, index_t rows, index_t cols,
                                      cudaStream_t stream) {
  constexpr int t = kernel_tuning::row_threads;
  log_softmax_kernel<t><<<static_cast<unsigned>(rows), t, 0, stream>>>(x, y, cols);
  return cudaGetLastError();
}

inline cudaError_t launch_row_argmax(const float* x, index_t rows, index_t cols, std::int32_t* out,
                                     cudaStream_t stream) {
  constexpr int t = kernel_tuning::row_threads;
  row_argmax_kernel<t><<<static_cast<unsigned>(rows), t, 0, stream>>>(x, cols, out);
  return cudaGetLastError();
}

// 1 <= k <= min(cols, kernel_tuning::max_block_top_k).
inline cudaError_t launch_row_top_k(const float* x, index_t rows, index_t cols, int k,
                                    float* values, std::int32_t* indices, cudaStream_t stream) {
  constexpr int t = kernel_tuning::row_threads;
  const std::size_t shared =
      static_cast<std::size_t>(top_k_slots(k)) * (sizeof(float) + sizeof(std::int32_t));
  row_top_k_kernel<t>
      <<<static_cast<unsigned>(rows), t, shared, stream>>>(x, cols, k, values, indices);
  return cudaGetLastError();
}

}  // namespace redraft::kernels
