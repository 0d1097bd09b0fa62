// Tests of tree/static_tree.hpp: Medusa-style choice lists and explicit parent arrays into tree<B>.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

#include "backends.hpp"
#include "redraft/redraft.hpp"
#include "toy_backend.hpp"
#include "tree_test_util.hpp"

using namespace redraft;
using redraft_test::host_tree_copy;
using redraft_test::to_host;

namespace {

template <class B>
typename B::template buffer<std::int32_t> upload(const B& backend,
                                                 const std::vector<std::int32_t>& host) {
  auto out = backend.template allocate<std::int32_t>(static_cast<index_t>(host.size()));
  backend.copy_from_host(host.data(), static_cast<index_t>(host.size()), out.data());
  return out;
}

using choice_list = std::vector<std::vector<std::int32_t>>;

}  // namespace

TEMPLATE_TEST_CASE("build_tree_from_choices fills a Medusa choice tree from top-k tables",
                   "[tree][static]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const choice_list choices = {{0}, {1}, {0, 0}, {0, 1}, {1, 0}, {0, 0, 2}};
  // Two requests, D = 3 depths, K = 3 ranks: candidates[b, d, r] = 100 b + 10 d + r.
  std::vector<std::int32_t> candidates;
  for (int b = 0; b < 2; ++b)
    for (int d = 0; d < 3; ++d)
      for (int r = 0; r < 3; ++r) candidates.push_back(100 * b + 10 * d + r);
  const std::vector<std::int32_t> roots = {7, 8};
  const auto candidates_d = upload(backend, candidates);
  const auto roots_d = upload(backend, roots);
  const tree<TestType> t =
      build_tree_from_choices(backend, choices, vector_view<const std::int32_t>(roots_d.data(), 2),
                              view<const std::int32_t, 3>(candidates_d.data(), 2, 3, 3));
  CHECK(t.batch == 2);
  CHECK(t.beam_width == 0);
  CHECK(t.beam_length == 0);
  CHECK(t.beam_to_node.size() == 0);
  CHECK(t.host_node_offsets == std::vector<std::int32_t>{0, 7, 14});
  const host_tree_copy h = to_host(backend, t);
  CHECK(h.node_offsets == t.host_node_offsets);
  CHECK(h.slice(h.parent, 0) == std::vector<std::int32_t>{-1, 0, 0, 1, 1, 2, 3});
  CHECK(h.slice(h.parent, 1) == std::vector<std::int32_t>{-1, 0, 0, 1, 1, 2, 3});
  CHECK(h.slice(h.depth, 0) == std::vector<std::int32_t>{0, 1, 1, 2, 2, 2, 3});
  CHECK(h.slice(h.token, 0) == std::vector<std::int32_t>{7, 0, 1, 10, 11, 10, 22});
  CHECK(h.slice(h.token, 1) == std::vector<std::int32_t>{8, 100, 101, 110, 111, 110, 122});

  SECTION("the masks of a choice tree are those of its shape") {
    const auto packed = build_packed_tree_mask(backend, t);
    std::vector<std::uint32_t> words(static_cast<std::size_t>(packed.words.size()));
    backend.copy_to_host(packed.words.data(), packed.words.size(), words.data());
    const std::vector<std::uint32_t> one = {0b1, 0b11, 0b101, 0b1011, 0b10011, 0b100101, 0b1001011};
    std::vector<std::uint32_t> both = one;
    both.insert(both.end(), one.begin(), one.end());
    CHECK(words == both);
  }
}

TEMPLATE_TEST_CASE("build_tree_from_choices edge cases", "[tree][static]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::vector<std::int32_t> roots = {4, 5, 6};
  const auto roots_d = upload(backend, roots);
  const std::vector<std::int32_t> candidates(3 * 2 * 2, 1);
  const auto candidates_d = upload(backend, candidates);
  SECTION("an empty choice list is a root-only tree") {
    const tree<TestType> t = build_tree_from_choices(
        backend, choice_list{}, vector_view<const std::int32_t>(roots_d.data(), 3),
        view<const std::int32_t, 3>(candidates_d.data(), 3, 2, 2));
    CHECK(t.host_node_offsets == std::vector<std::int32_t>{0, 1, 2, 3});
    CHECK(to_host(backend, t).token == roots);
  }
  SECTION("an empty batch") {
    const tree<TestType> t = build_tree_from_choices(
        backend, choice_list{{0}, {1}}, vector_view<const std::int32_t>(roots_d.data(), 0),
        view<const std::int32_t, 3>(candidates_d.data(), 0, 2, 2));
    CHECK(t.total_nodes() == 0);
    CHECK(to_host(backend, t).node_offsets == std::vector<std::int32_t>{0});
  }
}

TEMPLATE_TEST_CASE("build_tree_from_choices rejects bad choice lists with redraft::error",
                   "[tree][static][errors]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::vector<std::int32_t> roots = {4};
  const std::vector<std::int32_t> candidates = {1, 2, 3, 4};  // [1, 2, 2]
  const auto roots_d = upload(backend, roots);
  const auto candidates_d = upload(backend, candidates);
  const auto build = [&](const choice_list& choices) {
    return build_tree_from_choices(backend, choices,
                                   vector_view<const std::int32_t>(roots_d.data(), 1),
                                   view<const std::int32_t, 3>(candidates_d.data(), 1, 2, 2));
  };
  CHECK_NOTHROW(build({{0}, {1}, {1, 1}}));
  CHECK_THROWS_WITH(build({{0}, {0, 1, 0}}), Catch::Contains("choices[1] = {0, 1, 0} has depth 3"));
  CHECK_THROWS_WITH(build({{0}, {1, 1}}),
                    "build_tree_from_choices: choices[1] = {1, 1} has no parent: its parent path "
                    "{1} is missing from the list");
  CHECK_THROWS_WITH(
      build({{1, 0}, {1}}),
      Catch::Contains("choices[0] = {1, 0} comes before its parent path {1} (choices[1])"));
  CHECK_THROWS_WITH(build({{0}, {1}, {0}}), Catch::Contains("choices[2] = {0} repeats choices[0]"));
  CHECK_THROWS_WITH(build({{0}, {2}}),
                    Catch::Contains("choices[1] = {2} has rank 2 outside [0, 2)"));
  CHECK_THROWS_WITH(build({{0}, {-1}}), Catch::Contains("has rank -1"));
  CHECK_THROWS_WITH(build({{0}, {}}), Catch::Contains("choices[1] is empty"));
  // Shape mismatch and bad tokens.
  CHECK_THROWS_WITH(
      build_tree_from_choices(backend, choice_list{{0}},
                              vector_view<const std::int32_t>(roots_d.data(), 1),
                              view<const std::int32_t, 3>(candidates_d.data(), 2, 1, 2)),
      "build_tree_from_choices: candidates has batch 2 but root_tokens has 1");
  const std::vector<std::int32_t> negative = {1, 2, -3, 4};
  const auto negative_d = upload(backend, negative);
  CHECK_THROWS_WITH(
      build_tree_from_choices(backend, choice_list{{0}},
                              vector_view<const std::int32_t>(roots_d.data(), 1),
                              view<const std::int32_t, 3>(negative_d.data(), 1, 2, 2)),
      Catch::Contains("candidates[0, 1, 0] = -3 is not a valid token id"));
  CHECK_THROWS_WITH(
      build_tree_from_choices(backend, choice_list{{0}},
                              vector_view<const std::int32_t>(negative_d.data() + 2, 1),
                              view<const std::int32_t, 3>(candidates_d.data(), 1, 2, 2)),
      Catch::Contains("root_tokens[0] = -3"));
}

TEMPLATE_TEST_CASE("build_tree_from_parents copies the tree and derives depths", "[tree][static]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::uint32_t seed = GENERATE(31u, 32u, 33u);
  std::mt19937 rng(seed);
  for (int round = 0; round < 50; ++round) {
    const int batch = std::uniform_int_distribution<int>(0, 4)(rng);
    std::vector<std::int32_t> offsets{0}, parent, token;
    for (int b = 0; b < batch; ++b) {
      const int n = std::uniform_int_distribution<int>(1, 80)(rng);
      const auto p =
          redraft_test::random_parents(rng, n, std::uniform_int_distribution<int>(1, 8)(rng));
      parent.insert(parent.end(), p.begin(), p.end());
      for (int i = 0; i < n; ++i) token.push_back(std::uniform_int_distribution<int>(0, 50)(rng));
      offsets.push_back(offsets.back() + n);
    }
    CAPTURE(seed, round, offsets);
    const auto offsets_d = upload(backend, offsets);
    const auto parent_d = upload(backend, parent);
    const auto token_d = upload(backend, token);
    const tree<TestType> t = build_tree_from_parents(
        backend, vector_view<const std::int32_t>(offsets_d.data(), batch + 1),
        vector_view<const std::int32_t>(parent_d.data(), static_cast<index_t>(parent.size())),
        vector_view<const std::int32_t>(token_d.data(), static_cast<index_t>(token.size())));
    const host_tree_copy h = to_host(backend, t);
    CHECK(t.host_node_offsets == offsets);
    CHECK(h.node_offsets == offsets);
    CHECK(h.parent == parent);
    CHECK(h.token == token);
    CHECK(t.beam_width == 0);
    CHECK(t.beam_to_node.size() == 0);
    // depth = number of parent links to the root, computed naively.
    for (int b = 0; b < batch; ++b) {
      for (int i = offsets[static_cast<std::size_t>(b)];
           i < offsets[static_cast<std::size_t>(b) + 1]; ++i) {
        int steps = 0;
        for (int j = i - offsets[static_cast<std::size_t>(b)];
             parent[static_cast<std::size_t>(offsets[static_cast<std::size_t>(b)] + j)] >= 0;
             j = parent[static_cast<std::size_t>(offsets[static_cast<std::size_t>(b)] + j)]) {
          ++steps;
        }
        CHECK(h.depth[static_cast<std::size_t>(i)] == steps);
      }
    }
  }
}

TEMPLATE_TEST_CASE("build_tree_from_parents rejects malformed trees with redraft::error",
                   "[tree][static][errors]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const auto build = [&](const std::vector<std::int32_t>& offsets,
                         const std::vector<std::int32_t>& parent,
                         const std::vector<std::int32_t>& token) {
    const auto o = upload(backend, offsets);
    const auto p = upload(backend, parent);
    const auto k = upload(backend, token);
    return build_tree_from_parents(
        backend, vector_view<const std::int32_t>(o.data(), static_cast<index_t>(offsets.size())),
        vector_view<const std::int32_t>(p.data(), static_cast<index_t>(parent.size())),
        vector_view<const std::int32_t>(k.data(), static_cast<index_t>(token.size())));
  };
  CHECK_NOTHROW(build({0, 3}, {-1, 0, 0}, {1, 2, 3}));
  CHECK_THROWS_WITH(
      build({0, 3}, {-1, 0, 2}, {1, 2, 3}),
      "build_tree_from_parents: parent[2] = 2 of node 2 of request 0 is outside [0, 2) "
      "(request-local, parents precede children)");
  CHECK_THROWS_WITH(build({0, 2, 4}, {-1, 0, -1, 2}, {1, 2, 3, 4}),
                    Catch::Contains("parent[3] = 2 of node 1 of request 1 is outside [0, 1)"));
  CHECK_THROWS_WITH(build({0, 2}, {0, 0}, {1, 2}),
                    Catch::Contains("parent[0] = 0 but node 0 of request 0"));
  CHECK_THROWS_WITH(build({0, 3}, {-1, 0, 0}, {1, 2}),
                    "build_tree_from_parents: parent has 3 entries but token has 2");
  CHECK_THROWS_WITH(build({0, 2}, {-1, 0, 0}, {1, 2, 3}),
                    Catch::Contains("node_offsets[1] = 2 but parent/token have 3 nodes"));
  CHECK_THROWS_WITH(build({0, 4}, {-1, 0, 0}, {1, 2, 3}),
                    Catch::Contains("node_offsets[1] = 4 exceeds"));
  CHECK_THROWS_WITH(build({0, 0, 2}, {-1, 0}, {1, 2}), Catch::Contains("request 0 has 0 nodes"));
  CHECK_THROWS_WITH(build({1, 3}, {-1, 0, 0}, {1, 2, 3}), Catch::Contains("node_offsets[0] = 1"));
  CHECK_THROWS_WITH(build({0, 2}, {-1, 0}, {1, -2}),
                    Catch::Contains("token[1] = -2 is not a valid token id"));
  CHECK_THROWS_WITH(build({}, {}, {}), Catch::Contains("node_offsets is empty"));
}
