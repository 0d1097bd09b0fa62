// Tests of core/: views, errors, Philox, and the Backend concept (conforming and broken types).
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>

#include "redraft/redraft.hpp"
#include "toy_backend.hpp"

using namespace redraft;

TEST_CASE("view indexes row-major and slices the leading dimension", "[core][view]") {
  std::vector<int> data(24);
  for (int i = 0; i < 24; ++i) data[static_cast<std::size_t>(i)] = i;
  view<int, 3> v(data.data(), 2, 3, 4);
  CHECK(v.size() == 24);
  CHECK(v(1, 2, 3) == 23);
  CHECK(v(1, 0, 2) == 14);
  const auto s = v.slice(1);
  CHECK(s.extent(0) == 3);
  CHECK(s.extent(1) == 4);
  CHECK(s(2, 1) == 21);
  view<const int, 3> c = v;
  CHECK(c(0, 1, 1) == 5);
}

TEST_CASE("REDRAFT_REQUIRE throws redraft::error with the message parts", "[core][error]") {
  const auto f = [](int w) { REDRAFT_REQUIRE(w >= 1, "f: beam_width ", w, " must be at least 1"); };
  CHECK_NOTHROW(f(1));
  CHECK_THROWS_AS(f(0), redraft::error);
  CHECK_THROWS_WITH(f(-3), "f: beam_width -3 must be at least 1");
  // redraft::error is a std::runtime_error, so generic handlers catch it.
  CHECK_THROWS_AS(f(0), std::runtime_error);
}

TEST_CASE("Philox4x32-10 reproduces Random123's known-answer vectors", "[core][philox]") {
  // Random123 kat_vectors for philox4x32_10 (counter, key -> output).
  auto a = philox4x32_10(philox_block{{0, 0, 0, 0}}, 0, 0);
  CHECK(a.x[0] == 0x6627e8d5u);
  CHECK(a.x[1] == 0xe169c58du);
  CHECK(a.x[2] == 0xbc57ac4cu);
  CHECK(a.x[3] == 0x9b00dbd8u);
  auto b = philox4x32_10(philox_block{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
                         0xffffffffu, 0xffffffffu);
  CHECK(b.x[0] == 0x408f276du);
  CHECK(b.x[1] == 0x41c83b0eu);
  CHECK(b.x[2] == 0xa20bc7c6u);
  CHECK(b.x[3] == 0x6d5451fdu);
  auto c = philox4x32_10(philox_block{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
                         0xa4093822u, 0x299f31d0u);
  CHECK(c.x[0] == 0xd16cfe09u);
  CHECK(c.x[1] == 0x94fdccebu);
  CHECK(c.x[2] == 0x5001e420u);
  CHECK(c.x[3] == 0x24126ea1u);
}

TEST_CASE("philox_stream draws uniforms below 1 from distinct streams", "[core][philox]") {
  const philox_stream s{12345, 3, 7};
  const philox_stream other_request{12345, 4, 7};
  const philox_stream other_step{12345, 3, 8};
  int differs_request = 0, differs_step = 0;
  double sum = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const float u = s.uniform(static_cast<std::uint64_t>(i));
    REQUIRE(u >= 0.0f);
    REQUIRE(u < 1.0f);
    sum += u;
    differs_request +=
        s.bits(static_cast<std::uint64_t>(i)) != other_request.bits(static_cast<std::uint64_t>(i));
    differs_step +=
        s.bits(static_cast<std::uint64_t>(i)) != other_step.bits(static_cast<std::uint64_t>(i));
  }
  CHECK(differs_request > n - 5);
  CHECK(differs_step > n - 5);
  // Mean of n uniforms: standard error 1/sqrt(12 n) ~ 0.002; 5 sigma bound.
  CHECK(std::abs(sum / n - 0.5) < 0.011);
  // Same key and index -> same value (pure function).
  CHECK(s.bits(999) == philox_stream{12345, 3, 7}.bits(999));
  // Lanes of one block come from one evaluation.
  const auto block = philox4x32_10(philox_block{{1, 0, 3, 7}}, 12345, 0);
  CHECK(s.bits(4) == block.x[0]);
  CHECK(s.bits(7) == block.x[3]);
  CHECK(uniform_from_bits(0xffffffffu) < 1.0f);
}

namespace {
// A type that looks like a backend but lacks row_top_k: must not model the concept.
struct broken_backend : redraft_test::toy_backend {
  void row_top_k() = delete;
};
// A type whose buffers are not movable: must not model the concept.
struct pinned_buffer_backend : redraft_test::toy_backend {
  template <class T>
  struct buffer {
    buffer(const buffer&) = delete;
    buffer(buffer&&) = delete;
    T* data();
    const T* data() const;
    index_t size() const;
  };
};
}  // namespace

TEST_CASE("Backend concept: conforming types model it, broken ones do not", "[core][backend]") {
  STATIC_REQUIRE(Backend<cpu_backend>);
  STATIC_REQUIRE(Backend<redraft_test::toy_backend>);
  STATIC_REQUIRE_FALSE(Backend<broken_backend>);
  STATIC_REQUIRE_FALSE(Backend<pinned_buffer_backend>);
  STATIC_REQUIRE_FALSE(Backend<int>);
}
