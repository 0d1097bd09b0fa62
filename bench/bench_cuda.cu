// CUDA versions of the component benchmarks (tree + masks, beam search, verification) on
// cuda_backend, timed with CUDA events around each iteration (Google Benchmark manual time), one
// nvcc translation unit. Inputs are rotated: each benchmark keeps `copies` independent input sets
// whose total size exceeds the H100/H200 L2 cache (50-60 MB) where the shape allows, and iteration
// i uses set i % copies, so a set is never hot in L2 from the previous iteration.
//
//   BM_cuda_tree_masks/B/W      build_tree (the parallel form) + packed mask + positions, L = 5
//   BM_cuda_beam_search/B/W/V/N beam_search of a random draft head, H = 1024, E = 2H, L = 5,
//                               N residual blocks
//   BM_cuda_beam_search_gemm_floor/B/W/V/N  only the beam search's GEMMs (cuBLAS through
//                               cuda_backend::matmul) at the same shapes: the floor a beam
//                               search step cannot go under
//   BM_cuda_verify_greedy/B/W/V verify_greedy (fused: one block per request) on a beam tree
//   BM_cuda_verify_lossless/B/W/V  verify_lossless (T = 1, Philox) on the same trees
//   BM_cuda_verify_lossless_bf16/B/W/V  the same on bfloat16 logits
//   BM_cuda_verify_typical/B/W/V   verify_typical (T = 1, argmax next token) on the same trees
//   BM_cuda_row_top_k/R/C/K     the block top-k kernel alone ([R, C], k)
//
// Without a CUDA device the program prints "SKIPPED: <reason>" and exits 0.
// Run: bench_cuda --benchmark_min_time=0.2
#include <benchmark/benchmark.h>
#include <nvtx3/nvToolsExt.h>

#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "redraft/cuda.cuh"
#include "redraft/draft/draft_init.hpp"

namespace {

using namespace redraft;

constexpr int beam_length = 5;
constexpr std::size_t rotate_bytes = 256u << 20;  // spread the copies over > 4x L2

// Times fn() on the backend's stream with CUDA events, in seconds. The call is also an NVTX range
// named "redraft_timed", so a profiler can keep to the timed calls and leave the set-up out
// (`ncu --nvtx --nvtx-include redraft_timed/`, scripts/gpu_check.sh); without a profiler attached
// the range costs nothing.
template <class F>
double time_on_stream(const cuda_backend& gpu, F&& fn) {
  cudaEvent_t start, stop;
  REDRAFT_CUDA_CHECK(cudaEventCreate(&start));
  REDRAFT_CUDA_CHECK(cudaEventCreate(&stop));
  REDRAFT_CUDA_CHECK(cudaEventRecord(start, gpu.context()->stream()));
  nvtxRangePushA("redraft_timed");
  fn();
  nvtxRangePop();
  REDRAFT_CUDA_CHECK(cudaEventRecord(stop, gpu.context()->stream()));
  REDRAFT_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  REDRAFT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / 1000.0;
}

int copies_for(std::size_t bytes_per_copy) {
  const std::size_t n = rotate_bytes / (bytes_per_copy + 1) + 1;
  return static_cast<int>(n < 2 ? 2 : (n > 64 ? 64 : n));
}

std::vector<std::int32_t> sample_beams(std::mt19937& rng, int batch, int width, int vocab) {
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

template <class T>
typename cuda_backend::buffer<T> upload(const cuda_backend& gpu, const std::vector<T>& host) {
  auto out = gpu.allocate<T>(static_cast<index_t>(host.size()));
  gpu.copy_from_host(host.data(), static_cast<index_t>(host.size()), out.data());
  return out;
}

void BM_cuda_tree_masks(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), width = static_cast<int>(state.range(1));
  const cuda_backend gpu;
  std::mt19937 rng(1);
  const std::size_t bytes = static_cast<std::size_t>(batch) * width * beam_length * 4;
  std::vector<cuda_backend::buffer<std::int32_t>> beams;
  for (int i = 0; i < copies_for(bytes); ++i)
    beams.push_back(upload(gpu, sample_beams(rng, batch, width, 32000)));
  const auto base = upload(gpu, std::vector<std::int32_t>(static_cast<std::size_t>(batch), 100));
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& in = beams[i++ % beams.size()];
    state.SetIterationTime(time_on_stream(gpu, [&] {
      const auto t =
          build_tree(gpu, view<const std::int32_t, 3>(in.data(), batch, width, beam_length));
      const auto mask = build_packed_tree_mask(gpu, t);
      const auto positions = build_positions(gpu, t, {base.data(), batch});
      benchmark::DoNotOptimize(mask.words.data());
      benchmark::DoNotOptimize(positions.data());
    }));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

void BM_cuda_beam_search(benchmark::State& state) {
  const index_t batch = state.range(0), width = state.range(1), vocab = state.range(2),
                hidden = 1024;
  const cuda_backend gpu;
  draft_config config;
  config.vocab_size = vocab;
  config.hidden_size = hidden;
  config.exit_dim = 2 * hidden;
  config.num_draft_layers = state.range(3);
  draft_head<cuda_backend> head(gpu, config);
  init_draft_head(head, 3);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> emb(static_cast<std::size_t>(vocab * hidden));
  for (float& v : emb) v = normal(rng);
  const auto embedding = upload(gpu, emb);
  const std::size_t bytes = static_cast<std::size_t>(batch * hidden) * 4;
  std::vector<cuda_backend::buffer<float>> hiddens;
  std::vector<cuda_backend::buffer<std::int32_t>> roots;
  for (int i = 0; i < copies_for(bytes); ++i) {
    std::vector<float> h(static_cast<std::size_t>(batch * hidden));
    for (float& v : h) v = normal(rng);
    std::vector<std::int32_t> r(static_cast<std::size_t>(batch));
    for (auto& v : r) v = static_cast<std::int32_t>(rng() % static_cast<std::uint32_t>(vocab));
    hiddens.push_back(upload(gpu, h));
    roots.push_back(upload(gpu, r));
  }
  beam_search_workspace<cuda_backend> ws;
  std::size_t i = 0;
  for (auto _ : state) {
    const std::size_t k = i++ % hiddens.size();
    state.SetIterationTime(time_on_stream(gpu, [&] {
      const auto result =
          beam_search(head, {hiddens[k].data(), batch, hidden}, {roots[k].data(), batch},
                      {embedding.data(), vocab, hidden}, width, beam_length, {}, &ws);
      benchmark::DoNotOptimize(result.beams.data());
    }));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

// The GEMMs of beam_search's L - 1 steps alone (draft_head.hpp: the recurrence's two H x H
// products, N blocks of E x E, the lm_head E x V; E = 2H, so no input projection), on
// B W rows (the first step on B rows), with cuda_backend::matmul (cublasSgemm + bias pass).
void BM_cuda_beam_search_gemm_floor(benchmark::State& state) {
  const index_t batch = state.range(0), width = state.range(1), vocab = state.range(2),
                layers = state.range(3), hidden = 1024, exit_dim = 2 * hidden;
  const cuda_backend gpu;
  std::mt19937 rng(6);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const auto random = [&](index_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = normal(rng);
    return upload(gpu, v);
  };
  const auto rnn_w = random(hidden * hidden), rnn_u = random(hidden * hidden);  // [H, H]
  std::vector<cuda_backend::buffer<float>> blocks;                              // N x [E, E]
  for (index_t n = 0; n < layers; ++n) blocks.push_back(random(exit_dim * exit_dim));
  const auto bias = random(exit_dim);             // [E]
  const auto lm_head = random(vocab * exit_dim);  // [V, E]
  const index_t rows = batch * width;
  const auto h_in = random(rows * hidden);  // [BW, H]
  auto h_out = gpu.allocate<float>(rows * hidden);
  const auto x_in = random(rows * exit_dim);  // [BW, E]
  auto x_out = gpu.allocate<float>(rows * exit_dim);
  auto logits = gpu.allocate<float>(rows * vocab);  // [BW, V]
  for (auto _ : state) {
    state.SetIterationTime(time_on_stream(gpu, [&] {
      for (int step = 0; step + 1 < beam_length; ++step) {
        const index_t m = step == 0 ? batch : rows;
        gpu.matmul({h_in.data(), m, hidden}, {rnn_w.data(), hidden, hidden}, nullptr,
                   activation::none, {h_out.data(), m, hidden});
        gpu.matmul({h_in.data(), m, hidden}, {rnn_u.data(), hidden, hidden}, nullptr,
                   activation::none, {h_out.data(), m, hidden});
        for (const auto& w : blocks) {
          gpu.matmul({x_in.data(), m, exit_dim}, {w.data(), exit_dim, exit_dim}, bias.data(),
                     activation::silu, {x_out.data(), m, exit_dim});
        }
        gpu.matmul({x_in.data(), m, exit_dim}, {lm_head.data(), vocab, exit_dim}, nullptr,
                   activation::none, {logits.data(), m, vocab});
      }
    }));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

// Beam trees and logits [n_total, V] with the first child of every node favoured (+20), so the
// whole first beam is accepted: the most rows read on the path.
struct verify_set {
  tree<cuda_backend> t;
  cuda_backend::buffer<float> logits;
};

std::vector<verify_set> verify_sets(const cuda_backend& gpu, int batch, int width, int vocab) {
  std::mt19937 rng(4);
  std::vector<verify_set> sets;
  const std::size_t bytes =
      static_cast<std::size_t>(batch) * (1 + width * (beam_length - 1)) * vocab * 4;
  const int n = copies_for(bytes) > 8 ? 8 : copies_for(bytes);
  for (int s = 0; s < n; ++s) {
    const auto beams = upload(gpu, sample_beams(rng, batch, width, vocab));
    verify_set set{
        build_tree(gpu, view<const std::int32_t, 3>(beams.data(), batch, width, beam_length)), {}};
    const std::int32_t total = set.t.total_nodes();
    std::vector<std::int32_t> token(static_cast<std::size_t>(total)), parent(token.size());
    gpu.copy_to_host(set.t.token.data(), total, token.data());
    gpu.copy_to_host(set.t.parent.data(), total, parent.data());
    std::vector<float> logits(static_cast<std::size_t>(total) * vocab);
    for (std::size_t j = 0; j < logits.size(); ++j)
      logits[j] = static_cast<float>((j * 2654435761u) % 4u);
    std::vector<char> has_child(token.size(), 0);
    for (int b = 0; b < batch; ++b) {
      const int first = set.t.host_node_offsets[static_cast<std::size_t>(b)];
      for (int u = 1; u < set.t.num_nodes(b); ++u) {
        const int p = first + parent[static_cast<std::size_t>(first + u)];
        if (!has_child[static_cast<std::size_t>(p)]) {
          has_child[static_cast<std::size_t>(p)] = 1;
          logits[static_cast<std::size_t>(p) * vocab +
                 token[static_cast<std::size_t>(first + u)]] += 20.0f;
        }
      }
    }
    set.logits = upload(gpu, logits);
    sets.push_back(std::move(set));
  }
  return sets;
}

void BM_cuda_verify_greedy(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), width = static_cast<int>(state.range(1)),
            vocab = static_cast<int>(state.range(2));
  const cuda_backend gpu;
  const auto sets = verify_sets(gpu, batch, width, vocab);
  std::size_t i = 0;
  for (auto _ : state) {
    const verify_set& s = sets[i++ % sets.size()];
    state.SetIterationTime(time_on_stream(gpu, [&] {
      const auto a = verify_greedy(gpu, s.t, {s.logits.data(), s.t.total_nodes(), vocab});
      benchmark::DoNotOptimize(a.accepted_len.data());
    }));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

void BM_cuda_verify_lossless(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), width = static_cast<int>(state.range(1)),
            vocab = static_cast<int>(state.range(2));
  const cuda_backend gpu;
  const auto sets = verify_sets(gpu, batch, width, vocab);
  std::size_t i = 0;
  for (auto _ : state) {
    const verify_set& s = sets[i % sets.size()];
    const philox_uniforms u{7, static_cast<std::uint32_t>(i++)};
    state.SetIterationTime(time_on_stream(gpu, [&] {
      const auto a = verify_lossless(gpu, s.t, {s.logits.data(), s.t.total_nodes(), vocab},
                                     sampling_params{}, u);
      benchmark::DoNotOptimize(a.accepted_len.data());
    }));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

// verify_lossless on the same trees with the logits in bfloat16 (read in place, no conversion).
void BM_cuda_verify_lossless_bf16(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), width = static_cast<int>(state.range(1)),
            vocab = static_cast<int>(state.range(2));
  const cuda_backend gpu;
  const auto sets = verify_sets(gpu, batch, width, vocab);
  std::vector<cuda_backend::buffer<bfloat16>> bf16;
  for (const verify_set& s : sets) {
    const index_t n = static_cast<index_t>(s.t.total_nodes()) * vocab;
    std::vector<float> f(static_cast<std::size_t>(n));
    gpu.copy_to_host(s.logits.data(), n, f.data());
    std::vector<bfloat16> h;
    h.reserve(f.size());
    for (const float v : f) h.push_back(from_float<bfloat16>(v));
    bf16.push_back(upload(gpu, h));
  }
  std::size_t i = 0;
  for (auto _ : state) {
    const std::size_t k = i % sets.size();
    const philox_uniforms u{7, static_cast<std::uint32_t>(i++)};
    state.SetIterationTime(time_on_stream(gpu, [&] {
      const auto a = verify_lossless(
          gpu, sets[k].t,
          matrix_view<const bfloat16>(bf16[k].data(), sets[k].t.total_nodes(), vocab),
          sampling_params{}, u);
      benchmark::DoNotOptimize(a.accepted_len.data());
    }));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

void BM_cuda_verify_typical(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), width = static_cast<int>(state.range(1)),
            vocab = static_cast<int>(state.range(2));
  const cuda_backend gpu;
  const auto sets = verify_sets(gpu, batch, width, vocab);
  std::size_t i = 0;
  for (auto _ : state) {
    const verify_set& s = sets[i++ % sets.size()];
    state.SetIterationTime(time_on_stream(gpu, [&] {
      const auto a =
          verify_typical(gpu, s.t, {s.logits.data(), s.t.total_nodes(), vocab}, typical_params{});
      benchmark::DoNotOptimize(a.accepted_len.data());
    }));
  }
  state.SetItemsProcessed(state.iterations() * batch);
}

void BM_cuda_row_top_k(benchmark::State& state) {
  const index_t rows = state.range(0), cols = state.range(1);
  const int k = static_cast<int>(state.range(2));
  const cuda_backend gpu;
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<cuda_backend::buffer<float>> xs;
  for (int c = 0; c < copies_for(static_cast<std::size_t>(rows * cols) * 4); ++c) {
    std::vector<float> x(static_cast<std::size_t>(rows * cols));
    for (float& v : x) v = normal(rng);
    xs.push_back(upload(gpu, x));
  }
  auto values = gpu.allocate<float>(rows * k);
  auto indices = gpu.allocate<std::int32_t>(rows * k);
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& x = xs[i++ % xs.size()];
    state.SetIterationTime(time_on_stream(gpu, [&] {
      gpu.row_top_k({x.data(), rows, cols}, k, {values.data(), rows, k}, {indices.data(), rows, k});
    }));
  }
  state.SetBytesProcessed(state.iterations() * rows * cols * 4);
}

}  // namespace

BENCHMARK(BM_cuda_tree_masks)->ArgsProduct({{1, 8, 64}, {4, 16}})->UseManualTime();
BENCHMARK(BM_cuda_beam_search)
    ->ArgsProduct({{1, 8, 64}, {4, 16}, {32000, 128256}, {1, 2}})
    ->UseManualTime();
BENCHMARK(BM_cuda_beam_search_gemm_floor)
    ->ArgsProduct({{1, 8, 64}, {4, 16}, {32000, 128256}, {1, 2}})
    ->UseManualTime();
BENCHMARK(BM_cuda_verify_greedy)
    ->ArgsProduct({{1, 8, 64}, {4, 16}, {32000, 128256}})
    ->UseManualTime();
BENCHMARK(BM_cuda_verify_lossless)
    ->ArgsProduct({{1, 8, 64}, {4, 16}, {32000, 128256}})
    ->UseManualTime();
BENCHMARK(BM_cuda_verify_lossless_bf16)
    ->ArgsProduct({{1, 64}, {16}, {32000, 128256}})
    ->UseManualTime();
BENCHMARK(BM_cuda_verify_typical)->ArgsProduct({{1, 64}, {16}, {32000, 128256}})->UseManualTime();
BENCHMARK(BM_cuda_row_top_k)
    ->Args({64, 4 * 32000, 4})
    ->Args({256, 128256, 50})
    ->Args({64, 16 * 128256, 16})
    ->UseManualTime();

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device (cudaGetDeviceCount: %s, %d devices)\n",
                status == cudaSuccess ? "ok" : cudaGetErrorName(status), devices);
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
