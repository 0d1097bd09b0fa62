// redraft/verify/logits_processing.hpp: turning the target's logits into the distribution a
// sampling verifier compares against.
//
// Two layers:
//  * row helpers (namespace redraft::row_ops), REDRAFT_HOST_DEVICE functions over one row
//    `const T* row` of V logits, T one of float, half, bfloat16 (core/half.hpp). Every element is
//    read through the exact to_float and all arithmetic is in float / double, so half or bfloat16
//    logits give the same decisions as float logits holding the same values, with no conversion
//    pass over the matrix. The verifiers call them inside their per-request functors
//    so that only the rows on the walked path are ever read, and nothing is materialised.
//  * composable matrix ops over logits [rows, V] in backend memory, generic over Backend, for
//    callers who want the processed logits themselves: apply_temperature, apply_top_k,
//    warp_top_k (ReDrafter's warp), apply_top_p, to_log_probs, to_probs. Each is one
//    for_each_index over rows with a functor built from the row helpers, so the matrix ops and
//    the verifiers implement the same semantics.
//
// Semantics (HF order: temperature, then top-k, then top-p):
//   temperature T > 0:  z = x / T
//   top-k k > 0:        keep x >= the k-th largest x of the row (ties at the k-th value are all
//                       kept, so more than k tokens may survive); the others get mask_value.
//                       This is exactly ReDrafter's warp: "logits strictly below the k-th
//                       largest are set to the mask value" (k = 50, mask -50000 there).
//   top-p 0 < p <= 1:   over the tokens that survived top-k, with probabilities q = softmax(z),
//                       keep every token whose strictly-greater mass M(x) = sum_{y > x} q(y) is
//                       below p (the smallest high-probability set reaching p; tokens tied with
//                       the last kept one are kept too). p = 1 disables it.
// Device code: every helper is REDRAFT_HOST_DEVICE and uses HUGE_VALF (not
// std::numeric_limits, a host constexpr function under nvcc) for infinity.
// Non-finite logits: NaN and +inf are errors; -inf means "probability zero" (engines use it for
// masked vocabulary entries), but a row needs at least one finite logit.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

// The caller's sampling configuration for the target distribution.
struct sampling_params {
  float temperature = 1.0f;  // > 0
  std::int32_t top_k = 0;    // 0 disables; otherwise keep the k largest logits (ties kept)
  float top_p = 1.0f;        // in (0, 1]; 1 disables
};

namespace detail {

// A temperature every sampling path can divide by: finite, > 0, and 1 / T finite.
// NOTE: T below ~2.9e-39 (a float subnormal) makes 1 / T overflow to +inf, and then
// (max - max) * (1 / T) = 0 * inf = NaN poisons the whole row; such T are refused, not clamped.
inline bool temperature_is_usable(float temperature) {
  return std::isfinite(temperature) && temperature > 0.0f && std::isfinite(1.0f / temperature);
}

inline void check_sampling_params(const char* fn, const sampling_params& p) {
  REDRAFT_REQUIRE(temperature_is_usable(p.temperature), fn, ": temperature ", p.temperature,
                  " must be finite and > 0 with a finite 1 / T in a sampling mode (use "
                  "verify_greedy for T = 0)");
  REDRAFT_REQUIRE(p.top_k >= 0, fn, ": top_k ", p.top_k, " must be >= 0 (0 disables it)");
  REDRAFT_REQUIRE(p.top_p > 0.0f && p.top_p <= 1.0f, fn, ": top_p ", p.top_p,
                  " must be in (0, 1] (1 disables it)");
}

}  // namespace detail

namespace row_ops {

// Order-preserving map of a float to uint32: a < b (as floats, no NaN) iff key(a) < key(b).
REDRAFT_HOST_DEVICE inline std::uint32_t order_key(float x) {
  std::uint32_t u = 0;
  std::memcpy(&u, &x, sizeof(u));
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

REDRAFT_HOST_DEVICE inline float from_order_key(std::uint32_t key) {
  const std::uint32_t u = (key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key;
  float x = 0.0f;
  std::memcpy(&x, &u, sizeof(x));
  return x;
}

// One pass: the row max, and whether the row is usable (no NaN / +inf, at least one finite).
struct row_scan {
  float max = 0.0f;
  std::int64_t bad_column = -1;  // first NaN or +inf column, -1 if none
  bool any_finite = false;
};

// NOTE: a max/min over the integer order keys instead of the floats: integer max/min reductions
// vectorize without fast-math flags (a float "x > max" reduction does not), and the keys also
// catch NaN: a NaN with the sign bit clear has a key above key(+inf), one with the sign bit set
// a key below key(-inf).
template <logit_element T>
REDRAFT_HOST_DEVICE inline row_scan scan_row(const T* row, index_t vocab) {
  constexpr float inf = HUGE_VALF;
  std::uint32_t key_max = 0u, key_min = 0xFFFFFFFFu;
  for (index_t i = 0; i < vocab; ++i) {
    const float x = to_float(row[i]);
    std::uint32_t u = 0;
    std::memcpy(&u, &x, sizeof(u));
    const std::uint32_t sign = static_cast<std::uint32_t>(static_cast<std::int32_t>(u) >> 31);
    const std::uint32_t key = u ^ (sign | 0x80000000u);  // == order_key(x)
    key_max = key > key_max ? key : key_max;
    key_min = key < key_min ? key : key_min;
  }
  row_scan s;
  s.max = -inf;
  if (vocab == 0) return s;
  if (key_max >= order_key(inf) || key_min < order_key(-inf)) {
    for (index_t k = 0; k < vocab; ++k) {
      const float x = to_float(row[k]);
      if (x != x || x == inf) {
        s.bad_column = k;
        break;
      }
    }
    return s;
  }
  s.max = from_order_key(key_max);
  s.any_finite = s.max > -inf;
  return s;
}

// Weight functors for radix_select.
struct unit_weight {
  REDRAFT_HOST_DEVICE double operator()(float) const { return 1.0; }
};

// The radix-select core: with weights w(x) >= 0, returns the order key t of a row element with
//   sum_{key(x) > t} w(x) < target <= sum_{key(x) >= t} w(x).
// With unit weights and target k this is the k-th largest element; with probability masses and
// target p * total it is the smallest element kept by top-p. Four passes of 8-bit digits, a
// 256-bin histogram on the stack. If target exceeds the total weight (float rounding), the
// smallest element with positive weight is returned. Cost: 4 reads of the row.
template <logit_element T, class Weight>
REDRAFT_HOST_DEVICE std::uint32_t radix_select(const T* row, index_t vocab, Weight weight,
                                               double target) {
  std::uint32_t prefix = 0;
  double above = 0.0;  // weight of elements whose key is greater than every key with `prefix`
  for (int shift = 24; shift >= 0; shift -= 8) {
    double hist[256];
    for (int d = 0; d < 256; ++d) hist[d] = 0.0;
    const std::uint32_t high_mask = shift == 24 ? 0u : (0xFFFFFFFFu << (shift + 8));
    for (index_t i = 0; i < vocab; ++i) {
      const float x = to_float(row[i]);
      const std::uint32_t key = order_key(x);
      if ((key & high_mask) != prefix) continue;
      hist[(key >> shift) & 255u] += weight(x);
    }
    int chosen = -1, lowest_nonzero = -1;
    for (int d = 255; d >= 0; --d) {
      if (hist[d] > 0.0) lowest_nonzero = d;
      if (hist[d] > 0.0 && above + hist[d] >= target) {
        chosen = d;
        break;
      }
      above += hist[d];
    }
    if (chosen < 0) {
      // NOTE: target above the total weight (only through rounding): take the smallest bucket
      // with weight, i.e. keep everything that has weight.
      chosen = lowest_nonzero < 0 ? 0 : lowest_nonzero;
      above -= hist[chosen];
    }
    prefix |= static_cast<std::uint32_t>(chosen) << shift;
  }
  return prefix;
}

// The k-th largest value of the row (k >= 1; k >= vocab gives the minimum).
// Small k (<= 64) uses one pass with a sorted buffer on the stack; larger k uses radix_select.
template <logit_element T>
REDRAFT_HOST_DEVICE inline float kth_largest(const T* row, index_t vocab, std::int32_t k) {
  if (k >= vocab) {
    float m = to_float(row[0]);
    for (index_t i = 1; i < vocab; ++i) {
      const float x = to_float(row[i]);
      m = x < m ? x : m;
    }
    return m;
  }
  constexpr int small_k = 64;
  if (k <= small_k) {
    // best[0] is the smallest of the k largest seen so far (ascending order).
    float best[small_k];
    for (int j = 0; j < k; ++j) best[j] = to_float(row[j]);
    for (int j = 1; j < k; ++j) {  // insertion sort of the first k
      const float v = best[j];
      int p = j;
      while (p > 0 && best[p - 1] > v) {
        best[p] = best[p - 1];
        --p;
      }
      best[p] = v;
    }
    for (index_t i = k; i < vocab; ++i) {
      const float v = to_float(row[i]);
      if (!(v > best[0])) continue;
      int p = 0;
      while (p + 1 < k && best[p + 1] < v) {
        best[p] = best[p + 1];
        ++p;
      }
      best[p] = v;
    }
    return best[0];
  }
  return from_order_key(radix_select(row, vocab, unit_weight{}, static_cast<double>(k)));
}

// ---- The blocked summation order ----
//
// Every sum over a row that a sampling decision depends on (the normaliser, the top-p total, the
// residual total, the inverse-CDF running sum, the entropy) is taken in one fixed order, so that
// the CPU functors and the block-per-request CUDA kernels (cuda/block/sampling_walk.cuh), whose
// threads each own one chunk, add the same doubles in the same order and make bit-identical
// decisions:
//   the V columns are cut into sum_chunks contiguous chunks of chunk_size(V) = ceil(V / 256)
//   columns (the last ones shorter or empty); a chunk's sum is the sequential double sum over its
//   columns; the row's sum is the sequential fold of the 256 chunk sums, in chunk order.
// For V <= 256 every chunk holds at most one column and this is exactly the plain left-to-right
// sum. The inverse CDF uses the same partial sums: the running sum at column i of chunk j is
// P_j + S_j(i), P_j the fold of the chunk sums before j and S_j(i) the chunk's sum up to i.
inline constexpr int sum_chunks = 256;

REDRAFT_HOST_DEVICE inline index_t chunk_size(index_t vocab) {
  return (vocab + sum_chunks - 1) / sum_chunks;
}
REDRAFT_HOST_DEVICE inline index_t chunk_begin(index_t vocab, int chunk) {
  const index_t b = static_cast<index_t>(chunk) * chunk_size(vocab);
  return b < vocab ? b : vocab;
}
REDRAFT_HOST_DEVICE inline index_t chunk_end(index_t vocab, int chunk) {
  return chunk_begin(vocab, chunk + 1);  // chunk 255 ends at V: 256 * ceil(V / 256) >= V
}

// Sequential double sum of term(i) over chunk `chunk`'s columns. A term may provide
// sum_range(begin, end) computing the same sum faster (e.g. stepping over columns whose term is 0).
template <class Term>
REDRAFT_HOST_DEVICE double chunk_sum(const Term& term, index_t vocab, int chunk) {
  const index_t begin = chunk_begin(vocab, chunk), end = chunk_end(vocab, chunk);
  if constexpr (requires { term.sum_range(begin, end); }) {
    return term.sum_range(begin, end);
  } else {
    double s = 0.0;
    for (index_t i = begin; i < end; ++i) s += term(i);
    return s;
  }
}

// The fold of precomputed chunk sums [sum_chunks], in chunk order.
REDRAFT_HOST_DEVICE inline double fold_chunks(const double* chunk_sums) {
  double total = 0.0;
  for (int j = 0; j < sum_chunks; ++j) total += chunk_sums[j];
  return total;
}

// The row sum of term(i) in the blocked order.
template <class Term>
REDRAFT_HOST_DEVICE double blocked_sum(Term term, index_t vocab) {
  double total = 0.0;
  for (int j = 0; j < sum_chunks; ++j) total += chunk_sum(term, vocab, j);
  return total;
}

// Inverse CDF over chunk sums already computed (chunk_sums [sum_chunks], total their fold):
// the smallest column i with P_j + S_j(i) > target, where weight(i) >= 0; columns with weight 0
// are never returned. If no column crosses (target >= total: only when total == 0 or through the
// caller's rounding), the last column with positive weight; -1 if every weight is 0.
// Step 1 (which chunk) reads only chunk_sums; step 2 reads one chunk.
template <class Weight>
REDRAFT_HOST_DEVICE std::int32_t blocked_inverse_cdf(Weight weight, index_t vocab,
                                                     const double* chunk_sums, double target) {
  double prefix = 0.0;
  int chunk = -1, last_positive_chunk = -1;
  for (int j = 0; j < sum_chunks; ++j) {
    if (chunk_sums[j] > 0.0) last_positive_chunk = j;
    const double next = prefix + chunk_sums[j];
    if (next > target) {
      chunk = j;
      break;
    }
    prefix = next;
  }
  const bool crossed = chunk >= 0;
  if (!crossed) {
    if (last_positive_chunk < 0) return -1;
    chunk = last_positive_chunk;
    // NOTE: recompute the prefix of the chosen chunk: the loop above went past it.
    prefix = 0.0;
    for (int j = 0; j < chunk; ++j) prefix += chunk_sums[j];
  }
  double running = 0.0;
  std::int32_t last_positive = -1;
  const index_t end = chunk_end(vocab, chunk);
  for (index_t i = chunk_begin(vocab, chunk); i < end; ++i) {
    const double w = weight(i);
    if (w > 0.0) {
      running += w;
      last_positive = static_cast<std::int32_t>(i);
      if (crossed && prefix + running > target) return last_positive;
    }
  }
  return last_positive;
}

// The draw of sample_excluding from its chunk sums [sum_chunks]: writes the total (their fold)
// to *total and returns the column, or -1 when the total is 0.
template <class Weight>
REDRAFT_HOST_DEVICE std::int32_t draw_from_chunks(const Weight& weight, index_t vocab,
                                                  const double* chunk_sums, float u,
                                                  double* total) {
  *total = fold_chunks(chunk_sums);
  if (!(*total > 0.0)) return -1;
  // NOTE: the running sum at the last column is the same fold of the same chunk sums, so it
  // reaches exactly `total`, and u * total < total (u < 1): the draw always crosses.
  return blocked_inverse_cdf(weight, vocab, chunk_sums, static_cast<double>(u) * *total);
}

// exp((x - max) / T) for tokens at or above `threshold`, 0 below it.
struct kept_mass {
  float max;
  float inv_temperature;
  float threshold;
  REDRAFT_HOST_DEVICE double operator()(float x) const {
    return x >= threshold ? static_cast<double>(std::exp((x - max) * inv_temperature)) : 0.0;
  }
};

// The processed target distribution of one row, without materialising it:
//   p(x) = weight(x) / norm,  weight(x) = exp((x - max) / T) if x >= threshold else 0.
struct processed_row {
  float max = 0.0f;
  float inv_temperature = 1.0f;
  float threshold = 0.0f;  // smallest kept logit (top-k and top-p folded into one cut)
  double norm = 1.0;       // sum of weights over the row (>= 1: the max has weight 1)
  std::int64_t bad_column = -1;  // NaN / +inf column; -2 if the row has no finite logit

  REDRAFT_HOST_DEVICE bool ok() const { return bad_column == -1; }
  REDRAFT_HOST_DEVICE double weight(float x) const {
    return kept_mass{max, inv_temperature, threshold}(x);
  }
  REDRAFT_HOST_DEVICE double prob(float x) const { return weight(x) / norm; }
};

// Column i's weight under a processed row (a Term / Weight for the blocked sums).
template <logit_element T>
struct row_weight {
  const T* row;
  processed_row r;
  REDRAFT_HOST_DEVICE double operator()(index_t i) const { return r.weight(to_float(row[i])); }
};

// Column i's kept mass before the top-p cut (the top-p total's term).
template <logit_element T>
struct row_kept_mass {
  const T* row;
  kept_mass mass;
  REDRAFT_HOST_DEVICE double operator()(index_t i) const { return mass(to_float(row[i])); }
};

// Column i's weight with the sorted, distinct tokens excluded[0..m) set to 0 (binary search: m is
// a node's fan-out).
template <logit_element T>
struct residual_weight {
  const T* row;
  processed_row r;
  const std::int32_t* excluded;
  int m;
  // The first excluded entry >= i.
  REDRAFT_HOST_DEVICE int first_excluded_from(index_t i) const {
    int lo = 0, hi = m;
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (excluded[mid] < i) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }
  REDRAFT_HOST_DEVICE double operator()(index_t i) const {
    const int at = first_excluded_from(i);
    if (at < m && excluded[at] == i) return 0.0;
    return r.weight(to_float(row[i]));
  }
  // The sum over [begin, end) in column order, skipping the excluded columns (which would add 0):
  // the same double as adding operator()(i) for every column.
  REDRAFT_HOST_DEVICE double sum_range(index_t begin, index_t end) const {
    double s = 0.0;
    int at = first_excluded_from(begin);
    for (index_t i = begin; i < end; ++i) {
      if (at < m && excluded[at] == i) {
        ++at;
        continue;
      }
      s += r.weight(to_float(row[i]));
    }
    return s;
  }
};

// Steps of process_row, shared with the block kernels: after the scan, the cut (top-k, then
// top-p) and the constants; the norm is the blocked sum of row_weight. kth: the row's top_k-th
// largest value when the caller has it (a block computes it with a parallel radix select), else
// null.
template <logit_element T>
REDRAFT_HOST_DEVICE processed_row process_row_cut(const T* row, index_t vocab,
                                                  const sampling_params& params, const row_scan& s,
                                                  const float* kth = nullptr) {
  processed_row r;
  if (s.bad_column >= 0 || !s.any_finite) {
    r.bad_column = s.bad_column >= 0 ? s.bad_column : -2;
    return r;
  }
  r.max = s.max;
  r.inv_temperature = 1.0f / params.temperature;
  r.threshold = -HUGE_VALF;
  if (params.top_k > 0 && params.top_k < vocab) {
    r.threshold = kth != nullptr ? *kth : kth_largest(row, vocab, params.top_k);
  }
  if (params.top_p < 1.0f) {
    const kept_mass mass{r.max, r.inv_temperature, r.threshold};
    const double total = blocked_sum(row_kept_mass<T>{row, mass}, vocab);
    const float cut = from_order_key(
        radix_select(row, vocab, mass, static_cast<double>(params.top_p) * total));
    r.threshold = cut > r.threshold ? cut : r.threshold;
  }
  return r;
}

// Processes one row: scan (1 pass), top-k (1 pass for k <= 64, else 4), top-p (5 passes), norm
// (1 pass). Deterministic: the same row gives the same result on every backend.
template <logit_element T>
REDRAFT_HOST_DEVICE inline processed_row process_row(const T* row, index_t vocab,
                                                     const sampling_params& params) {
  processed_row r = process_row_cut(row, vocab, params, scan_row(row, vocab));
  if (!r.ok()) return r;
  r.norm = blocked_sum(row_weight<T>{row, r}, vocab);
  return r;
}

// Inverse-CDF draw from the processed row with the tokens `excluded[0..m)` (sorted ascending,
// distinct, in [0, vocab)) removed: returns the smallest index i whose blocked running sum
// exceeds u * sum(w), where w is the weight with excluded tokens set to 0, and writes the
// residual weight sum(w) to *residual. Returns -1 when sum(w) == 0. Two passes.
template <logit_element T>
REDRAFT_HOST_DEVICE inline std::int32_t sample_excluding(const T* row, index_t vocab,
                                                         const processed_row& r,
                                                         const std::int32_t* excluded, int m,
                                                         float u, double* residual) {
  const residual_weight<T> w{row, r, excluded, m};
  double chunk_sums[sum_chunks];
  for (int j = 0; j < sum_chunks; ++j) chunk_sums[j] = chunk_sum(w, vocab, j);
  return draw_from_chunks(w, vocab, chunk_sums, u, residual);
}

// argmax with ties to the lower index, and the NaN / +inf check of the same pass.
struct row_argmax_result {
  std::int32_t index = 0;
  std::int64_t bad_column = -1;  // NaN / +inf column; -2 if the row has no finite logit
};

// Two passes: the vectorized scan for the max (and the checks), then the first index holding it
// (stops early).
template <logit_element T>
REDRAFT_HOST_DEVICE inline row_argmax_result argmax_checked(const T* row, index_t vocab) {
  row_argmax_result r;
  const row_scan s = scan_row(row, vocab);
  if (s.bad_column >= 0 || !s.any_finite) {
    r.bad_column = s.bad_column >= 0 ? s.bad_column : -2;
    return r;
  }
  for (index_t i = 0; i < vocab; ++i) {
    if (to_float(row[i]) == s.max) {
      r.index = static_cast<std::int32_t>(i);
      break;
    }
  }
  return r;
}

}  // namespace row_ops

namespace detail {

template <logit_element T>
struct temperature_functor {
  matrix_view<T> logits;  // [rows, V]
  float inv_temperature;
  REDRAFT_HOST_DEVICE void operator()(index_t r) const {
    for (index_t i = 0; i < logits.extent(1); ++i) {
      logits(r, i) = from_float<T>(to_float(logits(r, i)) * inv_temperature);
    }
  }
};

template <logit_element T>
struct mask_below_functor {
  matrix_view<T> logits;  // [rows, V]
  std::int32_t k;         // top-k (0: off)
  float top_p;            // 1: off
  T mask_value;
  REDRAFT_HOST_DEVICE void operator()(index_t r) const {
    T* row = &logits(r, 0);
    const index_t vocab = logits.extent(1);
    sampling_params p;
    p.temperature = 1.0f;
    p.top_k = k;
    p.top_p = top_p;
    const row_ops::processed_row pr = row_ops::process_row(row, vocab, p);
    if (!pr.ok()) return;  // rows were validated on the host before the launch
    for (index_t i = 0; i < vocab; ++i) {
      if (to_float(row[i]) < pr.threshold) row[i] = mask_value;
    }
  }
};

struct exp_functor {
  matrix_view<float> values;  // [rows, V]
  REDRAFT_HOST_DEVICE void operator()(index_t i) const { values[i] = std::exp(values[i]); }
};

// log_softmax of half / bfloat16 rows into float, one row per call, with the CPU backend's
// arithmetic (max, then the normaliser sum exp(x - max) in double, then x - max - log(sum)).
template <logit_element T>
struct log_softmax_functor {
  matrix_view<const T> x;  // [rows, V]
  matrix_view<float> y;    // [rows, V]
  REDRAFT_HOST_DEVICE void operator()(index_t r) const {
    const index_t cols = x.extent(1);
    if (cols == 0) return;
    float max = to_float(x(r, 0));
    for (index_t c = 1; c < cols; ++c) {
      const float v = to_float(x(r, c));
      max = v > max ? v : max;
    }
    double sum = 0.0;
    for (index_t c = 0; c < cols; ++c) {
      sum += std::exp(static_cast<double>(to_float(x(r, c)) - max));
    }
    const float log_sum = static_cast<float>(std::log(sum));
    for (index_t c = 0; c < cols; ++c) y(r, c) = (to_float(x(r, c)) - max) - log_sum;
  }
};

template <class B, logit_element T>
void check_rows_finite(const B& backend, const char* fn, matrix_view<const T> logits) {
  // NOTE: a host copy: the matrix ops are convenience ops for callers that materialise
  // processed logits; the verifiers never call them and check only the rows they read.
  std::vector<T> host(static_cast<std::size_t>(logits.size()));
  backend.copy_to_host(logits.data(), logits.size(), host.data());
  const index_t vocab = logits.extent(1);
  for (index_t r = 0; r < logits.extent(0); ++r) {
    const row_ops::row_scan s = row_ops::scan_row(host.data() + r * vocab, vocab);
    REDRAFT_REQUIRE(s.bad_column < 0, fn, ": logits[", r, ", ", s.bad_column, "] is ",
                    s.bad_column < 0
                        ? 0.0f
                        : to_float(host[static_cast<std::size_t>(r * vocab + s.bad_column)]),
                    " (NaN and +inf are not valid logits)");
    REDRAFT_REQUIRE(s.any_finite || vocab == 0, fn, ": logits row ", r,
                    " has no finite value");
  }
}

}  // namespace detail

// The matrix ops below take logits [rows, V] of float, half or bfloat16 (core/half.hpp); the
// in-place ops round their float results back to the element type (to nearest, ties to even),
// and the float results are those of float logits holding the same values.

// apply_temperature(backend, logits [rows, V], T): logits /= T in place (as logits * (1 / T)).
// T > 0. Complexity O(rows * V); deterministic.
template <Backend B, logit_element T = float>  // the default serves braced {data, rows, V}
void apply_temperature(const B& backend, matrix_view<T> logits, float temperature) {
  REDRAFT_REQUIRE(detail::temperature_is_usable(temperature), "apply_temperature: temperature ",
                  temperature, " must be finite and > 0 with a finite 1 / T");
  backend.for_each_index(logits.extent(0),
                         detail::temperature_functor<T>{logits, 1.0f / temperature});
}

// apply_top_k(backend, logits [rows, V], k, mask_value = -inf): in place, every logit strictly
// below the row's k-th largest becomes mask_value (ties at the k-th value survive). k >= 1;
// k >= V is a no-op. Throws on NaN / +inf logits. O(rows * V) for k <= 64, else 4x that.
template <Backend B, logit_element T = float>  // the default serves braced {data, rows, V}
void apply_top_k(const B& backend, matrix_view<T> logits, std::int32_t k,
                 float mask_value = -HUGE_VALF) {
  REDRAFT_REQUIRE(k >= 1, "apply_top_k: k ", k, " must be at least 1");
  detail::check_rows_finite(backend, "apply_top_k", matrix_view<const T>(logits));
  backend.for_each_index(logits.extent(0),
                         detail::mask_below_functor<T>{logits, k, 1.0f, from_float<T>(mask_value)});
}

// warp_top_k(backend, logits [rows, V], k = 50, mask_value = -50000): ReDrafter's warp, used on
// the draft head's and (in verify_redrafter) the target's logits. Same as apply_top_k (in half,
// -50000 rounds to -49984).
template <Backend B, logit_element T = float>  // the default serves braced {data, rows, V}
void warp_top_k(const B& backend, matrix_view<T> logits, std::int32_t k = 50,
                float mask_value = -50000.0f) {
  REDRAFT_REQUIRE(k >= 1, "warp_top_k: k ", k, " must be at least 1");
  detail::check_rows_finite(backend, "warp_top_k", matrix_view<const T>(logits));
  backend.for_each_index(logits.extent(0),
                         detail::mask_below_functor<T>{logits, k, 1.0f, from_float<T>(mask_value)});
}

// apply_top_p(backend, logits [rows, V], p, mask_value = -inf): in place, masks every token
// outside the smallest set of most probable tokens (under softmax(logits)) whose mass reaches p;
// apply the temperature first. p in (0, 1]; p = 1 is a no-op. O(rows * V * 6).
template <Backend B, logit_element T = float>  // the default serves braced {data, rows, V}
void apply_top_p(const B& backend, matrix_view<T> logits, float p, float mask_value = -HUGE_VALF) {
  REDRAFT_REQUIRE(p > 0.0f && p <= 1.0f, "apply_top_p: p ", p, " must be in (0, 1]");
  detail::check_rows_finite(backend, "apply_top_p", matrix_view<const T>(logits));
  if (p == 1.0f) return;
  backend.for_each_index(logits.extent(0),
                         detail::mask_below_functor<T>{logits, 0, p, from_float<T>(mask_value)});
}

// to_log_probs(backend, logits [rows, V], out [rows, V] float): rowwise log_softmax. Float
// logits go through the backend's log_softmax (out may alias them); half / bfloat16 logits
// through one functor per row with the CPU backend's arithmetic.
template <Backend B, class T = const float>  // the default serves braced {data, rows, V}
requires logit_element<std::remove_const_t<T>>
void to_log_probs(const B& backend, matrix_view<T> logits, matrix_view<float> out) {
  using E = std::remove_const_t<T>;
  REDRAFT_REQUIRE(logits.extent(0) == out.extent(0) && logits.extent(1) == out.extent(1),
                  "to_log_probs: logits is [", logits.extent(0), ", ", logits.extent(1),
                  "] but out is [", out.extent(0), ", ", out.extent(1), "]");
  if constexpr (std::is_same_v<E, float>) {
    backend.log_softmax(matrix_view<const float>(logits), out);
  } else {
    backend.for_each_index(logits.extent(0),
                           detail::log_softmax_functor<E>{matrix_view<const E>(logits), out});
  }
}

// to_probs(backend, logits [rows, V], out [rows, V] float): rowwise softmax (out may alias
// float logits).
template <Backend B, class T = const float>  // the default serves braced {data, rows, V}
requires logit_element<std::remove_const_t<T>>
void to_probs(const B& backend, matrix_view<T> logits, matrix_view<float> out) {
  to_log_probs(backend, logits, out);
  backend.for_each_index(out.size(), detail::exp_functor{out});
}

}  // namespace redraft
