// Benchmarks of the model-free drafters (loop/lookup_drafter.hpp, loop/suffix_drafter.hpp): the
// cost of one step (append the step's 4 emitted tokens to the slot's index, then propose W = 4
// candidates of L - 1 = 7 tokens) for one request whose history already holds N tokens, N in
// {1k, 16k, 256k}. The indexes are incremental, so the time per step should not grow with N.
//
// History: byte-level text (V = 256) that repeats itself with edits, so lookups find matches: a
// 4096-token random base, copied with 1 token in 16 replaced; fixed seed.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "redraft/loop/lookup_drafter.hpp"
#include "redraft/loop/suffix_drafter.hpp"
#include "redraft/redraft.hpp"

namespace {

using redraft::cpu_backend;

constexpr std::int32_t kStepTokens = 4;
constexpr std::int64_t kSteps = 4096;  // steps per rebuilt index

std::vector<std::int32_t> repeating_text(std::int64_t n) {
  std::mt19937 rng(77);
  std::vector<std::int32_t> base(4096);
  for (auto& t : base) t = static_cast<std::int32_t>(rng() % 256);
  std::vector<std::int32_t> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    out[static_cast<std::size_t>(i)] = rng() % 16 == 0 ? static_cast<std::int32_t>(rng() % 256)
                                                       : base[static_cast<std::size_t>(i % 4096)];
  return out;
}

template <class Drafter>
void run(benchmark::State& state, Drafter make()) {
  const std::int64_t n = state.range(0);
  const std::vector<std::int32_t> text = repeating_text(n + kStepTokens * kSteps);
  Drafter drafter = make();
  std::int32_t root = 0, slot = 0;
  std::uint8_t fresh = 1;
  std::span<const std::int32_t> history;
  redraft::draft_input in;
  in.roots = {&root, 1};
  in.slots = {&slot, 1};
  in.history = {&history, 1};
  in.history_fresh = {&fresh, 1};
  in.beam_width = 4;
  in.beam_length = 8;
  std::int64_t step = kSteps, candidates = 0;
  for (auto _ : state) {
    if (step == kSteps) {  // a fresh request with N tokens of history, indexed outside the timing
      state.PauseTiming();
      fresh = 1;
      history = std::span<const std::int32_t>(text.data(), static_cast<std::size_t>(n));
      root = history.back();
      benchmark::DoNotOptimize(drafter.draft(in));
      fresh = 0;
      step = 0;
      state.ResumeTiming();
    }
    ++step;
    history = std::span<const std::int32_t>(text.data(),
                                            static_cast<std::size_t>(n + kStepTokens * step));
    root = history.back();
    const auto out = drafter.draft(in);
    for (redraft::index_t w = 0; w < 4; ++w) candidates += out.beam_lengths[w] > 1;
    benchmark::DoNotOptimize(out.beams.data());
  }
  state.counters["candidates_per_step"] =
      benchmark::Counter(static_cast<double>(candidates) / static_cast<double>(state.iterations()));
}

void BM_lookup_step(benchmark::State& state) {
  run<redraft::lookup_drafter<cpu_backend>>(
      state, [] { return redraft::lookup_drafter<cpu_backend>(cpu_backend{}); });
}

void BM_suffix_step(benchmark::State& state) {
  run<redraft::suffix_drafter<cpu_backend>>(
      state, [] { return redraft::suffix_drafter<cpu_backend>(cpu_backend{}); });
}

}  // namespace

BENCHMARK(BM_lookup_step)->Arg(1 << 10)->Arg(1 << 14)->Arg(1 << 18)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_suffix_step)->Arg(1 << 10)->Arg(1 << 14)->Arg(1 << 18)->Unit(benchmark::kMicrosecond);
