// Tests of verify/greedy.hpp: the tree walk equals ReDrafter's per-beam longest-match rule, on
// trees from beams and on arbitrary trees, and bad input is rejected with a clear error.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>

#include "backends.hpp"
#include "redraft/redraft.hpp"
#include "toy_backend.hpp"
#include "verify_test_util.hpp"

using namespace redraft;
using redraft_test::upload;

namespace {

// ReDrafter's rule, written from its description: per beam, the leading run of drafted tokens
// equal to the target's argmax at the previous position; the first longest beam wins.
struct apple_greedy {
  std::int32_t accepted_len, best_beam, next_token;
  std::vector<std::int32_t> nodes;
};

std::int32_t naive_argmax(const float* row, std::int64_t vocab) {
  std::int32_t best = 0;
  for (std::int64_t i = 1; i < vocab; ++i)
    if (row[i] > row[best]) best = static_cast<std::int32_t>(i);
  return best;
}

apple_greedy naive_greedy(const std::int32_t* beams, const std::int32_t* b2n, const float* logits,
                          std::int32_t width, std::int32_t length, std::int64_t vocab) {
  apple_greedy r{-1, 0, 0, {}};
  for (std::int32_t w = 0; w < width; ++w) {
    std::int32_t n = 0;
    while (n + 1 < length &&
           beams[w * length + n + 1] == naive_argmax(logits + b2n[w * length + n] * vocab, vocab))
      ++n;
    if (n > r.accepted_len) {
      r.accepted_len = n;
      r.best_beam = w;
    }
  }
  for (std::int32_t k = 0; k <= r.accepted_len; ++k)
    r.nodes.push_back(b2n[r.best_beam * length + k]);
  r.next_token = naive_argmax(logits + r.nodes.back() * vocab, vocab);
  return r;
}

}  // namespace

TEMPLATE_TEST_CASE("verify_greedy equals the per-beam longest-match rule on random beams",
                   "[verify][greedy]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::uint64_t seed = GENERATE(1u, 2u, 3u, 4u);
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 600; ++trial) {
    const std::int32_t batch = 1 + static_cast<std::int32_t>(rng() % 4);
    const std::int32_t width = 1 + static_cast<std::int32_t>(rng() % 6);
    const std::int32_t length = 2 + static_cast<std::int32_t>(rng() % 4);
    const std::int32_t vocab = 2 + static_cast<std::int32_t>(rng() % 4);
    const bool ties = rng() % 2 == 0;
    CAPTURE(trial, batch, width, length, vocab, ties);
    const auto beams = redraft_test::random_beams(rng, batch, width, length, vocab);
    const auto beams_dev = upload(backend, beams);
    const auto t =
        build_tree(backend, view<const std::int32_t, 3>(beams_dev.data(), batch, width, length));
    auto logits = redraft_test::random_logits(rng, t.total_nodes(), vocab, ties);
    // Make matches likely: at some nodes, put the max on a child's token.
    const auto logits_dev = upload(backend, logits);
    const auto result =
        to_host(backend,
                verify_greedy(backend, t,
                              matrix_view<const float>(logits_dev.data(), t.total_nodes(), vocab)));
    const auto b2n = redraft_test::download<TestType, std::int32_t>(backend, t.beam_to_node);
    REQUIRE(result.path_length == length);
    for (std::int32_t b = 0; b < batch; ++b) {
      CAPTURE(b);
      const std::int32_t off = t.host_node_offsets[static_cast<std::size_t>(b)];
      const auto ref = naive_greedy(
          beams.data() + b * width * length, b2n.data() + b * width * length,
          logits.data() + static_cast<std::ptrdiff_t>(off) * vocab, width, length, vocab);
      REQUIRE(result.accepted_len[static_cast<std::size_t>(b)] == ref.accepted_len);
      REQUIRE(result.best_beam[static_cast<std::size_t>(b)] == ref.best_beam);
      REQUIRE(result.next_token[static_cast<std::size_t>(b)] == ref.next_token);
      REQUIRE(result.hidden_row[static_cast<std::size_t>(b)] == off + ref.nodes.back());
      for (std::int32_t i = 0; i < length; ++i) {
        const std::int32_t expected_node =
            i <= ref.accepted_len ? ref.nodes[static_cast<std::size_t>(i)] : -1;
        REQUIRE(result.accepted_node(b, i) == expected_node);
        const std::int32_t expected_token =
            i < ref.accepted_len
                ? beams[static_cast<std::size_t>((b * width + ref.best_beam) * length + i + 1)]
            : i == ref.accepted_len ? ref.next_token
                                    : -1;
        REQUIRE(result.emitted_token(b, i) == expected_token);
      }
    }
  }
}

TEMPLATE_TEST_CASE("verify_greedy walks arbitrary trees (no beams): best_beam is -1",
                   "[verify][greedy]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  std::mt19937_64 rng(77);
  for (int trial = 0; trial < 300; ++trial) {
    const std::int32_t vocab = 2 + static_cast<std::int32_t>(rng() % 5);
    std::vector<redraft_test::host_tree> trees;
    const std::int32_t batch = 1 + static_cast<std::int32_t>(rng() % 3);
    for (std::int32_t b = 0; b < batch; ++b)
      trees.push_back(
          redraft_test::random_tree(rng, 1 + static_cast<std::int32_t>(rng() % 12), vocab, 4));
    const auto t = redraft_test::make_tree(backend, trees);
    const auto logits = redraft_test::random_logits(rng, t.total_nodes(), vocab, true);
    const auto logits_dev = upload(backend, logits);
    const auto r =
        to_host(backend,
                verify_greedy(backend, t,
                              matrix_view<const float>(logits_dev.data(), t.total_nodes(), vocab)));
    std::int32_t max_depth = 0;
    for (const auto& h : trees) {
      const auto d = h.depth();
      max_depth = std::max(max_depth, *std::max_element(d.begin(), d.end()));
    }
    REQUIRE(r.path_length == max_depth + 1);
    for (std::int32_t b = 0; b < batch; ++b) {
      CAPTURE(trial, b);
      const auto& h = trees[static_cast<std::size_t>(b)];
      const float* base =
          logits.data() +
          static_cast<std::ptrdiff_t>(t.host_node_offsets[static_cast<std::size_t>(b)]) * vocab;
      // Naive walk: scan all nodes for the child.
      std::int32_t u = 0, len = 0;
      for (;;) {
        const std::int32_t x = naive_argmax(base + u * vocab, vocab);
        std::int32_t next = -1;
        for (std::int32_t c = 0; c < h.size(); ++c)
          if (h.parent[static_cast<std::size_t>(c)] == u &&
              h.token[static_cast<std::size_t>(c)] == x)
            next = c;
        if (next < 0) {
          REQUIRE(r.next_token[static_cast<std::size_t>(b)] == x);
          break;
        }
        ++len;
        REQUIRE(r.accepted_node(b, len) == next);
        u = next;
      }
      REQUIRE(r.accepted_len[static_cast<std::size_t>(b)] == len);
      REQUIRE(r.best_beam[static_cast<std::size_t>(b)] == -1);
    }
  }
}

TEMPLATE_TEST_CASE("verify_greedy rejects bad input with a clear error", "[verify][greedy][errors]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  // Root 5 with children 1 and 2; node 1 has child 3.
  const std::vector<redraft_test::host_tree> trees{{{-1, 0, 0, 1}, {5, 1, 2, 3}}};
  const auto t = redraft_test::make_tree(backend, trees);
  const std::int32_t vocab = 6;
  std::vector<float> logits(static_cast<std::size_t>(4 * vocab), 0.0f);
  logits[1] = 3.0f;  // root argmax: token 1 -> node 1
  auto dev = upload(backend, logits);

  SECTION("rows != nodes") {
    CHECK_THROWS_WITH(verify_greedy(backend, t, matrix_view<const float>(dev.data(), 3, vocab)),
                      "verify_greedy: logits has 3 rows but the tree has 4 nodes");
  }
  SECTION("NaN in a row the walk reads") {
    logits[static_cast<std::size_t>(vocab + 4)] = std::numeric_limits<float>::quiet_NaN();
    dev = upload(backend, logits);
    CHECK_THROWS_WITH(verify_greedy(backend, t, matrix_view<const float>(dev.data(), 4, vocab)),
                      Catch::Contains("logits[1, 4]") && Catch::Contains("NaN or +inf"));
  }
  SECTION("NaN with the sign bit set") {
    logits[3] = -std::numeric_limits<float>::quiet_NaN();
    dev = upload(backend, logits);
    CHECK_THROWS_WITH(verify_greedy(backend, t, matrix_view<const float>(dev.data(), 4, vocab)),
                      Catch::Contains("logits[0, 3]"));
  }
  SECTION("+inf at the root") {
    logits[2] = std::numeric_limits<float>::infinity();
    dev = upload(backend, logits);
    CHECK_THROWS_AS(verify_greedy(backend, t, matrix_view<const float>(dev.data(), 4, vocab)),
                    redraft::error);
  }
  SECTION("a row of -inf only") {
    for (int i = 0; i < vocab; ++i)
      logits[static_cast<std::size_t>(i)] = -std::numeric_limits<float>::infinity();
    dev = upload(backend, logits);
    CHECK_THROWS_WITH(verify_greedy(backend, t, matrix_view<const float>(dev.data(), 4, vocab)),
                      Catch::Contains("has no finite value"));
  }
  SECTION("-inf entries are allowed (masked vocabulary)") {
    logits[4] = -std::numeric_limits<float>::infinity();
    dev = upload(backend, logits);
    const auto r =
        to_host(backend, verify_greedy(backend, t, matrix_view<const float>(dev.data(), 4, vocab)));
    CHECK(r.accepted_len[0] == 1);
    CHECK(r.next_token[0] == 0);  // node 1's row is all zero (and -inf not on it): argmax 0
  }
  SECTION("token outside the vocabulary") {
    const auto bad = redraft_test::make_tree(backend, {{{-1, 0}, {5, 9}}});
    CHECK_THROWS_WITH(verify_greedy(backend, bad, matrix_view<const float>(dev.data(), 2, vocab)),
                      Catch::Contains("tree token 9"));
  }
  SECTION("duplicate sibling tokens") {
    const auto bad = redraft_test::make_tree(backend, {{{-1, 0, 0}, {5, 2, 2}}});
    CHECK_THROWS_WITH(verify_greedy(backend, bad, matrix_view<const float>(dev.data(), 3, vocab)),
                      Catch::Contains("duplicate sibling tokens"));
  }
}
