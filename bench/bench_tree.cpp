// Benchmarks of tree/: trie dedup (build_tree), its parallel prefix-owner form
// (build_tree_parallel), and the masks and positions built from a tree, on the CPU backend.
// Arguments: B (batch) in {1, 8, 64}, W (beam_width) in {4, 16, 64}, L (beam_length) in {4, 8}.
// Counter `nodes`: tree nodes produced per second (kIsRate); `nodes_per_request`: mean n_b.
//
// Beams are drawn as beam search produces them: each beam shares a random-length prefix with an
// earlier beam (about half the drafted positions are shared), the rest from a 32000-token
// vocabulary; fixed seed.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "redraft/redraft.hpp"

namespace {

using redraft::cpu_backend;
using redraft::view;

std::vector<std::int32_t> sample_beams(int batch, int width, int length) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> token(0, 31999);
  std::vector<std::int32_t> beams(static_cast<std::size_t>(batch) * width * length);
  for (int b = 0; b < batch; ++b) {
    std::int32_t* req = beams.data() + static_cast<std::size_t>(b) * width * length;
    const std::int32_t root = token(rng);
    for (int w = 0; w < width; ++w) {
      std::int32_t* beam = req + static_cast<std::size_t>(w) * length;
      beam[0] = root;
      int shared = 0;
      if (w > 0) {
        const int source = std::uniform_int_distribution<int>(0, w - 1)(rng);
        shared = std::uniform_int_distribution<int>(0, length - 1)(rng);
        for (int l = 1; l <= shared; ++l)
          beam[l] = req[static_cast<std::size_t>(source) * length + l];
      }
      for (int l = shared + 1; l < length; ++l) beam[l] = token(rng);
    }
  }
  return beams;
}

struct fixture {
  int batch, width, length;
  std::vector<std::int32_t> beams;  // [B, W, L]
  view<const std::int32_t, 3> beam_view() const {
    return view<const std::int32_t, 3>(beams.data(), batch, width, length);
  }
};

fixture make_fixture(const benchmark::State& state) {
  fixture f{static_cast<int>(state.range(0)),
            static_cast<int>(state.range(1)),
            static_cast<int>(state.range(2)),
            {}};
  f.beams = sample_beams(f.batch, f.width, f.length);
  return f;
}

void report(benchmark::State& state, const redraft::tree<cpu_backend>& t) {
  state.counters["nodes"] = benchmark::Counter(
      static_cast<double>(t.total_nodes()) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
  state.counters["nodes_per_request"] =
      t.batch == 0 ? 0.0 : static_cast<double>(t.total_nodes()) / t.batch;
}

void bm_build_tree(benchmark::State& state) {
  const cpu_backend backend;
  const fixture f = make_fixture(state);
  for (auto _ : state) {
    auto t = redraft::build_tree(backend, f.beam_view());
    benchmark::DoNotOptimize(t.token.data());
  }
  report(state, redraft::build_tree(backend, f.beam_view()));
}

void bm_build_tree_parallel(benchmark::State& state) {
  const cpu_backend backend;
  const fixture f = make_fixture(state);
  for (auto _ : state) {
    auto t = redraft::build_tree_parallel(backend, f.beam_view());
    benchmark::DoNotOptimize(t.token.data());
  }
  report(state, redraft::build_tree(backend, f.beam_view()));
}

void bm_dense_tree_mask(benchmark::State& state) {
  const cpu_backend backend;
  const fixture f = make_fixture(state);
  const auto t = redraft::build_tree(backend, f.beam_view());
  for (auto _ : state) {
    auto mask = redraft::build_dense_tree_mask(backend, t);
    benchmark::DoNotOptimize(mask.bits.data());
  }
  report(state, t);
}

void bm_packed_tree_mask(benchmark::State& state) {
  const cpu_backend backend;
  const fixture f = make_fixture(state);
  const auto t = redraft::build_tree(backend, f.beam_view());
  for (auto _ : state) {
    auto mask = redraft::build_packed_tree_mask(backend, t);
    benchmark::DoNotOptimize(mask.words.data());
  }
  report(state, t);
}

// Apple's [n_b, P + n_b] layout with P = 128 context columns (16 of them left padding).
void bm_attention_mask(benchmark::State& state) {
  const cpu_backend backend;
  const fixture f = make_fixture(state);
  const auto t = redraft::build_tree(backend, f.beam_view());
  const int context = 128;
  std::vector<std::int32_t> padding(static_cast<std::size_t>(f.batch) * context, 1);  // [B, P]
  for (int b = 0; b < f.batch; ++b)
    for (int c = 0; c < 16; ++c) padding[static_cast<std::size_t>(b) * context + c] = 0;
  const view<const std::int32_t, 2> padding_view(padding.data(), f.batch, context);
  for (auto _ : state) {
    auto mask = redraft::build_attention_mask(backend, t, padding_view);
    benchmark::DoNotOptimize(mask.bits.data());
  }
  report(state, t);
}

void bm_positions(benchmark::State& state) {
  const cpu_backend backend;
  const fixture f = make_fixture(state);
  const auto t = redraft::build_tree(backend, f.beam_view());
  const std::vector<std::int32_t> base(static_cast<std::size_t>(f.batch), 100);  // [B]
  for (auto _ : state) {
    auto positions = redraft::build_positions(
        backend, t, redraft::vector_view<const std::int32_t>(base.data(), f.batch));
    benchmark::DoNotOptimize(positions.data());
  }
  report(state, t);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "W", "L"});
  for (int batch : {1, 8, 64})
    for (int width : {4, 16, 64})
      for (int length : {4, 8}) b->Args({batch, width, length});
  b->MinTime(0.1);
}

}  // namespace

BENCHMARK(bm_build_tree)->Apply(shapes);
BENCHMARK(bm_build_tree_parallel)->Apply(shapes);
BENCHMARK(bm_dense_tree_mask)->Apply(shapes);
BENCHMARK(bm_packed_tree_mask)->Apply(shapes);
BENCHMARK(bm_attention_mask)->Apply(shapes);
BENCHMARK(bm_positions)->Apply(shapes);
