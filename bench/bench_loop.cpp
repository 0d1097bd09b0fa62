// Benchmarks of loop/: the library's own cost per speculative step, and end-to-end tokens/s of
// speculative versus plain decoding of the same model, measured in the same benchmark.
//
// BM_step_overhead/B/W/L: the speculative decoder over the synthetic target with a fixed target
//   cost per verify call (the cost of the reference model's tree pass at W = 8, L = 5, measured
//   at start-up) and a random drafter. Counters: `library_us` per step = tree + masks +
//   positions + verification + KV plan + bookkeeping (everything but the target and the
//   drafter); `library_share` = library / (library + target).
// BM_step_overhead_reference/W/L: the same split with the reference tiny Llama as the target.
// BM_end_to_end/W/L/distilled: greedy decoding of 64 tokens on the reference tiny Llama (the
//   demo's built-in target) with the untrained draft head (distilled 0) or the distilled head
//   shipped in data/draft_heads/demo (distilled 1); counters `spec_tok_s`, `plain_tok_s` and
//   `speedup` from both runs of each iteration.
// BM_adaptive_policy_step/A: what the adaptive policy itself costs per step (choose + observe) for
//   A requests, fed synthetic step reports (verify cost a + b n, every request accepting up to 3
//   tokens) so that it reaches its steady state; time per step, to set against a plain step.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/draft_init.hpp"
#include "redraft/loop/adaptive_policy.hpp"
#include "redraft/loop/draft_head_drafter.hpp"
#include "redraft/loop/plain_decoder.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/testing/demo_models.hpp"
#include "redraft/testing/drafters.hpp"
#include "redraft/testing/synthetic_target.hpp"
#include "redraft/testing/tiny_llama.hpp"

namespace {

using namespace redraft;
using redraft::testing::tiny_llama;

std::vector<generation_request> requests_for(std::int32_t batch, std::int32_t vocab,
                                             std::int32_t max_new) {
  std::vector<generation_request> out;
  for (std::int32_t r = 0; r < batch; ++r) {
    generation_request q;
    for (std::int32_t i = 0; i < 24; ++i) q.prompt.push_back((r * 31 + i * 7) % vocab);
    q.max_new_tokens = max_new;
    out.push_back(q);
  }
  return out;
}

// Mean seconds of one reference-model tree pass over W = 8, L = 5 random beams.
double reference_tree_pass_seconds() {
  tiny_llama model = tiny_llama::random(redraft::testing::demo_target_config(),
                                        redraft::testing::demo_target_seed, 1);
  redraft::testing::random_drafter drafter(model.vocab_size(), 3);
  speculative_decoder<cpu_backend, tiny_llama, redraft::testing::random_drafter> decoder(
      cpu_backend{}, model, drafter);
  decode_options options;
  options.beam_width = 8;
  options.beam_length = 5;
  const auto result = decoder.generate(requests_for(1, model.vocab_size(), 48), options);
  double target = 0;
  for (const auto& s : result.steps) target += s.target_s;
  return target / static_cast<double>(result.steps.size());
}

template <class Model, class Drafter>
void report_split(benchmark::State& state, Model& model, Drafter& drafter, std::int32_t batch) {
  decode_options options;
  options.beam_width = static_cast<std::int32_t>(state.range(1));
  options.beam_length = static_cast<std::int32_t>(state.range(2));
  speculative_decoder<cpu_backend, Model, Drafter> decoder(cpu_backend{}, model, drafter);
  double library = 0, target = 0;
  std::int64_t steps = 0;
  for (auto _ : state) {
    const auto result = decoder.generate(requests_for(batch, model.vocab_size(), 32), options);
    for (const auto& s : result.steps) {
      library += s.tree_s + s.verify_s + s.kv_s;
      target += s.target_s;
    }
    steps += static_cast<std::int64_t>(result.steps.size());
  }
  state.counters["library_us"] = 1e6 * library / static_cast<double>(steps);
  state.counters["target_us"] = 1e6 * target / static_cast<double>(steps);
  state.counters["library_share"] = library / (library + target);
}

void BM_step_overhead(benchmark::State& state) {
  static const double tree_pass = reference_tree_pass_seconds();
  redraft::testing::synthetic_target_config config;
  config.vocab_size = 256;
  config.hidden_size = 256;
  config.num_slots = 64;
  config.verify_cost = std::chrono::nanoseconds(static_cast<std::int64_t>(tree_pass * 1e9));
  redraft::testing::synthetic_target model(config);
  redraft::testing::random_drafter drafter(config.vocab_size, 5);
  report_split(state, model, drafter, static_cast<std::int32_t>(state.range(0)));
}
BENCHMARK(BM_step_overhead)
    ->Args({1, 8, 5})
    ->Args({8, 8, 5})
    ->Args({1, 16, 8})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

void BM_step_overhead_reference(benchmark::State& state) {
  tiny_llama model = tiny_llama::random(redraft::testing::demo_target_config(),
                                        redraft::testing::demo_target_seed, 8);
  redraft::testing::random_drafter drafter(model.vocab_size(), 5);
  report_split(state, model, drafter, static_cast<std::int32_t>(state.range(0)));
}
BENCHMARK(BM_step_overhead_reference)
    ->Args({1, 8, 5})
    ->Args({8, 8, 5})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

void BM_end_to_end(benchmark::State& state) {
  const cpu_backend cpu;
  tiny_llama model = tiny_llama::random(redraft::testing::demo_target_config(),
                                        redraft::testing::demo_target_seed, 1);
  const bool distilled = state.range(2) != 0;
  draft_head<cpu_backend> head(
      cpu, redraft::testing::demo_draft_config(model.vocab_size(), model.hidden_size()));
  if (distilled) {
    head = load_draft_head(cpu, REDRAFT_DEMO_DRAFT_DIR);
  } else {
    init_draft_head(head, redraft::testing::demo_draft_seed);
  }
  draft_head_drafter<cpu_backend> drafter(head, model.embedding());
  speculative_decoder<cpu_backend, tiny_llama, draft_head_drafter<cpu_backend>> spec(cpu, model,
                                                                                     drafter);
  plain_decoder<cpu_backend, tiny_llama> plain(cpu, model);
  decode_options options;
  options.beam_width = static_cast<std::int32_t>(state.range(0));
  options.beam_length = static_cast<std::int32_t>(state.range(1));
  const auto requests = requests_for(1, model.vocab_size(), 64);
  double spec_s = 0, plain_s = 0;
  std::int64_t tokens = 0;
  for (auto _ : state) {
    const auto a = spec.generate(requests, options);
    const auto b = plain.generate(requests, options);
    spec_s += a.total_s;
    plain_s += b.total_s;
    tokens += a.total_emitted();
  }
  state.counters["spec_tok_s"] = static_cast<double>(tokens) / spec_s;
  state.counters["plain_tok_s"] = static_cast<double>(tokens) / plain_s;
  state.counters["speedup"] = plain_s / spec_s;
}
BENCHMARK(BM_end_to_end)
    ->ArgNames({"W", "L", "distilled"})
    ->Args({1, 2, 0})
    ->Args({4, 5, 0})
    ->Args({1, 2, 1})
    ->Args({1, 4, 1})
    ->Args({4, 4, 1})
    ->Args({4, 5, 1})
    ->Args({8, 5, 1})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(2);

void BM_adaptive_policy_step(benchmark::State& state) {
  const std::int32_t a = static_cast<std::int32_t>(state.range(0));
  adaptive_policy policy;
  decode_options options;
  std::vector<std::int32_t> remaining(static_cast<std::size_t>(a), 1000);
  std::vector<std::int32_t> accepted(static_cast<std::size_t>(a)),
      rank(static_cast<std::size_t>(a) * 16, 0), shared(static_cast<std::size_t>(a) * 16, 0);
  std::uint32_t step = 0;
  for (auto _ : state) {
    const step_context ctx{++step, &options, {remaining.data(), a}};
    const draft_shape shape = policy.choose(ctx);
    step_report r;
    r.step = step;
    r.shape = shape;
    r.requests = a;
    r.nodes = shape.is_plain() ? a : a * (1 + shape.beam_width * (shape.beam_length - 1));
    const std::int32_t each = shape.is_plain() ? 0 : std::min(3, shape.beam_length - 1);
    r.emitted = a * (1 + each);
    r.target_s = 1e-4 * (3.0 + 0.3 * r.nodes);
    r.draft_s = shape.is_plain() ? 0.0 : 2e-5 * (shape.beam_length - 1) * shape.beam_width * a;
    if (!shape.is_plain()) {
      std::fill(accepted.begin(), accepted.end(), each);
      r.accepted_len = {accepted.data(), a};
      r.accepted_rank = {rank.data(), a, shape.beam_length - 1};
      r.shared_prefix = {shared.data(), a, shape.beam_width};
    }
    policy.observe(r);
  }
}
BENCHMARK(BM_adaptive_policy_step)->ArgName("A")->Arg(1)->Arg(16)->Unit(benchmark::kMicrosecond);

}  // namespace
