// redraft/verify/logits_processing.hpp: turning the target's logits into the distribution a
// sampling verifier compares against.
//
// Two layers:
//  * row helpers (namespace redraft::row_ops, step/row_ops.hpp), REDRAFT_HOST_DEVICE functions
//    over one row of V logits (float, half or bfloat16), shared by the verifiers' steps and the
//    fused block kernels, so that only the rows on the walked path are ever read;
//  * composable matrix ops over logits [rows, V] in backend memory (this file), generic over
//    Backend, for callers who want the processed logits themselves: apply_temperature,
//    apply_top_k, warp_top_k (ReDrafter's warp), apply_top_p, to_log_probs, to_probs. Each is one
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
// Order: -0 and +0 are equal (one order key, step/row_ops.hpp), so they tie, and every tie
// (argmax, top-k, the k-th largest) goes to the lower column.
// Non-finite logits: NaN and +inf are errors; -inf means "probability zero" (engines use it for
// masked vocabulary entries), but a row needs at least one finite logit.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/view.hpp"
#include "redraft/step/row_ops.hpp"

namespace redraft {

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
    REDRAFT_REQUIRE(s.any_finite || vocab == 0, fn, ": logits row ", r, " has no finite value");
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
