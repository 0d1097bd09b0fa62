// Benchmarks of the tiny Llama reference target model (testing/tiny_llama.hpp) and the plain
// decoder over it: prefill throughput, one-token decode steps (verify + commit) at several batch
// sizes, one tree verification of W beams of L tokens, and end-to-end plain greedy decoding.
// items_per_second = tokens processed (prefill, tree nodes) or emitted (decode) per second.
//
// BM_tree_pass_vs_step/n/F: the shipped KJV target (data/models/kjv-target; the demo's built-in
// target when missing) in F32 (F = 0) or F16 (F = 1): a verify() of an n-node tree, and a plain
// decoding step (a 1-node verify) at the same context, timed in the same iterations; the counter
// vs_step is their ratio, the cost of a speculative step's target pass in plain steps.
// BM_stream_read: this core's streaming-read rate (bytes_per_second).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <filesystem>
#include <vector>

#include "redraft/loop/plain_decoder.hpp"
#include "redraft/testing/demo_models.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/testing/tiny_llama_io.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/masks.hpp"
#include "stream_read.hpp"

using namespace redraft;
using redraft::testing::tiny_llama;
using redraft::testing::tiny_llama_config;

namespace {

// The default configuration: V 256, H 64, 2 layers, 4 heads of 16, I 128, context 512.
tiny_llama_config bench_config() { return tiny_llama_config{}; }

std::vector<std::int32_t> prompt_of(std::int32_t length, std::int32_t salt) {
  std::vector<std::int32_t> p(static_cast<std::size_t>(length));
  for (std::int32_t i = 0; i < length; ++i)
    p[static_cast<std::size_t>(i)] = (i * 37 + salt * 11 + 5) % 256;
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
  benchmark::DoNotOptimize(
      model.prefill(prefill_input{{slots.data(), batch},
                                  {offsets.data(), batch + 1},
                                  {tokens.data(), static_cast<index_t>(tokens.size())}}));
}

// Prefill of B prompts of P tokens.
void BM_tiny_llama_prefill(benchmark::State& state) {
  const auto batch = static_cast<std::int32_t>(state.range(0)),
             length = static_cast<std::int32_t>(state.range(1));
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
  std::vector<std::int32_t> slots(static_cast<std::size_t>(batch)),
      offsets(static_cast<std::size_t>(batch) + 1), tokens(static_cast<std::size_t>(batch), 7),
      parent(static_cast<std::size_t>(batch), -1), depth(static_cast<std::size_t>(batch), 0),
      positions(static_cast<std::size_t>(batch));
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
    verify_input in{
        {slots.data(), batch}, {offsets.data(), batch + 1}, t, {positions.data(), batch}};
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
  const auto batch = static_cast<std::int32_t>(state.range(0)),
             width = static_cast<std::int32_t>(state.range(1)),
             length = static_cast<std::int32_t>(state.range(2));
  const cpu_backend backend;
  tiny_llama model = tiny_llama::random(bench_config(), 1, batch);
  prefill_all(model, batch, 128);
  std::vector<std::int32_t> beams(static_cast<std::size_t>(batch * width * length));
  for (std::size_t i = 0; i < beams.size(); ++i) {
    beams[i] =
        i % static_cast<std::size_t>(length) == 0 ? 1 : static_cast<std::int32_t>((i * 7919) % 13);
  }
  const tree<cpu_backend> t =
      build_tree(backend, view<const std::int32_t, 3>(beams.data(), batch, width, length));
  const packed_tree_mask<cpu_backend> mask = build_packed_tree_mask(backend, t);
  const std::vector<std::int32_t> base(static_cast<std::size_t>(batch), 128);
  const auto positions =
      build_positions(backend, t, vector_view<const std::int32_t>(base.data(), batch));
  std::vector<std::int32_t> slots(static_cast<std::size_t>(batch));
  for (std::int32_t r = 0; r < batch; ++r) slots[static_cast<std::size_t>(r)] = r;
  verify_input in{{slots.data(), batch},
                  {t.host_node_offsets.data(), batch + 1},
                  view_of(t),
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

// A verify() of n nodes at positions base + depth in slot 0: node i's parent is (i - 1) / 2 (a
// binary tree), tokens (5 i + 3) mod V. The mask is derived from the parents.
model_output verify_nodes(tiny_llama& model, std::int32_t n, std::int32_t base,
                          std::vector<std::int32_t>& storage) {
  storage.assign(static_cast<std::size_t>(4 * n + 4), 0);
  std::int32_t* token = storage.data();
  std::int32_t* parent = token + n;
  std::int32_t* depth = parent + n;
  std::int32_t* positions = depth + n;
  std::int32_t* offsets = positions + n;  // [2]
  std::int32_t* slots = offsets + 2;      // [1]
  for (std::int32_t i = 0; i < n; ++i) {
    token[i] = (5 * i + 3) % model.vocab_size();
    parent[i] = i == 0 ? -1 : (i - 1) / 2;
    depth[i] = i == 0 ? 0 : depth[parent[i]] + 1;
    positions[i] = base + depth[i];
  }
  offsets[0] = 0;
  offsets[1] = n;
  slots[0] = 0;
  tree_view t;
  t.batch = 1;
  t.node_offsets = offsets;
  t.token = token;
  t.parent = parent;
  t.depth = depth;
  return model.verify(verify_input{{slots, 1}, {offsets, 2}, t, {positions, n}});
}

void BM_tree_pass_vs_step(benchmark::State& state) {
  const auto n = static_cast<std::int32_t>(state.range(0));
  const weight_format format = state.range(1) == 0 ? weight_format::f32 : weight_format::f16;
  // NOTE: __FILE__ is the absolute path of this file in CMake builds: <repo>/bench/...
  const auto dir =
      std::filesystem::path(__FILE__).parent_path() / ".." / "data" / "models" / "kjv-target";
  tiny_llama model = std::filesystem::exists(dir / "config.json")
                         ? redraft::testing::load_tiny_llama(dir, 1, format)
                         : tiny_llama::random(redraft::testing::demo_target_config(),
                                              redraft::testing::demo_target_seed, 1, format);
  const std::int32_t context = 128;
  prefill_all(model, 1, context);
  std::vector<std::int32_t> storage;
  double tree_seconds = 0.0, step_seconds = 0.0;
  for (auto _ : state) {
    const double t0 = redraft_bench::thread_seconds();
    benchmark::DoNotOptimize(verify_nodes(model, n, context, storage).logits.data());
    const double t1 = redraft_bench::thread_seconds();
    benchmark::DoNotOptimize(verify_nodes(model, 1, context, storage).logits.data());
    const double t2 = redraft_bench::thread_seconds();
    tree_seconds += t1 - t0;
    step_seconds += t2 - t1;
  }
  state.counters["vs_step"] = tree_seconds / step_seconds;
  state.counters["step_us"] = 1e6 * step_seconds / static_cast<double>(state.iterations());
  state.counters["tree_us"] = 1e6 * tree_seconds / static_cast<double>(state.iterations());
}
BENCHMARK(BM_tree_pass_vs_step)
    ->ArgNames({"n", "F"})
    ->Args({2, 0})
    ->Args({4, 0})
    ->Args({8, 0})
    ->Args({16, 0})
    ->Args({32, 0})
    ->Args({2, 1})
    ->Args({4, 1})
    ->Args({8, 1})
    ->Args({16, 1})
    ->Args({32, 1})
    ->MinTime(0.3);

BENCHMARK(redraft_bench::BM_stream_read)->Iterations(5)->Unit(benchmark::kMillisecond);

}  // namespace
