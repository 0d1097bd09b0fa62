// bench_draft: beam search of the draft head on the CPU backend at a production-like shape
// (H = 1024, E = 2048 = 2H so no input projection, N = 2, V = 32000, L = 5) for W in
// {1, 4, 8, 16} and batch B in {1, 8}, random weights, weight matrices in F32 (F = 0) or F16
// (F = 1; held as floats on a build without a hardware F16 conversion, see cpu/simd.hpp, and
// the floor counts the bytes as held).
//
// Counters:
//   beams_per_s          B * W beams completed per second of CPU time
//   floor_ratio          beam search time / the time to stream its weight bytes once per step
//                        (L - 1 reads of every weight matrix, stream_read.hpp), both measured in
//                        the same iterations: 1.0 would be a search at the memory floor
//   gemm_share           (F32 only) time of a matmul-only run of the same shapes (the L-1 steps'
//                        chains: rnn_w, rnn_u, N residual blocks, the vocabulary projection,
//                        through the CPU backend's packed matmul as in the head), measured in
//                        the same iterations, divided by the beam search time
//   non_gemm_share       1 - gemm_share: the warp, log_softmax, top-W selection, gathers, ...
// BM_stream_read: this core's streaming-read rate (bytes_per_second), the floor's unit.
//
// Run: build-*/bench/bench_draft   (about two minutes on one free core)
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/beam_search.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "stream_read.hpp"

namespace {

using redraft::index_t;
using redraft_bench::thread_seconds;

constexpr index_t vocab = 32000, hidden = 1024, exit_dim = 2048, layers = 2, length = 5;

struct fixture {
  redraft::draft_config config;
  redraft::draft_head<redraft::cpu_backend> head;
  std::vector<float> embedding;
  std::size_t weight_bytes = 0;  // bytes of the weight matrices, as stored

  static redraft::draft_config make_config() {
    redraft::draft_config c;
    c.vocab_size = vocab;
    c.hidden_size = hidden;
    c.exit_dim = exit_dim;
    c.num_draft_layers = layers;
    c.recurrence = redraft::recurrence::silu;
    return c;
  }

  explicit fixture(redraft::weight_format format)
      : config(make_config()), head(redraft::cpu_backend{}, config, format) {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (const auto& name : head.parameter_names()) {
      const auto& shape = head.parameter_shape(name);
      std::size_t count = 1;
      for (auto d : shape) count *= static_cast<std::size_t>(d);
      const float scale = 1.0f / std::sqrt(static_cast<float>(shape.back()));
      std::vector<float> values(count);
      for (float& v : values) v = normal(rng) * scale;
      head.set_parameter(name, values);
      if (shape.size() == 2)
        weight_bytes += count * (head.stored_format() == redraft::weight_format::f32 ? 4 : 2);
    }
    embedding.resize(static_cast<std::size_t>(vocab * hidden));
    for (float& v : embedding) v = normal(rng) * 0.05f;
  }
};

// Built once per format: 300 MB of F32 weights, 150 MB of F16.
fixture& shared_fixture(redraft::weight_format format) {
  static std::unique_ptr<fixture> f32, f16;
  std::unique_ptr<fixture>& f = format == redraft::weight_format::f32 ? f32 : f16;
  if (!f) f = std::make_unique<fixture>(format);
  return *f;
}

// Packed copies of the head's weight matrices (the head keeps its own packed and private).
struct packed_head_weights {
  using packed = redraft::cpu_backend::packed_matrix<float>;
  packed rnn_w, rnn_u, lm_head;
  std::vector<packed> blocks;
  explicit packed_head_weights(const redraft::draft_head<redraft::cpu_backend>& head) {
    const auto pack = [&](const std::string& name) {
      const auto& shape = head.parameter_shape(name);
      const std::vector<float> values = head.get_parameter(name);
      return redraft::cpu_backend{}.pack(
          redraft::matrix_view<const float>(values.data(), shape[0], shape[1]));
    };
    rnn_w = pack("rnn_w.weight");
    rnn_u = pack("rnn_u.weight");
    for (index_t i = 0; i < layers; ++i)
      blocks.push_back(pack("lm_head." + std::to_string(i) + ".linear.weight"));
    lm_head = pack(head.lm_head_name());
  }
};

// Built once (F32 only): 300 MB.
const packed_head_weights& shared_packed_weights(
    const redraft::draft_head<redraft::cpu_backend>& head) {
  static const packed_head_weights w(head);
  return w;
}

// The matmuls of beam search alone, on buffers of the same shapes.
struct matmul_only {
  index_t rows;
  std::vector<float> state, embedded, tmp, tmp2, x, block, logits;
  explicit matmul_only(index_t r)
      : rows(r),
        state(static_cast<std::size_t>(r * hidden), 0.1f),
        embedded(static_cast<std::size_t>(r * hidden), 0.1f),
        tmp(static_cast<std::size_t>(r * hidden)),
        tmp2(static_cast<std::size_t>(r * hidden)),
        x(static_cast<std::size_t>(r * exit_dim), 0.1f),
        block(static_cast<std::size_t>(r * exit_dim)),
        logits(static_cast<std::size_t>(r * vocab)) {}

  void run(const redraft::draft_head<redraft::cpu_backend>& head, const packed_head_weights& w) {
    const redraft::cpu_backend b;
    using cm = redraft::matrix_view<const float>;
    using mm = redraft::matrix_view<float>;
    for (index_t step = 1; step < length; ++step) {
      b.matmul(cm(embedded.data(), rows, hidden), w.rnn_w, nullptr, redraft::activation::none,
               mm(tmp.data(), rows, hidden));
      b.matmul(cm(state.data(), rows, hidden), w.rnn_u, head.parameter_view("rnn_u.bias").data(),
               redraft::activation::none, mm(tmp2.data(), rows, hidden));
      for (index_t i = 0; i < layers; ++i) {
        const std::string bias = "lm_head." + std::to_string(i) + ".linear.bias";
        b.matmul(cm(x.data(), rows, exit_dim), w.blocks[static_cast<std::size_t>(i)],
                 head.parameter_view(bias).data(), redraft::activation::silu,
                 mm(block.data(), rows, exit_dim));
      }
      b.matmul(cm(x.data(), rows, exit_dim), w.lm_head, nullptr, redraft::activation::none,
               mm(logits.data(), rows, vocab));
    }
  }
};

void bm_beam_search(benchmark::State& state) {
  const index_t batch = state.range(0), width = state.range(1);
  const auto format =
      state.range(2) == 0 ? redraft::weight_format::f32 : redraft::weight_format::f16;
  fixture& f = shared_fixture(format);
  const std::vector<std::uint64_t> stream = redraft_bench::stream_buffer(f.weight_bytes);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> h(static_cast<std::size_t>(batch * hidden));
  for (float& v : h) v = normal(rng);
  std::vector<std::int32_t> roots(static_cast<std::size_t>(batch));
  for (auto& r : roots) r = static_cast<std::int32_t>(rng() % vocab);
  redraft::beam_search_workspace<redraft::cpu_backend> ws;
  matmul_only gemm(batch * width);
  // Packed once, before any timing (F32 only).
  const packed_head_weights* packed =
      format == redraft::weight_format::f32 ? &shared_packed_weights(f.head) : nullptr;
  double search_seconds = 0.0, gemm_seconds = 0.0, floor_seconds = 0.0;
  for (auto _ : state) {
    const double t0 = thread_seconds();
    auto result =
        redraft::beam_search(f.head, redraft::matrix_view<const float>(h.data(), batch, hidden),
                             redraft::vector_view<const std::int32_t>(roots.data(), batch),
                             redraft::matrix_view<const float>(f.embedding.data(), vocab, hidden),
                             width, length, {}, &ws);
    benchmark::DoNotOptimize(result.beams.data());
    const double t1 = thread_seconds();
    state.PauseTiming();
    const double g0 = thread_seconds();
    if (packed != nullptr) gemm.run(f.head, *packed);
    benchmark::DoNotOptimize(gemm.logits.data());
    const double g1 = thread_seconds();
    for (index_t step = 1; step < length; ++step)
      benchmark::DoNotOptimize(redraft_bench::stream_read(stream.data(), f.weight_bytes));
    const double g2 = thread_seconds();
    state.ResumeTiming();
    search_seconds += t1 - t0;
    gemm_seconds += g1 - g0;
    floor_seconds += g2 - g1;
  }
  state.counters["floor_ratio"] = search_seconds / floor_seconds;
  state.counters["beams_per_s"] = benchmark::Counter(static_cast<double>(batch * width),
                                                     benchmark::Counter::kIsIterationInvariantRate);
  if (format == redraft::weight_format::f32) {
    state.counters["gemm_share"] = gemm_seconds / search_seconds;
    state.counters["non_gemm_share"] = 1.0 - gemm_seconds / search_seconds;
  }
}

BENCHMARK(redraft_bench::BM_stream_read)->Iterations(5)->Unit(benchmark::kMillisecond);

// NOTE: iteration counts are fixed and small (2 shared cores): one B=8, W=16 search is ~67 GFLOP.
BENCHMARK(bm_beam_search)
    ->ArgNames({"B", "W", "F"})
    ->Args({1, 1, 0})
    ->Args({1, 4, 0})
    ->Args({1, 8, 0})
    ->Args({1, 16, 0})
    ->Args({1, 1, 1})
    ->Args({1, 8, 1})
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(bm_beam_search)
    ->ArgNames({"B", "W", "F"})
    ->Args({8, 1, 0})
    ->Args({8, 4, 0})
    ->Args({8, 8, 0})
    ->Args({8, 16, 0})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
