// Tests of the CPU product kernels (cpu/small_matmul.hpp, cpu/packed_matmul.hpp) and
// cpu_backend::matmul against a double-precision reference, for float, float16 and bfloat16
// weights, at edge sizes: M = 1, M around the tile heights (4, 8) and the panel / small-M
// threshold (64), odd N (column tails of the tiles up to 8 columns wide, of the packed panels of
// 8 or 16 columns), K below, at and off multiples of the vector width (8 or 16); and
// small_matmul_nn (x w with w [K, N]) likewise.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string_view>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/cpu/packed_matmul.hpp"
#include "redraft/cpu/simd.hpp"
#include "redraft/cpu/small_matmul.hpp"

#include "toy_backend.hpp"

// Backend clause 9 is optional: the CPU backend offers half-precision weights, the from-scratch
// toy backend (float only) does not.
static_assert(redraft::backend_has_half_matmul_v<redraft::cpu_backend, redraft::float16>);
static_assert(redraft::backend_has_half_matmul_v<redraft::cpu_backend, redraft::bfloat16>);
static_assert(!redraft::backend_has_half_matmul_v<redraft_test::toy_backend, redraft::float16>);
static_assert(!redraft::backend_has_half_matmul_v<redraft::cpu_backend, float>);
// Clause 11 likewise: the CPU backend packs weights, the toy backend does not.
static_assert(redraft::backend_has_packed_matmul_v<redraft::cpu_backend, float>);
static_assert(redraft::backend_has_packed_matmul_v<redraft::cpu_backend, redraft::float16>);
static_assert(!redraft::backend_has_packed_matmul_v<redraft_test::toy_backend, float>);

namespace {

using redraft::index_t;

template <class W>
W from_float(float v) {
  if constexpr (std::is_same_v<W, redraft::float16>) {
    return redraft::to_float16(v);
  } else if constexpr (std::is_same_v<W, redraft::bfloat16>) {
    return redraft::to_bfloat16(v);
  } else {
    return v;
  }
}

struct problem {
  std::vector<float> x;  // [M, K]
  std::vector<float> w;  // [N, K], already representable in the weight type
};

template <class W>
problem make_problem(index_t m, index_t n, index_t k, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  problem p;
  p.x.resize(static_cast<std::size_t>(m * k));
  p.w.resize(static_cast<std::size_t>(n * k));
  for (float& v : p.x) v = uniform(rng);
  for (float& v : p.w) v = redraft::to_float(from_float<W>(uniform(rng)));
  return p;
}

template <class W>
std::vector<W> to_weights(const std::vector<float>& w) {
  std::vector<W> out(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) out[i] = from_float<W>(w[i]);
  return out;
}

// Checks y[M, N] against the double product; the bound is the worst case of any float summation
// order, gamma_K * sum |x w| (gamma_K = K u / (1 - K u), u = 2^-24), plus the bias and SiLU
// roundings when present.
void check_against_double(const problem& p, const std::vector<float>& bias, bool silu,
                          const std::vector<float>& y, index_t m, index_t n, index_t k) {
  const double u = std::ldexp(1.0, -24);
  const double gamma = static_cast<double>(k + 2) * u / (1.0 - static_cast<double>(k + 2) * u);
  for (index_t r = 0; r < m; ++r) {
    for (index_t c = 0; c < n; ++c) {
      double exact = bias.empty() ? 0.0 : bias[static_cast<std::size_t>(c)];
      double magnitude = bias.empty() ? 0.0 : std::abs(exact);
      for (index_t i = 0; i < k; ++i) {
        const double t = static_cast<double>(p.x[static_cast<std::size_t>(r * k + i)]) *
                         p.w[static_cast<std::size_t>(c * k + i)];
        exact += t;
        magnitude += std::abs(t);
      }
      double bound = gamma * magnitude + 1e-30;
      if (silu) {
        // SiLU is 1.1-Lipschitz; its own float evaluation adds a few ulps of the result.
        exact = exact / (1.0 + std::exp(-exact));
        bound = 1.1 * bound + 8.0 * u * std::abs(exact) + 1e-30;
      }
      const float got = y[static_cast<std::size_t>(r * n + c)];
      CAPTURE(r, c, got, exact, bound);
      REQUIRE(std::abs(got - exact) <= bound);
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("small_matmul matches the double product at edge sizes", "[small_matmul]", float,
                   redraft::float16, redraft::bfloat16) {
  const index_t m = GENERATE(1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 63, 64, 65, 130);
  const index_t n = GENERATE(1, 3, 7, 9, 33);
  const index_t k = GENERATE(1, 7, 8, 15, 16, 17, 33, 100);
  CAPTURE(m, n, k, redraft::detail::simd_isa::name);
  const problem p =
      make_problem<TestType>(m, n, k, static_cast<std::uint32_t>(m * 10007 + n * 101 + k));
  const std::vector<TestType> w = to_weights<TestType>(p.w);
  std::vector<float> y(static_cast<std::size_t>(m * n), 123.0f);
  redraft::small_matmul(redraft::matrix_view<const float>(p.x.data(), m, k),
                        redraft::matrix_view<const TestType>(w.data(), n, k),
                        redraft::matrix_view<float>(y.data(), m, n));
  check_against_double(p, {}, false, y, m, n, k);

  SECTION("accumulate adds to y") {
    std::vector<float> acc(static_cast<std::size_t>(m * n), 0.0f);
    redraft::small_matmul(redraft::matrix_view<const float>(p.x.data(), m, k),
                          redraft::matrix_view<const TestType>(w.data(), n, k),
                          redraft::matrix_view<float>(acc.data(), m, n), true);
    redraft::small_matmul(redraft::matrix_view<const float>(p.x.data(), m, k),
                          redraft::matrix_view<const TestType>(w.data(), n, k),
                          redraft::matrix_view<float>(acc.data(), m, n), true);
    for (std::size_t i = 0; i < acc.size(); ++i) {
      CAPTURE(i);
      REQUIRE(acc[i] == 2.0f * y[i]);  // 0 + s, then s + s: exact
    }
  }

  SECTION("each row equals the row computed alone, bit for bit") {
    std::vector<float> alone(static_cast<std::size_t>(n));
    for (index_t r = 0; r < m; ++r) {
      redraft::small_matmul(redraft::matrix_view<const float>(p.x.data() + r * k, 1, k),
                            redraft::matrix_view<const TestType>(w.data(), n, k),
                            redraft::matrix_view<float>(alone.data(), 1, n));
      for (index_t c = 0; c < n; ++c) {
        CAPTURE(r, c);
        REQUIRE(alone[static_cast<std::size_t>(c)] == y[static_cast<std::size_t>(r * n + c)]);
      }
    }
  }
}

TEMPLATE_TEST_CASE("cpu_backend::matmul with bias and SiLU matches the double product",
                   "[small_matmul][cpu_backend]", float, redraft::float16, redraft::bfloat16) {
  // 64 is the last row count of small_matmul in cpu_backend (float), 65 the first of Eigen's GEMM.
  const index_t m = GENERATE(1, 4, 63, 64, 65, 100);
  const index_t n = GENERATE(5, 40);
  const index_t k = GENERATE(9, 48);
  const bool silu = GENERATE(false, true);
  CAPTURE(m, n, k, silu);
  const problem p = make_problem<TestType>(m, n, k, static_cast<std::uint32_t>(m + 7 * n + 13 * k));
  const std::vector<TestType> w = to_weights<TestType>(p.w);
  std::vector<float> bias(static_cast<std::size_t>(n));
  for (index_t c = 0; c < n; ++c)
    bias[static_cast<std::size_t>(c)] = 0.25f * static_cast<float>(c % 5) - 0.5f;
  std::vector<float> y(static_cast<std::size_t>(m * n));
  const redraft::cpu_backend b;
  b.matmul(redraft::matrix_view<const float>(p.x.data(), m, k),
           redraft::matrix_view<const TestType>(w.data(), n, k), bias.data(),
           silu ? redraft::activation::silu : redraft::activation::none,
           redraft::matrix_view<float>(y.data(), m, n));
  check_against_double(p, bias, silu, y, m, n, k);
}

TEST_CASE("half weights stay within their rounding of the float product", "[small_matmul]") {
  // The same float weights, stored as float16 and bfloat16: each weight moves by at most half an
  // ulp of its type (2^-11 and 2^-8 relative), so y moves by at most that times sum |x w|, plus
  // the float summation error of both products.
  const index_t m = 8, n = 37, k = 1000;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(m * k)), w(static_cast<std::size_t>(n * k));
  for (float& v : x) v = uniform(rng);
  for (float& v : w) v = uniform(rng);
  const auto run = [&](const auto& weights) {
    using W = typename std::decay_t<decltype(weights)>::value_type;
    std::vector<float> y(static_cast<std::size_t>(m * n));
    redraft::small_matmul(redraft::matrix_view<const float>(x.data(), m, k),
                          redraft::matrix_view<const W>(weights.data(), n, k),
                          redraft::matrix_view<float>(y.data(), m, n));
    return y;
  };
  const std::vector<float> y32 = run(w);
  const std::vector<float> y16 = run(to_weights<redraft::float16>(w));
  const std::vector<float> ybf = run(to_weights<redraft::bfloat16>(w));
  const double u = std::ldexp(1.0, -24);
  const double gamma = 2.0 * static_cast<double>(k) * u;
  for (index_t r = 0; r < m; ++r) {
    for (index_t c = 0; c < n; ++c) {
      double magnitude = 0.0;
      for (index_t i = 0; i < k; ++i)
        magnitude += std::abs(static_cast<double>(x[static_cast<std::size_t>(r * k + i)]) *
                              w[static_cast<std::size_t>(c * k + i)]);
      const std::size_t at = static_cast<std::size_t>(r * n + c);
      CAPTURE(r, c, y32[at], y16[at], ybf[at], magnitude);
      REQUIRE(std::abs(y16[at] - y32[at]) <= (std::ldexp(1.0, -11) + gamma) * magnitude);
      REQUIRE(std::abs(ybf[at] - y32[at]) <= (std::ldexp(1.0, -8) + gamma) * magnitude);
    }
  }
}

TEST_CASE("small_matmul refuses shapes that disagree, writing nothing", "[small_matmul]") {
  std::vector<float> x(6, 1.0f), w(12, 1.0f), y(8, -1.0f);
  using cm = redraft::matrix_view<const float>;
  using mm = redraft::matrix_view<float>;
  REQUIRE_THROWS_AS(
      redraft::small_matmul(cm(x.data(), 2, 3), cm(w.data(), 3, 4), mm(y.data(), 2, 3)),
      redraft::error);
  REQUIRE_THROWS_WITH(
      redraft::small_matmul(cm(x.data(), 2, 3), cm(w.data(), 4, 3), mm(y.data(), 2, 3)),
      Catch::Contains("y is [2, 3] but x * w^T is [2, 4]"));
  const redraft::cpu_backend b;
  const std::vector<redraft::float16> h(12);
  REQUIRE_THROWS_AS(
      b.matmul(cm(x.data(), 2, 3), redraft::matrix_view<const redraft::float16>(h.data(), 3, 4),
               nullptr, redraft::activation::none, mm(y.data(), 2, 3)),
      redraft::error);
  for (float v : y) REQUIRE(v == -1.0f);
}

TEST_CASE("half conversions are exact on the way in", "[small_matmul][half]") {
  // Every float16 pattern that is a finite number converts to a float that rounds back to it.
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const redraft::float16 h = redraft::float16::from_bits(static_cast<std::uint16_t>(bits));
    const float f = redraft::to_float(h);
    if (!std::isfinite(f)) continue;
    CAPTURE(bits, f);
    REQUIRE(redraft::to_float16(f).bits == h.bits);
  }
  REQUIRE(redraft::to_float(redraft::bfloat16::from_bits(0x3f80)) == 1.0f);
  REQUIRE(redraft::to_bfloat16(1.0f).bits == 0x3f80);
}

TEMPLATE_TEST_CASE("simd_isa::load widens every 16-bit encoding to to_float's bits",
                   "[small_matmul][half]", redraft::float16, redraft::bfloat16) {
  // Every pattern, signed zeros and NaN payloads included, in vectors of isa::width lanes: the
  // vector conversion (F16C, AVX-512, SSE2 integer operations) must be to_float lane by lane,
  // except that F16C and AVX-512 quiet a signalling F16 NaN (they set the float's quiet bit,
  // 1 << 22, which to_float keeps as the half had it).
  using isa = redraft::detail::simd_isa;
  const bool hardware_f16 =
      std::is_same_v<TestType, redraft::float16> &&
      (std::string_view(isa::name) == "avx512" || std::string_view(isa::name) == "avx2");
  CAPTURE(isa::name);
  std::vector<TestType> all(0x10000u);
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits)
    all[bits] = TestType::from_bits(static_cast<std::uint16_t>(bits));
  float lanes[isa::width];
  for (std::uint32_t first = 0; first < 0x10000u; first += isa::width) {
    isa::store(lanes, isa::load(all.data() + first));
    for (int i = 0; i < isa::width; ++i) {
      const float expected = redraft::to_float(all[first + static_cast<std::uint32_t>(i)]);
      std::uint32_t got_bits = 0, expected_bits = 0;
      std::memcpy(&got_bits, &lanes[i], 4);
      std::memcpy(&expected_bits, &expected, 4);
      CAPTURE(first + static_cast<std::uint32_t>(i));
      const std::uint32_t quiet = hardware_f16 && std::isnan(expected) ? 0x00400000u : 0u;
      REQUIRE((got_bits | quiet) == (expected_bits | quiet));
    }
  }
}

TEST_CASE("simd_isa::sum4 gives sum's bits for each of four vectors", "[small_matmul]") {
  using isa = redraft::detail::simd_isa;
  CAPTURE(isa::name);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (int trial = 0; trial < 1000; ++trial) {
    float lanes[4][isa::width];
    for (auto& row : lanes)
      for (float& v : row) v = uniform(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 40) - 20);
    isa::vec v[4];
    for (int j = 0; j < 4; ++j) v[j] = isa::load(lanes[j]);
    float sums[4];
    isa::sum4(v, sums);
    for (int j = 0; j < 4; ++j) {
      CAPTURE(trial, j);
      REQUIRE(sums[j] == isa::sum(v[j]));
    }
  }
}

TEST_CASE("small_matmul_nn matches the double product at edge sizes", "[small_matmul]") {
  const index_t m = GENERATE(1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16);
  const index_t n = GENERATE(1, 7, 8, 15, 16, 17, 33, 64, 65, 100);
  const index_t k = GENERATE(1, 3, 17, 136);
  CAPTURE(m, n, k, redraft::detail::simd_isa::name);
  std::mt19937 rng(static_cast<std::uint32_t>(m * 10007 + n * 101 + k));
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(m * k)), w(static_cast<std::size_t>(k * n));
  for (float& v : x) v = uniform(rng);
  for (float& v : w) v = uniform(rng);
  std::vector<float> y(static_cast<std::size_t>(m * n), 123.0f);
  using cm = redraft::matrix_view<const float>;
  redraft::small_matmul_nn(cm(x.data(), m, k), cm(w.data(), k, n),
                           redraft::matrix_view<float>(y.data(), m, n));
  // The same check as small_matmul's, with w [K, N] stored transposed as [N, K].
  problem p;
  p.x = x;
  p.w.resize(w.size());
  for (index_t c = 0; c < k; ++c)
    for (index_t col = 0; col < n; ++col)
      p.w[static_cast<std::size_t>(col * k + c)] = w[static_cast<std::size_t>(c * n + col)];
  check_against_double(p, {}, false, y, m, n, k);

  SECTION("each row equals the row computed alone, bit for bit") {
    std::vector<float> alone(static_cast<std::size_t>(n));
    for (index_t r = 0; r < m; ++r) {
      redraft::small_matmul_nn(cm(x.data() + r * k, 1, k), cm(w.data(), k, n),
                               redraft::matrix_view<float>(alone.data(), 1, n));
      for (index_t c = 0; c < n; ++c) {
        CAPTURE(r, c);
        REQUIRE(alone[static_cast<std::size_t>(c)] == y[static_cast<std::size_t>(r * n + c)]);
      }
    }
  }

  SECTION("zero entries of x leave each row as if their terms were absent, bit for bit") {
    // x2 [M, 2K]: x's columns with a zero column after each; w2 [2K, N]: w's rows with an
    // arbitrary row after each (as masked attention probabilities and the values they skip).
    std::vector<float> x2(static_cast<std::size_t>(m * 2 * k), 0.0f),
        w2(static_cast<std::size_t>(2 * k * n));
    for (index_t r = 0; r < m; ++r)
      for (index_t c = 0; c < k; ++c)
        x2[static_cast<std::size_t>(r * 2 * k + 2 * c)] = x[static_cast<std::size_t>(r * k + c)];
    for (index_t c = 0; c < k; ++c) {
      for (index_t col = 0; col < n; ++col) {
        w2[static_cast<std::size_t>(2 * c * n + col)] = w[static_cast<std::size_t>(c * n + col)];
        w2[static_cast<std::size_t>((2 * c + 1) * n + col)] = 100.0f * uniform(rng);
      }
    }
    std::vector<float> y2(static_cast<std::size_t>(m * n));
    redraft::small_matmul_nn(cm(x2.data(), m, 2 * k), cm(w2.data(), 2 * k, n),
                             redraft::matrix_view<float>(y2.data(), m, n));
    for (std::size_t i = 0; i < y.size(); ++i) {
      CAPTURE(i);
      REQUIRE(y2[i] == y[i]);
    }
  }
}

TEST_CASE("small_matmul_nn refuses shapes that disagree, writing nothing", "[small_matmul]") {
  std::vector<float> x(6, 1.0f), w(12, 1.0f), y(8, -1.0f);
  using cm = redraft::matrix_view<const float>;
  using mm = redraft::matrix_view<float>;
  REQUIRE_THROWS_WITH(
      redraft::small_matmul_nn(cm(x.data(), 2, 3), cm(w.data(), 4, 3), mm(y.data(), 2, 3)),
      Catch::Contains("x has 3 columns but w has 4 rows"));
  REQUIRE_THROWS_WITH(
      redraft::small_matmul_nn(cm(x.data(), 2, 3), cm(w.data(), 3, 4), mm(y.data(), 2, 3)),
      Catch::Contains("y is [2, 3] but x * w is [2, 4]"));
  for (float v : y) REQUIRE(v == -1.0f);
}

TEMPLATE_TEST_CASE("packed_weights lays w out in zero-padded column panels",
                   "[small_matmul][packed]", float, redraft::float16, redraft::bfloat16) {
  constexpr index_t width = redraft::packed_weights<TestType>::width;
  const index_t n = GENERATE_COPY(as<index_t>{}, 1, width - 1, width, width + 1, 3 * width + 5);
  const index_t k = GENERATE(1, 5, 17);
  CAPTURE(n, k);
  const problem p = make_problem<TestType>(1, n, k, static_cast<std::uint32_t>(n * 31 + k));
  const std::vector<TestType> w = to_weights<TestType>(p.w);
  const redraft::packed_weights<TestType> packed(
      redraft::matrix_view<const TestType>(w.data(), n, k));
  REQUIRE(packed.rows() == n);
  REQUIRE(packed.cols() == k);
  for (index_t panel = 0; panel < (n + width - 1) / width; ++panel) {
    for (index_t c = 0; c < k; ++c) {
      for (index_t j = 0; j < width; ++j) {
        const index_t col = panel * width + j;
        const float want = col < n ? p.w[static_cast<std::size_t>(col * k + c)] : 0.0f;
        CAPTURE(panel, c, j);
        REQUIRE(redraft::to_float(packed.panel(panel)[c * width + j]) == want);
      }
    }
  }
}

TEMPLATE_TEST_CASE("packed_matmul matches the double product at edge sizes",
                   "[small_matmul][packed]", float, redraft::float16, redraft::bfloat16) {
  const index_t m = GENERATE(1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 64, 65, 130);
  const index_t n = GENERATE(1, 3, 7, 9, 15, 16, 17, 33, 49, 131);
  const index_t k = GENERATE(1, 7, 8, 15, 16, 17, 100);
  CAPTURE(m, n, k, redraft::detail::simd_isa::name);
  const problem p =
      make_problem<TestType>(m, n, k, static_cast<std::uint32_t>(m * 10007 + n * 101 + k + 7));
  const std::vector<TestType> w = to_weights<TestType>(p.w);
  const redraft::packed_weights<TestType> packed(
      redraft::matrix_view<const TestType>(w.data(), n, k));
  using cm = redraft::matrix_view<const float>;
  using mm = redraft::matrix_view<float>;
  std::vector<float> y(static_cast<std::size_t>(m * n), 123.0f);
  redraft::packed_matmul(cm(p.x.data(), m, k), packed, mm(y.data(), m, n));
  check_against_double(p, {}, false, y, m, n, k);

  SECTION("accumulate adds to y") {
    std::vector<float> acc(static_cast<std::size_t>(m * n), 0.0f);
    redraft::packed_matmul(cm(p.x.data(), m, k), packed, mm(acc.data(), m, n), true);
    redraft::packed_matmul(cm(p.x.data(), m, k), packed, mm(acc.data(), m, n), true);
    for (std::size_t i = 0; i < acc.size(); ++i) {
      CAPTURE(i);
      REQUIRE(acc[i] == 2.0f * y[i]);  // 0 + s, then s + s: exact
    }
  }

  SECTION("each row equals the row computed alone, bit for bit") {
    std::vector<float> alone(static_cast<std::size_t>(n));
    for (index_t r = 0; r < m; ++r) {
      redraft::packed_matmul(cm(p.x.data() + r * k, 1, k), packed, mm(alone.data(), 1, n));
      for (index_t c = 0; c < n; ++c) {
        CAPTURE(r, c);
        REQUIRE(alone[static_cast<std::size_t>(c)] == y[static_cast<std::size_t>(r * n + c)]);
      }
    }
  }
}

TEST_CASE("half weights stay within their rounding of the float product, packed",
          "[small_matmul][packed]") {
  // As for small_matmul: float16 moves each weight by at most 2^-11 relative, bfloat16 by 2^-8.
  const index_t m = 8, n = 37, k = 1000;
  std::mt19937 rng(6);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(m * k)), w(static_cast<std::size_t>(n * k));
  for (float& v : x) v = uniform(rng);
  for (float& v : w) v = uniform(rng);
  const auto run = [&](const auto& weights) {
    using W = typename std::decay_t<decltype(weights)>::value_type;
    std::vector<float> y(static_cast<std::size_t>(m * n));
    redraft::packed_matmul(
        redraft::matrix_view<const float>(x.data(), m, k),
        redraft::packed_weights<W>(redraft::matrix_view<const W>(weights.data(), n, k)),
        redraft::matrix_view<float>(y.data(), m, n));
    return y;
  };
  const std::vector<float> y32 = run(w);
  const std::vector<float> y16 = run(to_weights<redraft::float16>(w));
  const std::vector<float> ybf = run(to_weights<redraft::bfloat16>(w));
  const double gamma = 2.0 * static_cast<double>(k) * std::ldexp(1.0, -24);
  for (index_t r = 0; r < m; ++r) {
    for (index_t c = 0; c < n; ++c) {
      double magnitude = 0.0;
      for (index_t i = 0; i < k; ++i)
        magnitude += std::abs(static_cast<double>(x[static_cast<std::size_t>(r * k + i)]) *
                              w[static_cast<std::size_t>(c * k + i)]);
      const std::size_t at = static_cast<std::size_t>(r * n + c);
      CAPTURE(r, c, y32[at], y16[at], ybf[at], magnitude);
      REQUIRE(std::abs(y16[at] - y32[at]) <= (std::ldexp(1.0, -11) + gamma) * magnitude);
      REQUIRE(std::abs(ybf[at] - y32[at]) <= (std::ldexp(1.0, -8) + gamma) * magnitude);
    }
  }
}

TEST_CASE("packed_matmul refuses shapes that disagree, writing nothing", "[small_matmul][packed]") {
  std::vector<float> x(8, 1.0f), w(12, 1.0f), y(8, -1.0f);
  using cm = redraft::matrix_view<const float>;
  using mm = redraft::matrix_view<float>;
  const redraft::packed_weights<float> packed(cm(w.data(), 3, 4));  // [N 3, K 4]
  REQUIRE_THROWS_WITH(redraft::packed_matmul(cm(x.data(), 2, 3), packed, mm(y.data(), 2, 3)),
                      Catch::Contains("x has 3 columns but w has 4"));
  REQUIRE_THROWS_WITH(redraft::packed_matmul(cm(x.data(), 2, 4), packed, mm(y.data(), 2, 4)),
                      Catch::Contains("y is [2, 4] but x * w^T is [2, 3]"));
  for (float v : y) REQUIRE(v == -1.0f);
}

TEMPLATE_TEST_CASE("cpu_backend packed weights (clause 11): matmul with bias and SiLU, unpack",
                   "[small_matmul][packed][cpu_backend]", float, redraft::float16,
                   redraft::bfloat16) {
  const index_t m = GENERATE(1, 5, 64, 65);
  const index_t n = GENERATE(5, 40);
  const index_t k = GENERATE(9, 48);
  const bool silu = GENERATE(false, true);
  CAPTURE(m, n, k, silu);
  const problem p = make_problem<TestType>(m, n, k, static_cast<std::uint32_t>(m + 3 * n + 5 * k));
  const std::vector<TestType> w = to_weights<TestType>(p.w);
  std::vector<float> bias(static_cast<std::size_t>(n));
  for (index_t c = 0; c < n; ++c)
    bias[static_cast<std::size_t>(c)] = 0.25f * static_cast<float>(c % 5) - 0.5f;
  const redraft::cpu_backend b;
  const auto packed = b.pack(redraft::matrix_view<const TestType>(w.data(), n, k));
  REQUIRE(packed.rows() == n);
  REQUIRE(packed.cols() == k);
  std::vector<float> y(static_cast<std::size_t>(m * n), 123.0f);
  b.matmul(redraft::matrix_view<const float>(p.x.data(), m, k), packed, bias.data(),
           silu ? redraft::activation::silu : redraft::activation::none,
           redraft::matrix_view<float>(y.data(), m, n));
  check_against_double(p, bias, silu, y, m, n, k);

  // unpack gives the weights back exactly.
  std::vector<TestType> back(w.size());
  b.unpack(packed, redraft::matrix_view<TestType>(back.data(), n, k));
  for (std::size_t i = 0; i < w.size(); ++i) {
    CAPTURE(i);
    REQUIRE(redraft::to_float(back[i]) == redraft::to_float(w[i]));
  }
}

TEST_CASE("cpu_backend packed matmul and unpack refuse shapes that disagree, writing nothing",
          "[small_matmul][packed][cpu_backend]") {
  std::vector<float> x(8, 1.0f), w(12, 1.0f), y(8, -1.0f);
  using cm = redraft::matrix_view<const float>;
  using mm = redraft::matrix_view<float>;
  const redraft::cpu_backend b;
  const auto packed = b.pack(cm(w.data(), 3, 4));  // [N 3, K 4]
  REQUIRE_THROWS_WITH(
      b.matmul(cm(x.data(), 2, 3), packed, nullptr, redraft::activation::none, mm(y.data(), 2, 3)),
      Catch::Contains("matmul: x has 3 columns but w has 4"));
  REQUIRE_THROWS_WITH(
      b.matmul(cm(x.data(), 2, 4), packed, nullptr, redraft::activation::none, mm(y.data(), 2, 4)),
      Catch::Contains("matmul: y is [2, 4] but x * w^T is [2, 3]"));
  for (float v : y) REQUIRE(v == -1.0f);
  std::vector<float> back(12, -1.0f);
  REQUIRE_THROWS_WITH(b.unpack(packed, mm(back.data(), 4, 3)),
                      Catch::Contains("packed_weights::unpack: w is [4, 3] but the packed matrix "
                                      "is [3, 4]"));
  for (float v : back) REQUIRE(v == -1.0f);
}
