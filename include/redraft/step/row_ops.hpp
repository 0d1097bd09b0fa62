// redraft/step/row_ops.hpp: the row helpers every verifier step is made of, written once for
// the generic functors (one thread per request or row) and the fused block kernels (cuda/block/).
//
// REDRAFT_HOST_DEVICE functions over one row `const T* row` of V logits, T one of float, half,
// bfloat16 (core/half.hpp). Every element is read through the exact to_float and all arithmetic
// is in float / double, so half or bfloat16 logits give the same decisions as float logits
// holding the same values, with no conversion pass over the matrix. The verifiers call them inside
// their per-request steps so that only the rows on the walked path are ever read, and nothing is
// materialised. The matrix ops of verify/logits_processing.hpp are built from the same helpers.
//
// Order of floats, one rule everywhere: order_key maps a float to a uint32 whose integer order is
// the float order, with -0 and +0 mapped to the same key (they compare equal as floats). So every
// max, argmax, top-k and radix select here and in the block kernels treats the two zeros as a tie,
// and ties go to the lower column. Semantics of the processing (temperature, top-k, top-p) and of
// non-finite logits: verify/logits_processing.hpp. Device code: HUGE_VALF (not
// std::numeric_limits, a host constexpr function under nvcc) for infinity.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

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

namespace row_ops {

// Order-preserving map of a float to uint32: for floats a, b (no NaN), a < b iff key(a) < key(b)
// and a == b iff key(a) == key(b); in particular -0 gets +0's key. A NaN with the sign bit clear
// has a key above key(+inf), one with the sign bit set a key below key(-inf).
// Branch-free (the sign is spread with an arithmetic shift), so loops over it vectorize.
REDRAFT_HOST_DEVICE inline std::uint32_t order_key(float x) {
  std::uint32_t u = 0;
  std::memcpy(&u, &x, sizeof(u));
  u = u == 0x80000000u ? 0u : u;  // -0 -> +0
  const std::uint32_t sign = static_cast<std::uint32_t>(static_cast<std::int32_t>(u) >> 31);
  return u ^ (sign | 0x80000000u);  // negative: ~u; positive: u with the top bit set
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
    const std::uint32_t key = order_key(to_float(row[i]));
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

// ---- Radix select over order keys: 8-bit digits, most significant first ----
//
// The two pieces shared by the sequential radix_select below and the block top-k
// (cuda/block/top_k.hpp): which histogram bin an element falls in, and which digit to fix.

// The digit of `key` at `shift` (24, 16, 8, 0) when its higher digits equal `prefix`'s, else -1.
REDRAFT_HOST_DEVICE inline int radix_digit(std::uint32_t key, std::uint32_t prefix, int shift) {
  const std::uint32_t high_mask = shift == 24 ? 0u : (0xFFFFFFFFu << (shift + 8));
  return (key & high_mask) == prefix ? static_cast<int>((key >> shift) & 255u) : -1;
}

// Descending from digit 255 over a 256-bin histogram, the first digit d with a non-empty bin and
// above + hist[d] >= target, where `above` (in: the weight above this prefix) accumulates the
// bins above d. -1 if no digit reaches the target (then `above` holds the whole total).
template <class Count, class Acc>
REDRAFT_HOST_DEVICE int descend_digits(const Count* hist, Acc target, Acc& above) {
  for (int d = 255; d >= 0; --d) {
    if (hist[d] > 0 && above + hist[d] >= target) return d;
    above += hist[d];
  }
  return -1;
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
    for (index_t i = 0; i < vocab; ++i) {
      const float x = to_float(row[i]);
      const int digit = radix_digit(order_key(x), prefix, shift);
      if (digit >= 0) hist[digit] += weight(x);
    }
    int chosen = descend_digits(hist, target, above);
    if (chosen < 0) {
      // NOTE: target above the total weight (only through rounding): take the smallest bucket
      // with weight, i.e. keep everything that has weight.
      chosen = 0;
      while (chosen < 255 && !(hist[chosen] > 0.0)) ++chosen;
      if (!(hist[chosen] > 0.0)) chosen = 0;
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
// the CPU functors and the block-per-request CUDA kernels (cuda/block/sampling_walk.hpp), whose
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
  float threshold = 0.0f;        // smallest kept logit (top-k and top-p folded into one cut)
  double norm = 1.0;             // sum of weights over the row (>= 1: the max has weight 1)
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
    const float cut =
        from_order_key(radix_select(row, vocab, mass, static_cast<double>(params.top_p) * total));
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

// ---- The checked argmax ----
//
// argmax with ties to the lower column (-0 ties with +0), and the NaN / +inf check of the same
// pass. Result: the column, or the row's problem as bad_column (the lowest NaN / +inf column;
// -2 if no value is finite, i.e. every value is -inf; -1 when the row is usable).
struct row_argmax_result {
  std::int32_t index = 0;
  std::int64_t bad_column = -1;
};

// A partial argmax over some of a row's columns, combined associatively and commutatively (so a
// block may reduce its threads' partials in any order and get the same result).
struct argmax_partial {
  std::uint32_t key;        // the largest order key among usable columns; 0 when none
  std::int32_t index;       // its lowest column; INT32_MAX when none
  std::int64_t bad_column;  // the lowest NaN / +inf column; INT64_MAX when none
};

REDRAFT_HOST_DEVICE inline argmax_partial no_argmax() {
  return argmax_partial{0u, 0x7FFFFFFF, 0x7FFFFFFFFFFFFFFF};
}

// Whether a key is a usable logit: not NaN, not +inf (-inf is usable: probability zero).
REDRAFT_HOST_DEVICE inline bool usable_key(std::uint32_t key) {
  return key < order_key(HUGE_VALF) && key >= order_key(-HUGE_VALF);
}

REDRAFT_HOST_DEVICE inline argmax_partial argmax_add(argmax_partial p, float x, index_t column) {
  const std::uint32_t key = order_key(x);
  if (!usable_key(key)) {
    if (column < p.bad_column) p.bad_column = column;
  } else if (key > p.key || (key == p.key && column < p.index)) {
    p.key = key;
    p.index = static_cast<std::int32_t>(column);
  }
  return p;
}

struct argmax_combine {
  REDRAFT_HOST_DEVICE argmax_partial operator()(const argmax_partial& a,
                                                const argmax_partial& b) const {
    const bool a_wins = a.key > b.key || (a.key == b.key && a.index < b.index);
    return argmax_partial{a_wins ? a.key : b.key, a_wins ? a.index : b.index,
                          a.bad_column < b.bad_column ? a.bad_column : b.bad_column};
  }
};

REDRAFT_HOST_DEVICE inline row_argmax_result finish_argmax(const argmax_partial& p) {
  row_argmax_result r;
  if (p.bad_column != 0x7FFFFFFFFFFFFFFF) {
    r.bad_column = p.bad_column;
  } else if (p.key <= order_key(-HUGE_VALF)) {
    r.bad_column = -2;
  } else {
    r.index = p.index;
  }
  return r;
}

// The partial of thread `tid` of a block of `threads`: columns tid, tid + threads, ... (coalesced
// on a GPU). Combined over the block with argmax_combine and finished with finish_argmax, it is
// argmax_checked's result.
// NOTE: four partials over columns c, c + threads, c + 2 threads, c + 3 threads, their four loads
// issued before any compare, so a GPU thread can keep four reads in flight (not yet measured on
// a GPU). On an H200 one block of 256 threads read a 128k-column row at about 11 GB/s with one
// partial, a third of an SM's share of the chip's bandwidth (docs/cuda.md). argmax_combine is
// associative and commutative, so the grouping does not change the result.
template <logit_element T>
REDRAFT_HOST_DEVICE inline argmax_partial thread_argmax(const T* row, index_t vocab, int tid,
                                                        int threads) {
  argmax_partial p0 = no_argmax(), p1 = p0, p2 = p0, p3 = p0;
  const index_t stride = threads;
  index_t c = tid;
  for (; c + 3 * stride < vocab; c += 4 * stride) {
    const float x0 = to_float(row[c]), x1 = to_float(row[c + stride]);
    const float x2 = to_float(row[c + 2 * stride]), x3 = to_float(row[c + 3 * stride]);
    p0 = argmax_add(p0, x0, c);
    p1 = argmax_add(p1, x1, c + stride);
    p2 = argmax_add(p2, x2, c + 2 * stride);
    p3 = argmax_add(p3, x3, c + 3 * stride);
  }
  for (; c < vocab; c += stride) p0 = argmax_add(p0, to_float(row[c]), c);
  const argmax_combine combine;
  return combine(combine(p0, p1), combine(p2, p3));
}

// The raw bits of a float as uint32.
REDRAFT_HOST_DEVICE inline std::uint32_t float_bits(float x) {
  std::uint32_t u = 0;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

// One read of the row from memory: tiles of argmax_tile columns, each reduced with three integer
// reductions over the raw bits (which vectorize without fast-math and cost less than order keys):
//   signed max smax: the largest non-negative float's bits if the tile has one (+inf and NaN
//     with the sign bit clear are above 0x7F800000);
//   signed min smin: otherwise the largest negative float (-0 is INT32_MIN, and a larger
//     magnitude is a larger signed value);
//   unsigned max: above 0xFF800000 (-inf) iff the tile holds a NaN with the sign bit set.
// Only the first tile holding the row's max (or the first that holds a NaN / +inf) is read again,
// to find the column. The same result as finish_argmax over thread_argmax partials, for any
// thread count.
// NOTE: the tile is a trade: each tile ends with three horizontal reductions and a branch (at 512
// columns these cost about as much as the tile's loads), and the winning tile is read a second
// time, so a tile stays small next to the row (8 KB of float) and that read (find_bits) is
// vectorized as well.
inline constexpr index_t argmax_tile = 2048;

// The three bit reductions of one tile (see above).
struct tile_bits {
  std::int32_t smax = -0x7FFFFFFF - 1;
  std::int32_t smin = 0x7FFFFFFF;
  std::uint32_t umax = 0u;
};

template <logit_element T>
REDRAFT_HOST_DEVICE inline void scan_tile_bits(const T* p, index_t n, tile_bits& t) {
  for (index_t i = 0; i < n; ++i) {
    const std::uint32_t u = float_bits(to_float(p[i]));
    const std::int32_t s = static_cast<std::int32_t>(u);
    t.smax = s > t.smax ? s : t.smax;
    t.smin = s < t.smin ? s : t.smin;
    t.umax = u > t.umax ? u : t.umax;
  }
}

// The lowest i in [0, n) whose element's bits are a or b; n if none.
template <logit_element T>
REDRAFT_HOST_DEVICE inline index_t find_bits(const T* p, index_t n, std::uint32_t a,
                                             std::uint32_t b) {
  for (index_t i = 0; i < n; ++i) {
    const std::uint32_t u = float_bits(to_float(p[i]));
    if (u == a || u == b) return i;
  }
  return n;
}

#if defined(__GNUC__) && !defined(__CUDACC__)
// Host compilers with GCC vector extensions (GCC, Clang): float rows go 64 bytes at a time,
// whatever vector width the compiler would pick for a plain loop (GCC picks 256 bits on
// AVX-512 machines), with two independent sets of accumulators. The same results as the plain
// loops above (integer max / min are exact in any order).
// NOTE: the vectors live only inside these functions (never passed by value), so the code is the
// same ABI under any -march; without 512-bit registers the compiler splits each vector op.
namespace vector_bits {
using i32x16 = std::int32_t __attribute__((vector_size(64)));
using u32x16 = std::uint32_t __attribute__((vector_size(64)));
}  // namespace vector_bits

inline void scan_tile_bits(const float* p, index_t n, tile_bits& t) {
  using vector_bits::i32x16;
  using vector_bits::u32x16;
  constexpr index_t lanes = 16;
  index_t i = 0;
  if (n >= 2 * lanes) {
    i32x16 smax0 = t.smax - i32x16{}, smax1 = smax0;  // broadcasts
    i32x16 smin0 = t.smin - i32x16{}, smin1 = smin0;
    u32x16 umax0 = t.umax - u32x16{}, umax1 = umax0;
    for (; i + 2 * lanes <= n; i += 2 * lanes) {
      __builtin_prefetch(p + i + 512);
      i32x16 s0, s1;
      std::memcpy(&s0, p + i, sizeof(s0));
      std::memcpy(&s1, p + i + lanes, sizeof(s1));
      const u32x16 u0 = reinterpret_cast<u32x16>(s0), u1 = reinterpret_cast<u32x16>(s1);
      smax0 = s0 > smax0 ? s0 : smax0;
      smax1 = s1 > smax1 ? s1 : smax1;
      smin0 = s0 < smin0 ? s0 : smin0;
      smin1 = s1 < smin1 ? s1 : smin1;
      umax0 = u0 > umax0 ? u0 : umax0;
      umax1 = u1 > umax1 ? u1 : umax1;
    }
    smax0 = smax1 > smax0 ? smax1 : smax0;
    smin0 = smin1 < smin0 ? smin1 : smin0;
    umax0 = umax1 > umax0 ? umax1 : umax0;
    for (index_t l = 0; l < lanes; ++l) {
      t.smax = smax0[l] > t.smax ? smax0[l] : t.smax;
      t.smin = smin0[l] < t.smin ? smin0[l] : t.smin;
      t.umax = umax0[l] > t.umax ? umax0[l] : t.umax;
    }
  }
  scan_tile_bits<float>(p + i, n - i, t);
}

inline index_t find_bits(const float* p, index_t n, std::uint32_t a, std::uint32_t b) {
  using vector_bits::u32x16;
  constexpr index_t lanes = 16, step = 4 * lanes;
  index_t i = 0;
  for (; i + step <= n; i += step) {
    u32x16 u0, u1, u2, u3;  // separate loads: an array would go through the stack
    std::memcpy(&u0, p + i, sizeof(u0));
    std::memcpy(&u1, p + i + lanes, sizeof(u1));
    std::memcpy(&u2, p + i + 2 * lanes, sizeof(u2));
    std::memcpy(&u3, p + i + 3 * lanes, sizeof(u3));
    const u32x16 hit = (u0 == a) | (u0 == b) | (u1 == a) | (u1 == b) | (u2 == a) | (u2 == b) |
                       (u3 == a) | (u3 == b);  // all ones where equal
    std::uint64_t words[8];
    std::memcpy(words, &hit, sizeof(words));
    if ((words[0] | words[1] | words[2] | words[3] | words[4] | words[5] | words[6] | words[7]) !=
        0)
      break;
  }
  return i + find_bits<float>(p + i, n - i, a, b);
}
#endif

template <logit_element T>
REDRAFT_HOST_DEVICE inline row_argmax_result argmax_checked(const T* row, index_t vocab) {
  argmax_partial best = no_argmax();
  index_t best_tile = -1;  // the first tile holding best.key
  std::uint32_t best_bits = 0u;
  for (index_t begin = 0; begin < vocab; begin += argmax_tile) {
    const index_t end = begin + argmax_tile < vocab ? begin + argmax_tile : vocab;
    tile_bits t;
    scan_tile_bits(row + begin, end - begin, t);
    if (t.smax >= 0x7F800000 || t.umax > 0xFF800000u) {
      // The first tile with a NaN / +inf: earlier tiles had none, so its lowest bad column is the
      // row's.
      for (index_t i = begin; i < end; ++i) best = argmax_add(best, to_float(row[i]), i);
      return finish_argmax(best);
    }
    float tile_max = 0.0f;
    const std::uint32_t max_bits = static_cast<std::uint32_t>(t.smax >= 0 ? t.smax : t.smin);
    std::memcpy(&tile_max, &max_bits, sizeof(tile_max));
    const std::uint32_t key = order_key(tile_max);
    if (key > best.key) {
      best.key = key;
      best_tile = begin;
      best_bits = max_bits;
    }
  }
  if (best_tile >= 0) {
    // Only the winning tile is read again, for its lowest column holding the max; -0 and +0 share
    // a key, so a zero max matches either bit pattern.
    const index_t end = best_tile + argmax_tile < vocab ? best_tile + argmax_tile : vocab;
    const bool zero = (best_bits & 0x7FFFFFFFu) == 0u;
    best.index = static_cast<std::int32_t>(best_tile + find_bits(row + best_tile, end - best_tile,
                                                                 zero ? 0u : best_bits,
                                                                 zero ? 0x80000000u : best_bits));
  }
  return finish_argmax(best);
}

}  // namespace row_ops

}  // namespace redraft
