// redraft/cuda/block/row_reduce.hpp: block-wide reductions over one row, written as per-thread
// partials plus an associative combine, so the same logic runs in a CUDA block (partials in
// registers, the combine through cub::BlockReduce) and in its host-run twin (the partials of a
// simulated block computed one thread after another, then folded in thread order).
//
// Thread t of a block of T threads owns columns t, t + T, t + 2T, ... (coalesced on a GPU).
// For max and argmax the combine is exact and order-free, so the twin and the kernel agree bit
// for bit; float/double sums agree up to the summation order.
//
// No CUDA headers: compiles with any C++20 compiler (REDRAFT_HOST_DEVICE is empty outside nvcc).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/math.hpp"
#include "redraft/core/view.hpp"

namespace redraft::block {

// An (value, column) candidate of an argmax: the greater value wins, equal values go to the
// lower column (ties to the lower index, as std::max_element).
struct best_entry {
  float value;
  std::int32_t index;
};

REDRAFT_HOST_DEVICE inline bool beats(float a_value, std::int32_t a_index, float b_value,
                                      std::int32_t b_index) {
  return a_value > b_value || (a_value == b_value && a_index < b_index);
}

struct best_of {
  REDRAFT_HOST_DEVICE best_entry operator()(const best_entry& a, const best_entry& b) const {
    return beats(a.value, a.index, b.value, b.index) ? a : b;
  }
};

// The identity of best_of: loses to every entry of a row, even to -inf at any column.
REDRAFT_HOST_DEVICE inline best_entry no_entry() {
  return best_entry{-std::numeric_limits<float>::infinity(),
                    std::numeric_limits<std::int32_t>::max()};
}

REDRAFT_HOST_DEVICE inline best_entry thread_best(const float* row, index_t cols, int tid,
                                                  int threads) {
  best_entry best = no_entry();
  for (index_t c = tid; c < cols; c += threads) {
    best = best_of{}(best, best_entry{row[c], static_cast<std::int32_t>(c)});
  }
  return best;
}

struct max_of {
  REDRAFT_HOST_DEVICE float operator()(float a, float b) const { return b > a ? b : a; }
};

REDRAFT_HOST_DEVICE inline float thread_max(const float* row, index_t cols, int tid, int threads) {
  float m = -std::numeric_limits<float>::infinity();
  for (index_t c = tid; c < cols; c += threads) m = max_of{}(m, row[c]);
  return m;
}

template <class T>
struct sum_of {
  REDRAFT_HOST_DEVICE T operator()(T a, T b) const { return a + b; }
};

REDRAFT_HOST_DEVICE inline float thread_sum(const float* row, index_t cols, int tid, int threads) {
  float s = 0.0f;
  for (index_t c = tid; c < cols; c += threads) s += row[c];
  return s;
}

// sum of exp(x - max) in double, the log_softmax normaliser (the CPU backend's arithmetic).
REDRAFT_HOST_DEVICE inline double thread_exp_sum(const float* row, index_t cols, float max, int tid,
                                                 int threads) {
  double s = 0.0;
  for (index_t c = tid; c < cols; c += threads) s += exp_hd(static_cast<double>(row[c] - max));
  return s;
}

// The checked argmax of a logits row is step/row_ops.hpp's: row_ops::thread_argmax partials,
// combined with row_ops::argmax_combine, finished with row_ops::finish_argmax.

// Host-run twin of a block reduction: the partials of threads 0 .. T-1, folded in thread order.
template <class Partial, class Combine>
auto host_block_reduce(int threads, Partial partial, Combine combine) {
  auto acc = partial(0);
  for (int t = 1; t < threads; ++t) acc = combine(acc, partial(t));
  return acc;
}

}  // namespace redraft::block
