// redraft/core/half.hpp: 16-bit floating-point storage types and their exact conversions.
//
// float16 (IEEE binary16) and bfloat16 hold weights as checkpoints store them, at half the bytes
// of float; arithmetic always happens in float (a conversion to float is exact for both types).
// They are plain 16-bit patterns with no arithmetic operators, so nothing computes in half
// precision by accident.
#pragma once

#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>

namespace redraft {

// IEEE 754 binary16: 1 sign, 5 exponent, 10 mantissa bits.
struct float16 {
  std::uint16_t bits = 0;
};

// bfloat16: the top 16 bits of a float (1 sign, 8 exponent, 7 mantissa bits).
struct bfloat16 {
  std::uint16_t bits = 0;
};

static_assert(sizeof(float16) == 2 && sizeof(bfloat16) == 2, "16-bit storage types");

namespace detail {

// IEEE binary16 -> float: exact for every value, subnormals, infinities and NaN included.
inline float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  const std::uint32_t mantissa = h & 0x3ffu;
  std::uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;  // +-0
    } else {
      // NOTE: a subnormal half is mantissa * 2^-24, exactly representable as a float.
      const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
      return sign ? -magnitude : magnitude;
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf or NaN (payload kept)
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(bits);
}

// float -> IEEE binary16, round to nearest, ties to even; overflow gives infinity, NaN stays NaN.
inline std::uint16_t float_to_f16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits >= 0x7f800000u) {  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7c00u | (abs_bits > 0x7f800000u ? 0x200u : 0u));
  }
  const int exponent = static_cast<int>(abs_bits >> 23) - 127;
  if (exponent > 15) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow
  std::uint32_t mantissa = (abs_bits & 0x7fffffu) | 0x800000u;           // with the implicit bit
  int shift;                                                             // bits dropped from 24
  std::uint32_t half_exponent;
  if (exponent >= -14) {
    shift = 13;
    half_exponent = static_cast<std::uint32_t>(exponent + 15);
  } else {
    shift = 13 + (-14 - exponent);  // subnormal half
    half_exponent = 0;
    if (shift > 24) return sign;  // rounds to zero (below half the smallest subnormal)
    if (abs_bits == 0) return sign;
  }
  const std::uint32_t kept = mantissa >> shift;
  const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1);
  std::uint32_t rounded = kept;
  if (rest > halfway || (rest == halfway && (kept & 1u))) ++rounded;
  std::uint32_t result;
  if (half_exponent == 0) {
    result = rounded;  // may carry into the exponent field: the smallest normal, correctly
  } else {
    // kept includes the implicit bit at position 10; a carry to bit 11 bumps the exponent.
    result = (half_exponent << 10) + (rounded - 0x400u);
  }
  if (result >= 0x7c00u) result = 0x7c00u;  // rounded up to infinity
  return static_cast<std::uint16_t>(sign | result);
}

// bfloat16 -> float: exact (bfloat16 is the top half of a float).
inline float bf16_to_float(std::uint16_t h) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

// float -> bfloat16, round to nearest, ties to even; NaN stays a quiet NaN.
inline std::uint16_t float_to_bf16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  }
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

}  // namespace detail

// Exact conversions to float.
inline float to_float(float16 h) { return detail::f16_to_float(h.bits); }
inline float to_float(bfloat16 h) { return detail::bf16_to_float(h.bits); }
inline float to_float(float f) { return f; }

// Rounding conversions from float (to nearest, ties to even).
inline float16 to_float16(float f) { return float16{detail::float_to_f16(f)}; }
inline bfloat16 to_bfloat16(float f) { return bfloat16{detail::float_to_bf16(f)}; }

// How a model keeps its weight matrices in memory: float, float16 or bfloat16 (the element
// types of checkpoints). Products always accumulate in float.
enum class weight_format { f32, f16, bf16 };

inline const char* weight_format_name(weight_format f) {
  return f == weight_format::f32 ? "F32" : f == weight_format::f16 ? "F16" : "BF16";
}

// The weight storage types the CPU product reads: float, float16, bfloat16.
template <class T>
concept weight_element =
    std::same_as<T, float> || std::same_as<T, float16> || std::same_as<T, bfloat16>;

}  // namespace redraft
