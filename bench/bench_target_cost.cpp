// What one speculative step costs on the shipped KJV pair (data/models/kjv-target +
// data/draft_heads/kjv), in units of one plain decoding step: the target's verify() of n packed
// nodes (n = 1 is a plain decoding step) and the draft head's beam search of W beams of L tokens.
// docs/results.md reads the speedup table with these numbers. Falls back to the demo's built-in
// target (random weights) and an untrained head when the shipped files are missing.
//
// Compare BM_verify/n with BM_verify/1. NOTE: on a machine shared with other work, read the CPU
// column (this thread's time), not the wall-clock Time column.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "redraft/draft/beam_search.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/draft_init.hpp"
#include "redraft/testing/demo_models.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/testing/tiny_llama_io.hpp"

using namespace redraft;
using redraft::testing::tiny_llama;

namespace {

// REDRAFT_DEMO_DATA_DIR is <repo>/data, set by bench/CMakeLists.txt.
const std::filesystem::path data_dir = REDRAFT_DEMO_DATA_DIR;

tiny_llama& shared_target() {
  static std::unique_ptr<tiny_llama> model = [] {
    const auto dir = data_dir / "models" / "kjv-target";
    if (std::filesystem::exists(dir / "config.json"))
      return std::make_unique<tiny_llama>(redraft::testing::load_tiny_llama(dir, 1));
    return std::make_unique<tiny_llama>(tiny_llama::random(redraft::testing::demo_target_config(),
                                                           redraft::testing::demo_target_seed, 1));
  }();
  return *model;
}

const draft_head<cpu_backend>& shared_head() {
  static std::unique_ptr<draft_head<cpu_backend>> head = [] {
    const cpu_backend cpu;
    const auto dir = data_dir / "draft_heads" / "kjv";
    if (std::filesystem::exists(dir / "config.json"))
      return std::make_unique<draft_head<cpu_backend>>(load_draft_head(cpu, dir.string()));
    auto h = std::make_unique<draft_head<cpu_backend>>(
        cpu, redraft::testing::demo_draft_config(shared_target().vocab_size(),
                                                 shared_target().hidden_size()));
    init_draft_head(*h, redraft::testing::demo_draft_seed);
    return h;
  }();
  return *head;
}

// verify() of a chain of n nodes after a 128-token committed prefix (no commit: every iteration
// replaces the pending tree). The cost of a tree depends on its node count, not its shape.
void BM_verify(benchmark::State& state) {
  const auto n = static_cast<std::int32_t>(state.range(0));
  tiny_llama& model = shared_target();
  std::vector<std::int32_t> prompt(128), slots{0}, offsets{0, 128};
  for (std::int32_t i = 0; i < 128; ++i) prompt[static_cast<std::size_t>(i)] = 32 + (i * 37) % 90;
  model.prefill(prefill_input{{slots.data(), 1}, {offsets.data(), 2}, {prompt.data(), 128}});
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(n), 'e'),
      parent(static_cast<std::size_t>(n)), depth(static_cast<std::size_t>(n)),
      positions(static_cast<std::size_t>(n)), node_offsets{0, n};
  for (std::int32_t i = 0; i < n; ++i) {
    parent[static_cast<std::size_t>(i)] = i - 1;
    depth[static_cast<std::size_t>(i)] = i;
    positions[static_cast<std::size_t>(i)] = 128 + i;
  }
  tree_view t;
  t.batch = 1;
  t.node_offsets = node_offsets.data();
  t.token = tokens.data();
  t.parent = parent.data();
  t.depth = depth.data();
  const verify_input in{{slots.data(), 1}, {node_offsets.data(), 2}, t, {positions.data(), n}};
  for (auto _ : state) benchmark::DoNotOptimize(model.verify(in).logits.data());
  state.counters["nodes"] = n;
}
BENCHMARK(BM_verify)
    ->DenseRange(1, 8)
    ->Arg(12)
    ->Arg(16)
    ->Arg(21)
    ->Arg(32)
    ->Arg(48)
    ->Arg(64)
    ->Arg(81)
    ->Unit(benchmark::kMicrosecond);

// One beam search of the draft head (B = 1): L - 1 recurrent steps over W beams.
void BM_draft(benchmark::State& state) {
  const index_t width = state.range(0), length = state.range(1);
  const draft_head<cpu_backend>& head = shared_head();
  const tiny_llama& model = shared_target();
  std::vector<float> hidden(static_cast<std::size_t>(model.hidden_size()), 0.5f);
  const std::vector<std::int32_t> root{'A'};
  beam_search_workspace<cpu_backend> ws;
  for (auto _ : state) {
    auto result = beam_search(head, matrix_view<const float>(hidden.data(), 1, model.hidden_size()),
                              vector_view<const std::int32_t>(root.data(), 1), model.embedding(),
                              width, length, {}, &ws);
    benchmark::DoNotOptimize(result.beams.data());
  }
}
BENCHMARK(BM_draft)
    ->ArgNames({"W", "L"})
    ->Args({1, 4})
    ->Args({1, 6})
    ->Args({2, 4})
    ->Args({2, 6})
    ->Args({4, 4})
    ->Args({4, 6})
    ->Args({16, 4})
    ->Unit(benchmark::kMicrosecond);

// Beam searches whose shape changes every call, as under the adaptive speculation policy (1 x 2,
// 1 x 6, 2 x 3, 1 x 4 in turn, B = 1): one workspace for all (per_shape_workspace:0) against one
// workspace per shape that never has to change (1). The ratio of the two is what a change of shape
// costs beyond the search itself (the workspace's buffers only grow, so it should be about 1).
// Measured on the AMD EPYC, KJV head, medians of 6 interleaved repetitions (`build/bench/
// bench_target_cost --benchmark_filter=changing_shape --benchmark_repetitions=6
// --benchmark_enable_random_interleaving=true`, 2026-12-02): one workspace 44.1 us, one per shape
// 47.0 us; with the earlier workspace, reallocated at every change of shape, 46.2 us against
// 43.6 us. At this head's size a reallocation is within the noise of a 45 us search.
void BM_draft_changing_shape(benchmark::State& state) {
  const bool per_shape = state.range(0) != 0;
  const std::vector<std::pair<index_t, index_t>> shapes{{1, 2}, {1, 6}, {2, 3}, {1, 4}};
  const draft_head<cpu_backend>& head = shared_head();
  const tiny_llama& model = shared_target();
  std::vector<float> hidden(static_cast<std::size_t>(model.hidden_size()), 0.5f);
  const std::vector<std::int32_t> root{'A'};
  std::vector<beam_search_workspace<cpu_backend>> ws(shapes.size());
  std::size_t call = 0;
  for (auto _ : state) {
    const std::size_t k = call++ % shapes.size();
    auto result = beam_search(head, matrix_view<const float>(hidden.data(), 1, model.hidden_size()),
                              vector_view<const std::int32_t>(root.data(), 1), model.embedding(),
                              shapes[k].first, shapes[k].second, {}, &ws[per_shape ? k : 0]);
    benchmark::DoNotOptimize(result.beams.data());
  }
}
BENCHMARK(BM_draft_changing_shape)
    ->ArgName("per_shape_workspace")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
