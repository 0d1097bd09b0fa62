// Tests of kv/compaction.hpp: plans from acceptance results, and applying them in place to a
// contiguous cache [slots, layers, 2, heads, max_len, head_dim] against an out-of-place reference,
// including overlapping source/destination ranges and ragged batches.
#include <catch2/catch.hpp>
#include <numeric>
#include <random>

#include "backends.hpp"
#include "redraft/redraft.hpp"
#include "toy_backend.hpp"
#include "verify_test_util.hpp"

using namespace redraft;
using redraft_test::upload;

namespace {

host_acceptance make_acceptance(const std::vector<std::vector<std::int32_t>>& paths,
                                std::int32_t length) {
  host_acceptance a;
  a.batch = static_cast<std::int32_t>(paths.size());
  a.path_length = length;
  for (const auto& p : paths) {
    a.accepted_len.push_back(static_cast<std::int32_t>(p.size()) - 1);
    for (std::int32_t i = 0; i < length; ++i) {
      a.accepted_nodes.push_back(
          i < static_cast<std::int32_t>(p.size()) ? p[static_cast<std::size_t>(i)] : -1);
      a.emitted_tokens.push_back(-1);
    }
    a.best_beam.push_back(-1);
    a.next_token.push_back(0);
    a.hidden_row.push_back(0);
  }
  return a;
}

// Out-of-place reference: every kept entry copied from the ORIGINAL cache.
std::vector<float> reference_apply(const std::vector<float>& cache, const kv_plan& plan,
                                   std::int64_t layers, std::int64_t heads, std::int64_t max_len,
                                   std::int64_t head_dim) {
  std::vector<float> out = cache;
  const auto at = [&](std::int64_t s, std::int64_t l, std::int64_t kv, std::int64_t h,
                      std::int64_t pos, std::int64_t d) {
    return static_cast<std::size_t>(
        ((((s * layers + l) * 2 + kv) * heads + h) * max_len + pos) * head_dim + d);
  };
  for (std::int32_t r = 0; r < plan.num_requests(); ++r) {
    const std::int32_t first = plan.offsets[static_cast<std::size_t>(r)];
    const std::int32_t last = plan.offsets[static_cast<std::size_t>(r) + 1];
    const std::int32_t committed = plan.destination[static_cast<std::size_t>(first)];
    const std::int32_t s = plan.slot[static_cast<std::size_t>(r)];
    for (std::int32_t e = first; e < last; ++e)
      for (std::int64_t l = 0; l < layers; ++l)
        for (std::int64_t kv = 0; kv < 2; ++kv)
          for (std::int64_t h = 0; h < heads; ++h)
            for (std::int64_t d = 0; d < head_dim; ++d)
              out[at(s, l, kv, h, plan.destination[static_cast<std::size_t>(e)], d)] = cache[at(
                  s, l, kv, h, committed + plan.source_node[static_cast<std::size_t>(e)], d)];
  }
  return out;
}

}  // namespace

TEST_CASE("make_kv_plan keeps the root and the accepted nodes after the committed prefix", "[kv]") {
  const auto a = make_acceptance({{0, 1, 3, 4}, {0}, {0, 2}}, 5);
  const std::vector<std::int32_t> slots{4, 0, 2}, committed{10, 3, 0};
  const kv_plan plan = make_kv_plan(a, slots, committed);
  CHECK(plan.offsets == std::vector<std::int32_t>{0, 4, 5, 7});
  CHECK(plan.slot == slots);
  CHECK(plan.source_node == std::vector<std::int32_t>{0, 1, 3, 4, 0, 0, 2});
  CHECK(plan.destination == std::vector<std::int32_t>{10, 11, 12, 13, 3, 0, 1});

  CHECK_THROWS_WITH(make_kv_plan(a, std::vector<std::int32_t>{1, 2}, committed),
                    "make_kv_plan: slots has 2 entries but the acceptance has 3 requests");
  CHECK_THROWS_WITH(make_kv_plan(a, std::vector<std::int32_t>{1, 1, 2}, committed),
                    Catch::Contains("slot 1 is used by two requests"));
  CHECK_THROWS_WITH(make_kv_plan(a, slots, std::vector<std::int32_t>{1, -1, 0}),
                    Catch::Contains("committed_lengths[1] = -1 is negative"));
  CHECK_THROWS_WITH(make_kv_plan(make_acceptance({{0, 3, 2}}, 4), std::vector<std::int32_t>{0},
                                 std::vector<std::int32_t>{0}),
                    Catch::Contains("in packed order"));
}

TEMPLATE_TEST_CASE("apply_kv_plan moves in place, overlapping ranges included", "[kv]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::int64_t slots = 3, layers = 2, heads = 2, max_len = 16, head_dim = 3;
  const std::int64_t n = slots * layers * 2 * heads * max_len * head_dim;
  std::vector<float> host(static_cast<std::size_t>(n));
  std::iota(host.begin(), host.end(), 0.0f);
  // Request 0: nodes [0, 1, 3, 4] (entry 2 reads position c+3 that entry 3 writes: in order it
  // must read first); request 1: only the root; request 2: a long jump [0, 5, 9].
  const auto a = make_acceptance({{0, 1, 3, 4}, {0}, {0, 5, 9}}, 4);
  const kv_plan plan =
      make_kv_plan(a, std::vector<std::int32_t>{2, 0, 1}, std::vector<std::int32_t>{5, 0, 2});
  auto dev = upload(backend, host);
  apply_kv_plan(backend, plan,
                view<float, 6>(dev.data(), slots, layers, 2, heads, max_len, head_dim));
  const auto got = redraft_test::download<TestType, float>(backend, dev);
  CHECK(got == reference_apply(host, plan, layers, heads, max_len, head_dim));
}

TEMPLATE_TEST_CASE("apply_kv_plan after real verification on random ragged batches", "[kv]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  std::mt19937_64 rng(GENERATE(1u, 2u, 3u));
  for (int trial = 0; trial < 40; ++trial) {
    const std::int32_t batch = 1 + static_cast<std::int32_t>(rng() % 5), vocab = 3;
    std::vector<redraft_test::host_tree> trees;
    for (std::int32_t b = 0; b < batch; ++b)
      trees.push_back(
          redraft_test::random_tree(rng, 1 + static_cast<std::int32_t>(rng() % 12), vocab, 4));
    const auto t = redraft_test::make_tree(backend, trees);
    const auto logits = redraft_test::random_logits(rng, t.total_nodes(), vocab, true);
    const auto ld = upload(backend, logits);
    const auto acc =
        verify_greedy(backend, t, matrix_view<const float>(ld.data(), t.total_nodes(), vocab));
    const std::int64_t slots = batch + 2, layers = 1 + static_cast<std::int64_t>(rng() % 2),
                       heads = 2, max_len = 32, head_dim = 4;
    std::vector<std::int32_t> slot(static_cast<std::size_t>(slots));
    std::iota(slot.begin(), slot.end(), 0);
    std::shuffle(slot.begin(), slot.end(), rng);
    slot.resize(static_cast<std::size_t>(batch));
    std::vector<std::int32_t> committed;
    for (std::int32_t b = 0; b < batch; ++b)
      committed.push_back(static_cast<std::int32_t>(rng() % 16));
    const kv_plan plan = make_kv_plan(backend, acc, slot, committed);
    std::vector<float> host(
        static_cast<std::size_t>(slots * layers * 2 * heads * max_len * head_dim));
    std::iota(host.begin(), host.end(), 0.0f);
    auto dev = upload(backend, host);
    apply_kv_plan(backend, plan,
                  view<float, 6>(dev.data(), slots, layers, 2, heads, max_len, head_dim));
    CAPTURE(trial, batch);
    REQUIRE(redraft_test::download<TestType, float>(backend, dev) ==
            reference_apply(host, plan, layers, heads, max_len, head_dim));
  }
}

TEST_CASE("apply_kv_plan rejects inconsistent plans and caches", "[kv][errors]") {
  const cpu_backend cpu;
  std::vector<float> cache(2 * 1 * 2 * 1 * 8 * 2, 0.0f);
  const view<float, 6> v(cache.data(), 2, 1, 2, 1, 8, 2);
  const auto a = make_acceptance({{0, 2, 5}}, 4);
  CHECK_THROWS_WITH(
      apply_kv_plan(cpu,
                    make_kv_plan(a, std::vector<std::int32_t>{2}, std::vector<std::int32_t>{0}), v),
      Catch::Contains("slot 2 of request 0 is outside the cache's [0, 2)"));
  CHECK_THROWS_WITH(
      apply_kv_plan(cpu,
                    make_kv_plan(a, std::vector<std::int32_t>{0}, std::vector<std::int32_t>{3}), v),
      Catch::Contains("reads position 8 past max_len 8"));
  kv_plan bad = make_kv_plan(a, std::vector<std::int32_t>{0}, std::vector<std::int32_t>{0});
  bad.destination[2] = 5;
  CHECK_THROWS_WITH(apply_kv_plan(cpu, bad, v), Catch::Contains("is not committed length 0 + 2"));
  std::vector<float> wrong(2 * 1 * 3 * 1 * 8 * 2, 0.0f);
  CHECK_THROWS_WITH(apply_kv_plan(cpu, bad, view<float, 6>(wrong.data(), 2, 1, 3, 1, 8, 2)),
                    Catch::Contains("must be 2 (K and V)"));
}
