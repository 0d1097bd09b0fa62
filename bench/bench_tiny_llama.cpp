// Benchmarks of the tiny Llama reference target model (testing/tiny_llama.hpp) and the plain
// decoder over it: prefill throughput, one-token decode steps (verify + commit) at several batch
// sizes, one tree verification of W beams of L tokens, and end-to-end plain greedy decoding.
// items_per_second = tokens processed (prefill, tree nodes) or emitted (decode) per second.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "redraft/loop/plain_decoder.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/masks.hpp"

using namespace redraft;
using redraft::testing::tiny_llama;
using redraft::testing::tiny_llama_config;

namespace {

// The default configuration: V 256, H 64, 2 layers, 4 heads of 16, I 128, context 512.
tiny_llama_config bench_config() { return tiny_llama_config{}; }

std::vector<std::int32_t> prompt_of(std::int32_t length, std::int32_t salt) {
  std::vector<std::int32_t> p(static_cast<std::size_t>(length));
  for (std::int32_t i = 0; i < length; ++i) p[static_cast<std::size_t>(i)] = (i * 37 + salt * 11 + 5) % 256;
  return p;
}

void prefill_all(tiny_llama& model, std::int32_t batch, std::int32_t length) {
  std::vector<std::int32_t> slots, offsets{0}, tokens;
  for (std::int32_t r = 0; r < batch; ++r) {
    const auto p = prompt_of(length, r);
    slots.push_back(r);
    tokens.insert(tokens.end(), p.begin(), p.end());
    offsets.push_back(static_cast<std::int32_t>(tokens.size()));
  }
  benchmark::DoNotOptimize(model.prefill(prefill_input{{slots.data(), batch},
                                                       {offsets.data(), batch + 1},
                                                       {tokens.data(), static_cast<index_t>(tokens.size())}}));
}

// Prefill of B prompts of P tokens.
void BM_tiny_llama_prefill(benchmark::State& state) {
  const auto batch = static_cast<std::int32_t>(state.range(0)), length = static_cast<std::int32_t>(state.range(1));
  tiny_llama model = tiny_llama::random(bench_config(), 1, batch);
  for (auto _ : state) prefill_all(model, batch, length);
  state.SetItemsProcessed(state.iterations() * batch * length);
}
BENCHMARK(BM_tiny_llama_prefill)->Args({1, 32})->Args({1, 256})->Args({8, 64});

// One decode step of B requests (a one-node verify + commit each) at context ~64: the inner loop
// of plain decoding. The slots are re-prefilled every 256 steps (outside the timing).
void BM_tiny_llama_decode_step(benchmark::State& state) {
  const auto batch = static_cast<std::int32_t>(state.range(0));
  tiny_llama model = tiny_llama::random(bench_config(), 1, batch);
  std::vector<std::int32_t> slots(static_cast<std::size_t>(batch)), offsets(static_cast<std::size_t>(batch) + 1),
      tokens(static_cast<std::size_t>(batch), 7), parent(static_cast<std::size_t>(batch), -1),
      depth(static_cast<std::size_t>(batch), 0), positions(static_cast<std::size_t>(batch));
  std::vector<std::int64_t> dense_offsets(static_cast<std::size_t>(batch) + 1);
  std::vector<std::uint8_t> dense(static_cast<std::size_t>(batch), 1);
  for (std::int32_t r = 0; r <= batch; ++r) {
    offsets[static_cast<std::size_t>(r)] = r;
    dense_offsets[static_cast<std::size_t>(r)] = r;
    if (r < batch) slots[static_cast<std::size_t>(r)] = r;
  }
  kv_plan plan;
  plan.offsets = offsets;
  plan.slot = slots;
  plan.source_node.assign(static_cast<std::size_t>(batch), 0);
  plan.destination.resize(static_cast<std::size_t>(batch));
  std::int32_t steps = 0;
  for (auto _ : state) {
    if (steps % 256 == 0) {
      state.PauseTiming();
      prefill_all(model, batch, 64);
      state.ResumeTiming();
    }
    ++steps;
    for (std::int32_t r = 0; r < batch; ++r) {
      positions[static_cast<std::size_t>(r)] = model.committed_length(r);
      plan.destination[static_cast<std::size_t>(r)] = positions[static_cast<std::size_t>(r)];
    }
    tree_view t;
    t.batch = batch;
    t.node_offsets = offsets.data();
    t.token = tokens.data();
    t.parent = parent.data();
    t.depth = depth.data();
    verify_input in{{slots.data(), batch}, {offsets.data(), batch + 1}, t, {positions.data(), batch}};
    in.dense_mask = dense.data();
    in.dense_offsets = dense_offsets.data();
    benchmark::DoNotOptimize(model.verify(in));
    model.commit(plan);
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_tiny_llama_decode_step)->Arg(1)->Arg(8)->Arg(64);

// One tree verification (packed mask) of B requests with W beams of L tokens at context 128.
void BM_tiny_llama_verify_tree(benchmark::State& state) {
  const auto batch = static_cast<std::int32_t>(state.range(0)), width = static_cast<std::int32_t>(state.range(1)),
             length = static_cast<std::int32_t>(state.range(2));
  const cpu_backend backend;
  tiny_llama model = tiny_llama::random(bench_config(), 1, batch);
  prefill_all(model, batch, 128);
  std::vector<std::int32_t> beams(static_cast<std::size_t>(batch * width * length));
  for (std::size_t i = 0; i < beams.size(); ++i) {
    beams[i] = i % static_cast<std::size_t>(length) == 0 ? 1 : static_cast<std::int32_t>((i * 7919) % 13);
  }
  const tree<cpu_backend> t = build_tree(backend, view<const std::int32_t, 3>(beams.data(), batch, width, length));
  const packed_tree_mask<cpu_backend> mask = build_packed_tree_mask(backend, t);
  const std::vector<std::int32_t> base(static_cast<std::size_t>(batch), 128);
  const auto positions = build_positions(backend, t, vector_view<const std::int32_t>(base.data(), batch));
  std::vector<std::int32_t> slots(static_cast<std::size_t>(batch));
  for (std::int32_t r = 0; r < batch; ++r) slots[static_cast<std::size_t>(r)] = r;
  verify_input in{{slots.data(), batch}, {t.host_node_offsets.data(), batch + 1}, view_of(t),
                  {positions.data(), t.total_nodes()}};
  in.packed_mask = mask.words.data();
  in.packed_words_per_row = mask.words_per_row;
  for (auto _ : state) benchmark::DoNotOptimize(model.verify(in));
  state.SetItemsProcessed(state.iterations() * t.total_nodes());
  state.counters["nodes"] = t.total_nodes();
}
BENCHMARK(BM_tiny_llama_verify_tree)->Args({1, 8, 5})->Args({8, 8, 5});

// End-to-end plain greedy decoding: B requests, prompt 32, 128 new tokens each.
void BM_plain_decode_greedy(benchmark::State& state) {
  const auto batch = static_cast<std::int32_t>(state.range(0));
  tiny_llama model = tiny_llama::random(bench_config(), 1, batch);
  std::vector<generation_request> requests(static_cast<std::size_t>(batch));
  for (std::int32_t r = 0; r < batch; ++r) {
    requests[static_cast<std::size_t>(r)].prompt = prompt_of(32, r);
    requests[static_cast<std::size_t>(r)].max_new_tokens = 128;
  }
  std::int64_t emitted = 0;
  for (auto _ : state) emitted += plain_decode(model, requests).total_emitted();
  state.SetItemsProcessed(emitted);
}
BENCHMARK(BM_plain_decode_greedy)->Arg(1)->Arg(8);

}  // namespace
