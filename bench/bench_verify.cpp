// Benchmarks of verify/: verify_greedy, verify_lossless, verify_redrafter, verify_typical on the
// CPU backend. Arguments: B (batch) in {1, 8, 64}, W (beam_width) in {4, 16}, V in {32000,
// 128256}; L (beam_length) = 5. Reported: requests/s (items_per_second), `nodes` (mean n_b) and
// `accepted_len_0` (request 0's accepted length: 4 = the whole first beam), and `floor_ratio`:
// the verifier's CPU time over the time to stream the logits rows of every request's accepted
// path once (stream_read.hpp; the same rows, read in the same iterations), so 1.0 is the
// bandwidth floor of a verifier that reads only the path. BM_stream_read: this core's rate. The
// *_bf16 variants read the same logits rounded to bfloat16, in place.
//
// Beams as beam search produces them: each beam shares a random-length prefix with an earlier
// beam; fixed seed. Logits: a cheap deterministic pattern in [0, 4), plus +20 on the token of each
// node's first child, so every rule accepts the whole first beam: the worst case for the number of
// rows read on the path. Draft log-probs (ReDrafter) are log(1/V) everywhere.
// Run: bench_verify --benchmark_min_time=0.05
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "redraft/redraft.hpp"
#include "stream_read.hpp"

namespace {

using namespace redraft;

constexpr int beam_length = 5;

struct inputs {
  int batch = 0, width = 0, vocab = 0;
  tree<cpu_backend> t;
  std::vector<float> logits;          // [n_total, V]
  std::vector<float> draft;           // [B, W, L-1, V], only for ReDrafter
  std::vector<bfloat16> logits_bf16;  // [n_total, V] the logits rounded to bfloat16, on demand
};

std::vector<std::int32_t> sample_beams(int batch, int width, int vocab) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> token(0, vocab - 1);
  std::vector<std::int32_t> beams(static_cast<std::size_t>(batch) * width * beam_length);
  for (int b = 0; b < batch; ++b) {
    std::int32_t* req = beams.data() + static_cast<std::size_t>(b) * width * beam_length;
    const std::int32_t root = token(rng);
    for (int w = 0; w < width; ++w) {
      std::int32_t* beam = req + static_cast<std::size_t>(w) * beam_length;
      beam[0] = root;
      int shared = 0;
      if (w > 0) {
        const int source = std::uniform_int_distribution<int>(0, w - 1)(rng);
        shared = std::uniform_int_distribution<int>(0, beam_length - 1)(rng);
        for (int l = 1; l <= shared; ++l)
          beam[l] = req[static_cast<std::size_t>(source) * beam_length + l];
      }
      for (int l = shared + 1; l < beam_length; ++l) beam[l] = token(rng);
    }
  }
  return beams;
}

// One set of inputs at a time (the largest logits matrix is 2 GB); rebuilt when the shape changes.
inputs& get_inputs(int batch, int width, int vocab, bool with_draft) {
  static std::unique_ptr<inputs> cached;
  if (!cached || cached->batch != batch || cached->width != width || cached->vocab != vocab ||
      (with_draft && cached->draft.empty())) {
    cached.reset();
    auto in = std::make_unique<inputs>();
    in->batch = batch;
    in->width = width;
    in->vocab = vocab;
    const cpu_backend cpu;
    const auto beams = sample_beams(batch, width, vocab);
    in->t = build_tree(cpu, view<const std::int32_t, 3>(beams.data(), batch, width, beam_length));
    const std::size_t n = static_cast<std::size_t>(in->t.total_nodes());
    in->logits.resize(n * static_cast<std::size_t>(vocab));
    for (std::size_t i = 0; i < in->logits.size(); ++i) {
      in->logits[i] = static_cast<float>((i * 2654435761u >> 13) & 1023u) * (1.0f / 256.0f);
    }
    // +20 on the first child's token of every node.
    for (int b = 0; b < batch; ++b) {
      const std::int32_t off = in->t.host_node_offsets[static_cast<std::size_t>(b)];
      const std::int32_t nb = in->t.num_nodes(b);
      std::vector<bool> done(static_cast<std::size_t>(nb), false);
      for (std::int32_t i = 1; i < nb; ++i) {
        const std::int32_t p = in->t.parent[off + i];
        if (done[static_cast<std::size_t>(p)]) continue;
        done[static_cast<std::size_t>(p)] = true;
        in->logits[static_cast<std::size_t>(off + p) * vocab +
                   static_cast<std::size_t>(in->t.token[off + i])] += 20.0f;
      }
    }
    if (with_draft) {
      in->draft.assign(static_cast<std::size_t>(batch) * width * (beam_length - 1) * vocab,
                       -std::log(static_cast<float>(vocab)));
    }
    cached = std::move(in);
  }
  return *cached;
}

template <class Run>
void run_bench(benchmark::State& state, bool with_draft, Run run) {
  const int batch = static_cast<int>(state.range(0)), width = static_cast<int>(state.range(1));
  const int vocab = static_cast<int>(state.range(2));
  const inputs& in = get_inputs(batch, width, vocab, with_draft);
  const cpu_backend cpu;
  const matrix_view<const float> logits(in.logits.data(), in.t.total_nodes(), vocab);
  // The rows of each request's accepted path: the root, then first children (the +20 entries).
  std::vector<const float*> path_rows;
  for (int b = 0; b < batch; ++b) {
    const std::int32_t off = in.t.host_node_offsets[static_cast<std::size_t>(b)];
    std::int32_t u = 0;
    for (;;) {
      path_rows.push_back(in.logits.data() + static_cast<std::size_t>(off + u) * vocab);
      std::int32_t child = -1;
      for (std::int32_t i = u + 1; i < in.t.num_nodes(b) && child < 0; ++i)
        if (in.t.parent[off + i] == u) child = i;
      if (child < 0) break;
      u = child;
    }
  }
  std::int64_t accepted = 0;
  std::uint32_t step = 0;
  double verify_seconds = 0.0, floor_seconds = 0.0;
  for (auto _ : state) {
    const double t0 = redraft_bench::thread_seconds();
    const auto a = run(cpu, in, logits, step++);
    benchmark::DoNotOptimize(a.next_token.data());
    const double t1 = redraft_bench::thread_seconds();
    for (const float* row : path_rows)
      benchmark::DoNotOptimize(
          redraft_bench::stream_read(row, static_cast<std::size_t>(vocab) * 4));
    const double t2 = redraft_bench::thread_seconds();
    verify_seconds += t1 - t0;
    floor_seconds += t2 - t1;
    accepted += a.accepted_len[0];
  }
  state.counters["floor_ratio"] = verify_seconds / floor_seconds;
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["nodes"] = static_cast<double>(in.t.total_nodes()) / batch;
  state.counters["accepted_len_0"] =
      static_cast<double>(accepted) / static_cast<double>(state.iterations());
}

// run_bench on the logits rounded to bfloat16 (read in place by the verifier: half the bytes).
template <class Run>
void run_bench_bf16(benchmark::State& state, Run run) {
  const int batch = static_cast<int>(state.range(0)), width = static_cast<int>(state.range(1));
  const int vocab = static_cast<int>(state.range(2));
  inputs& in = get_inputs(batch, width, vocab, false);
  if (in.logits_bf16.empty()) {
    in.logits_bf16.reserve(in.logits.size());
    for (const float v : in.logits) in.logits_bf16.push_back(from_float<bfloat16>(v));
  }
  const cpu_backend cpu;
  const matrix_view<const bfloat16> logits(in.logits_bf16.data(), in.t.total_nodes(), vocab);
  std::uint32_t step = 0;
  for (auto _ : state) {
    const auto a = run(cpu, in, logits, step++);
    benchmark::DoNotOptimize(a.next_token.data());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

void bm_verify_greedy_bf16(benchmark::State& state) {
  run_bench_bf16(state, [](const cpu_backend& cpu, const inputs& in, matrix_view<const bfloat16> l,
                           std::uint32_t) { return verify_greedy(cpu, in.t, l); });
}

void bm_verify_lossless_bf16(benchmark::State& state) {
  run_bench_bf16(state, [](const cpu_backend& cpu, const inputs& in, matrix_view<const bfloat16> l,
                           std::uint32_t step) {
    return verify_lossless(cpu, in.t, l, sampling_params{}, philox_uniforms{7, step});
  });
}

void bm_verify_greedy(benchmark::State& state) {
  run_bench(state, false,
            [](const cpu_backend& cpu, const inputs& in, matrix_view<const float> l,
               std::uint32_t) { return verify_greedy(cpu, in.t, l); });
}

void bm_verify_lossless(benchmark::State& state) {
  run_bench(
      state, false,
      [](const cpu_backend& cpu, const inputs& in, matrix_view<const float> l, std::uint32_t step) {
        return verify_lossless(cpu, in.t, l, sampling_params{}, philox_uniforms{7, step});
      });
}

void bm_verify_lossless_top_k_top_p(benchmark::State& state) {
  run_bench(
      state, false,
      [](const cpu_backend& cpu, const inputs& in, matrix_view<const float> l, std::uint32_t step) {
        return verify_lossless(cpu, in.t, l, sampling_params{0.8f, 50, 0.9f},
                               philox_uniforms{7, step});
      });
}

void bm_verify_redrafter(benchmark::State& state) {
  run_bench(
      state, true,
      [](const cpu_backend& cpu, const inputs& in, matrix_view<const float> l, std::uint32_t step) {
        return verify_redrafter(
            cpu, in.t, l,
            view<const float, 4>(in.draft.data(), in.batch, in.width, beam_length - 1, in.vocab),
            redrafter_params{}, philox_uniforms{7, step});
      });
}

void bm_verify_typical(benchmark::State& state) {
  run_bench(state, false,
            [](const cpu_backend& cpu, const inputs& in, matrix_view<const float> l,
               std::uint32_t) { return verify_typical(cpu, in.t, l, typical_params{}); });
}

// Registered shape by shape (all verifiers of one shape together), so the cached inputs are
// rebuilt once per shape.
const bool registered = [] {
  for (int vocab : {32000, 128256})
    for (int width : {4, 16})
      for (int batch : {1, 8, 64})
        for (const auto& [name, fn] :
             {std::pair{"verify_greedy", &bm_verify_greedy},
              std::pair{"verify_lossless", &bm_verify_lossless},
              std::pair{"verify_lossless_top_k_top_p", &bm_verify_lossless_top_k_top_p},
              std::pair{"verify_typical", &bm_verify_typical},
              std::pair{"verify_redrafter", &bm_verify_redrafter},
              std::pair{"verify_greedy_bf16", &bm_verify_greedy_bf16},
              std::pair{"verify_lossless_bf16", &bm_verify_lossless_bf16}}) {
          benchmark::RegisterBenchmark(name, fn)
              ->Args({batch, width, vocab})
              ->ArgNames({"B", "W", "V"})
              ->Unit(benchmark::kMicrosecond);
        }
  benchmark::RegisterBenchmark("BM_stream_read", redraft_bench::BM_stream_read)
      ->Iterations(5)
      ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
