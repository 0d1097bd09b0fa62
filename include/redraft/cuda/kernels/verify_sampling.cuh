// redraft/cuda/kernels/verify_sampling.cuh: the sampling verifiers (lossless, ReDrafter-
// compatible, typical), one block of 256 threads per request.
//
// Grid: B blocks of block::sampling_threads (= row_ops::sum_chunks = 256) threads; thread t owns
// chunk t of every row (row_ops::chunk_begin / chunk_end). Thread 0 keeps the walk state in
// shared memory and makes every decision with the verifier functor's own step functions; all
// threads compute the row scans (exact combine through CUB), and the chunk sums of the
// normaliser, the entropy and the residual (written to shared memory and folded by thread 0 in
// chunk order: the blocked order the functors use, so the decisions are the CPU's bit for bit).
// Only the rows on the walked path are read. ReDrafter's per-node row statistics (warp threshold,
// max, log-sum) get one block per node (redrafter_rows_kernel). Block logic and host-run twins:
// cuda/block/sampling_walk.hpp. nvcc only.
#pragma once

#include <cuda_runtime.h>

#include <new>

#include "redraft/cuda/block/sampling_walk.hpp"
#include "redraft/cuda/kernels/block_collectives.cuh"

namespace redraft::kernels {

// Shared-memory storage for a type with a non-trivial default constructor (__shared__ variables
// cannot be initialised): raw bytes, used through get().
template <class T>
struct shared_slot {
  alignas(T) unsigned char bytes[sizeof(T)];
  __device__ T& get() { return *reinterpret_cast<T*>(bytes); }
};

// The row scan of one row by the whole block (every thread gets the result).
template <class T>
__device__ row_ops::row_scan block_scan(const T* row, index_t vocab) {
  constexpr int threads = block::sampling_threads;
  return block::to_row_scan(
      block_all_reduce<threads>(block::thread_scan(row, vocab, threadIdx.x), block::scan_of{}),
      vocab);
}

// The processed row of `row` into shared `p` (scan by the block, cut and fold by thread 0, chunk
// sums by the block into `sums`). Ends with a barrier: every thread may read p.
// The k-th largest value of the row by a block radix select (block/top_k.hpp; every thread gets
// it). Integer histograms with shared atomics: the counts, hence the result, are order-free.
template <class T>
__device__ float block_kth_largest(const T* row, index_t vocab, std::int32_t k) {
  constexpr int threads = block::sampling_threads;
  __shared__ std::uint32_t histogram[256];
  __shared__ std::uint32_t prefix;
  __shared__ index_t remaining;
  const int tid = static_cast<int>(threadIdx.x);
  if (tid == 0) {
    prefix = 0;
    remaining = k;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = tid; d < 256; d += threads) histogram[d] = 0;
    __syncthreads();
    block::thread_digit_histogram(row, vocab, tid, threads, prefix, shift,
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
  const float kth = row_ops::from_order_key(prefix);
  __syncthreads();  // prefix may be reset by the next call
  return kth;
}

template <class T>
__device__ void block_process_row(const T* row, index_t vocab, const sampling_params& sp,
                                  row_ops::processed_row& p, double* sums) {
  const row_ops::row_scan scan = block_scan(row, vocab);
  // Uniform across the block: the scan result and the parameters are the same in every thread.
  const bool use_kth = scan.bad_column < 0 && scan.any_finite && block::needs_kth(sp, vocab);
  const float kth = use_kth ? block_kth_largest(row, vocab, sp.top_k) : 0.0f;
  if (threadIdx.x == 0)
    p = row_ops::process_row_cut(row, vocab, sp, scan, use_kth ? &kth : nullptr);
  __syncthreads();
  const row_ops::processed_row local = p;
  if (local.ok())
    sums[threadIdx.x] = row_ops::chunk_sum(row_ops::row_weight<T>{row, local}, vocab,
                                           static_cast<int>(threadIdx.x));
  __syncthreads();
  if (threadIdx.x == 0 && local.ok()) p.norm = row_ops::fold_chunks(sums);
  __syncthreads();
}

template <class T>
__global__ void __launch_bounds__(block::sampling_threads)
    verify_lossless_kernel(step::lossless_walk<T> f) {
  const std::int32_t b = static_cast<std::int32_t>(blockIdx.x);
  const index_t vocab = f.logits.extent(1);
  __shared__ step::lossless_state state;
  __shared__ shared_slot<row_ops::processed_row> p;
  __shared__ double sums[block::sampling_threads];
  __shared__ bool residual;
  if (threadIdx.x == 0) f.begin(b, state);
  for (;;) {
    __syncthreads();
    if (state.done) return;  // uniform: every thread reads the same shared flag
    const T* row = f.row(b, state);
    block_process_row(row, vocab, f.params, p.get(), sums);
    if (threadIdx.x == 0) residual = f.choose_child(b, p.get(), state);
    __syncthreads();
    if (!residual) continue;
    const row_ops::residual_weight<T> w = f.residual(b, p.get(), state);
    sums[threadIdx.x] = row_ops::chunk_sum(w, vocab, static_cast<int>(threadIdx.x));
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = 0.0;
      f.after_residual(
          b, row_ops::draw_from_chunks(w, vocab, sums, f.residual_uniform(b, state), &total),
          state);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(block::sampling_threads)
    verify_typical_kernel(step::typical_walk<T> f) {
  const std::int32_t b = static_cast<std::int32_t>(blockIdx.x);
  const index_t vocab = f.logits.extent(1);
  __shared__ step::typical_state state;
  __shared__ shared_slot<row_ops::processed_row> p;
  __shared__ double sums[block::sampling_threads];
  __shared__ bool has_parent;
  if (threadIdx.x == 0) has_parent = f.begin(b, state) && f.next_parent(b, state);
  for (;;) {
    __syncthreads();
    if (state.done) return;
    if (!has_parent) break;
    const T* row = f.row(b, state.node);
    block_process_row(row, vocab, f.sampling(), p.get(), sums);
    const row_ops::processed_row local = p.get();
    if (local.ok()) {
      sums[threadIdx.x] = row_ops::chunk_sum(step::entropy_term<T>{row, local}, vocab,
                                             static_cast<int>(threadIdx.x));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      f.decide_children(b, local, local.ok() ? row_ops::fold_chunks(sums) : 0.0, state);
      has_parent = !state.done && f.next_parent(b, state);
    }
  }
  // The next token at the deepest accepted node.
  const T* row = f.row(b, state.best);
  if (f.params.sample_next_token) {
    block_process_row(row, vocab, f.sampling(), p.get(), sums);
    const row_ops::processed_row local = p.get();
    if (!local.ok()) {
      if (threadIdx.x == 0) f.finish_bad(b, local.bad_column, state);
      return;
    }
    const row_ops::residual_weight<T> w{row, local, nullptr, 0};
    sums[threadIdx.x] = row_ops::chunk_sum(w, vocab, static_cast<int>(threadIdx.x));
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = 0.0;
      f.finish(b, row_ops::draw_from_chunks(w, vocab, sums, f.uniforms.draw(b, 0), &total), state);
    }
  } else {
    constexpr int threads = block::sampling_threads;
    const row_ops::row_argmax_result am = row_ops::finish_argmax(block_all_reduce<threads>(
        row_ops::thread_argmax(row, vocab, threadIdx.x, threads), row_ops::argmax_combine{}));
    if (threadIdx.x != 0) return;
    if (am.bad_column != -1) {
      f.finish_bad(b, am.bad_column, state);
    } else {
      f.finish(b, am.index, state);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(block::sampling_threads)
    verify_redrafter_kernel(step::redrafter_walk<T> f) {
  const std::int32_t b = static_cast<std::int32_t>(blockIdx.x);
  const index_t vocab = f.logits.extent(1);
  __shared__ std::int32_t best, best_run;
  __shared__ bool ok;
  __shared__ double sums[block::sampling_threads];
  if (threadIdx.x == 0) {
    std::int32_t w = 0, run = -1;
    ok = f.choose_beam(b, w, run);
    best = w;
    best_run = run;
  }
  __syncthreads();
  if (!ok) return;
  const step::redrafter_weight<T> w = f.next_token_weight(b, best, best_run);
  sums[threadIdx.x] = row_ops::chunk_sum(w, vocab, static_cast<int>(threadIdx.x));
  __syncthreads();
  if (threadIdx.x == 0) {
    f.finish_request(b, best, best_run,
                     step::redrafter_next_token(w, vocab, sums, row_ops::fold_chunks(sums),
                                                f.next_token_uniform(b)));
  }
}

// ReDrafter's per-node row statistics, one block per node (grid = n_total).
template <class T>
__global__ void __launch_bounds__(block::sampling_threads)
    redrafter_rows_kernel(step::redrafter_rows<T> f) {
  constexpr int threads = block::sampling_threads;
  const index_t node = blockIdx.x;
  const T* row = &f.logits(node, 0);
  const index_t vocab = f.logits.extent(1);
  __shared__ double sums[threads];
  const row_ops::row_scan scan = block_scan(row, vocab);
  if (threadIdx.x == 0) f.accept_scan(node, scan);
  if (scan.bad_column >= 0 || !scan.any_finite) return;  // uniform
  const float thr =
      f.needs_kth(vocab) ? block_kth_largest(row, vocab, f.params.logit_top_k) : -HUGE_VALF;
  const float m = block_all_reduce<threads>(
      block::thread_warped_max(row, vocab, static_cast<int>(threadIdx.x), thr, f.params),
      block::max_of{});
  if (m == HUGE_VALF) {  // uniform
    if (threadIdx.x == 0) f.accept_max(node, m);
    return;
  }
  sums[threadIdx.x] = row_ops::chunk_sum(step::redrafter_exp_term<T>{row, f.params, thr, m}, vocab,
                                         static_cast<int>(threadIdx.x));
  __syncthreads();
  if (threadIdx.x == 0) f.record(node, thr, m, row_ops::fold_chunks(sums));
}

template <class T>
cudaError_t launch_redrafter_rows(const step::redrafter_rows<T>& f, index_t rows,
                                  cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  redrafter_rows_kernel<T><<<static_cast<unsigned>(rows), block::sampling_threads, 0, stream>>>(f);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_verify_lossless(const step::lossless_walk<T>& f, cudaStream_t stream) {
  verify_lossless_kernel<T>
      <<<static_cast<unsigned>(f.tree.batch), block::sampling_threads, 0, stream>>>(f);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_verify_typical(const step::typical_walk<T>& f, cudaStream_t stream) {
  verify_typical_kernel<T>
      <<<static_cast<unsigned>(f.tree.batch), block::sampling_threads, 0, stream>>>(f);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_verify_redrafter(const step::redrafter_walk<T>& f, cudaStream_t stream) {
  verify_redrafter_kernel<T>
      <<<static_cast<unsigned>(f.tree.batch), block::sampling_threads, 0, stream>>>(f);
  return cudaGetLastError();
}

}  // namespace redraft::kernels
