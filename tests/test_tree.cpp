// Tests of tree/build_tree.hpp (the trie) and tree/build_tree_parallel.hpp (the prefix-owner
// form): both against the naive prefix-comparison reference of testing/reference_tree.hpp, and
// against each other, on thousands of random beam sets; invariants; edge cases; bad input.
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "backends.hpp"
#include "redraft/redraft.hpp"
#include "redraft/testing/reference_tree.hpp"
#include "toy_backend.hpp"
#include "tree_test_util.hpp"

using namespace redraft;
using redraft_test::host_tree_copy;
using redraft_test::to_host;

namespace {

enum class form { trie, parallel };

template <class B>
tree<B> build(form f, const B& backend, view<const std::int32_t, 3> beams) {
  return f == form::trie ? build_tree(backend, beams) : build_tree_parallel(backend, beams);
}

template <class B>
typename B::template buffer<std::int32_t> upload(const B& backend,
                                                 const std::vector<std::int32_t>& host) {
  auto out = backend.template allocate<std::int32_t>(static_cast<index_t>(host.size()));
  backend.copy_from_host(host.data(), static_cast<index_t>(host.size()), out.data());
  return out;
}

// Checks tree h (built from beams [B, W, L]) against the reference and the tree invariants.
void check_against_reference(const host_tree_copy& h, const std::vector<std::int32_t>& beams,
                             int batch, int width, int length) {
  REQUIRE(h.batch == batch);
  REQUIRE(h.beam_width == width);
  REQUIRE(h.beam_length == length);
  REQUIRE(h.node_offsets.size() == static_cast<std::size_t>(batch) + 1);
  REQUIRE(h.node_offsets[0] == 0);
  REQUIRE(h.beam_to_node.size() == beams.size());
  REQUIRE(h.token.size() == static_cast<std::size_t>(h.node_offsets.back()));
  for (int b = 0; b < batch; ++b) {
    CAPTURE(b);
    const std::int32_t* req = beams.data() + static_cast<std::size_t>(b) * width * length;
    const testing::reference_tree ref = testing::reference_pack(req, width, length);
    const std::int32_t n = h.num_nodes(b);
    // n_b <= 1 + W (L - 1)
    CHECK(n <= 1 + width * (length - 1));
    CHECK(h.slice(h.token, b) == ref.token);
    CHECK(h.slice(h.parent, b) == ref.parent);
    CHECK(h.slice(h.depth, b) == ref.depth);
    const std::vector<std::int32_t> b2n(
        h.beam_to_node.begin() + static_cast<std::ptrdiff_t>(b) * width * length,
        h.beam_to_node.begin() + static_cast<std::ptrdiff_t>(b + 1) * width * length);
    CHECK(b2n == ref.beam_to_node);
    // tokens[beam_to_node] == beams
    const std::vector<std::int32_t> tok = h.slice(h.token, b), par = h.slice(h.parent, b),
                                    dep = h.slice(h.depth, b);
    for (int k = 0; k < width * length; ++k) {
      REQUIRE(b2n[static_cast<std::size_t>(k)] >= 0);
      REQUIRE(b2n[static_cast<std::size_t>(k)] < n);
      CHECK(tok[static_cast<std::size_t>(b2n[static_cast<std::size_t>(k)])] == req[k]);
    }
    // root, parent precedes child, depth(parent) = depth - 1
    CHECK(par[0] == -1);
    CHECK(dep[0] == 0);
    for (int i = 1; i < n; ++i) {
      const std::int32_t p = par[static_cast<std::size_t>(i)];
      REQUIRE(p >= 0);
      REQUIRE(p < i);
      CHECK(dep[static_cast<std::size_t>(p)] == dep[static_cast<std::size_t>(i)] - 1);
    }
  }
}

// Two trees equal array for array (the parallel form against the trie).
void check_identical(const host_tree_copy& a, const host_tree_copy& b) {
  CHECK(a.node_offsets == b.node_offsets);
  CHECK(a.token == b.token);
  CHECK(a.parent == b.parent);
  CHECK(a.depth == b.depth);
  CHECK(a.beam_to_node == b.beam_to_node);
}

}  // namespace

TEMPLATE_TEST_CASE(
    "build_tree and build_tree_parallel equal the naive prefix reference on random beams",
    "[tree][build_tree]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::uint32_t seed = GENERATE(1u, 2u, 3u, 4u);
  std::mt19937 rng(seed);
  for (int round = 0; round < 500; ++round) {  // 4 seeds x 500 = 2000 beam sets per backend
    const int batch = std::uniform_int_distribution<int>(0, 4)(rng);
    const int width = std::uniform_int_distribution<int>(1, 12)(rng);
    const int length = std::uniform_int_distribution<int>(2, 7)(rng);
    const int alphabet = std::uniform_int_distribution<int>(1, 4)(rng);
    CAPTURE(seed, round, batch, width, length, alphabet);
    const std::vector<std::int32_t> beams =
        redraft_test::random_beams(rng, batch, width, length, alphabet);
    const auto device_beams = upload(backend, beams);
    const view<const std::int32_t, 3> v(device_beams.data(), batch, width, length);
    const host_tree_copy trie = to_host(backend, build_tree(backend, v));
    const host_tree_copy parallel = to_host(backend, build_tree_parallel(backend, v));
    check_against_reference(trie, beams, batch, width, length);
    // The parallel form is identical to the trie, array for array.
    check_identical(parallel, trie);
  }
}

TEMPLATE_TEST_CASE(
    "build_tree_parallel checks expected roots in its status transfer and names the request",
    "[tree][build_tree][errors]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  // Request 0 starts at 5, request 1 at 7 (two beams each, L = 3).
  const std::vector<std::int32_t> beams = {5, 1, 2, 5, 1, 3, 7, 4, 4, 7, 0, 1};
  const auto device_beams = upload(backend, beams);
  const view<const std::int32_t, 3> v(device_beams.data(), 2, 2, 3);
  const std::vector<std::int32_t> request_ids = {10, 11};
  const auto good = upload(backend, std::vector<std::int32_t>{5, 7});
  const host_tree_copy plain = to_host(backend, build_tree_parallel(backend, v));
  const host_tree_copy checked =
      to_host(backend, detail::build_tree_parallel_checked("caller", backend, v, {}, good.data(),
                                                           request_ids.data()));
  CHECK(checked.node_offsets == plain.node_offsets);
  CHECK(checked.token == plain.token);
  CHECK(checked.parent == plain.parent);
  CHECK(checked.beam_to_node == plain.beam_to_node);
  const auto wrong = upload(backend, std::vector<std::int32_t>{5, 8});
  CHECK_THROWS_WITH(detail::build_tree_parallel_checked("caller", backend, v, {}, wrong.data(),
                                                        request_ids.data()),
                    "caller: the drafter's beams for request 11 start with token 7 instead of the "
                    "root 8");
}

TEMPLATE_TEST_CASE("build_tree edge cases", "[tree][build_tree]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const form f = GENERATE(form::trie, form::parallel);
  CAPTURE(f == form::trie ? "trie" : "parallel");

  SECTION("the worked example: 3 beams of length 4") {
    const std::vector<std::int32_t> beams = {0, 2, 0, 4, 0, 2, 3, 3, 0, 2, 3, 3};
    const auto d = upload(backend, beams);
    const host_tree_copy h =
        to_host(backend, build(f, backend, view<const std::int32_t, 3>(d.data(), 1, 3, 4)));
    CHECK(h.token == std::vector<std::int32_t>{0, 2, 0, 4, 3, 3});
    CHECK(h.parent == std::vector<std::int32_t>{-1, 0, 1, 2, 1, 4});
    CHECK(h.depth == std::vector<std::int32_t>{0, 1, 2, 3, 2, 3});
    CHECK(h.beam_to_node == std::vector<std::int32_t>{0, 1, 2, 3, 0, 1, 4, 5, 0, 1, 4, 5});
  }
  SECTION("W = 1 gives a chain") {
    const int length = GENERATE(2, 5, 9);
    CAPTURE(length);
    std::vector<std::int32_t> beams(static_cast<std::size_t>(length), 7);
    const auto d = upload(backend, beams);
    const host_tree_copy h =
        to_host(backend, build(f, backend, view<const std::int32_t, 3>(d.data(), 1, 1, length)));
    REQUIRE(h.num_nodes(0) == length);
    for (int i = 0; i < length; ++i) {
      CHECK(h.parent[static_cast<std::size_t>(i)] == i - 1);
      CHECK(h.depth[static_cast<std::size_t>(i)] == i);
      CHECK(h.beam_to_node[static_cast<std::size_t>(i)] == i);
    }
  }
  SECTION("L = 2: a star of the distinct first tokens") {
    const std::vector<std::int32_t> beams = {5, 1, 5, 2, 5, 1, 5, 3};  // [1, 4, 2]
    const auto d = upload(backend, beams);
    const host_tree_copy h =
        to_host(backend, build(f, backend, view<const std::int32_t, 3>(d.data(), 1, 4, 2)));
    CHECK(h.token == std::vector<std::int32_t>{5, 1, 2, 3});
    CHECK(h.parent == std::vector<std::int32_t>{-1, 0, 0, 0});
    CHECK(h.beam_to_node == std::vector<std::int32_t>{0, 1, 0, 2, 0, 1, 0, 3});
  }
  SECTION("identical beams collapse to one chain") {
    const int width = GENERATE(2, 8, 33);
    CAPTURE(width);
    std::vector<std::int32_t> beams;
    for (int w = 0; w < width; ++w) beams.insert(beams.end(), {9, 4, 4, 1, 0});
    const auto d = upload(backend, beams);
    const host_tree_copy h =
        to_host(backend, build(f, backend, view<const std::int32_t, 3>(d.data(), 1, width, 5)));
    CHECK(h.num_nodes(0) == 5);
    for (int w = 0; w < width; ++w) {
      for (int l = 0; l < 5; ++l) CHECK(h.beam_to_node[static_cast<std::size_t>(w * 5 + l)] == l);
    }
  }
  SECTION("fully distinct beams keep every node, n_b > 64") {
    const int width = GENERATE(3, 16, 40);
    const int length = GENERATE(2, 8);
    CAPTURE(width, length);
    std::vector<std::int32_t> beams;
    for (int w = 0; w < width; ++w) {
      beams.push_back(1);
      for (int l = 1; l < length; ++l) beams.push_back(w);  // first drafted token differs
    }
    const auto d = upload(backend, beams);
    const host_tree_copy h = to_host(
        backend, build(f, backend, view<const std::int32_t, 3>(d.data(), 1, width, length)));
    CHECK(h.num_nodes(0) == 1 + width * (length - 1));
    check_against_reference(h, beams, 1, width, length);
  }
  SECTION("batch of 0 requests") {
    const auto d = upload(backend, std::vector<std::int32_t>{});
    const tree<TestType> t = build(f, backend, view<const std::int32_t, 3>(d.data(), 0, 4, 3));
    CHECK(t.batch == 0);
    CHECK(t.total_nodes() == 0);
    CHECK(t.max_nodes() == 0);
    const host_tree_copy h = to_host(backend, t);
    CHECK(h.node_offsets == std::vector<std::int32_t>{0});
    CHECK(h.token.empty());
    CHECK(h.beam_to_node.empty());
  }
  SECTION("requests of a batch are independent") {
    // Request 1 repeats request 0's drafted tokens under another root: same shape, own offsets.
    const std::vector<std::int32_t> beams = {0, 2, 0, 4, 0, 2, 3, 3, 0, 2, 3, 3,
                                             8, 2, 0, 4, 8, 2, 3, 3, 8, 2, 3, 3};
    const auto d = upload(backend, beams);
    const host_tree_copy h =
        to_host(backend, build(f, backend, view<const std::int32_t, 3>(d.data(), 2, 3, 4)));
    CHECK(h.node_offsets == std::vector<std::int32_t>{0, 6, 12});
    CHECK(h.slice(h.parent, 1) == h.slice(h.parent, 0));
    CHECK(h.token[6] == 8);
  }
}

TEMPLATE_TEST_CASE("build_tree rejects bad beams with redraft::error and leaves the output alone",
                   "[tree][build_tree][errors]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const form f = GENERATE(form::trie, form::parallel);
  const char* name = f == form::trie ? "build_tree: " : "build_tree_parallel: ";
  CAPTURE(name);
  const std::vector<std::int32_t> good = {0, 2, 0, 4, 0, 2, 3, 3, 0, 2, 3, 3};
  const auto good_d = upload(backend, good);
  tree<TestType> t = build(f, backend, view<const std::int32_t, 3>(good_d.data(), 1, 3, 4));
  const host_tree_copy before = to_host(backend, t);

  const auto expect_error = [&](const std::vector<std::int32_t>& beams, index_t batch,
                                index_t width, index_t length, const std::string& message) {
    const auto d = upload(backend, beams);
    CHECK_THROWS_AS(
        t = build(f, backend, view<const std::int32_t, 3>(d.data(), batch, width, length)),
        redraft::error);
    CHECK_THROWS_WITH(
        build(f, backend, view<const std::int32_t, 3>(d.data(), batch, width, length)),
        Catch::StartsWith(name) && Catch::Contains(message));
    const host_tree_copy after = to_host(backend, t);
    CHECK(after.token == before.token);
    CHECK(after.beam_to_node == before.beam_to_node);
  };
  SECTION("L < 2") { expect_error({0, 0, 0}, 1, 3, 1, "beam_length 1 must be at least 2"); }
  SECTION("L = 0") { expect_error({}, 1, 3, 0, "beam_length 0"); }
  SECTION("W < 1") { expect_error({}, 1, 0, 4, "beam_width 0 must be at least 1"); }
  SECTION("negative token id") {
    std::vector<std::int32_t> bad = good;
    bad[6] = -3;
    expect_error(bad, 1, 3, 4, "beams[0, 1, 2] = -3 is not a valid token id");
  }
  SECTION("negative root token") {
    std::vector<std::int32_t> bad = good;
    bad[0] = bad[4] = bad[8] = -1;
    expect_error(bad, 1, 3, 4, "beams[0, 0, 0] = -1");
  }
  SECTION("differing roots within a request") {
    std::vector<std::int32_t> bad = good;
    bad[8] = 5;
    expect_error(bad, 1, 3, 4, "beams[0, 2, 0] = 5 differs from beams[0, 0, 0] = 0");
  }
}

// Beams shorter than L (beam_lengths [B, W]): both forms equal a naive reference that inserts
// each beam's first beam_lengths[b, w] tokens into a map from prefix to node, in order.
TEMPLATE_TEST_CASE("build_tree with beam_lengths: both forms equal the prefix reference",
                   "[tree][build_tree]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  std::mt19937 rng(17);
  for (int round = 0; round < 400; ++round) {
    const int batch = std::uniform_int_distribution<int>(0, 3)(rng);
    const int width = std::uniform_int_distribution<int>(1, 8)(rng);
    const int length = std::uniform_int_distribution<int>(2, 6)(rng);
    const int alphabet = std::uniform_int_distribution<int>(1, 3)(rng);
    CAPTURE(round, batch, width, length, alphabet);
    std::vector<std::int32_t> beams =
        redraft_test::random_beams(rng, batch, width, length, alphabet);
    std::vector<std::int32_t> lengths(static_cast<std::size_t>(batch * width));
    for (auto& n : lengths) n = std::uniform_int_distribution<int>(1, length)(rng);
    // Garbage past each length (even negative ids) must be ignored.
    for (int bw = 0; bw < batch * width; ++bw)
      for (int l = lengths[static_cast<std::size_t>(bw)]; l < length; ++l)
        beams[static_cast<std::size_t>(bw * length + l)] = -1 - l;
    const auto device_beams = upload(backend, beams);
    const auto device_lengths = upload(backend, lengths);
    const view<const std::int32_t, 3> v(device_beams.data(), batch, width, length);
    const matrix_view<const std::int32_t> lv(device_lengths.data(), batch, width);
    const tree<TestType> built = build_tree(backend, v, lv);
    CHECK(built.short_beams == (batch > 0));
    const host_tree_copy trie = to_host(backend, built);
    const host_tree_copy parallel = to_host(backend, build_tree_parallel(backend, v, lv));
    check_identical(parallel, trie);
    for (int b = 0; b < batch; ++b) {
      std::map<std::vector<std::int32_t>, std::int32_t> node_of{{{}, 0}};
      std::vector<std::int32_t> token{beams[static_cast<std::size_t>(b * width * length)]},
          parent{-1}, depth{0}, b2n;
      for (int w = 0; w < width; ++w) {
        const std::int32_t* beam = beams.data() + (b * width + w) * length;
        std::vector<std::int32_t> prefix;
        b2n.push_back(0);
        for (int l = 1; l < length; ++l) {
          if (l >= lengths[static_cast<std::size_t>(b * width + w)]) {
            b2n.push_back(-1);
            continue;
          }
          const std::int32_t up = node_of.at(prefix);
          prefix.push_back(beam[l]);
          auto [it, fresh] = node_of.try_emplace(prefix, static_cast<std::int32_t>(token.size()));
          if (fresh) {
            token.push_back(beam[l]);
            parent.push_back(up);
            depth.push_back(l);
          }
          b2n.push_back(it->second);
        }
      }
      CAPTURE(b);
      CHECK(trie.slice(trie.token, b) == token);
      CHECK(trie.slice(trie.parent, b) == parent);
      CHECK(trie.slice(trie.depth, b) == depth);
      CHECK(std::vector<std::int32_t>(trie.beam_to_node.begin() + b * width * length,
                                      trie.beam_to_node.begin() + (b + 1) * width * length) == b2n);
    }
  }
}

TEMPLATE_TEST_CASE("build_tree rejects bad beam_lengths", "[tree][build_tree][errors]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const form f = GENERATE(form::trie, form::parallel);
  const std::vector<std::int32_t> beams = {5, 1, 2, 5, 3, 4};  // [1, 2, 3]
  const auto device_beams = upload(backend, beams);
  const view<const std::int32_t, 3> v(device_beams.data(), 1, 2, 3);
  const auto run = [&](const std::vector<std::int32_t>& lengths, index_t rows, index_t cols) {
    const auto d = upload(backend, lengths);
    const matrix_view<const std::int32_t> lv(d.data(), rows, cols);
    return f == form::trie ? build_tree(backend, v, lv) : build_tree_parallel(backend, v, lv);
  };
  CHECK_THROWS_WITH(run({0, 3}, 1, 2), Catch::Contains("beam_lengths[0, 0] = 0 is outside [1, 3]"));
  CHECK_THROWS_WITH(run({3, 4}, 1, 2), Catch::Contains("beam_lengths[0, 1] = 4 is outside [1, 3]"));
  CHECK_THROWS_WITH(run({3, 3, 3}, 1, 3),
                    Catch::Contains("beam_lengths is [1, 3], expected [1, 2]"));
  // A negative token inside a beam's length is still an error; past it, ignored.
  const std::vector<std::int32_t> bad = {5, -2, 2, 5, 3, -7};
  const auto device_bad = upload(backend, bad);
  const auto d = upload(backend, std::vector<std::int32_t>{3, 2});
  const matrix_view<const std::int32_t> lv(d.data(), 1, 2);
  const view<const std::int32_t, 3> vb(device_bad.data(), 1, 2, 3);
  CHECK_THROWS_WITH(
      f == form::trie ? build_tree(backend, vb, lv) : build_tree_parallel(backend, vb, lv),
      Catch::Contains("beams[0, 0, 1] = -2"));
  const auto d2 = upload(backend, std::vector<std::int32_t>{1, 2});
  const matrix_view<const std::int32_t> lv2(d2.data(), 1, 2);
  const host_tree_copy h =
      to_host(backend, f == form::trie ? build_tree(backend, vb, lv2)
                                       : build_tree_parallel(backend, vb, lv2));
  CHECK(h.token == std::vector<std::int32_t>{5, 3});
  CHECK(h.beam_to_node == std::vector<std::int32_t>{0, -1, -1, 0, 1, -1});
}

// cpu_backend declaring its memory not host-accessible (Backend clause 8), so build_tree takes the
// path it takes on a GPU (the parallel form, no copy of the beams to the host); the memory is still
// the host's, so the test runs on any machine. (A named namespace, unique to this file: the GPU
// test program links several test sources, and clang warns on clause 8's constant in a class of
// internal linkage.)
namespace test_tree_device_memory {
struct device_memory_cpu_backend : cpu_backend {
  static constexpr bool memory_is_host_accessible = false;
};
static_assert(Backend<device_memory_cpu_backend>);
static_assert(!backend_memory_is_host_accessible_v<device_memory_cpu_backend>);
}  // namespace test_tree_device_memory

TEST_CASE("build_tree on device memory equals the trie and names build_tree in its errors",
          "[tree][build_tree][errors]") {
  using test_tree_device_memory::device_memory_cpu_backend;
  const device_memory_cpu_backend device;
  const cpu_backend cpu;
  std::mt19937 rng(11);
  const std::vector<std::int32_t> beams = redraft_test::random_beams(rng, 3, 5, 4, 3);
  const auto d = upload(cpu, beams);  // the same host memory for both backends
  const view<const std::int32_t, 3> v(d.data(), 3, 5, 4);
  const host_tree_copy got = to_host(device, build_tree(device, v));
  const host_tree_copy trie = to_host(cpu, build_tree(cpu, v));
  check_identical(got, trie);

  // Errors name the function the caller called, not the form it dispatched to.
  CHECK_THROWS_WITH(
      build_tree(device, view<const std::int32_t, 3>(d.data(), 1, 3, 1)),
      Catch::StartsWith("build_tree: ") && Catch::Contains("beam_length 1 must be at least 2"));
  CHECK_THROWS_WITH(
      build_tree(device, view<const std::int32_t, 3>(d.data(), 1, 0, 4)),
      Catch::StartsWith("build_tree: ") && Catch::Contains("beam_width 0 must be at least 1"));
  std::vector<std::int32_t> bad = beams;
  bad[6] = -3;  // beams[0, 1, 2]
  const auto d_bad = upload(cpu, bad);
  CHECK_THROWS_WITH(build_tree(device, view<const std::int32_t, 3>(d_bad.data(), 3, 5, 4)),
                    Catch::StartsWith("build_tree: ") &&
                        Catch::Contains("beams[0, 1, 2] = -3 is not a valid token id"));
  const auto lengths = upload(cpu, std::vector<std::int32_t>{4, 4, 4});
  CHECK_THROWS_WITH(build_tree(device, v, matrix_view<const std::int32_t>(lengths.data(), 1, 3)),
                    Catch::StartsWith("build_tree: ") &&
                        Catch::Contains("beam_lengths is [1, 3], expected [3, 5]"));
}
