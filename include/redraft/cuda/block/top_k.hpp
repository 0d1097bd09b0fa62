// redraft/cuda/block/top_k.hpp: the top-k of one row by one block, deterministic, sorted
// descending with ties to the lower index, in three phases:
//
//   1. radix select (4 passes of 8-bit digits over order keys of the values): the key t of the
//      k-th largest value and `remaining`, how many entries equal to t belong to the top k;
//   2. collect, in tiles of T consecutive columns: an entry is kept if its key is > t, or == t
//      and fewer than `remaining` entries equal to t precede it; its slot is the number of kept
//      entries before it (two block-wide exclusive scans per tile), so exactly k are kept;
//   3. rank sort of the k kept entries: slot = how many kept entries beat it (O(k^2 / T)).
//
// Each phase is a per-thread function over (tid, T) plus block-wide steps (a histogram added with
// atomics, an exclusive scan, a barrier). The kernel (cuda/kernels/row_ops.cuh) runs them with
// CUDA atomics and cub::BlockScan; host_top_k_row below is the host-run twin: the same phase
// functions for a simulated block, thread after thread, with a sequential scan. The result is
// fully defined by the order (value descending, index ascending), so both agree bit for bit.
//
// Reads the row 4 times (radix passes) + once (collect). No CUDA headers.
#pragma once

#include <cstdint>
#include <cstring>

#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/view.hpp"
#include "redraft/cuda/block/row_reduce.hpp"
#include "redraft/step/row_ops.hpp"

namespace redraft::block {

// Keys: row_ops::order_key (step/row_ops.hpp), under which -0 and +0 tie (and go to the lower
// index), as float comparison has it. NaN is not supported.

// Phase 1, per thread: adds to the shared 256-bin histogram the digit (key >> shift) & 255 of
// every owned entry whose key agrees with `prefix` on the digits above `shift`. `add(bin)` is an
// atomic increment on a GPU and a plain one on the host.
// T: float, half or bfloat16 (read through the exact to_float).
template <class T, class Add>
REDRAFT_HOST_DEVICE void thread_digit_histogram(const T* row, index_t cols, int tid, int threads,
                                                std::uint32_t prefix, int shift, Add add) {
  for (index_t c = tid; c < cols; c += threads) {
    const int digit = row_ops::radix_digit(row_ops::order_key(to_float(row[c])), prefix, shift);
    if (digit >= 0) add(static_cast<std::uint32_t>(digit));
  }
}

// Phase 1, once per pass: descends from digit 255 until the running count reaches `remaining`;
// fixes that digit into `prefix` and leaves in `remaining` the rank still to find below it.
REDRAFT_HOST_DEVICE inline void select_digit(const std::uint32_t* histogram, int shift,
                                             std::uint32_t& prefix, index_t& remaining) {
  index_t above = 0;
  int d = row_ops::descend_digits(histogram, remaining, above);
  if (d < 0) {  // fewer than `remaining` entries match the prefix (k > cols, excluded by callers)
    d = 0;
    above -= histogram[0];
  }
  prefix |= static_cast<std::uint32_t>(d) << shift;
  remaining -= above;
}

// Phase 2 flags of column c (c may be past the row: both flags 0).
struct collect_flags {
  std::int32_t greater;  // key > t
  std::int32_t equal;    // key == t
};

REDRAFT_HOST_DEVICE inline collect_flags flags_of(const float* row, index_t cols, index_t c,
                                                  std::uint32_t threshold) {
  if (c >= cols) return collect_flags{0, 0};
  const std::uint32_t key = row_ops::order_key(row[c]);
  return collect_flags{key > threshold ? 1 : 0, key == threshold ? 1 : 0};
}

// Phase 2: whether the column is kept, given how many equal entries precede it.
REDRAFT_HOST_DEVICE inline bool kept(const collect_flags& f, index_t equal_before,
                                     index_t remaining) {
  return f.greater != 0 || (f.equal != 0 && equal_before < remaining);
}

// Phase 3: the sorted slot of kept entry i among k (values and columns in shared memory).
REDRAFT_HOST_DEVICE inline int sorted_slot(const float* values, const std::int32_t* columns, int k,
                                           int i) {
  int slot = 0;
  for (int j = 0; j < k; ++j) slot += beats(values[j], columns[j], values[i], columns[i]) ? 1 : 0;
  return slot;
}

// Host-run twin of the kernel for one row: the same phases for a simulated block of `threads`.
//   row [cols]; 1 <= k <= cols; scratch_values / scratch_columns [k] (the block's shared memory);
//   out_values / out_columns [k], sorted descending, ties to the lower column.
inline void host_top_k_row(const float* row, index_t cols, int k, int threads,
                           float* scratch_values, std::int32_t* scratch_columns, float* out_values,
                           std::int32_t* out_columns) {
  // Phase 1: radix select.
  std::uint32_t prefix = 0;
  index_t remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    std::uint32_t histogram[256] = {};
    for (int t = 0; t < threads; ++t) {
      thread_digit_histogram(row, cols, t, threads, prefix, shift,
                             [&](std::uint32_t bin) { ++histogram[bin]; });
    }
    select_digit(histogram, shift, prefix, remaining);
  }
  // Phase 2: collect in tiles of `threads` columns, slots from exclusive scans.
  index_t equal_total = 0, kept_total = 0;
  for (index_t base = 0; base < cols; base += threads) {
    index_t equal_scan = 0, kept_scan = 0;  // the exclusive scans, thread after thread
    for (int t = 0; t < threads; ++t) {
      const collect_flags f = flags_of(row, cols, base + t, prefix);
      const bool keep = kept(f, equal_total + equal_scan, remaining);
      if (keep) {
        scratch_values[kept_total + kept_scan] = row[base + t];
        scratch_columns[kept_total + kept_scan] = static_cast<std::int32_t>(base + t);
      }
      equal_scan += f.equal;
      kept_scan += keep ? 1 : 0;
    }
    equal_total += equal_scan;
    kept_total += kept_scan;
  }
  // Phase 3: rank sort.
  for (int i = 0; i < k; ++i) {
    const int slot = sorted_slot(scratch_values, scratch_columns, k, i);
    out_values[slot] = scratch_values[i];
    out_columns[slot] = scratch_columns[i];
  }
}

}  // namespace redraft::block
