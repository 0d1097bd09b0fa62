// Hostile inputs and limits (docs/reliability.md): one named regression test per bug the fuzz
// targets found, the "no partial output before a throw" contract of the in-place entry points,
// and behaviour at the edges: int32 positions near INT32_MAX, a 256k vocabulary, batch 1024,
// wide and long beams (node indices and packed mask words past 32, 64, 128).
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "../tools/conformance/golden_format.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/kv/compaction.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/masks.hpp"
#include "redraft/tree/static_tree.hpp"
#include "redraft/verify/greedy.hpp"
#include "redraft/verify/logits_processing.hpp"
#include "redraft/verify/lossless.hpp"
#include "redraft/verify/redrafter.hpp"
#include "redraft/verify/typical.hpp"

using namespace redraft;
using Catch::Matchers::Contains;

namespace {

constexpr std::int32_t int32_max = std::numeric_limits<std::int32_t>::max();

// A chain tree root -> 1 -> 2 (depth 2) plus a sibling, as a parent array.
tree<cpu_backend> small_tree(std::int32_t batch = 1) {
  std::vector<std::int32_t> offsets(1, 0), parent, token;
  for (std::int32_t b = 0; b < batch; ++b) {
    for (std::int32_t p : {-1, 0, 1, 0}) parent.push_back(p);
    for (std::int32_t t : {0, 1, 2, 3}) token.push_back(t);
    offsets.push_back(offsets.back() + 4);
  }
  return build_tree_from_parents(
      cpu_backend{}, view<const std::int32_t, 1>(offsets.data(), batch + 1),
      view<const std::int32_t, 1>(parent.data(), static_cast<index_t>(parent.size())),
      view<const std::int32_t, 1>(token.data(), static_cast<index_t>(token.size())));
}

}  // namespace

// ---- regressions of fuzz findings ----

TEST_CASE("build_positions refuses base + depth beyond INT32_MAX instead of wrapping",
          "[hardening][limits][positions]") {
  const cpu_backend backend;
  const auto t = small_tree();  // max depth 2, 4 nodes
  SECTION("the largest base that fits works exactly") {
    const std::vector<std::int32_t> base = {int32_max - 2};
    const auto p = build_positions(backend, t, view<const std::int32_t, 1>(base.data(), 1));
    CHECK(p[0] == int32_max - 2);
    CHECK(p[2] == int32_max);
  }
  SECTION("one more throws, naming the request") {
    const std::vector<std::int32_t> base = {int32_max - 1};
    CHECK_THROWS_WITH(build_positions(backend, t, view<const std::int32_t, 1>(base.data(), 1)),
                      Contains("base_positions[0] = 2147483646 plus the tree depth 2 exceeds"));
  }
  SECTION("a base of INT32_MAX under a depth-1 tree throws") {
    const std::vector<std::int32_t> beams = {7, 8};  // [1, 1, 2]: depth 1
    const auto chain = build_tree(backend, view<const std::int32_t, 3>(beams.data(), 1, 1, 2));
    const std::vector<std::int32_t> base = {int32_max};
    CHECK_THROWS_AS(build_positions(backend, chain, view<const std::int32_t, 1>(base.data(), 1)),
                    error);
  }
}

TEST_CASE("sampling verifiers refuse temperatures whose reciprocal overflows",
          "[hardening][verify]") {
  const cpu_backend backend;
  const auto t = small_tree();
  std::vector<float> logits(16, 0.0f);
  logits[3] = 1.0f;
  const matrix_view<const float> lv(logits.data(), 4, 4);
  const float tiny = GENERATE(1e-39f, 2.9e-39f, std::numeric_limits<float>::denorm_min());
  CAPTURE(tiny);
  CHECK_THROWS_WITH(
      verify_lossless(backend, t, lv, sampling_params{tiny, 0, 1.0f}, philox_uniforms{}),
      Contains("finite 1 / T"));
  CHECK_THROWS_WITH(verify_typical(backend, t, lv, typical_params{tiny, 0.09f, 0.3f, false}),
                    Contains("finite 1 / T"));
  std::vector<float> scaled(logits);
  CHECK_THROWS_WITH(apply_temperature(backend, matrix_view<float>(scaled.data(), 4, 4), tiny),
                    Contains("finite 1 / T"));
  CHECK(scaled == logits);
  // The smallest normal float still works, and the walk stays well defined.
  const auto a =
      to_host(backend, verify_lossless(backend, t, lv,
                                       sampling_params{std::numeric_limits<float>::min(), 0, 1.0f},
                                       philox_uniforms{1, 2}));
  CHECK(a.next_token[0] >= 0);
}

TEST_CASE("verify_redrafter refuses a logit / temperature that overflows float",
          "[hardening][verify]") {
  const cpu_backend backend;
  const std::vector<std::int32_t> beams = {0, 1, 0, 2};  // [1, 2, 2]
  const auto t = build_tree(backend, view<const std::int32_t, 3>(beams.data(), 1, 2, 2));
  std::vector<float> logits(static_cast<std::size_t>(t.total_nodes()) * 3, 0.0f);
  logits[1] = std::numeric_limits<float>::max();  // root row, token 1
  std::vector<float> q(2 * 1 * 3, std::log(1.0f / 3.0f));
  redrafter_params params;
  params.temperature = 0.5f;
  CHECK_THROWS_WITH(
      verify_redrafter(backend, t, matrix_view<const float>(logits.data(), t.total_nodes(), 3),
                       view<const float, 4>(q.data(), 1, 2, 1, 3), params, philox_uniforms{}),
      Contains("divided by the temperature overflows float"));
  params.temperature = 1.0f;  // FLT_MAX / 1 is finite: accepted
  const auto a = to_host(
      backend,
      verify_redrafter(backend, t, matrix_view<const float>(logits.data(), t.total_nodes(), 3),
                       view<const float, 4>(q.data(), 1, 2, 1, 3), params, philox_uniforms{}));
  CHECK(a.next_token[0] >= 0);
}

TEST_CASE("config.json integers are range-checked before conversion", "[hardening][checkpoint]") {
  const auto parse = [](const char* text) {
    return draft_config_from_json(nlohmann::json::parse(text), "c.json");
  };
  CHECK_THROWS_WITH(
      parse(R"({"vocab_size": 1e300, "hidden_size": 2, "exit_dim": 4, "num_draft_layers": 1})"),
      Contains("field 'vocab_size' = 1e+300 is not an integer"));
  CHECK_THROWS_WITH(
      parse(
          R"({"vocab_size": 4, "hidden_size": 18446744073709551615, "exit_dim": 4, "num_draft_layers": 1})"),
      Contains("'hidden_size'"));
  CHECK_THROWS_WITH(
      parse(
          R"({"vocab_size": 4, "hidden_size": 4611686018427387904, "exit_dim": 4, "num_draft_layers": 1})"),
      Contains("hidden_size 4611686018427387904 exceeds the limit"));
  CHECK_THROWS_WITH(
      parse(
          R"({"vocab_size": 4, "hidden_size": 2, "exit_dim": 4, "num_draft_layers": 1000000000000})"),
      Contains("num_draft_layers 1000000000000 exceeds the limit 4096"));
  CHECK(parse(R"({"vocab_size": 4.0, "hidden_size": 2, "exit_dim": 4, "num_draft_layers": 1})")
            .vocab_size == 4);
}

TEST_CASE("the golden reader refuses integers its types cannot hold", "[hardening][conformance]") {
  using redraft::conformance::read_tensor;
  const auto tensor_json = [](const char* data) {
    return nlohmann::json::parse(std::string(R"({"t": {"shape": [1], "dtype": "i32", "data": [)") +
                                 data + "]}}");
  };
  CHECK_THROWS_WITH(read_tensor<std::int32_t>(tensor_json("1e300"), "t"),
                    Contains("is not an integer"));
  CHECK_THROWS_WITH(read_tensor<std::int32_t>(tensor_json("2147483648"), "t"),
                    Contains("is not an integer"));
  CHECK_THROWS_WITH(read_tensor<std::int32_t>(tensor_json("1.5"), "t"),
                    Contains("is not an integer"));
  CHECK(read_tensor<std::int32_t>(tensor_json("-2147483648"), "t").data[0] ==
        std::numeric_limits<std::int32_t>::min());
}

TEST_CASE("build_tree refuses beams of 2^31 tokens before reading them", "[hardening][limits]") {
  const std::int32_t one = 0;
  // The view claims [2^16, 2^8, 2^7] = 2^31 tokens over a single int: validation must not read.
  CHECK_THROWS_WITH(
      build_tree(cpu_backend{}, view<const std::int32_t, 3>(&one, 1 << 16, 1 << 8, 1 << 7)),
      Contains("hold 2^31 or more tokens"));
  CHECK_THROWS_WITH(build_tree_parallel(cpu_backend{},
                                        view<const std::int32_t, 3>(&one, 1 << 16, 1 << 8, 1 << 7)),
                    Contains("more than int32 node indices"));
}

// ---- no partial output before a throw ----

TEST_CASE("in-place entry points leave their buffer unchanged when they throw",
          "[hardening][contract]") {
  const cpu_backend backend;
  SECTION("apply_kv_plan: a bad second request stops the whole plan") {
    std::vector<float> cache(2 * 1 * 2 * 1 * 8 * 1);  // [2 slots, 1 layer, 2, 1 head, 8, 1]
    for (std::size_t i = 0; i < cache.size(); ++i) cache[i] = static_cast<float>(i);
    const std::vector<float> before = cache;
    kv_plan plan;
    plan.offsets = {0, 2, 4};
    plan.slot = {0, 1};
    plan.source_node = {0, 2, 0, 9};  // request 1 reads position 2 + 9 = 11 >= max_len 8
    plan.destination = {2, 3, 2, 3};
    CHECK_THROWS_WITH(apply_kv_plan(backend, plan, view<float, 6>(cache.data(), 2, 1, 2, 1, 8, 1)),
                      Contains("past max_len"));
    CHECK(cache == before);
  }
  SECTION("warp_top_k / apply_top_k / apply_top_p: a NaN in the last row") {
    std::vector<float> logits = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, std::nanf("")};  // [3, 4]
    std::vector<float> before = logits;
    const matrix_view<float> lv(logits.data(), 3, 4);
    const auto same = [&] {
      for (std::size_t i = 0; i + 1 < logits.size(); ++i) {
        if (logits[i] != before[i]) return false;
      }
      return std::isnan(logits.back());
    };
    CHECK_THROWS_WITH(warp_top_k(backend, lv, 2), Contains("logits[2, 3]"));
    CHECK(same());
    CHECK_THROWS_AS(apply_top_k(backend, lv, 2), error);
    CHECK(same());
    CHECK_THROWS_AS(apply_top_p(backend, lv, 0.5f), error);
    CHECK(same());
    CHECK_THROWS_AS(apply_temperature(backend, lv, -1.0f), error);
    CHECK(same());
  }
}

// ---- limits ----

TEST_CASE("verify_greedy and verify_lossless on a 256k vocabulary", "[hardening][limits]") {
  const cpu_backend backend;
  constexpr index_t vocab = 262144;
  const std::vector<std::int32_t> beams = {7, 262143, 100000, 7, 262143, 5};  // [1, 2, 3]
  const auto t = build_tree(backend, view<const std::int32_t, 3>(beams.data(), 1, 2, 3));
  REQUIRE(t.total_nodes() == 4);
  std::vector<float> logits(static_cast<std::size_t>(t.total_nodes() * vocab), -1.0f);
  logits[static_cast<std::size_t>(0 * vocab + 262143)] = 5.0f;  // root -> the last token id
  logits[static_cast<std::size_t>(1 * vocab + 5)] = 5.0f;       // -> beam 1's token 5
  logits[static_cast<std::size_t>(3 * vocab + 262142)] = 5.0f;  // next token
  const matrix_view<const float> lv(logits.data(), t.total_nodes(), vocab);
  const auto g = to_host(backend, verify_greedy(backend, t, lv));
  CHECK(g.accepted_len[0] == 2);
  CHECK(g.emitted(0) == std::vector<std::int32_t>{262143, 5, 262142});
  CHECK(g.best_beam[0] == 1);
  const auto l = to_host(backend, verify_lossless(backend, t, lv, sampling_params{1e-3f, 0, 1.0f},
                                                  philox_uniforms{3, 0}));
  CHECK(l.emitted(0) == g.emitted(0));  // near-greedy temperature: the same decisions
}

TEST_CASE("batch 1024: build_tree, masks and positions", "[hardening][limits]") {
  const cpu_backend backend;
  constexpr std::int32_t batch = 1024, width = 4, length = 5;
  std::vector<std::int32_t> beams(static_cast<std::size_t>(batch) * width * length);
  for (std::size_t i = 0; i < beams.size(); ++i) {
    const std::size_t l = i % length;
    beams[i] = l == 0 ? 1 : static_cast<std::int32_t>((i / length) % width * (l % 2) + l);
  }
  const auto t =
      build_tree(backend, view<const std::int32_t, 3>(beams.data(), batch, width, length));
  std::int64_t expected_dense = 0;
  for (std::int32_t b = 0; b < batch; ++b) {
    REQUIRE(t.num_nodes(b) == t.num_nodes(0));
    expected_dense += static_cast<std::int64_t>(t.num_nodes(b)) * t.num_nodes(b);
  }
  const auto dense = build_dense_tree_mask(backend, t);
  CHECK(dense.host_offsets.back() == expected_dense);
  const auto packed = build_packed_tree_mask(backend, t);
  CHECK(packed.words.size() == static_cast<index_t>(t.total_nodes()) * packed.words_per_row);
  std::vector<std::int32_t> base(batch);
  for (std::int32_t b = 0; b < batch; ++b)
    base[static_cast<std::size_t>(b)] = int32_max - 4 - b % 3;
  const auto positions =
      build_positions(backend, t, view<const std::int32_t, 1>(base.data(), batch));
  const std::int32_t last = t.total_nodes() - 1;
  CHECK(positions[last] == base.back() + t.depth[last]);
  // Row of the last node of the last request: its packed bits equal its dense row.
  const std::int32_t n = t.num_nodes(batch - 1), i = n - 1;
  for (std::int32_t j = 0; j < n; ++j) {
    const bool bit =
        (packed.words[static_cast<index_t>(last) * packed.words_per_row + j / 32] >> (j % 32)) & 1u;
    CHECK(bit ==
          (dense.bits[dense.host_offsets[batch - 1] + static_cast<index_t>(i) * n + j] == 1));
  }
}

TEST_CASE("wide and long beams: thousands of nodes, packed rows of 127 words",
          "[hardening][limits]") {
  const cpu_backend backend;
  constexpr std::int32_t width = 64, length = 64;  // all beams distinct after the root: 4033 nodes
  std::vector<std::int32_t> beams(static_cast<std::size_t>(width) * length);
  for (std::int32_t w = 0; w < width; ++w) {
    for (std::int32_t l = 0; l < length; ++l)
      beams[static_cast<std::size_t>(w) * length + l] = l == 0 ? 0 : w * 1000 + l;
  }
  const auto t = build_tree(backend, view<const std::int32_t, 3>(beams.data(), 1, width, length));
  REQUIRE(t.total_nodes() == 1 + width * (length - 1));
  const auto packed = build_packed_tree_mask(backend, t);
  REQUIRE(packed.words_per_row == (t.total_nodes() + 31) / 32);
  // The last node (beam 63, depth 63) has exactly 64 ancestors-or-self: the root, beam 63's nodes.
  const std::int32_t last = t.total_nodes() - 1;
  std::int32_t bits = 0;
  for (std::int32_t k = 0; k < packed.words_per_row; ++k) {
    bits += std::popcount(packed.words[static_cast<index_t>(last) * packed.words_per_row + k]);
  }
  CHECK(bits == length);
  CHECK(
      (packed.words[static_cast<index_t>(last) * packed.words_per_row + last / 32] >> (last % 32)) &
      1u);
  const auto dense = build_dense_tree_mask(backend, t);
  CHECK(dense.host_offsets.back() == static_cast<std::int64_t>(t.total_nodes()) * t.total_nodes());
}
