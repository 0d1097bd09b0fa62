// Tests of tree/masks.hpp: dense, bit-packed, with-context (ragged and padded) masks and positions,
// each against the naive ancestor walk of testing/reference_tree.hpp, on beam trees and on random
// parent-array trees of up to 150 nodes (rows of 1..5 packed words).
#include <catch2/catch.hpp>
#include <cstdint>
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

template <class B, class T>
typename B::template buffer<T> upload(const B& backend, const std::vector<T>& host) {
  auto out = backend.template allocate<T>(static_cast<index_t>(host.size()));
  backend.copy_from_host(host.data(), static_cast<index_t>(host.size()), out.data());
  return out;
}

template <class T, class B, class Buffer>
std::vector<T> download(const B& backend, const Buffer& buffer) {
  std::vector<T> out(static_cast<std::size_t>(buffer.size()));
  backend.copy_to_host(buffer.data(), buffer.size(), out.data());
  return out;
}

// Checks every mask and the positions of tree t against the ancestor walk.
template <class B>
void check_masks(const B& backend, const tree<B>& t, std::mt19937& rng) {
  const host_tree_copy h = to_host(backend, t);
  const int batch = t.batch;
  const int n_max = t.max_nodes();
  const int context = std::uniform_int_distribution<int>(0, 6)(rng);
  CAPTURE(batch, n_max, context);
  std::vector<std::int32_t> padding(static_cast<std::size_t>(batch) * context);  // [B, P]
  for (auto& p : padding) p = std::uniform_int_distribution<int>(0, 1)(rng);
  std::vector<std::int32_t> base(static_cast<std::size_t>(batch));  // [B]
  for (auto& p : base) p = std::uniform_int_distribution<int>(0, 100)(rng);
  const auto padding_d = upload(backend, padding);
  const auto base_d = upload(backend, base);
  const view<const std::int32_t, 2> padding_v(padding_d.data(), batch, context);

  const auto dense = build_dense_tree_mask(backend, t);
  const auto packed = build_packed_tree_mask(backend, t);
  const auto with_context = build_attention_mask(backend, t, padding_v);
  const auto padded = build_padded_attention_mask(backend, t, padding_v);
  const auto positions =
      build_positions(backend, t, vector_view<const std::int32_t>(base_d.data(), batch));

  const auto dense_bits = download<std::uint8_t>(backend, dense.bits);
  const auto dense_offsets = download<std::int64_t>(backend, dense.offsets);
  const auto packed_words = download<std::uint32_t>(backend, packed.words);
  const auto context_bits = download<std::uint8_t>(backend, with_context.bits);
  const auto context_offsets = download<std::int64_t>(backend, with_context.offsets);
  const auto padded_bits = download<std::uint8_t>(backend, padded.bits);
  const auto pos = download<std::int32_t>(backend, positions);

  CHECK(dense_offsets == dense.host_offsets);
  CHECK(context_offsets == with_context.host_offsets);
  const int words = (n_max + 31) / 32;
  REQUIRE(packed.words_per_row == words);
  REQUIRE(packed_words.size() == static_cast<std::size_t>(t.total_nodes()) * words);
  REQUIRE(with_context.context_length == context);
  REQUIRE(padded.batch == batch);
  REQUIRE(padded.rows == n_max);
  REQUIRE(padded.cols == context + n_max);
  REQUIRE(padded_bits.size() == static_cast<std::size_t>(batch) * n_max * (context + n_max));
  REQUIRE(pos.size() == static_cast<std::size_t>(t.total_nodes()));

  for (int b = 0; b < batch; ++b) {
    CAPTURE(b);
    const int n = h.num_nodes(b);
    const int first = h.node_offsets[static_cast<std::size_t>(b)];
    const std::vector<std::uint8_t> ref = testing::reference_ancestor_mask(h.slice(h.parent, b));
    REQUIRE(dense.host_offsets[static_cast<std::size_t>(b) + 1] -
                dense.host_offsets[static_cast<std::size_t>(b)] ==
            static_cast<std::int64_t>(n) * n);
    REQUIRE(with_context.host_offsets[static_cast<std::size_t>(b) + 1] -
                with_context.host_offsets[static_cast<std::size_t>(b)] ==
            static_cast<std::int64_t>(n) * (context + n));
    for (int i = 0; i < n_max; ++i) {
      const std::uint8_t* padded_row =
          padded_bits.data() + (static_cast<std::size_t>(b) * n_max + i) * (context + n_max);
      if (i >= n) {  // padding rows are all 0
        for (int c = 0; c < context + n_max; ++c) CHECK(padded_row[c] == 0);
        continue;
      }
      CAPTURE(i);
      CHECK(pos[static_cast<std::size_t>(first + i)] ==
            base[static_cast<std::size_t>(b)] + h.depth[static_cast<std::size_t>(first + i)]);
      const std::uint8_t* dense_row = dense_bits.data() +
                                      dense.host_offsets[static_cast<std::size_t>(b)] +
                                      static_cast<std::size_t>(i) * n;
      const std::uint8_t* context_row = context_bits.data() +
                                        with_context.host_offsets[static_cast<std::size_t>(b)] +
                                        static_cast<std::size_t>(i) * (context + n);
      const std::uint32_t* packed_row =
          packed_words.data() + static_cast<std::size_t>(first + i) * words;
      for (int c = 0; c < context; ++c) {
        const std::int32_t want = padding[static_cast<std::size_t>(b) * context + c];
        CHECK(context_row[c] == want);
        CHECK(padded_row[c] == want);
      }
      for (int j = 0; j < n_max; ++j) {
        const int want = j < n ? ref[static_cast<std::size_t>(i) * n + j] : 0;
        const int bit = static_cast<int>((packed_row[j / 32] >> (j % 32)) & 1u);
        if (j < n) {
          CHECK(dense_row[j] == want);
          CHECK(context_row[context + j] == want);
        }
        CHECK(padded_row[context + j] == want);
        CHECK(bit == want);
      }
      for (int j = n_max; j < words * 32; ++j) {  // bits past n_max are 0
        CHECK(((packed_row[j / 32] >> (j % 32)) & 1u) == 0u);
      }
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("masks and positions of random beam trees match the ancestor walk",
                   "[tree][masks]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::uint32_t seed = GENERATE(11u, 12u, 13u);
  std::mt19937 rng(seed);
  for (int round = 0; round < 300; ++round) {
    const int batch = std::uniform_int_distribution<int>(0, 4)(rng);
    const int width = std::uniform_int_distribution<int>(1, 20)(rng);
    const int length = std::uniform_int_distribution<int>(2, 8)(rng);
    const int alphabet = std::uniform_int_distribution<int>(1, 6)(rng);
    CAPTURE(seed, round, batch, width, length, alphabet);
    const auto beams = redraft_test::random_beams(rng, batch, width, length, alphabet);
    const auto d = upload(backend, beams);
    const tree<TestType> t =
        build_tree(backend, view<const std::int32_t, 3>(d.data(), batch, width, length));
    check_masks(backend, t, rng);
  }
}

TEMPLATE_TEST_CASE(
    "masks of large parent-array trees (n > 32, > 64, > 128) match the ancestor walk",
    "[tree][masks]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::uint32_t seed = GENERATE(21u, 22u);
  const int locality = GENERATE(1, 3, 1000);  // chains, bushy, random recursive trees
  std::mt19937 rng(seed);
  for (int round = 0; round < 20; ++round) {
    const int batch = std::uniform_int_distribution<int>(1, 3)(rng);
    std::vector<std::int32_t> offsets{0}, parent, token;
    for (int b = 0; b < batch; ++b) {
      const int n = std::uniform_int_distribution<int>(1, 150)(rng);
      const auto p = redraft_test::random_parents(rng, n, locality);
      parent.insert(parent.end(), p.begin(), p.end());
      for (int i = 0; i < n; ++i) token.push_back(std::uniform_int_distribution<int>(0, 9)(rng));
      offsets.push_back(offsets.back() + n);
    }
    CAPTURE(seed, locality, round, offsets);
    const auto offsets_d = upload(backend, offsets);
    const auto parent_d = upload(backend, parent);
    const auto token_d = upload(backend, token);
    const tree<TestType> t = build_tree_from_parents(
        backend, vector_view<const std::int32_t>(offsets_d.data(), batch + 1),
        vector_view<const std::int32_t>(parent_d.data(), static_cast<index_t>(parent.size())),
        vector_view<const std::int32_t>(token_d.data(), static_cast<index_t>(token.size())));
    check_masks(backend, t, rng);
  }
}

TEMPLATE_TEST_CASE("masks of the worked example", "[tree][masks]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::vector<std::int32_t> beams = {0, 2, 0, 4, 0, 2, 3, 3, 0, 2, 3, 3};  // [1, 3, 4]
  const auto d = upload(backend, beams);
  const tree<TestType> t = build_tree(backend, view<const std::int32_t, 3>(d.data(), 1, 3, 4));
  const auto packed = build_packed_tree_mask(backend, t);
  CHECK(download<std::uint32_t>(backend, packed.words) ==
        std::vector<std::uint32_t>{0b1, 0b11, 0b111, 0b1111, 0b10011, 0b110011});
  // A fixed wider row (an engine sized for 96 tokens): the same bits, then zero words.
  const auto wide = build_packed_tree_mask(backend, t, 3);
  CHECK(wide.words_per_row == 3);
  CHECK(download<std::uint32_t>(backend, wide.words) ==
        std::vector<std::uint32_t>{0b1, 0, 0, 0b11, 0, 0, 0b111, 0, 0, 0b1111, 0, 0, 0b10011, 0, 0,
                                   0b110011, 0, 0});
  const std::vector<std::int32_t> padding = {0, 1, 1};  // [1, 3]: one left pad
  const auto padding_d = upload(backend, padding);
  const auto mask =
      build_attention_mask(backend, t, view<const std::int32_t, 2>(padding_d.data(), 1, 3));
  const auto bits = download<std::uint8_t>(backend, mask.bits);
  REQUIRE(bits.size() == 6u * 9u);
  // Row 5 (token 3 at depth 3 of beams 1 and 2): context 0 1 1, tree nodes {0, 1, 4, 5}.
  CHECK(std::vector<std::uint8_t>(bits.begin() + 45, bits.end()) ==
        std::vector<std::uint8_t>{0, 1, 1, 1, 1, 0, 0, 1, 1});
  const std::vector<std::int32_t> base = {2};
  const auto base_d = upload(backend, base);
  CHECK(download<std::int32_t>(
            backend,
            build_positions(backend, t, vector_view<const std::int32_t>(base_d.data(), 1))) ==
        std::vector<std::int32_t>{2, 3, 4, 5, 4, 5});
}

TEMPLATE_TEST_CASE("masks of an empty batch", "[tree][masks]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const auto d = upload(backend, std::vector<std::int32_t>{});
  const tree<TestType> t = build_tree(backend, view<const std::int32_t, 3>(d.data(), 0, 2, 3));
  CHECK(build_dense_tree_mask(backend, t).host_offsets == std::vector<std::int64_t>{0});
  const auto packed = build_packed_tree_mask(backend, t);
  CHECK(packed.words_per_row == 0);
  CHECK(packed.words.size() == 0);
  const auto padded =
      build_padded_attention_mask(backend, t, view<const std::int32_t, 2>(d.data(), 0, 4));
  CHECK(padded.bits.size() == 0);
  CHECK(build_positions(backend, t, vector_view<const std::int32_t>(d.data(), 0)).size() == 0);
}

TEMPLATE_TEST_CASE("mask and position builders reject bad input with redraft::error",
                   "[tree][masks][errors]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::vector<std::int32_t> beams = {0, 2, 0, 4, 0, 2, 3, 3, 0, 2, 3, 3,
                                           1, 2, 0, 4, 1, 2, 3, 3, 1, 2, 3, 3};  // [2, 3, 4]
  const auto d = upload(backend, beams);
  const tree<TestType> t = build_tree(backend, view<const std::int32_t, 3>(d.data(), 2, 3, 4));
  const std::vector<std::int32_t> pad3 = {1, 1, 1};
  const std::vector<std::int32_t> pad_bad = {1, 2, 1, 1, 0, 1};
  const auto pad3_d = upload(backend, pad3);
  const auto pad_bad_d = upload(backend, pad_bad);
  CHECK_THROWS_WITH(
      build_attention_mask(backend, t, view<const std::int32_t, 2>(pad3_d.data(), 1, 3)),
      "build_attention_mask: padding_mask has 1 rows but the tree has batch 2");
  CHECK_THROWS_WITH(
      build_padded_attention_mask(backend, t, view<const std::int32_t, 2>(pad3_d.data(), 3, 1)),
      Catch::Contains("padding_mask has 3 rows but the tree has batch 2"));
  CHECK_THROWS_WITH(
      build_attention_mask(backend, t, view<const std::int32_t, 2>(pad_bad_d.data(), 2, 3)),
      "build_attention_mask: padding_mask[0, 1] = 2 is not 0 or 1");
  const std::vector<std::int32_t> base_bad = {3, -1};
  const auto base_bad_d = upload(backend, base_bad);
  CHECK_THROWS_WITH(
      build_positions(backend, t, vector_view<const std::int32_t>(base_bad_d.data(), 1)),
      "build_positions: base_positions has 1 entries but the tree has batch 2");
  CHECK_THROWS_WITH(
      build_positions(backend, t, vector_view<const std::int32_t>(base_bad_d.data(), 2)),
      "build_positions: base_positions[1] = -1 is negative");
  // A tree whose host offsets disagree with its batch (e.g. assembled by hand) is refused.
  tree<TestType> broken;
  broken.batch = 2;
  broken.host_node_offsets = {0, 6};
  CHECK_THROWS_WITH(
      build_packed_tree_mask(backend, t, -1),
      "build_packed_tree_mask: words_per_row -1 cannot hold 6 nodes (needs at least 1, "
      "or 0 for that minimum)");
  CHECK_THROWS_AS(build_dense_tree_mask(backend, broken), redraft::error);
  CHECK_THROWS_AS(build_packed_tree_mask(backend, broken), redraft::error);
}
