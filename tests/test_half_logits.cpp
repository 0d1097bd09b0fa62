// Half-precision logits (core/half.hpp): the conversions, and every verifier and logits op on
// float, half and bfloat16 logits holding the same values, on every backend of the typed tests.
// Values are chosen exactly representable in all three types (multiples of 1/8 below 32 in
// magnitude, plus -inf), so the three runs see the same numbers and must make the same decisions.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "backends.hpp"
#include "redraft/redraft.hpp"
#include "verify_test_util.hpp"

using namespace redraft;
using redraft_test::upload;

namespace {

// A buffer's contents on the host.
template <class B, class Buffer>
auto download(const B& backend, const Buffer& buf) {
  using T = std::remove_cv_t<std::remove_pointer_t<decltype(buf.data())>>;
  std::vector<T> host(static_cast<std::size_t>(buf.size()));
  if (!host.empty()) backend.copy_to_host(buf.data(), buf.size(), host.data());
  return host;
}

template <class T>
std::vector<T> convert(const std::vector<float>& x) {
  std::vector<T> out;
  out.reserve(x.size());
  for (const float v : x) out.push_back(from_float<T>(v));
  return out;
}

// Exact value of a half from its fields, in double (the reference for to_float).
double half_reference(std::uint16_t bits) {
  const int sign = bits >> 15, exponent = (bits >> 10) & 31, mantissa = bits & 1023;
  double v = 0.0;
  if (exponent == 0) {
    v = std::ldexp(static_cast<double>(mantissa), -24);
  } else if (exponent == 31) {
    v = mantissa == 0 ? std::numeric_limits<double>::infinity()
                      : std::numeric_limits<double>::quiet_NaN();
  } else {
    v = std::ldexp(1.0 + mantissa / 1024.0, exponent - 15);
  }
  return sign ? -v : v;
}

// Round-to-nearest-even reference by search over the non-negative encodings [0, inf_bits]
// (monotone in the bits); the encoding of infinity stands for the next power of two there, so
// overflow rounds exactly as IEEE says.
template <class T>
std::uint16_t nearest_reference(float x, std::uint16_t inf_bits, double beyond_max) {
  const bool negative = std::signbit(x);
  const double a = std::fabs(static_cast<double>(x));
  const auto value = [&](std::uint32_t b) {
    return b == inf_bits
               ? beyond_max
               : static_cast<double>(to_float(T::from_bits(static_cast<std::uint16_t>(b))));
  };
  std::uint32_t lo = 0, hi = inf_bits;  // largest b with value(b) <= a
  if (a >= beyond_max) {
    lo = inf_bits;
  } else {
    while (lo < hi) {
      const std::uint32_t mid = (lo + hi + 1) / 2;
      if (value(mid) <= a) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    if (value(lo) != a) {
      const double below = a - value(lo), above = value(lo + 1) - a;
      if (above < below || (above == below && (lo & 1u) == 1u)) ++lo;
    }
  }
  return static_cast<std::uint16_t>(lo | (negative ? 0x8000u : 0u));
}

}  // namespace

TEST_CASE("half and bfloat16: every encoding converts to float exactly and back", "[half]") {
  for (std::uint32_t bits = 0; bits < 65536; ++bits) {
    CAPTURE(bits);
    const redraft::half h = redraft::half::from_bits(static_cast<std::uint16_t>(bits));
    const double ref = half_reference(static_cast<std::uint16_t>(bits));
    const float f = to_float(h);
    if (std::isnan(ref)) {
      CHECK(std::isnan(f));
      CHECK(std::isnan(to_float(from_float<redraft::half>(f))));
    } else {
      CHECK(static_cast<double>(f) == ref);
      CHECK(std::signbit(f) == ((bits & 0x8000u) != 0));
      CHECK(from_float<redraft::half>(f).bits == bits);
    }
    const bfloat16 g = bfloat16::from_bits(static_cast<std::uint16_t>(bits));
    const float gf = to_float(g);
    std::uint32_t u = 0;
    std::memcpy(&u, &gf, 4);
    CHECK(u == (bits << 16));
    if (!std::isnan(gf)) {
      CHECK(from_float<bfloat16>(gf).bits == bits);
    } else {
      CHECK(std::isnan(to_float(from_float<bfloat16>(gf))));
    }
  }
  CHECK(to_float(redraft::half(65504.0f)) == 65504.0f);
  CHECK(std::isinf(to_float(redraft::half(65520.0f))));  // halfway to 2^16 rounds to even: infinity
  CHECK(to_float(redraft::half(65519.0f)) == 65504.0f);
  CHECK(to_float(redraft::half(-50000.0f)) == -49984.0f);   // the warp's mask value in half
  CHECK(to_float(bfloat16(1.0f + 1.0f / 256.0f)) == 1.0f);  // tie to even
  CHECK(to_float(bfloat16(1.0f + 3.0f / 256.0f)) == 1.0f + 4.0f / 256.0f);
}

TEST_CASE("half and bfloat16: float to 16 bits rounds to nearest, ties to even", "[half]") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> exponent(-30, 20);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  for (int i = 0; i < 20000; ++i) {
    float x = std::ldexp(mantissa(rng), exponent(rng));
    if (i % 3 == 0) {  // exact halfway points between neighbouring halves, and ties near subnormals
      const std::uint16_t b = static_cast<std::uint16_t>(rng() % 0x7BFF);
      x = static_cast<float>((static_cast<double>(to_float(redraft::half::from_bits(b))) +
                              static_cast<double>(to_float(
                                  redraft::half::from_bits(static_cast<std::uint16_t>(b + 1))))) /
                             2.0);
    }
    if (rng() % 2 == 0) x = -x;
    CAPTURE(x);
    CHECK(from_float<redraft::half>(x).bits ==
          nearest_reference<redraft::half>(x, 0x7C00u, 65536.0));
    CHECK(from_float<bfloat16>(x).bits ==
          nearest_reference<bfloat16>(x, 0x7F80u, std::ldexp(1.0, 128)));
  }
  CHECK(from_float<redraft::half>(std::numeric_limits<float>::infinity()).bits == 0x7C00u);
  CHECK(from_float<redraft::half>(-std::numeric_limits<float>::infinity()).bits == 0xFC00u);
  CHECK(std::isnan(to_float(from_float<redraft::half>(std::nanf("")))));
  CHECK(from_float<bfloat16>(-std::numeric_limits<float>::infinity()).bits == 0xFF80u);
}

namespace {

// Logits exactly representable in float, half and bfloat16: k / 8 with |k| <= 200, a few -inf.
std::vector<float> representable_logits(std::mt19937_64& rng, std::int64_t rows, std::int64_t vocab,
                                        bool ties) {
  std::vector<float> x(static_cast<std::size_t>(rows * vocab));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::int64_t k = ties ? static_cast<std::int64_t>(rng() % 5) * 8
                                : static_cast<std::int64_t>(rng() % 401) - 200;
    x[i] = static_cast<float>(k) / 8.0f;
    if (rng() % 17 == 0) x[i] = -std::numeric_limits<float>::infinity();
  }
  // Every row keeps a finite value.
  for (std::int64_t r = 0; r < rows; ++r) x[static_cast<std::size_t>(r * vocab)] = 1.0f;
  return x;
}

struct half_case {
  std::int32_t batch, width, length, vocab;
  std::vector<std::int32_t> beams;  // [B, W, L]
  std::vector<float> logits;        // [n_max, V]
  std::vector<float> draft;         // [B, W, L-1, V] log-probs (always float)
  std::uint64_t seed;
};

half_case make_case(std::uint64_t seed, std::int32_t vocab) {
  std::mt19937_64 rng(seed);
  half_case c;
  c.batch = 1 + static_cast<std::int32_t>(rng() % 3);
  c.width = 1 + static_cast<std::int32_t>(rng() % 4);
  c.length = 2 + static_cast<std::int32_t>(rng() % 3);
  c.vocab = vocab;
  c.beams = redraft_test::random_beams(rng, c.batch, c.width, c.length, 3);
  const std::int64_t rows = static_cast<std::int64_t>(c.batch) * (1 + c.width * (c.length - 1));
  c.logits = representable_logits(rng, rows, vocab, rng() % 2 == 0);
  const std::int64_t draft_rows = static_cast<std::int64_t>(c.batch) * c.width * (c.length - 1);
  c.draft = redraft_test::random_logits(rng, draft_rows, vocab, false);
  for (std::int64_t r = 0; r < draft_rows; ++r) {
    float* row = c.draft.data() + r * vocab;
    double sum = 0.0;
    for (std::int32_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]));
    for (std::int32_t v = 0; v < vocab; ++v) row[v] -= static_cast<float>(std::log(sum));
  }
  c.seed = rng();
  return c;
}

// Every verifier's decisions on logits of element type T, backend B.
template <class B, class T>
std::vector<host_acceptance> all_decisions(const half_case& c) {
  const B backend;
  const auto beams = upload(backend, c.beams);
  const tree<B> t =
      build_tree(backend, view<const std::int32_t, 3>(beams.data(), c.batch, c.width, c.length));
  const std::int32_t n = t.total_nodes();
  const std::vector<float> used(c.logits.begin(),
                                c.logits.begin() + static_cast<std::ptrdiff_t>(n) * c.vocab);
  const auto logits = upload(backend, convert<T>(used));
  const auto draft = upload(backend, c.draft);
  const matrix_view<const T> lv(logits.data(), n, c.vocab);
  const philox_uniforms u{c.seed, 3};

  std::vector<host_acceptance> out;
  out.push_back(to_host(backend, verify_greedy(backend, t, lv)));
  for (const float temperature : {0.5f, 1.0f, 2.0f}) {
    for (const auto& [top_k, top_p] :
         {std::pair{0, 1.0f}, std::pair{2, 1.0f}, std::pair{0, 0.7f}, std::pair{100, 0.9f}}) {
      sampling_params sp;
      sp.temperature = temperature;
      sp.top_k = top_k;
      sp.top_p = top_p;
      out.push_back(to_host(backend, verify_lossless(backend, t, lv, sp, u)));
    }
    redrafter_params rp;
    rp.temperature = temperature;
    rp.logit_top_k = 3;
    out.push_back(to_host(
        backend,
        verify_redrafter(
            backend, t, lv,
            view<const float, 4>(draft.data(), c.batch, c.width, c.length - 1, c.vocab), rp, u)));
    typical_params tp;
    tp.temperature = temperature;
    tp.sample_next_token = true;
    out.push_back(to_host(backend, verify_typical(backend, t, lv, tp, u)));
    tp.sample_next_token = false;
    out.push_back(to_host(backend, verify_typical(backend, t, lv, tp)));
  }
  return out;
}

void check_same(const std::vector<host_acceptance>& a, const std::vector<host_acceptance>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(a[i].accepted_len == b[i].accepted_len);
    CHECK(a[i].best_beam == b[i].best_beam);
    CHECK(a[i].accepted_nodes == b[i].accepted_nodes);
    CHECK(a[i].emitted_tokens == b[i].emitted_tokens);
    CHECK(a[i].next_token == b[i].next_token);
    CHECK(a[i].hidden_row == b[i].hidden_row);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("every verifier decides the same on float, half and bfloat16 logits",
                   "[half][verify]", REDRAFT_TEST_BACKENDS) {
  // Vocabularies below and above the 256 chunks of the blocked sums.
  const std::int32_t vocab = GENERATE(7, 300, 1500);
  const std::uint64_t seed = GENERATE(range<std::uint64_t>(1, 9));
  CAPTURE(vocab, seed);
  const half_case c = make_case(seed * 7919 + static_cast<std::uint64_t>(vocab), vocab);
  const auto reference = all_decisions<cpu_backend, float>(c);
  check_same(all_decisions<TestType, float>(c), reference);
  check_same(all_decisions<TestType, redraft::half>(c), reference);
  check_same(all_decisions<TestType, bfloat16>(c), reference);
}

TEMPLATE_TEST_CASE("a NaN in half / bfloat16 logits is reported like a NaN in float logits",
                   "[half][verify]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::int32_t vocab = 5;
  const auto beams = upload(backend, std::vector<std::int32_t>{1, 2, 1, 3});
  const tree<TestType> t = build_tree(backend, view<const std::int32_t, 3>(beams.data(), 1, 2, 2));
  std::vector<float> x(static_cast<std::size_t>(t.total_nodes() * vocab), 0.5f);
  x[2] = std::nanf("");
  const auto message = [&](auto element) {
    using T = decltype(element);
    const auto dev = upload(backend, convert<T>(x));
    try {
      verify_lossless(backend, t, matrix_view<const T>(dev.data(), t.total_nodes(), vocab),
                      sampling_params{}, philox_uniforms{});
    } catch (const error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string f = message(0.0f);
  CHECK_THAT(f, Catch::Contains("logits[0, 2]"));
  CHECK(message(redraft::half{}) == f);
  CHECK(message(bfloat16{}) == f);
}

namespace {

// Runs a matrix op on float logits and on T logits; the T results, read as float, must equal the
// float results rounded to T (identical when the float results are representable).
template <class B, class T, class Op>
void check_op(const B& backend, const std::vector<float>& x, std::int64_t rows, std::int64_t vocab,
              Op op) {
  auto f = upload(backend, x);
  auto h = upload(backend, convert<T>(x));
  op(matrix_view<float>(f.data(), rows, vocab));
  op(matrix_view<T>(h.data(), rows, vocab));
  const auto fr = download(backend, f);
  const auto hr = download(backend, h);
  for (std::size_t i = 0; i < fr.size(); ++i) {
    CAPTURE(i, fr[i]);
    CHECK(hr[i].bits == from_float<T>(fr[i]).bits);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("logits ops on half and bfloat16 logits match float logits", "[half][ops]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::int64_t rows = 5;
  const std::int64_t vocab = GENERATE(9, 700);
  std::mt19937_64 rng(static_cast<std::uint64_t>(vocab));
  std::vector<float> x = representable_logits(rng, rows, vocab, false);
  for (float& v : x) v = std::isinf(v) ? 0.25f : v;  // the masks must not hit -inf already
  const auto both = [&](auto op) {
    check_op<TestType, redraft::half>(backend, x, rows, vocab, op);
    check_op<TestType, bfloat16>(backend, x, rows, vocab, op);
  };
  both([&](auto v) { apply_temperature(backend, v, 0.5f); });
  both([&](auto v) { apply_top_k(backend, v, 3); });
  both([&](auto v) { warp_top_k(backend, v, 4, -64.0f); });
  both([&](auto v) { apply_top_p(backend, v, 0.6f); });

  // log-probs: half / bfloat16 logits give exactly the CPU backend's float log_softmax.
  const cpu_backend cpu;
  std::vector<float> expected(x.size());
  to_log_probs(cpu, matrix_view<const float>(x.data(), rows, vocab),
               matrix_view<float>(expected.data(), rows, vocab));
  const auto lp = [&](auto element) {
    using T = decltype(element);
    const auto dev = upload(backend, convert<T>(x));
    auto out = backend.template allocate<float>(rows * vocab);
    to_log_probs(backend, matrix_view<const T>(dev.data(), rows, vocab),
                 matrix_view<float>(out.data(), rows, vocab));
    return download(backend, out);
  };
  CHECK(lp(redraft::half{}) == expected);
  CHECK(lp(bfloat16{}) == expected);
  auto probs = backend.template allocate<float>(rows * vocab);
  const auto hx = upload(backend, convert<redraft::half>(x));
  to_probs(backend, matrix_view<const redraft::half>(hx.data(), rows, vocab),
           matrix_view<float>(probs.data(), rows, vocab));
  const auto p = download(backend, probs);
  for (std::size_t i = 0; i < p.size(); ++i) CHECK(p[i] == std::exp(expected[i]));
}
