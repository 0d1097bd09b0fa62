// redraft/cpu/simd.hpp: the few vector operations the CPU product kernel needs, for the
// instruction set the translation unit is compiled for.
//
// One struct, simd_isa, chosen at compile time from the compiler's target macros:
//   AVX-512F          16 floats per vector (__m512), F16 through vcvtph2ps
//   AVX2 + FMA        8 floats per vector (__m256), F16 through F16C when present
//   SSE2              8 floats in two __m128 (every x86-64 CPU: the baseline a build without
//                     -march gets), F16 widened with integer vector operations; the same
//                     arithmetic as the portable path (a multiply, then an add), so the same bits
//   anything else     8 floats in a plain array: a portable path for any compiler and CPU
//                     (ARM, ...), which the compiler vectorises as it can
// Every operation has a fixed order of arithmetic, so a product computed through simd_isa gives
// the same bits every time in one binary, whatever the alignment of its operands (unlike Eigen's
// reductions, whose peeling depends on alignment). Different instruction sets round differently
// (FMA versus a separate multiply and add), so bits can differ between builds.
// fast_f16: whether an F16 load is a hardware conversion (AVX-512F, F16C). Where it is not, the
// CPU backend asks holders of many F16 weights (the draft head) to keep them as floats
// (cpu_backend::prefers_half_weights): twice the bytes, but no conversion per use.
//
// NOTE: chosen at compile time, not by runtime dispatch: the repository's binaries and the Python
// package are built with -march=native (REDRAFT_NATIVE_ARCH), which selects the widest path; a
// build for baseline x86-64 (a distribution's package, a portable wheel) gets the SSE2 path.
#pragma once

#include <cstdint>
#include <cstring>

#include "redraft/core/half.hpp"

// REDRAFT_SIMD_PORTABLE forces the portable path whatever the target (the tests run it on x86-64,
// where every compiler targets at least SSE2).
#if !defined(REDRAFT_SIMD_PORTABLE) && \
    (defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)) || defined(__SSE2__))
#include "redraft/cpu/eigen.hpp"  // <immintrin.h>, included once behind the warning boundary
#endif

namespace redraft::detail {

#if !defined(REDRAFT_SIMD_PORTABLE) && defined(__AVX512F__)

struct simd_isa {
  static constexpr const char* name = "avx512";
  static constexpr int width = 16;
  static constexpr bool fast_f16 = true;  // vcvtph2ps: one instruction per 16 values
  static constexpr int registers = 32;    // vector registers the product's tiles may plan for
  using vec = __m512;

  static vec zero() { return _mm512_setzero_ps(); }
  static vec load(const float* p) { return _mm512_loadu_ps(p); }
  static vec load(const float16* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  // bfloat16 -> float is a 16-bit left shift of the pattern.
  static vec load(const bfloat16* p) {
    const __m512i wide =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  static vec broadcast(float v) { return _mm512_set1_ps(v); }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static vec fma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  // Halving tree: lanes i + 8, then i + 4, i + 2, i + 1.
  static float sum(vec v) {
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return sum8(_mm256_add_ps(lo, hi));
  }
  static float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // out[j] = sum(v[j]) for four vectors at once, with the same additions as sum (IEEE addition
  // is commutative, so pairing lanes through shuffles of two vectors gives the same bits), in
  // about a third of the shuffles.
  static void sum4(const vec* v, float* out) {
    // Lanes i + 8: [a0 + a2, a1 + a3, b0 + b2, b1 + b3] in 128-bit blocks, likewise c, d.
    const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], 0x44),
                                    _mm512_shuffle_f32x4(v[0], v[1], 0xee));
    const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], 0x44),
                                    _mm512_shuffle_f32x4(v[2], v[3], 0xee));
    // Lanes i + 4: one 128-bit block per vector, [a, b, c, d].
    __m512 t =
        _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
    // Lanes i + 2, then i + 1, within each block: the sums land in lanes 0, 4, 8, 12.
    t = _mm512_add_ps(t, _mm512_permute_ps(t, 0x4e));
    t = _mm512_add_ps(t, _mm512_permute_ps(t, 0xb1));
    const __m128 sums = _mm512_castps512_ps128(_mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), t));
    _mm_storeu_ps(out, sums);
  }
};

#elif !defined(REDRAFT_SIMD_PORTABLE) && defined(__AVX2__) && defined(__FMA__)

struct simd_isa {
  static constexpr const char* name = "avx2";
  static constexpr int width = 8;
#if defined(__F16C__)
  static constexpr bool fast_f16 = true;
#else
  static constexpr bool fast_f16 = false;
#endif
  static constexpr int registers = 16;
  using vec = __m256;

  static vec zero() { return _mm256_setzero_ps(); }
  static vec load(const float* p) { return _mm256_loadu_ps(p); }
  static vec load(const float16* p) {
#if defined(__F16C__)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
    alignas(32) float lanes[8];
    for (int i = 0; i < 8; ++i) lanes[i] = to_float(p[i]);
    return _mm256_load_ps(lanes);
#endif
  }
  static vec load(const bfloat16* p) {
    const __m256i wide =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static vec broadcast(float v) { return _mm256_set1_ps(v); }
  static void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static vec fma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  // Halving tree: lanes i + 4, then i + 2, i + 1.
  static float sum(vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static void sum4(const vec* v, float* out) {
    for (int j = 0; j < 4; ++j) out[j] = sum(v[j]);
  }
};

#elif !defined(REDRAFT_SIMD_PORTABLE) && defined(__SSE2__)

// NOTE: without it, a build for baseline x86-64 took the portable path below, and GCC 12 compiled
// its F16 loads to scalar, branching conversions stored to memory lane by lane: the draft head's
// beam search ran 19x slower than the AVX-512 path on the same machine, 5x with this path
// (docs/draft.md).
struct simd_isa {
  static constexpr const char* name = "sse2";
  static constexpr int width = 8;
  static constexpr bool fast_f16 = false;  // about 16 integer operations per 4 values
  // As the portable path plans (a vec is two of SSE2's 16 registers, so wide tiles spill; the
  // bits do not depend on the tiles, small_matmul.hpp).
  static constexpr int registers = 16;
  struct vec {
    __m128 lo, hi;  // lanes 0-3, 4-7
  };

  static vec zero() { return {_mm_setzero_ps(), _mm_setzero_ps()}; }
  static vec load(const float* p) { return {_mm_loadu_ps(p), _mm_loadu_ps(p + 4)}; }
  // Four F16 values, zero-extended to 32-bit lanes, to float: exactly to_float lane by lane, every
  // case computed and then selected (signed compares: SSE2 has no unsigned ones, and a
  // magnitude fits in 15 bits).
  static __m128 half4(__m128i u) {
    const __m128i sign = _mm_slli_epi32(_mm_and_si128(u, _mm_set1_epi32(0x8000)), 16);
    const __m128i magnitude = _mm_and_si128(u, _mm_set1_epi32(0x7FFF));
    // Normal: exponent rebiased by 112; infinity or NaN (magnitude >= 0x7C00): by 224.
    const __m128i special = _mm_cmpgt_epi32(magnitude, _mm_set1_epi32(0x7BFF));
    const __m128i normal =
        _mm_add_epi32(_mm_add_epi32(_mm_slli_epi32(magnitude, 13), _mm_set1_epi32(0x38000000)),
                      _mm_and_si128(special, _mm_set1_epi32(0x38000000)));
    // Zero or subnormal (magnitude < 0x400): mantissa * 2^-24, exact in float.
    const __m128i small = _mm_castps_si128(
        _mm_mul_ps(_mm_cvtepi32_ps(magnitude), _mm_set1_ps(5.9604644775390625e-8f)));
    const __m128i tiny = _mm_cmplt_epi32(magnitude, _mm_set1_epi32(0x400));
    const __m128i bits = _mm_or_si128(
        sign, _mm_or_si128(_mm_and_si128(tiny, small), _mm_andnot_si128(tiny, normal)));
    return _mm_castsi128_ps(bits);
  }
  static vec load(const half* p) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i zero = _mm_setzero_si128();
    return {half4(_mm_unpacklo_epi16(raw, zero)), half4(_mm_unpackhi_epi16(raw, zero))};
  }
  static vec load(const bfloat16* p) {  // the 16 bits become the float's top half
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i zero = _mm_setzero_si128();
    return {_mm_castsi128_ps(_mm_unpacklo_epi16(zero, raw)),
            _mm_castsi128_ps(_mm_unpackhi_epi16(zero, raw))};
  }
  static vec broadcast(float v) { return {_mm_set1_ps(v), _mm_set1_ps(v)}; }
  static void store(float* p, vec v) {
    _mm_storeu_ps(p, v.lo);
    _mm_storeu_ps(p + 4, v.hi);
  }
  // c + a * b, rounded twice as in the portable path. (A compiler told the CPU has FMA but not
  // AVX2, e.g. -march=bdver2, may contract it under -ffp-contract=fast, GCC's default in GNU mode.)
  static vec fma(vec a, vec b, vec c) {
    return {_mm_add_ps(c.lo, _mm_mul_ps(a.lo, b.lo)), _mm_add_ps(c.hi, _mm_mul_ps(a.hi, b.hi))};
  }
  static vec add(vec a, vec b) { return {_mm_add_ps(a.lo, b.lo), _mm_add_ps(a.hi, b.hi)}; }
  // Halving tree: lanes i + 4, then i + 2, i + 1 (as on AVX2 and the portable path).
  static float sum(vec v) {
    __m128 s = _mm_add_ps(v.lo, v.hi);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
  }
  static void sum4(const vec* v, float* out) {
    for (int j = 0; j < 4; ++j) out[j] = sum(v[j]);
  }
};

#else

struct simd_isa {
  static constexpr const char* name = "portable";
  static constexpr int width = 8;
  static constexpr bool fast_f16 = false;
  static constexpr int registers = 16;
  struct vec {
    float lane[8];
  };

  static vec zero() { return vec{}; }
  static vec load(const float* p) {
    vec v;
    std::memcpy(v.lane, p, sizeof(v.lane));
    return v;
  }
  template <class W>
  static vec load(const W* p) {
    vec v;
    for (int i = 0; i < 8; ++i) v.lane[i] = to_float(p[i]);
    return v;
  }
  static vec broadcast(float v) {
    vec b;
    for (float& lane : b.lane) lane = v;
    return b;
  }
  static void store(float* p, vec v) { std::memcpy(p, v.lane, sizeof(v.lane)); }
  static vec fma(vec a, vec b, vec c) {
    for (int i = 0; i < 8; ++i) c.lane[i] += a.lane[i] * b.lane[i];
    return c;
  }
  static vec add(vec a, vec b) {
    for (int i = 0; i < 8; ++i) a.lane[i] += b.lane[i];
    return a;
  }
  // Halving tree: lanes i + 4, then i + 2, i + 1 (as on AVX2).
  static float sum(vec v) {
    for (int i = 0; i < 4; ++i) v.lane[i] += v.lane[i + 4];
    for (int i = 0; i < 2; ++i) v.lane[i] += v.lane[i + 2];
    return v.lane[0] + v.lane[1];
  }
  static void sum4(const vec* v, float* out) {
    for (int j = 0; j < 4; ++j) out[j] = sum(v[j]);
  }
};

#endif

}  // namespace redraft::detail
