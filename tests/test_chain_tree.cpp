// Chain and one-node trees (tree/chain_tree.hpp) and the host-to-backend copy they use
// (core/transfer.hpp), on every backend: structure, masks (the lower triangle), positions, and
// bad input.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "backends.hpp"
#include "redraft/core/transfer.hpp"
#include "redraft/tree/chain_tree.hpp"
#include "redraft/tree/masks.hpp"
#include "tree_test_util.hpp"

using namespace redraft;
using redraft_test::to_host;

TEMPLATE_TEST_CASE("to_backend copies a host range into a new buffer", "[core][transfer]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend{};
  const std::vector<std::int32_t> ints{4, -1, 7};
  const auto a = to_backend(backend, ints);
  CHECK(a.size() == 3);
  CHECK(to_host(backend, a) == ints);

  const std::array<std::int64_t, 2> longs{5, 1ll << 40};
  const auto b = to_backend(backend, longs);
  std::array<std::int64_t, 2> back{};
  backend.copy_to_host(b.data(), 2, back.data());
  CHECK(back == longs);

  const std::vector<float> none;
  CHECK(to_backend(backend, none).size() == 0);
}

TEMPLATE_TEST_CASE("build_chain_tree: paths with lower-triangular masks and positions",
                   "[tree][chain]", REDRAFT_TEST_BACKENDS) {
  const TestType backend{};
  // Three chains of 3, 1 and 40 nodes (> 32: two packed words per row).
  std::vector<std::int32_t> offsets{0, 3, 4, 44}, tokens;
  for (std::int32_t i = 0; i < 44; ++i) tokens.push_back((i * 7) % 13);
  const tree<TestType> t = build_chain_tree(backend, tokens, offsets);
  const redraft_test::host_tree_copy h = to_host(backend, t);
  CHECK(t.batch == 3);
  CHECK(t.beam_width == 0);
  CHECK(t.host_node_offsets == offsets);
  CHECK(h.node_offsets == offsets);
  CHECK(h.token == tokens);
  for (std::int32_t b = 0; b < 3; ++b) {
    CAPTURE(b);
    for (std::int32_t i = 0; i < h.num_nodes(b); ++i) {
      CHECK(h.slice(h.parent, b)[static_cast<std::size_t>(i)] == i - 1);
      CHECK(h.slice(h.depth, b)[static_cast<std::size_t>(i)] == i);
    }
  }

  // Masks: node i sees nodes 0..i of its own chain.
  const dense_tree_mask<TestType> dense = build_dense_tree_mask(backend, t);
  std::vector<std::uint8_t> bits(static_cast<std::size_t>(dense.bits.size()));
  backend.copy_to_host(dense.bits.data(), dense.bits.size(), bits.data());
  const packed_tree_mask<TestType> packed = build_packed_tree_mask(backend, t);
  REQUIRE(packed.words_per_row == 2);
  std::vector<std::uint32_t> words(static_cast<std::size_t>(packed.words.size()));
  backend.copy_to_host(packed.words.data(), packed.words.size(), words.data());
  for (std::int32_t b = 0; b < 3; ++b) {
    const std::int64_t n = h.num_nodes(b);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        CAPTURE(b, i, j);
        const bool expected = j <= i;
        CHECK(bits[static_cast<std::size_t>(dense.host_offsets[static_cast<std::size_t>(b)] +
                                            i * n + j)] == (expected ? 1 : 0));
        const std::uint32_t word = words[static_cast<std::size_t>(
            (offsets[static_cast<std::size_t>(b)] + i) * 2 + j / 32)];
        CHECK(((word >> (j % 32)) & 1u) == (expected ? 1u : 0u));
      }
  }

  // Positions: base + depth.
  const std::vector<std::int32_t> base{1, 10, 100};
  const auto d_base = to_backend(backend, base);
  const auto positions =
      build_positions(backend, t, vector_view<const std::int32_t>(d_base.data(), 3));
  const std::vector<std::int32_t> pos = to_host(backend, positions);
  for (std::int32_t b = 0; b < 3; ++b)
    for (std::int32_t i = 0; i < h.num_nodes(b); ++i)
      CHECK(pos[static_cast<std::size_t>(offsets[static_cast<std::size_t>(b)] + i)] ==
            base[static_cast<std::size_t>(b)] + i);
}

TEMPLATE_TEST_CASE("build_one_node_tree: one root per request", "[tree][chain]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend{};
  const std::vector<std::int32_t> roots{9, 0, 5, 5};
  const tree<TestType> t = build_one_node_tree(backend, roots);
  const redraft_test::host_tree_copy h = to_host(backend, t);
  CHECK(t.batch == 4);
  CHECK(h.node_offsets == std::vector<std::int32_t>{0, 1, 2, 3, 4});
  CHECK(h.token == roots);
  CHECK(h.parent == std::vector<std::int32_t>(4, -1));
  CHECK(h.depth == std::vector<std::int32_t>(4, 0));
  const packed_tree_mask<TestType> packed = build_packed_tree_mask(backend, t);
  CHECK(packed.words_per_row == 1);
  std::vector<std::uint32_t> words(4);
  backend.copy_to_host(packed.words.data(), 4, words.data());
  CHECK(words == std::vector<std::uint32_t>(4, 1u));

  const tree<TestType> empty = build_one_node_tree(backend, std::span<const std::int32_t>());
  CHECK(empty.batch == 0);
  CHECK(empty.total_nodes() == 0);
}

TEMPLATE_TEST_CASE("build_chain_tree refuses bad input", "[tree][chain][errors]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend{};
  const std::vector<std::int32_t> tokens{1, 2, 3};
  using offsets = std::vector<std::int32_t>;
  CHECK_THROWS_WITH(build_chain_tree(backend, tokens, offsets{}),
                    Catch::Contains("must start with 0"));
  CHECK_THROWS_WITH(build_chain_tree(backend, tokens, offsets{1, 3}),
                    Catch::Contains("must start with 0"));
  CHECK_THROWS_WITH(build_chain_tree(backend, tokens, offsets{0, 2, 2, 3}),
                    Catch::Contains("request 1 has 0 nodes"));
  CHECK_THROWS_WITH(build_chain_tree(backend, tokens, offsets{0, 2}),
                    Catch::Contains("node_offsets end at 2 but there are 3 tokens"));
  const std::vector<std::int32_t> negative{1, -4};
  CHECK_THROWS_WITH(build_chain_tree(backend, negative, offsets{0, 2}),
                    Catch::Contains("tokens[1] = -4 is not a valid token id"));
  CHECK_THROWS_WITH(build_one_node_tree(backend, negative), Catch::Contains("tokens[1] = -4"));
}
