// bench_matmul: the CPU backend's product y[M, N] = x[M, K] w[N, K]^T at decoding shapes, by
// implementation, against the memory floor (stream_read.hpp) measured in the same iterations.
//
// Arguments: M (rows), K, N, I (implementation):
//   I = 0  small_matmul, F32 weights          (cpu/small_matmul.hpp)
//   I = 1  small_matmul, F16 weights
//   I = 2  small_matmul, BF16 weights
//   I = 3  Eigen GEMM, F32                    (cpu_backend::matmul above 64 rows)
//   I = 4  Eigen dot product per output, F32  (what tiny_llama used up to 16 rows before)
//   I = 5  packed_matmul, F32 weights         (cpu/packed_matmul.hpp; packed before the timing)
//   I = 6  packed_matmul, F16 weights
// Counters: floor_ratio = product time / time to stream the weight bytes once (1.0 = at the
// floor); weight_GBps = weight bytes / product time; GFLOPs = 2 M N K / product time.
// BM_stream_read: this core's streaming-read rate.
//
// Run: build/bench/bench_matmul   (about a minute)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "redraft/core/half.hpp"
#include "redraft/cpu/eigen.hpp"
#include "redraft/cpu/packed_matmul.hpp"
#include "redraft/cpu/small_matmul.hpp"
#include "stream_read.hpp"

namespace {

using redraft::index_t;
using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class W>
std::vector<W> random_weights(index_t count, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-0.05f, 0.05f);
  std::vector<W> w(static_cast<std::size_t>(count));
  for (W& v : w) {
    const float f = uniform(rng);
    if constexpr (std::is_same_v<W, redraft::float16>) {
      v = redraft::to_float16(f);
    } else if constexpr (std::is_same_v<W, redraft::bfloat16>) {
      v = redraft::to_bfloat16(f);
    } else {
      v = f;
    }
  }
  return w;
}

void bm_matmul(benchmark::State& state) {
  const index_t m = state.range(0), k = state.range(1), n = state.range(2);
  const int impl = static_cast<int>(state.range(3));
  std::vector<float> x(static_cast<std::size_t>(m * k), 0.01f), y(static_cast<std::size_t>(m * n));
  std::vector<float> w32;
  std::vector<redraft::float16> w16;
  std::vector<redraft::bfloat16> wbf;
  const bool half = impl == 1 || impl == 2 || impl == 6;
  const std::size_t weight_bytes = static_cast<std::size_t>(n * k) * (half ? 2 : 4);
  if (impl == 1 || impl == 6) {
    w16 = random_weights<redraft::float16>(n * k, 1);
  } else if (impl == 2) {
    wbf = random_weights<redraft::bfloat16>(n * k, 1);
  } else {
    w32 = random_weights<float>(n * k, 1);
  }
  redraft::packed_weights<float> p32;
  redraft::packed_weights<redraft::float16> p16;
  if (impl == 5)
    p32 = redraft::packed_weights<float>(redraft::matrix_view<const float>(w32.data(), n, k));
  if (impl == 6)
    p16 = redraft::packed_weights<redraft::float16>(
        redraft::matrix_view<const redraft::float16>(w16.data(), n, k));
  const std::vector<std::uint64_t> stream = redraft_bench::stream_buffer(weight_bytes);
  const redraft::matrix_view<const float> xv(x.data(), m, k);
  const redraft::matrix_view<float> yv(y.data(), m, n);
  double product_seconds = 0.0, floor_seconds = 0.0;
  for (auto _ : state) {
    const double t0 = redraft_bench::thread_seconds();
    switch (impl) {
      case 0:
        redraft::small_matmul(xv, redraft::matrix_view<const float>(w32.data(), n, k), yv);
        break;
      case 1:
        redraft::small_matmul(xv, redraft::matrix_view<const redraft::float16>(w16.data(), n, k),
                              yv);
        break;
      case 2:
        redraft::small_matmul(xv, redraft::matrix_view<const redraft::bfloat16>(wbf.data(), n, k),
                              yv);
        break;
      case 3:
        Eigen::Map<row_matrix>(y.data(), m, n).noalias() =
            Eigen::Map<const row_matrix>(x.data(), m, k) *
            Eigen::Map<const row_matrix>(w32.data(), n, k).transpose();
        break;
      case 5:
        redraft::packed_matmul(xv, p32, yv);
        break;
      case 6:
        redraft::packed_matmul(xv, p16, yv);
        break;
      default:
        for (index_t o = 0; o < n; ++o) {
          const Eigen::Map<const Eigen::VectorXf> wr(w32.data() + o * k, k);
          for (index_t r = 0; r < m; ++r)
            y[static_cast<std::size_t>(r * n + o)] =
                wr.dot(Eigen::Map<const Eigen::VectorXf>(x.data() + r * k, k));
        }
    }
    benchmark::DoNotOptimize(y.data());
    const double t1 = redraft_bench::thread_seconds();
    benchmark::DoNotOptimize(redraft_bench::stream_read(stream.data(), weight_bytes));
    const double t2 = redraft_bench::thread_seconds();
    product_seconds += t1 - t0;
    floor_seconds += t2 - t1;
  }
  const double iterations = static_cast<double>(state.iterations());
  state.counters["floor_ratio"] = product_seconds / floor_seconds;
  state.counters["weight_GBps"] =
      1e-9 * static_cast<double>(weight_bytes) * iterations / product_seconds;
  state.counters["GFLOPs"] = 2e-9 * static_cast<double>(m * n * k) * iterations / product_seconds;
}

// What an 8-node tree costs against a one-token step in the projections alone: packed_matmul
// with F16 weights at the KJV target's MLP shape (K 256, N 768, 0.4 MB), 8 rows against 1 row in
// the same iterations. C copies of the matrix are used in turn: C = 1 keeps the weights in L2,
// C = 40 (16 MB) makes every product stream its weights from L3 or memory, as the target's
// forward does (7 MB of weights per step). Counters: rows8_vs_row1 = time(M 8) / time(M 1);
// GFLOPs and weight_GBps of the 8-row and the 1-row product.
void bm_tree_rows_vs_row(benchmark::State& state) {
  const index_t k = 256, n = 768, copies = state.range(0);
  const std::vector<redraft::float16> w = random_weights<redraft::float16>(n * k, 3);
  std::vector<redraft::packed_weights<redraft::float16>> packed;
  for (index_t c = 0; c < copies; ++c)
    packed.emplace_back(redraft::matrix_view<const redraft::float16>(w.data(), n, k));
  std::vector<float> x(static_cast<std::size_t>(8 * k), 0.01f), y(static_cast<std::size_t>(8 * n));
  double seconds[2] = {0.0, 0.0};  // 8 rows, 1 row
  std::size_t next = 0;
  for (auto _ : state) {
    for (int side = 0; side < 2; ++side) {
      const index_t m = side == 0 ? 8 : 1;
      const double t0 = redraft_bench::thread_seconds();
      for (int rep = 0; rep < 50; ++rep) {
        redraft::packed_matmul(redraft::matrix_view<const float>(x.data(), m, k),
                               packed[next++ % packed.size()],
                               redraft::matrix_view<float>(y.data(), m, n));
        benchmark::DoNotOptimize(y.data());
      }
      seconds[side] += redraft_bench::thread_seconds() - t0;
    }
  }
  const double products = 50.0 * static_cast<double>(state.iterations());
  const double flop = 2.0 * static_cast<double>(n * k), bytes = 2.0 * static_cast<double>(n * k);
  state.counters["rows8_vs_row1"] = seconds[0] / seconds[1];
  state.counters["GFLOPs_8"] = 1e-9 * 8 * flop * products / seconds[0];
  state.counters["GFLOPs_1"] = 1e-9 * flop * products / seconds[1];
  state.counters["weight_GBps_1"] = 1e-9 * bytes * products / seconds[1];
}
BENCHMARK(bm_tree_rows_vs_row)
    ->ArgName("C")
    ->Arg(1)
    ->Arg(40)
    ->MinTime(0.3)
    ->Unit(benchmark::kMicrosecond);

// The vocabulary projection of the beam-search benchmark (K 2048, N 32000, 262 MB of F32) at
// M = B x W rows, and the KJV target's MLP up-projection (K 256, N 1536, in cache).
BENCHMARK(bm_matmul)
    ->ArgNames({"M", "K", "N", "I"})
    ->ArgsProduct({{1, 8, 64, 128}, {2048}, {32000}, {0, 1, 3, 5, 6}})
    ->ArgsProduct({{1, 8}, {2048}, {32000}, {4}})
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(bm_matmul)
    ->ArgNames({"M", "K", "N", "I"})
    ->ArgsProduct({{1, 2, 4, 8, 16, 32}, {256}, {1536}, {0, 1, 2, 3, 4, 5, 6}})
    ->MinTime(0.05)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(redraft_bench::BM_stream_read)->Iterations(5)->Unit(benchmark::kMillisecond);

}  // namespace
