// redraft/cuda/block/sampling_walk.hpp: the sampling verifiers (lossless, ReDrafter-compatible,
// typical) for one request by one block of row_ops::sum_chunks (256) threads.
//
// The rules and outputs are those of the verifiers' steps (step/lossless.hpp,
// step/redrafter.hpp, step/typical.hpp). The functors are written as steps over a small walk
// state; a block runs the same steps, with the row passes of each step split over its threads:
//   * the row scan (max, NaN / +inf check) and the checked argmax: per-thread partials over the
//     thread's chunk, combined exactly (order-free: max / min of integer keys, lowest column);
//   * the normaliser, the entropy sum and the residual total: thread t sums chunk t of the row
//     (row_ops::chunk_sum), then one thread folds the 256 chunk sums in chunk order
//     (row_ops::fold_chunks). This is by construction the blocked order the functors use on every
//     backend (row_ops::blocked_sum), so the doubles are added in the same order and every
//     decision is bit-identical, not merely close;
//   * the inverse CDF: one thread finds the crossing chunk from the chunk sums and walks that one
//     chunk (row_ops::blocked_inverse_cdf): V / 256 reads instead of V;
//   * the decisions (accept tests, descending, writing the outputs): one thread, the functor's
//   code.
//   * the top-k cut: a block radix select (block/top_k.hpp: 4 passes of 8-bit digits, integer
//     histograms, so the count is order-free) gives the k-th largest value, the value
//     row_ops::kth_largest returns.
// NOTE: the top-p cut (a radix select weighted by probability mass, whose double histogram sums
// depend on the order) and ReDrafter's per-node warp statistics are still computed by one thread
// with the sequential row helpers; temperature and top-k sampling are block-parallel.
//
// host_*_request are the host-run twins (a simulated block, thread after thread); the kernels are
// cuda/kernels/verify_sampling.cuh. No CUDA headers: compiles with any C++20 compiler.
#pragma once

#include <cstdint>
#include <limits>

#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/cuda/block/row_reduce.hpp"
#include "redraft/cuda/block/top_k.hpp"
#include "redraft/step/lossless.hpp"
#include "redraft/step/redrafter.hpp"
#include "redraft/step/row_ops.hpp"
#include "redraft/step/typical.hpp"

namespace redraft::block {

// Threads of a sampling-verifier block: one per chunk of the blocked sums.
inline constexpr int sampling_threads = row_ops::sum_chunks;

// ---- The row scan as partials (row_ops::scan_row) ----

struct scan_partial {
  std::uint32_t key_max;  // largest order key seen
  std::uint32_t key_min;  // smallest order key seen
  std::int64_t bad;       // lowest NaN / +inf column, max() if none
};

struct scan_of {
  REDRAFT_HOST_DEVICE scan_partial operator()(const scan_partial& a, const scan_partial& b) const {
    return scan_partial{a.key_max > b.key_max ? a.key_max : b.key_max,
                        a.key_min < b.key_min ? a.key_min : b.key_min,
                        a.bad < b.bad ? a.bad : b.bad};
  }
};

template <logit_element T>
REDRAFT_HOST_DEVICE scan_partial thread_scan(const T* row, index_t vocab, int chunk) {
  constexpr float inf = HUGE_VALF;
  scan_partial r{0u, 0xFFFFFFFFu, std::numeric_limits<std::int64_t>::max()};
  const index_t end = row_ops::chunk_end(vocab, chunk);
  for (index_t i = row_ops::chunk_begin(vocab, chunk); i < end; ++i) {
    const float x = to_float(row[i]);
    const std::uint32_t key = row_ops::order_key(x);
    r.key_max = key > r.key_max ? key : r.key_max;
    r.key_min = key < r.key_min ? key : r.key_min;
    if ((x != x || x == inf) && i < r.bad) r.bad = i;
  }
  return r;
}

// The combined partials as scan_row's result (the same fields for the same row).
REDRAFT_HOST_DEVICE inline row_ops::row_scan to_row_scan(const scan_partial& p, index_t vocab) {
  row_ops::row_scan s;
  s.max = -HUGE_VALF;
  if (vocab == 0) return s;
  if (p.bad != std::numeric_limits<std::int64_t>::max()) {
    s.bad_column = p.bad;
    return s;
  }
  s.max = row_ops::from_order_key(p.key_max);
  s.any_finite = s.max > -HUGE_VALF;
  return s;
}

// ---- Host-run twins ----

// Chunk sums of term over the row, one simulated thread per chunk.
template <class Term>
void host_chunk_sums(const Term& term, index_t vocab, double* sums) {
  for (int t = 0; t < sampling_threads; ++t) sums[t] = row_ops::chunk_sum(term, vocab, t);
}

template <logit_element T>
row_ops::row_scan host_scan(const T* row, index_t vocab) {
  return to_row_scan(
      host_block_reduce(
          sampling_threads, [&](int t) { return thread_scan(row, vocab, t); }, scan_of{}),
      vocab);
}

// Whether the row's cut needs the k-th largest value (top-k on, k < V).
REDRAFT_HOST_DEVICE inline bool needs_kth(const sampling_params& sp, index_t vocab) {
  return sp.top_k > 0 && sp.top_k < vocab;
}

// The k-th largest value (1 <= k <= V) by the block radix select: integer counts, exact.
template <logit_element T>
float host_kth_largest(const T* row, index_t vocab, std::int32_t k) {
  std::uint32_t prefix = 0;
  index_t remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    std::uint32_t histogram[256] = {};
    for (int t = 0; t < sampling_threads; ++t) {
      thread_digit_histogram(row, vocab, t, sampling_threads, prefix, shift,
                             [&](std::uint32_t bin) { ++histogram[bin]; });
    }
    select_digit(histogram, shift, prefix, remaining);
  }
  return row_ops::from_order_key(prefix);
}

// The processed row (cut, then the normaliser from chunk sums).
template <logit_element T>
row_ops::processed_row host_process_row(const T* row, index_t vocab, const sampling_params& sp,
                                        double* sums) {
  const row_ops::row_scan scan = host_scan(row, vocab);
  float kth = 0.0f;
  const bool use_kth = scan.bad_column < 0 && scan.any_finite && needs_kth(sp, vocab);
  if (use_kth) kth = host_kth_largest(row, vocab, sp.top_k);
  row_ops::processed_row p =
      row_ops::process_row_cut(row, vocab, sp, scan, use_kth ? &kth : nullptr);
  if (p.ok()) {
    host_chunk_sums(row_ops::row_weight<T>{row, p}, vocab, sums);
    p.norm = row_ops::fold_chunks(sums);
  }
  return p;
}

template <logit_element T>
void host_lossless_request(const step::lossless_walk<T>& f, std::int32_t b) {
  step::lossless_state s{};
  if (!f.begin(b, s)) return;
  const index_t vocab = f.logits.extent(1);
  double sums[sampling_threads];
  while (!s.done) {
    const row_ops::processed_row p = host_process_row(f.row(b, s), vocab, f.params, sums);
    if (!f.choose_child(b, p, s)) continue;
    const row_ops::residual_weight<T> w = f.residual(b, p, s);
    host_chunk_sums(w, vocab, sums);
    double total = 0.0;
    f.after_residual(b, row_ops::draw_from_chunks(w, vocab, sums, f.residual_uniform(b, s), &total),
                     s);
  }
}

template <logit_element T>
void host_typical_request(const step::typical_walk<T>& f, std::int32_t b) {
  step::typical_state s{};
  if (!f.begin(b, s)) return;
  const index_t vocab = f.logits.extent(1);
  double sums[sampling_threads];
  while (f.next_parent(b, s)) {
    const T* row = f.row(b, s.node);
    const row_ops::processed_row p = host_process_row(row, vocab, f.sampling(), sums);
    double wz = 0.0;
    if (p.ok()) {
      host_chunk_sums(step::entropy_term<T>{row, p}, vocab, sums);
      wz = row_ops::fold_chunks(sums);
    }
    f.decide_children(b, p, wz, s);
    if (s.done) return;
  }
  const T* row = f.row(b, s.best);
  if (f.params.sample_next_token) {
    const row_ops::processed_row p = host_process_row(row, vocab, f.sampling(), sums);
    if (!p.ok()) return f.finish_bad(b, p.bad_column, s);
    const row_ops::residual_weight<T> w{row, p, nullptr, 0};
    host_chunk_sums(w, vocab, sums);
    double total = 0.0;
    f.finish(b, row_ops::draw_from_chunks(w, vocab, sums, f.uniforms.draw(b, 0), &total), s);
  } else {
    const row_ops::row_argmax_result am = row_ops::finish_argmax(host_block_reduce(
        sampling_threads,
        [&](int t) { return row_ops::thread_argmax(row, vocab, t, sampling_threads); },
        row_ops::argmax_combine{}));
    if (am.bad_column != -1) return f.finish_bad(b, am.bad_column, s);
    f.finish(b, am.index, s);
  }
}

// Column max of warp(x) / T over the thread's chunk (ReDrafter's row max; combine: max_of).
template <logit_element T>
REDRAFT_HOST_DEVICE float thread_warped_max(const T* row, index_t vocab, int chunk, float thr,
                                            const redrafter_params& params) {
  float m = -HUGE_VALF;
  const index_t end = row_ops::chunk_end(vocab, chunk);
  for (index_t i = row_ops::chunk_begin(vocab, chunk); i < end; ++i) {
    m = max_of{}(m, step::warped(to_float(row[i]), thr, params));
  }
  return m;
}

// ReDrafter's statistics of one node's row by a simulated block (one row per block).
template <logit_element T>
void host_redrafter_row(const step::redrafter_rows<T>& f, index_t node) {
  const T* row = &f.logits(node, 0);
  const index_t vocab = f.logits.extent(1);
  if (!f.accept_scan(node, host_scan(row, vocab))) return;
  const float thr =
      f.needs_kth(vocab) ? host_kth_largest(row, vocab, f.params.logit_top_k) : -HUGE_VALF;
  const float m = host_block_reduce(
      sampling_threads, [&](int t) { return thread_warped_max(row, vocab, t, thr, f.params); },
      max_of{});
  if (!f.accept_max(node, m)) return;
  double sums[sampling_threads];
  host_chunk_sums(step::redrafter_exp_term<T>{row, f.params, thr, m}, vocab, sums);
  f.record(node, thr, m, row_ops::fold_chunks(sums));
}

template <logit_element T>
void host_redrafter_request(const step::redrafter_walk<T>& f, std::int32_t b) {
  std::int32_t best = 0, best_run = -1;
  if (!f.choose_beam(b, best, best_run)) return;
  const step::redrafter_weight<T> w = f.next_token_weight(b, best, best_run);
  const index_t vocab = f.logits.extent(1);
  double sums[sampling_threads];
  host_chunk_sums(w, vocab, sums);
  f.finish_request(b, best, best_run,
                   step::redrafter_next_token(w, vocab, sums, row_ops::fold_chunks(sums),
                                              f.next_token_uniform(b)));
}

}  // namespace redraft::block
