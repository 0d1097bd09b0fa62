// Tests of testing/tiny_llama.hpp: the reference target model honours tree masks for real, its
// cache after commit equals plain decoding, prefill equals token-by-token decoding and the naive
// double-precision forward pass, and bad input fails with clear errors and no side effects.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/loop/target_model.hpp"
#include "redraft/testing/reference_llama.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/testing/tiny_llama_io.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/masks.hpp"

using namespace redraft;
using redraft::testing::tiny_llama;
using redraft::testing::tiny_llama_config;

static_assert(TargetModel<tiny_llama>);

namespace {

using prompt_list = std::vector<std::vector<std::int32_t>>;

tiny_llama_config small_config(bool tied) {
  tiny_llama_config c;
  c.vocab_size = 40;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.head_dim = 8;
  c.intermediate_size = 48;
  c.max_context = 160;
  c.tie_word_embeddings = tied;
  return c;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

std::vector<float> copy_rows(matrix_view<const float> m, index_t first, index_t count) {
  return std::vector<float>(m.data() + first * m.extent(1),
                            m.data() + (first + count) * m.extent(1));
}

prompt_list random_prompts(std::mt19937& rng, int count, int max_len, int vocab) {
  prompt_list prompts(static_cast<std::size_t>(count));
  for (auto& p : prompts) {
    p.resize(static_cast<std::size_t>(std::uniform_int_distribution<int>(1, max_len)(rng)));
    for (auto& t : p) t = std::uniform_int_distribution<int>(0, vocab - 1)(rng);
  }
  return prompts;
}

// Prefills prompts[r] into slots[r]; returns the output (views into the model).
model_output prefill(tiny_llama& model, const std::vector<std::int32_t>& slots,
                     const prompt_list& prompts) {
  std::vector<std::int32_t> offsets{0}, tokens;
  for (const auto& p : prompts) {
    tokens.insert(tokens.end(), p.begin(), p.end());
    offsets.push_back(static_cast<std::int32_t>(tokens.size()));
  }
  return model.prefill(
      prefill_input{vector_view<const std::int32_t>(slots.data(), slots.size()),
                    vector_view<const std::int32_t>(offsets.data(), offsets.size()),
                    vector_view<const std::int32_t>(tokens.data(), tokens.size())});
}

// One-node decode of `token` at the slot's committed length; commits it. Returns the logits.
std::vector<float> decode_one(tiny_llama& model, std::int32_t slot, std::int32_t token) {
  const std::int32_t position = model.committed_length(slot);
  const std::int32_t slots[1] = {slot}, offsets[2] = {0, 1}, parent[1] = {-1}, depth[1] = {0};
  const std::int32_t tokens[1] = {token}, positions[1] = {position};
  verify_input in;
  in.slots = vector_view<const std::int32_t>(slots, 1);
  in.host_node_offsets = vector_view<const std::int32_t>(offsets, 2);
  in.tree.batch = 1;
  in.tree.node_offsets = offsets;
  in.tree.token = tokens;
  in.tree.parent = parent;
  in.tree.depth = depth;
  in.positions = vector_view<const std::int32_t>(positions, 1);
  const model_output out = model.verify(in);
  std::vector<float> logits = copy_rows(out.logits, 0, 1);
  kv_plan plan;
  plan.offsets = {0, 1};
  plan.slot = {slot};
  plan.source_node = {0};
  plan.destination = {position};
  model.commit(plan);
  return logits;
}

enum class mask_kind { dense, packed, parent };

// A batch of random beam trees (small alphabet, so beams share prefixes) with their masks and
// positions at the slots' committed lengths.
struct tree_batch {
  tree<cpu_backend> t;
  dense_tree_mask<cpu_backend> dense;
  packed_tree_mask<cpu_backend> packed;
  host_buffer<std::int32_t> positions;
  std::vector<std::int32_t> slots;
};

tree_batch random_trees(std::mt19937& rng, const tiny_llama& model,
                        const std::vector<std::int32_t>& slots, int width, int length) {
  const cpu_backend backend;
  const int batch = static_cast<int>(slots.size());
  std::vector<std::int32_t> beams(static_cast<std::size_t>(batch * width * length));
  const std::int32_t alphabet[3] = {3, 11, 29};
  for (int b = 0; b < batch; ++b) {
    const std::int32_t root = std::uniform_int_distribution<int>(0, model.vocab_size() - 1)(rng);
    for (int w = 0; w < width; ++w) {
      for (int l = 0; l < length; ++l) {
        beams[static_cast<std::size_t>((b * width + w) * length + l)] =
            l == 0 ? root : alphabet[std::uniform_int_distribution<int>(0, 2)(rng)];
      }
    }
  }
  tree_batch out;
  out.slots = slots;
  out.t = build_tree(backend, view<const std::int32_t, 3>(beams.data(), batch, width, length));
  out.dense = build_dense_tree_mask(backend, out.t);
  out.packed = build_packed_tree_mask(backend, out.t);
  std::vector<std::int32_t> base;
  for (const std::int32_t s : slots) base.push_back(model.committed_length(s));
  out.positions =
      build_positions(backend, out.t, vector_view<const std::int32_t>(base.data(), base.size()));
  return out;
}

verify_input make_verify_input(const tree_batch& tb, mask_kind kind) {
  verify_input in;
  in.slots = vector_view<const std::int32_t>(tb.slots.data(), tb.slots.size());
  in.host_node_offsets =
      vector_view<const std::int32_t>(tb.t.host_node_offsets.data(), tb.t.host_node_offsets.size());
  in.tree = view_of(tb.t);
  in.positions = vector_view<const std::int32_t>(tb.positions.data(), tb.positions.size());
  if (kind == mask_kind::dense) {
    in.dense_mask = tb.dense.bits.data();
    in.dense_offsets = tb.dense.offsets.data();
  } else if (kind == mask_kind::packed) {
    in.packed_mask = tb.packed.words.data();
    in.packed_words_per_row = tb.packed.words_per_row;
  }
  return in;
}

// Request-local path root .. node (inclusive) of a request's tree.
std::vector<std::int32_t> path_to(const tree<cpu_backend>& t, int request, int node) {
  const std::int32_t first = t.host_node_offsets[static_cast<std::size_t>(request)];
  std::vector<std::int32_t> path;
  for (std::int32_t u = node; u >= 0; u = t.parent[first + u]) path.push_back(u);
  std::reverse(path.begin(), path.end());
  return path;
}

}  // namespace

TEST_CASE("tiny_llama: verifying a packed tree in one pass equals decoding each node's path alone",
          "[tiny_llama][tree]") {
  const std::uint32_t seed = GENERATE(1u, 2u, 3u, 4u, 5u, 6u);
  const int batch = GENERATE(1, 3);
  const mask_kind kind = GENERATE(mask_kind::dense, mask_kind::packed, mask_kind::parent);
  CAPTURE(seed, batch, static_cast<int>(kind));
  std::mt19937 rng(seed);
  const int width = std::uniform_int_distribution<int>(1, 6)(rng);
  const int length = std::uniform_int_distribution<int>(2, 5)(rng);
  const bool tied = seed % 2 == 0;
  CAPTURE(width, length, tied);
  const tiny_llama_config config = small_config(tied);
  tiny_llama model = tiny_llama::random(config, seed, batch + 2);
  tiny_llama single(config, model.weights(), 1);

  // Requests use slots 2.. so slot numbers differ from request numbers.
  std::vector<std::int32_t> slots;
  for (int r = 0; r < batch; ++r) slots.push_back(r + 2);
  const prompt_list prompts = random_prompts(rng, batch, 12, config.vocab_size);
  prefill(model, slots, prompts);
  const tree_batch tb = random_trees(rng, model, slots, width, length);
  const model_output out = model.verify(make_verify_input(tb, kind));
  REQUIRE(out.logits.extent(0) == tb.t.total_nodes());
  REQUIRE(out.hidden.extent(0) == tb.t.total_nodes());
  REQUIRE(out.logits.extent(1) == config.vocab_size);
  REQUIRE(out.hidden.extent(1) == config.hidden_size);
  const std::vector<float> tree_logits = copy_rows(out.logits, 0, out.logits.extent(0));
  const std::vector<float> tree_hidden = copy_rows(out.hidden, 0, out.hidden.extent(0));

  for (int r = 0; r < batch; ++r) {
    const std::int32_t first = tb.t.host_node_offsets[static_cast<std::size_t>(r)];
    const std::int32_t prompt_len =
        static_cast<std::int32_t>(prompts[static_cast<std::size_t>(r)].size());
    CHECK(model.pending_length(slots[static_cast<std::size_t>(r)]) == tb.t.num_nodes(r));
    for (int u = 0; u < tb.t.num_nodes(r); ++u) {
      CAPTURE(r, u);
      const auto path = path_to(tb.t, r, u);
      prefill(single, {0}, {prompts[static_cast<std::size_t>(r)]});
      std::vector<float> logits;
      for (const std::int32_t node : path) logits = decode_one(single, 0, tb.t.token[first + node]);
      CHECK(max_abs_diff(logits,
                         copy_rows(matrix_view<const float>(tree_logits.data(), tb.t.total_nodes(),
                                                            config.vocab_size),
                                   first + u, 1)) < 2e-4);
      // The naive double forward pass of prompt + path agrees too.
      std::vector<std::int32_t> seq = prompts[static_cast<std::size_t>(r)], positions;
      for (const std::int32_t node : path) seq.push_back(tb.t.token[first + node]);
      for (std::size_t i = 0; i < seq.size(); ++i)
        positions.push_back(static_cast<std::int32_t>(i));
      CHECK(tb.positions[first + u] == prompt_len + static_cast<std::int32_t>(path.size()) - 1);
      const auto ref = testing::reference_llama_forward(config, model.weights(), seq, positions);
      double diff = 0.0, hdiff = 0.0;
      for (int v = 0; v < config.vocab_size; ++v) {
        diff = std::max(
            diff,
            std::abs(ref.logits[(seq.size() - 1) * static_cast<std::size_t>(config.vocab_size) +
                                static_cast<std::size_t>(v)] -
                     tree_logits[static_cast<std::size_t>((first + u) * config.vocab_size + v)]));
      }
      for (int e = 0; e < config.hidden_size; ++e) {
        hdiff = std::max(
            hdiff,
            std::abs(ref.hidden[(seq.size() - 1) * static_cast<std::size_t>(config.hidden_size) +
                                static_cast<std::size_t>(e)] -
                     tree_hidden[static_cast<std::size_t>((first + u) * config.hidden_size + e)]));
      }
      CHECK(diff < 2e-4);
      CHECK(hdiff < 2e-4);
    }
  }
}

TEST_CASE("tiny_llama: dense, packed and parent-derived masks give identical outputs",
          "[tiny_llama][tree][mask]") {
  const std::uint32_t seed = GENERATE(11u, 12u, 13u);
  // W = 16, L = 5 makes trees of up to 65 nodes: packed rows of 3 words.
  const int width = GENERATE(3, 16);
  CAPTURE(seed, width);
  std::mt19937 rng(seed);
  const tiny_llama_config config = small_config(true);
  tiny_llama model = tiny_llama::random(config, seed, 3);
  const std::vector<std::int32_t> slots{1, 0, 2};
  prefill(model, slots, random_prompts(rng, 3, 20, config.vocab_size));
  // A larger alphabet than random_trees uses, so wide trees really get more than 32 nodes.
  const cpu_backend backend;
  std::vector<std::int32_t> beams(static_cast<std::size_t>(3 * width * 5));
  for (std::size_t i = 0; i < beams.size(); ++i) {
    beams[i] = i % 5 == 0 ? static_cast<std::int32_t>(i / static_cast<std::size_t>(width * 5))
                          : std::uniform_int_distribution<int>(0, 9)(rng);
  }
  tree_batch tb;
  tb.slots = slots;
  tb.t = build_tree(backend, view<const std::int32_t, 3>(beams.data(), 3, width, 5));
  tb.dense = build_dense_tree_mask(backend, tb.t);
  tb.packed = build_packed_tree_mask(backend, tb.t);
  std::vector<std::int32_t> base;
  for (const std::int32_t s : slots) base.push_back(model.committed_length(s));
  tb.positions =
      build_positions(backend, tb.t, vector_view<const std::int32_t>(base.data(), base.size()));
  if (width == 16) CHECK(tb.t.max_nodes() > 32);

  std::vector<std::vector<float>> logits, hidden;
  for (const mask_kind kind : {mask_kind::dense, mask_kind::packed, mask_kind::parent}) {
    const model_output out = model.verify(make_verify_input(tb, kind));
    logits.push_back(copy_rows(out.logits, 0, out.logits.extent(0)));
    hidden.push_back(copy_rows(out.hidden, 0, out.hidden.extent(0)));
  }
  CHECK(logits[0] == logits[1]);
  CHECK(logits[0] == logits[2]);
  CHECK(hidden[0] == hidden[1]);
  CHECK(hidden[0] == hidden[2]);

  // The mask is honoured: a causal mask over the packed order (j <= i) differs from the tree's
  // mask whenever some node does not descend from all the nodes before it.
  std::vector<std::uint8_t> causal(tb.dense.bits.size(), 0);
  bool differs_from_tree = false;
  for (int r = 0; r < 3; ++r) {
    const std::int64_t n = tb.t.num_nodes(r),
                       at = tb.dense.host_offsets[static_cast<std::size_t>(r)];
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j <= i; ++j) causal[static_cast<std::size_t>(at + i * n + j)] = 1;
    }
  }
  for (std::size_t i = 0; i < causal.size(); ++i)
    differs_from_tree |= causal[i] != tb.dense.bits[static_cast<index_t>(i)];
  verify_input in = make_verify_input(tb, mask_kind::dense);
  in.dense_mask = causal.data();
  const model_output out = model.verify(in);
  const std::vector<float> causal_logits = copy_rows(out.logits, 0, out.logits.extent(0));
  if (differs_from_tree) CHECK(max_abs_diff(causal_logits, logits[0]) > 1e-3);
}

TEST_CASE("tiny_llama: the KV cache after commit equals the cache of plain decoding",
          "[tiny_llama][kv]") {
  const std::uint32_t seed = GENERATE(21u, 22u, 23u, 24u);
  const int batch = GENERATE(1, 3);
  CAPTURE(seed, batch);
  std::mt19937 rng(seed);
  const tiny_llama_config config = small_config(seed % 2 == 1);
  tiny_llama model = tiny_llama::random(config, seed, batch);
  tiny_llama plain(config, model.weights(), batch);
  std::vector<std::int32_t> slots;
  for (int r = 0; r < batch; ++r) slots.push_back(batch - 1 - r);
  const prompt_list prompts = random_prompts(rng, batch, 15, config.vocab_size);
  prefill(model, slots, prompts);
  prefill(plain, slots, prompts);

  for (int round = 0; round < 4; ++round) {
    CAPTURE(round);
    const int width = std::uniform_int_distribution<int>(1, 5)(rng);
    const int length = std::uniform_int_distribution<int>(2, 5)(rng);
    const tree_batch tb = random_trees(rng, model, slots, width, length);
    model.verify(make_verify_input(tb, mask_kind::packed));
    // Accept a random root-to-node path per request.
    kv_plan plan;
    plan.offsets = {0};
    std::vector<std::vector<std::int32_t>> accepted_tokens;
    for (int r = 0; r < batch; ++r) {
      const std::int32_t slot = slots[static_cast<std::size_t>(r)];
      const std::int32_t first = tb.t.host_node_offsets[static_cast<std::size_t>(r)];
      const int node = std::uniform_int_distribution<int>(0, tb.t.num_nodes(r) - 1)(rng);
      const auto path = path_to(tb.t, r, node);
      plan.slot.push_back(slot);
      std::vector<std::int32_t> tokens;
      for (std::size_t i = 0; i < path.size(); ++i) {
        plan.source_node.push_back(path[i]);
        plan.destination.push_back(model.committed_length(slot) + static_cast<std::int32_t>(i));
        tokens.push_back(tb.t.token[first + path[i]]);
      }
      plan.offsets.push_back(static_cast<std::int32_t>(plan.source_node.size()));
      accepted_tokens.push_back(tokens);
    }
    model.commit(plan);
    for (int r = 0; r < batch; ++r) {
      const std::int32_t slot = slots[static_cast<std::size_t>(r)];
      for (const std::int32_t token : accepted_tokens[static_cast<std::size_t>(r)])
        decode_one(plain, slot, token);
      REQUIRE(model.committed_length(slot) == plain.committed_length(slot));
      CHECK(model.pending_length(slot) == 0);
      const auto a = model.kv_cache(slot), b = plain.kv_cache(slot);
      double diff = 0.0;
      for (index_t l = 0; l < a.extent(0); ++l)
        for (index_t kv = 0; kv < 2; ++kv)
          for (index_t h = 0; h < a.extent(2); ++h)
            for (index_t p = 0; p < model.committed_length(slot); ++p)
              for (index_t e = 0; e < a.extent(4); ++e)
                diff = std::max(
                    diff, static_cast<double>(std::abs(a(l, kv, h, p, e) - b(l, kv, h, p, e))));
      CAPTURE(r, slot);
      CHECK(diff < 1e-5);
    }
  }
  // And the next step's logits agree.
  for (int r = 0; r < batch; ++r) {
    const std::int32_t slot = slots[static_cast<std::size_t>(r)];
    CHECK(max_abs_diff(decode_one(model, slot, 7), decode_one(plain, slot, 7)) < 2e-4);
  }
}

TEST_CASE("tiny_llama: prefill equals token-by-token decoding and the naive forward pass",
          "[tiny_llama][prefill]") {
  const std::uint32_t seed = GENERATE(31u, 32u, 33u);
  const bool tied = GENERATE(true, false);
  CAPTURE(seed, tied);
  std::mt19937 rng(seed);
  const tiny_llama_config config = small_config(tied);
  tiny_llama model = tiny_llama::random(config, seed, 4);
  const prompt_list prompts = random_prompts(rng, 4, 40, config.vocab_size);
  const model_output out = prefill(model, {0, 1, 2, 3}, prompts);
  REQUIRE(out.logits.extent(0) == 4);
  const std::vector<float> batched = copy_rows(out.logits, 0, 4);
  const std::vector<float> batched_hidden = copy_rows(out.hidden, 0, 4);
  tiny_llama step(config, model.weights(), 1);
  for (std::size_t r = 0; r < prompts.size(); ++r) {
    CAPTURE(r, prompts[r].size());
    CHECK(model.committed_length(static_cast<std::int32_t>(r)) ==
          static_cast<std::int32_t>(prompts[r].size()));
    const auto row = [&](const std::vector<float>& all, int width) {
      return std::vector<float>(all.begin() + static_cast<std::ptrdiff_t>(r) * width,
                                all.begin() + static_cast<std::ptrdiff_t>(r + 1) * width);
    };
    // Alone.
    const model_output alone = prefill(step, {0}, {prompts[r]});
    CHECK(max_abs_diff(copy_rows(alone.logits, 0, 1), row(batched, config.vocab_size)) < 1e-4);
    // Token by token.
    std::vector<float> logits = copy_rows(prefill(step, {0}, {{prompts[r][0]}}).logits, 0, 1);
    for (std::size_t i = 1; i < prompts[r].size(); ++i) logits = decode_one(step, 0, prompts[r][i]);
    CHECK(max_abs_diff(logits, row(batched, config.vocab_size)) < 2e-4);
    // The cache too.
    const auto a = model.kv_cache(static_cast<std::int32_t>(r)), b = step.kv_cache(0);
    double diff = 0.0;
    for (index_t l = 0; l < a.extent(0); ++l)
      for (index_t kv = 0; kv < 2; ++kv)
        for (index_t h = 0; h < a.extent(2); ++h)
          for (index_t p = 0; p < static_cast<index_t>(prompts[r].size()) - 1; ++p)
            for (index_t e = 0; e < a.extent(4); ++e)
              diff = std::max(diff,
                              static_cast<double>(std::abs(a(l, kv, h, p, e) - b(l, kv, h, p, e))));
    CHECK(diff < 1e-5);
    // The naive double-precision forward pass.
    std::vector<std::int32_t> positions;
    for (std::size_t i = 0; i < prompts[r].size(); ++i)
      positions.push_back(static_cast<std::int32_t>(i));
    const auto ref =
        testing::reference_llama_forward(config, model.weights(), prompts[r], positions);
    double ldiff = 0.0, hdiff = 0.0;
    const std::size_t last = prompts[r].size() - 1;
    for (int v = 0; v < config.vocab_size; ++v) {
      ldiff =
          std::max(ldiff, std::abs(ref.logits[last * static_cast<std::size_t>(config.vocab_size) +
                                              static_cast<std::size_t>(v)] -
                                   batched[r * static_cast<std::size_t>(config.vocab_size) +
                                           static_cast<std::size_t>(v)]));
    }
    for (int e = 0; e < config.hidden_size; ++e) {
      hdiff =
          std::max(hdiff, std::abs(ref.hidden[last * static_cast<std::size_t>(config.hidden_size) +
                                              static_cast<std::size_t>(e)] -
                                   batched_hidden[r * static_cast<std::size_t>(config.hidden_size) +
                                                  static_cast<std::size_t>(e)]));
    }
    CHECK(ldiff < 2e-4);
    CHECK(hdiff < 2e-4);
  }
}

TEST_CASE("tiny_llama: random weights give varied, non-degenerate next-token distributions",
          "[tiny_llama][init]") {
  const bool tied = GENERATE(true, false);
  CAPTURE(tied);
  tiny_llama_config config = small_config(tied);
  config.vocab_size = 256;
  config.hidden_size = 64;
  config.head_dim = 16;
  config.intermediate_size = 128;
  tiny_llama model = tiny_llama::random(config, 99, 1);
  std::mt19937 rng(5);
  std::vector<std::int32_t> argmaxes;
  double mean_entropy = 0.0;
  int repeats = 0;
  const int contexts = 40;
  for (int c = 0; c < contexts; ++c) {
    const prompt_list prompt = random_prompts(rng, 1, 20, config.vocab_size);
    const model_output out = prefill(model, {0}, prompt);
    const float* row = out.logits.data();
    const float max = *std::max_element(row, row + config.vocab_size);
    double sum = 0.0, entropy = 0.0;
    for (int v = 0; v < config.vocab_size; ++v) sum += std::exp(static_cast<double>(row[v] - max));
    for (int v = 0; v < config.vocab_size; ++v) {
      const double p = std::exp(static_cast<double>(row[v] - max)) / sum;
      if (p > 0) entropy -= p * std::log(p);
    }
    mean_entropy += entropy / contexts;
    argmaxes.push_back(
        static_cast<std::int32_t>(std::max_element(row, row + config.vocab_size) - row));
    repeats += argmaxes.back() == prompt[0].back();
  }
  std::sort(argmaxes.begin(), argmaxes.end());
  const auto distinct = std::unique(argmaxes.begin(), argmaxes.end()) - argmaxes.begin();
  CAPTURE(mean_entropy, distinct, repeats);
  CHECK(mean_entropy > 1.0);                    // not one-hot
  CHECK(mean_entropy < std::log(256.0) - 0.5);  // not uniform
  CHECK(distinct >= 10);                        // depends on the context
  CHECK(repeats < contexts / 4);                // does not just repeat its input
  // Deterministic in the seed.
  CHECK(testing::random_tiny_llama_weights(config, 99).layers[1].down_proj ==
        model.weights().layers[1].down_proj);
  CHECK(testing::random_tiny_llama_weights(config, 100).embed_tokens !=
        model.weights().embed_tokens);
}

TEST_CASE("tiny_llama: bad input throws redraft::error and changes no slot",
          "[tiny_llama][errors]") {
  const tiny_llama_config config = small_config(true);
  tiny_llama model = tiny_llama::random(config, 7, 2);
  const std::vector<std::int32_t> prompt{1, 2, 3};
  prefill(model, {0}, {prompt});
  const std::vector<float> before = decode_one(model, 0, 5);  // committed 4

  // Prefill.
  CHECK_THROWS_WITH(prefill(model, {2}, {prompt}),
                    Catch::Contains("slot 2") && Catch::Contains("[0, 2)"));
  CHECK_THROWS_WITH(prefill(model, {-1}, {prompt}), Catch::Contains("slot -1"));
  CHECK_THROWS_WITH(prefill(model, {1, 1}, {prompt, prompt}), Catch::Contains("listed twice"));
  CHECK_THROWS_WITH(prefill(model, {1}, {{}}), Catch::Contains("empty"));
  CHECK_THROWS_WITH(prefill(model, {1}, {std::vector<std::int32_t>(161, 1)}),
                    Catch::Contains("161 tokens") && Catch::Contains("max_context is 160"));
  CHECK_THROWS_WITH(prefill(model, {1}, {{1, 40}}),
                    Catch::Contains("tokens[1] = 40") && Catch::Contains("[0, 40)"));
  CHECK_THROWS_WITH(prefill(model, {1}, {{-3}}), Catch::Contains("tokens[0] = -3"));
  // A failing batch leaves slot 0 alone even when the failure is in a later request.
  CHECK_THROWS_AS(prefill(model, {0, 1}, {prompt, {}}), redraft::error);
  CHECK(model.committed_length(0) == 4);
  CHECK(model.committed_length(1) == 0);

  // Verify.
  std::mt19937 rng(3);
  prefill(model, {1}, {prompt});
  tree_batch tb = random_trees(rng, model, {0, 1}, 3, 4);
  CHECK_NOTHROW(model.verify(make_verify_input(tb, mask_kind::dense)));
  {
    verify_input in = make_verify_input(tb, mask_kind::dense);
    in.positions = vector_view<const std::int32_t>(tb.positions.data(), tb.positions.size() - 1);
    CHECK_THROWS_WITH(model.verify(in), Catch::Contains("positions has"));
  }
  {
    verify_input in = make_verify_input(tb, mask_kind::dense);
    in.slots = vector_view<const std::int32_t>(tb.slots.data(), 1);
    CHECK_THROWS_WITH(model.verify(in), Catch::Contains("host_node_offsets has"));
  }
  {
    tree_batch bad = random_trees(rng, model, {0, 1}, 3, 4);
    bad.t.token[2] = 40;
    CHECK_THROWS_WITH(model.verify(make_verify_input(bad, mask_kind::parent)),
                      Catch::Contains("tree.token[2] = 40"));
    bad.t.token[2] = 1;
    bad.t.parent[2] = 2;
    CHECK_THROWS_WITH(model.verify(make_verify_input(bad, mask_kind::parent)),
                      Catch::Contains("does not precede"));
    bad.positions[0] = 160;
    CHECK_THROWS_WITH(model.verify(make_verify_input(bad, mask_kind::dense)),
                      Catch::Contains("positions[0] = 160"));
  }
  {
    verify_input in = make_verify_input(tb, mask_kind::packed);
    in.packed_words_per_row = 0;
    CHECK_THROWS_WITH(model.verify(in), Catch::Contains("packed_words_per_row 0"));
  }
  {
    tree_batch unknown = random_trees(rng, model, {0, 1}, 2, 3);
    unknown.slots = {0, 5};
    CHECK_THROWS_WITH(model.verify(make_verify_input(unknown, mask_kind::dense)),
                      Catch::Contains("slot 5"));
  }
  {
    tiny_llama fresh = tiny_llama::random(config, 7, 2);
    prefill(fresh, {0}, {prompt});
    tree_batch never = random_trees(rng, fresh, {0, 1}, 2, 3);
    CHECK_THROWS_WITH(fresh.verify(make_verify_input(never, mask_kind::dense)),
                      Catch::Contains("slot 1") && Catch::Contains("prefill it first"));
  }
  {
    // A tree that would overflow max_context.
    tiny_llama_config short_config = config;
    short_config.max_context = 8;
    tiny_llama short_model(short_config, model.weights(), 1);
    prefill(short_model, {0}, {{1, 2, 3, 4, 5, 6}});
    tree_batch big = random_trees(rng, short_model, {0}, 4, 4);
    REQUIRE(big.t.total_nodes() > 2);
    CHECK_THROWS_WITH(short_model.verify(make_verify_input(big, mask_kind::dense)),
                      Catch::Contains("exceeding max_context 8"));
  }

  // Commit.
  {
    kv_plan plan;
    plan.offsets = {0, 1};
    plan.slot = {1};
    plan.source_node = {0};
    plan.destination = {model.committed_length(1) + 1};
    CHECK_THROWS_WITH(model.commit(plan), Catch::Contains("destination[0]"));
    plan.destination = {model.committed_length(1)};
    plan.source_node = {99};
    CHECK_THROWS_WITH(model.commit(plan), Catch::Contains("source_node[0] = 99"));
    plan.slot = {4};
    CHECK_THROWS_WITH(model.commit(plan), Catch::Contains("slot 4"));
  }
  // Nothing above changed slot 0: the pending tree is dropped by a plan that keeps nothing, and
  // decoding the same token again from the same state gives the same logits.
  {
    kv_plan drop;
    drop.offsets = {0, 0};
    drop.slot = {0};
    model.commit(drop);
    CHECK(model.committed_length(0) == 4);
    CHECK(model.pending_length(0) == 0);
    CHECK_THROWS_WITH(model.commit(drop), Catch::Contains("no pending tree"));
  }
  model.release(0);
  CHECK(model.committed_length(0) == 0);
  prefill(model, {0}, {prompt});
  CHECK(decode_one(model, 0, 5) == before);
  CHECK_THROWS_WITH(model.release(2), Catch::Contains("slot 2"));

  // Weights that do not match the configuration.
  auto weights = model.weights();
  weights.layers[1].up_proj.pop_back();
  CHECK_THROWS_WITH(tiny_llama(config, weights, 1),
                    Catch::Contains("model.layers.1.mlp.up_proj.weight"));
  tiny_llama_config odd = config;
  odd.head_dim = 7;
  CHECK_THROWS_WITH(testing::random_tiny_llama_weights(odd, 1), Catch::Contains("head_dim 7"));
}

namespace {

// A fresh directory under the system temp directory, removed at scope exit.
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& name) {
    path = std::filesystem::temp_directory_path() /
           ("redraft_test_tiny_llama_" + name + "_" + std::to_string(std::random_device{}()));
    std::filesystem::remove_all(path);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
};

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("tiny_llama: save then load gives identical logits", "[tiny_llama][io]") {
  const bool tied = GENERATE(true, false);
  CAPTURE(tied);
  const tiny_llama_config config = small_config(tied);
  tiny_llama model = tiny_llama::random(config, 41, 1);
  temp_dir dir(tied ? "tied" : "untied");
  testing::save_tiny_llama(dir.path, model);
  REQUIRE(std::filesystem::exists(dir.path / "config.json"));
  REQUIRE(std::filesystem::exists(dir.path / "model.safetensors"));
  const std::string json = read_text(dir.path / "config.json");
  CHECK_THAT(json, Catch::Contains("\"num_hidden_layers\": 2") &&
                       Catch::Contains("\"rms_norm_eps\": 1e-05") &&
                       Catch::Contains("\"max_position_embeddings\": 160"));
  const auto tensors = read_safetensors(dir.path / "model.safetensors");
  CHECK(tensors.count("lm_head.weight") == (tied ? 0u : 1u));
  CHECK(tensors.at("model.layers.1.mlp.down_proj.weight").shape ==
        std::vector<std::int64_t>{32, 48});
  CHECK(tensors.at("model.layers.0.self_attn.q_proj.weight").shape ==
        std::vector<std::int64_t>{32, 32});

  tiny_llama loaded = testing::load_tiny_llama(dir.path, 2);
  CHECK(loaded.num_slots() == 2);
  CHECK(loaded.config().vocab_size == config.vocab_size);
  CHECK(loaded.config().max_context == config.max_context);
  CHECK(loaded.config().rms_norm_eps == config.rms_norm_eps);
  CHECK(loaded.config().rope_theta == config.rope_theta);
  CHECK(loaded.config().tie_word_embeddings == tied);
  const prompt_list prompts{{1, 5, 9, 2, 33}};
  const std::vector<float> a = copy_rows(prefill(model, {0}, prompts).logits, 0, 1);
  const std::vector<float> b = copy_rows(prefill(loaded, {1}, prompts).logits, 0, 1);
  CHECK(a == b);
  CHECK(decode_one(model, 0, 17) == decode_one(loaded, 1, 17));

  // BF16 storage loads too, with logits close to the float model's.
  temp_dir half_dir("bf16");
  testing::save_tiny_llama(half_dir.path, model, safetensors_dtype::bf16);
  tiny_llama half = testing::load_tiny_llama(half_dir.path, 1);
  const std::vector<float> c = copy_rows(prefill(half, {0}, prompts).logits, 0, 1);
  CHECK(max_abs_diff(a, c) < 0.25);
  CHECK(max_abs_diff(a, c) > 0.0);
}

TEST_CASE("tiny_llama: loading a bad checkpoint names the problem", "[tiny_llama][io][errors]") {
  const tiny_llama_config config = small_config(false);
  const tiny_llama model = tiny_llama::random(config, 43, 1);
  temp_dir dir("bad");
  CHECK_THROWS_WITH(testing::load_tiny_llama(dir.path), Catch::Contains("cannot open"));
  testing::save_tiny_llama(dir.path, model);
  const auto rewrite_config = [&](const std::string& field, const nlohmann::json& value) {
    nlohmann::json j = testing::tiny_llama_config_to_json(config);
    if (value.is_discarded())
      j.erase(field);
    else
      j[field] = value;
    std::ofstream(dir.path / "config.json") << j.dump();
  };
  rewrite_config("num_key_value_heads", 2);
  CHECK_THROWS_WITH(testing::load_tiny_llama(dir.path), Catch::Contains("num_key_value_heads 2"));
  rewrite_config("hidden_size", nlohmann::json::value_t::discarded);
  CHECK_THROWS_WITH(testing::load_tiny_llama(dir.path), Catch::Contains("no \"hidden_size\""));
  rewrite_config("vocab_size", "40");
  CHECK_THROWS_WITH(testing::load_tiny_llama(dir.path),
                    Catch::Contains("\"vocab_size\" is not an integer"));
  rewrite_config("intermediate_size", 50);
  CHECK_THROWS_WITH(testing::load_tiny_llama(dir.path),
                    Catch::Contains("model.layers.0.mlp.gate_proj.weight") &&
                        Catch::Contains("[48, 32]") && Catch::Contains("[50, 32]"));
  rewrite_config("tie_word_embeddings", true);
  CHECK_THROWS_WITH(testing::load_tiny_llama(dir.path), Catch::Contains("lm_head.weight differs"));
  rewrite_config("num_hidden_layers", 3);
  CHECK_THROWS_WITH(testing::load_tiny_llama(dir.path),
                    Catch::Contains("no tensor 'model.layers.2.input_layernorm.weight'"));
  rewrite_config("num_hidden_layers", 1);
  CHECK_THROWS_WITH(testing::load_tiny_llama(dir.path),
                    Catch::Contains("unexpected tensor 'model.layers.1."));
  rewrite_config("rope_scaling", nlohmann::json{{"type", "linear"}});
  CHECK_THROWS_WITH(testing::load_tiny_llama(dir.path), Catch::Contains("rope_scaling"));
  std::ofstream(dir.path / "config.json") << "{ not json";
  CHECK_THROWS_WITH(testing::load_tiny_llama(dir.path), Catch::Contains("is not valid JSON"));
  // A config.json from transformers with defaults left out loads (head_dim, rope_theta, eps).
  nlohmann::json minimal{{"vocab_size", 40},        {"hidden_size", 32},
                         {"num_hidden_layers", 2},  {"num_attention_heads", 4},
                         {"intermediate_size", 48}, {"max_position_embeddings", 160}};
  std::ofstream(dir.path / "config.json") << minimal.dump();
  const tiny_llama loaded = testing::load_tiny_llama(dir.path);
  CHECK(loaded.config().head_dim == 8);
  CHECK(loaded.config().rms_norm_eps == 1e-6f);
  CHECK_FALSE(loaded.config().tie_word_embeddings);
}

TEST_CASE("tiny_llama: F16 and BF16 projections give the F32 model's logits on the same values",
          "[tiny_llama][half]") {
  // A model in format F rounds its weight matrices to F and keeps the projections 16-bit; an F32
  // model built from those rounded weights computes the same products (exact conversion, the same
  // small_matmul arithmetic), so prefill and tree logits are identical bit for bit.
  const weight_format format = GENERATE(weight_format::f16, weight_format::bf16);
  const bool tied = GENERATE(true, false);
  CAPTURE(weight_format_name(format), tied);
  const tiny_llama_config config = small_config(tied);
  // Norm weights rounded too, so a checkpoint saved in the format holds exactly this model.
  testing::tiny_llama_weights weights = testing::random_tiny_llama_weights(config, 43);
  const auto round = [&](std::vector<float>& values) {
    for (float& v : values)
      v = format == weight_format::f16 ? to_float(to_float16(v)) : to_float(to_bfloat16(v));
  };
  round(weights.norm);
  for (auto& lw : weights.layers) {
    round(lw.input_layernorm);
    round(lw.post_attention_layernorm);
  }
  tiny_llama half(config, weights, 1, format);
  REQUIRE(half.format() == format);
  tiny_llama single(config, half.weights(), 1, weight_format::f32);
  for (const float v : half.weights().layers[0].q_proj) {
    const float rounded =
        format == weight_format::f16 ? to_float(to_float16(v)) : to_float(to_bfloat16(v));
    REQUIRE(v == rounded);
  }
  const prompt_list prompts{{1, 5, 9, 2, 33, 7}};
  CHECK(copy_rows(prefill(half, {0}, prompts).logits, 0, 1) ==
        copy_rows(prefill(single, {0}, prompts).logits, 0, 1));
  CHECK(decode_one(half, 0, 17) == decode_one(single, 0, 17));

  SECTION("a checkpoint stored in the format loads in it, with its exact values") {
    temp_dir dir(format == weight_format::f16 ? "f16" : "bf16");
    testing::save_tiny_llama(
        dir.path, half,
        format == weight_format::f16 ? safetensors_dtype::f16 : safetensors_dtype::bf16);
    tiny_llama loaded = testing::load_tiny_llama(dir.path, 1);
    CHECK(loaded.format() == format);
    CHECK(copy_rows(prefill(loaded, {0}, prompts).logits, 0, 1) ==
          copy_rows(prefill(half, {0}, prompts).logits, 0, 1));
    CHECK(testing::load_tiny_llama(dir.path, 1, weight_format::f32).format() == weight_format::f32);
  }
}

TEST_CASE("tiny_llama: commit moves entries with apply_kv_plan and refuses a path out of order",
          "[tiny_llama][kv][errors]") {
  const tiny_llama_config config = small_config(false);
  tiny_llama model = tiny_llama::random(config, 5, 1);
  std::mt19937 rng(5);
  prefill(model, {0}, {{1, 2, 3}});
  const tree_batch chain = random_trees(rng, model, {0}, 1, 3);  // root + 2 drafted nodes
  REQUIRE(chain.t.total_nodes() == 3);
  model.verify(make_verify_input(chain, mask_kind::packed));
  kv_plan plan;
  plan.offsets = {0, 2};
  plan.slot = {0};
  plan.source_node = {2, 1};
  plan.destination = {3, 4};
  CHECK_THROWS_WITH(model.commit(plan), Catch::Contains("source_node[1] = 1 does not follow"));
  CHECK(model.committed_length(0) == 3);
  CHECK(model.pending_length(0) == 3);
  // Keeping node 2 alone moves its entries from position 3 + 2 to 3.
  const auto cache = model.kv_cache(0);
  std::vector<float> node2;
  for (index_t l = 0; l < cache.extent(0); ++l)
    for (index_t kv = 0; kv < 2; ++kv)
      for (index_t h = 0; h < cache.extent(2); ++h)
        for (index_t d = 0; d < cache.extent(4); ++d) node2.push_back(cache(l, kv, h, 5, d));
  plan.offsets = {0, 1};
  plan.source_node = {2};
  plan.destination = {3};
  model.commit(plan);
  CHECK(model.committed_length(0) == 4);
  std::size_t i = 0;
  for (index_t l = 0; l < cache.extent(0); ++l)
    for (index_t kv = 0; kv < 2; ++kv)
      for (index_t h = 0; h < cache.extent(2); ++h)
        for (index_t d = 0; d < cache.extent(4); ++d) REQUIRE(cache(l, kv, h, 3, d) == node2[i++]);
}
