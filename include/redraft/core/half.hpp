// redraft/core/half.hpp: 16-bit floating-point element types for logits, usable on the host and
// in CUDA kernels.
//
//   redraft::half       IEEE 754 binary16 (1 sign, 5 exponent, 10 mantissa bits)
//   redraft::bfloat16   bfloat16 (1 sign, 8 exponent, 7 mantissa bits: the top half of a float)
//
// Both are two bytes, two-byte aligned and trivially copyable with the bits in one uint16_t, so a
// device pointer to CUDA's __half / __nv_bfloat16 may be reinterpreted as a pointer to them
// (cuda/half_interop.cuh asserts the layouts and provides the casts). They carry no arithmetic:
// code reads an element with to_float (exact: every half and bfloat16 value, NaN and infinities
// included, is a float) and computes in float, so a verifier makes the same decisions on half or
// bfloat16 logits as on float logits holding the same values.
//
// from_float rounds to nearest, ties to even (NaN stays NaN, overflow becomes infinity), the
// rounding of __float2half_rn / __float2bfloat16_rn.
// The same types hold F16 / BF16 weights (the draft head's and the reference target's products
// read them directly and accumulate in float): see the weights section at the end.
// NOTE: CUDA's headers (also pulled in by the CCCL headers of the Thrust backends) declare a
// global `half`; code that sees both writes redraft::half.
#pragma once

#include <concepts>
#include <cstdint>
#include <cstring>

#include "redraft/core/macros.hpp"

namespace redraft {

struct half {
  std::uint16_t bits;

  half() = default;
  REDRAFT_HOST_DEVICE explicit half(float x);
  REDRAFT_HOST_DEVICE static constexpr half from_bits(std::uint16_t b) {
    half h{};
    h.bits = b;
    return h;
  }
  REDRAFT_HOST_DEVICE explicit operator float() const;
};

struct bfloat16 {
  std::uint16_t bits;

  bfloat16() = default;
  REDRAFT_HOST_DEVICE explicit bfloat16(float x);
  REDRAFT_HOST_DEVICE static constexpr bfloat16 from_bits(std::uint16_t b) {
    bfloat16 h{};
    h.bits = b;
    return h;
  }
  REDRAFT_HOST_DEVICE explicit operator float() const;
};

static_assert(sizeof(half) == 2 && alignof(half) == 2, "half must be two bytes, 2-aligned");
static_assert(sizeof(bfloat16) == 2 && alignof(bfloat16) == 2,
              "bfloat16 must be two bytes, 2-aligned");

// The element types a logits row may have.
template <class T>
concept logit_element =
    std::same_as<T, float> || std::same_as<T, half> || std::same_as<T, bfloat16>;

namespace detail {

REDRAFT_HOST_DEVICE inline std::uint32_t float_bits(float x) {
  std::uint32_t u = 0;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

REDRAFT_HOST_DEVICE inline float bits_float(std::uint32_t u) {
  float x = 0.0f;
  std::memcpy(&x, &u, sizeof(x));
  return x;
}

}  // namespace detail

// ---- to_float: exact ----

REDRAFT_HOST_DEVICE inline float to_float(float x) { return x; }

REDRAFT_HOST_DEVICE inline float to_float(half h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h.bits & 0x8000u) << 16;
  const std::uint32_t exponent = (h.bits >> 10) & 0x1Fu;
  const std::uint32_t mantissa = h.bits & 0x3FFu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float (at most 10 significant bits).
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return detail::bits_float(detail::float_bits(magnitude) | sign);
  }
  if (exponent == 31) {  // infinity or NaN (the payload moves to the top of float's mantissa)
    return detail::bits_float(sign | 0x7F800000u | (mantissa << 13));
  }
  return detail::bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

REDRAFT_HOST_DEVICE inline float to_float(bfloat16 h) {
  return detail::bits_float(static_cast<std::uint32_t>(h.bits) << 16);
}

// ---- from_float: round to nearest, ties to even ----

template <logit_element T>
REDRAFT_HOST_DEVICE inline T from_float(float x);

template <>
REDRAFT_HOST_DEVICE inline float from_float<float>(float x) {
  return x;
}

template <>
REDRAFT_HOST_DEVICE inline half from_float<half>(float x) {
  std::uint32_t u = detail::float_bits(x);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7FFFFFFFu;
  std::uint16_t out = 0;
  if (u >= 0x47800000u) {  // |x| >= 2^16 (or inf / NaN): infinity, NaN stays a quiet NaN
    out = u > 0x7F800000u ? 0x7E00u : 0x7C00u;
  } else if (u < 0x38800000u) {
    // Below 2^-14 (half's smallest normal): adding 0.5 (exponent chosen so the half subnormal's
    // last bit is float's last bit) lets the float adder do the round-to-nearest-even.
    constexpr std::uint32_t magic = (127u - 15u + 23u - 10u + 1u) << 23;
    const float sum = detail::bits_float(u) + detail::bits_float(magic);
    out = static_cast<std::uint16_t>(detail::float_bits(sum) - magic);
  } else {
    const std::uint32_t odd = (u >> 13) & 1u;
    u += (static_cast<std::uint32_t>(15 - 127) << 23) + 0xFFFu + odd;  // rebias and round
    out = static_cast<std::uint16_t>(u >> 13);  // a carry into the exponent gives inf correctly
  }
  return half::from_bits(static_cast<std::uint16_t>(out | sign));
}

template <>
REDRAFT_HOST_DEVICE inline bfloat16 from_float<bfloat16>(float x) {
  const std::uint32_t u = detail::float_bits(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) {  // NaN: keep the sign, make it quiet
    return bfloat16::from_bits(static_cast<std::uint16_t>((u >> 16) | 0x40u));
  }
  const std::uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);
  return bfloat16::from_bits(static_cast<std::uint16_t>(rounded >> 16));
}

REDRAFT_HOST_DEVICE inline half::half(float x) : bits(from_float<half>(x).bits) {}
REDRAFT_HOST_DEVICE inline half::operator float() const { return to_float(*this); }
REDRAFT_HOST_DEVICE inline bfloat16::bfloat16(float x) : bits(from_float<bfloat16>(x).bits) {}
REDRAFT_HOST_DEVICE inline bfloat16::operator float() const { return to_float(*this); }

// The short name of an element type, for messages and test names.
template <logit_element T>
constexpr const char* element_name() {
  if constexpr (std::same_as<T, float>) {
    return "float";
  } else if constexpr (std::same_as<T, half>) {
    return "half";
  } else {
    return "bfloat16";
  }
}

// ---- weights: the draft head's and the reference target's storage types ----
// Checkpoints (safetensors) name IEEE half "F16"; weight code calls it float16.
using float16 = half;

// Rounding conversions from float (to nearest, ties to even), by name.
inline half to_float16(float f) { return from_float<half>(f); }
inline bfloat16 to_bfloat16(float f) { return from_float<bfloat16>(f); }

namespace detail {
// The same conversions on raw 16-bit patterns (the safetensors reader and writer).
inline float f16_to_float(std::uint16_t bits) { return to_float(half::from_bits(bits)); }
inline float bf16_to_float(std::uint16_t bits) { return to_float(bfloat16::from_bits(bits)); }
inline std::uint16_t float_to_f16(float value) { return from_float<half>(value).bits; }
inline std::uint16_t float_to_bf16(float value) { return from_float<bfloat16>(value).bits; }
}  // namespace detail

// How a model keeps its weight matrices in memory: float, float16 or bfloat16 (the element
// types of checkpoints). Products always accumulate in float.
enum class weight_format { f32, f16, bf16 };

inline const char* weight_format_name(weight_format f) {
  return f == weight_format::f32 ? "F32" : f == weight_format::f16 ? "F16" : "BF16";
}

// The weight storage types the CPU product reads: float, float16, bfloat16 (the logit types).
template <class T>
concept weight_element = logit_element<T>;

}  // namespace redraft
