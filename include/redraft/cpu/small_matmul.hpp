// redraft/cpu/small_matmul.hpp: y[M, N] = x[M, K] w[N, K]^T for a few rows M, reading w once.
//
// The product of decoding: a handful of activation rows (one token, a draft tree, B x W beams)
// against a large weight matrix in PyTorch's [out, in] layout. Its cost is reading w, so the
// kernel reads every weight element from memory once per call and does all M rows' arithmetic on
// it while it sits in registers or L1:
//
//   for each panel of up to 64 rows of x                   (one panel for decoding shapes)
//     for each block of NB weight rows (NB output columns)  (loaded from memory once)
//       for each tile of MB rows of the panel               (x rows from L1/L2)
//         MB x NB vector accumulators; per step of `width` columns of K: NB weight loads,
//         MB input loads, MB * NB fused multiply-adds; then one horizontal sum per output.
//
// Tiles: as many rows as the vector registers allow (up to 8 with AVX-512's 32 registers, 4 with
// AVX2's 16), and as many columns as then fit: MB x NB accumulators + NB weight vectors + one
// input vector (1 x 8, 2 x 8, 4 x 6, 8 x 3, ... on AVX-512). A panel of M rows is cut into
// ceil(M / 8) tiles of nearly equal height, so for M <= 8 each weight vector is loaded, and for
// half weights converted, once per call rather than once per 4 rows.
// Weights may be float, float16 or bfloat16 (converted to float in registers as they are
// loaded); x, y and all arithmetic are float.
//
// NOTE: every output y[m, n] is one dot product with the same sequence of operations whatever
// the tile, the panel or M: vector fma over the K / width full steps in order, one more over the
// zero-padded remainder, then simd_isa::sum4's reduction (which gives sum's bits). So a row's
// result does not depend on the other rows of the call (a tree pass of n nodes gives each node
// the logits of a one-row step), and does not depend on buffer alignment.
//
// Compared with Eigen's GEMM (bench_matmul, numbers in docs/draft.md): Eigen packs blocks of w
// into a buffer on every call, which for a few rows costs more than the arithmetic (at 8 rows
// small_matmul is 2.6x faster); from 32-128 rows, depending on the shape, the product is
// arithmetic-bound and Eigen's cache-blocked kernel catches up, so cpu_backend::matmul switches
// to it above 64 rows.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/view.hpp"
#include "redraft/cpu/simd.hpp"

namespace redraft {

// Rows of x handled against one pass over w; larger M takes ceil(M / 64) passes.
inline constexpr index_t small_matmul_panel_rows = 64;

namespace detail {

template <class W>
using small_matmul_tile_fn = void (*)(const float* x, index_t ldx, const W* w, index_t k, float* y,
                                      index_t ldy, bool accumulate, const W* next, int next_rows);

// y[MB, NB] (=, or += when accumulate) x[MB, K] w[NB, K]^T; rows ldx / k / ldy apart. When
// `next` is not null, the first next_rows rows of the next weight block (k apart) are prefetched
// along the way.
// NOTE: the prefetch matters for single-row products: their weight rows are short (0.5-8 KB), too
// short for the hardware prefetchers to ramp up on each, and nothing else hides the latency.
template <int MB, int NB, class W>
void small_matmul_tile(const float* x, index_t ldx, const W* w, index_t k, float* y, index_t ldy,
                       bool accumulate, const W* next, int next_rows) {
  using isa = simd_isa;
  using vec = typename isa::vec;
  constexpr int width = isa::width;
  vec acc[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = isa::zero();
  index_t c = 0;
  for (; c + width <= k; c += width) {
#if defined(__GNUC__)
    // One prefetch per 64-byte line of each row (an F16 step covers half a line).
    if (next != nullptr && (c * static_cast<index_t>(sizeof(W))) % 64 == 0)
      for (int j = 0; j < NB; ++j)
        if (j < next_rows) __builtin_prefetch(next + j * k + c);
#endif
    vec wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = isa::load(w + j * k + c);
    for (int i = 0; i < MB; ++i) {
      const vec xv = isa::load(x + i * ldx + c);
      for (int j = 0; j < NB; ++j) acc[i][j] = isa::fma(xv, wv[j], acc[i][j]);
    }
  }
  if (c < k) {
    // NOTE: the last k % width columns go through zero-padded copies: adding 0 * 0 leaves each
    // sum unchanged, and every tile treats the remainder the same way.
    const int rest = static_cast<int>(k - c);
    W wt[NB][width] = {};
    float xt[MB][width] = {};
    for (int j = 0; j < NB; ++j) std::copy(w + j * k + c, w + j * k + k, wt[j]);
    for (int i = 0; i < MB; ++i) std::copy(x + i * ldx + c, x + i * ldx + c + rest, xt[i]);
    vec wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = isa::load(wt[j]);
    for (int i = 0; i < MB; ++i) {
      const vec xv = isa::load(xt[i]);
      for (int j = 0; j < NB; ++j) acc[i][j] = isa::fma(xv, wv[j], acc[i][j]);
    }
  }
  // The MB * NB accumulators are reduced four at a time, in row-major order across rows (sum4
  // gives each vector sum's bits, so the grouping does not change any result); a last group of
  // fewer than four is padded with zero vectors.
  constexpr int outputs = MB * NB, groups = (outputs + 3) / 4;
  vec flat[groups * 4];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) flat[i * NB + j] = acc[i][j];
  for (int o = outputs; o < groups * 4; ++o) flat[o] = isa::zero();
  float sums[groups * 4];
  for (int g = 0; g < groups; ++g) isa::sum4(flat + 4 * g, sums + 4 * g);
  for (int i = 0; i < MB; ++i) {
    for (int j = 0; j < NB; ++j) {
      float& out = y[i * ldy + j];
      out = accumulate ? out + sums[i * NB + j] : sums[i * NB + j];
    }
  }
}

// The most rows a tile takes: with MB rows and NB columns a tile holds MB x NB accumulators, NB
// weight vectors and one input vector, which 32 registers allow up to 8 x 3 and 16 up to 4 x 3.
inline constexpr int small_matmul_max_tile_rows = simd_isa::registers >= 32 ? 8 : 4;

// The widest tile of mb rows that fits the registers (one row: 8 columns, eight independent
// accumulators; its weight vectors are used once each, so they need no registers of their own).
constexpr int small_matmul_tile_cols(int mb) {
  return mb == 1 ? 8 : std::min(8, (simd_isa::registers - 1) / (mb + 1));
}

// The tile function for MB x NB, or null where NB is wider than small_matmul_tile_cols(MB) (never
// called, so never instantiated).
template <class W, int MB, int NB>
constexpr small_matmul_tile_fn<W> small_matmul_tile_entry() {
  if constexpr (NB <= small_matmul_tile_cols(MB)) {
    return &small_matmul_tile<MB, NB, W>;
  } else {
    return nullptr;
  }
}
template <class W, int MB, int... J>
constexpr std::array<small_matmul_tile_fn<W>, sizeof...(J)> small_matmul_tile_row(
    std::integer_sequence<int, J...>) {
  return {small_matmul_tile_entry<W, MB, J + 1>()...};
}
template <class W, int... I>
constexpr auto small_matmul_tile_table(std::integer_sequence<int, I...>) {
  return std::array<std::array<small_matmul_tile_fn<W>, 8>, sizeof...(I)>{
      small_matmul_tile_row<W, I + 1>(std::make_integer_sequence<int, 8>{})...};
}
// tiles[mb - 1][nb - 1] = small_matmul_tile<mb, nb, W>, for mb in [1, max_tile_rows] and nb in
// [1, small_matmul_tile_cols(mb)].
template <class W>
inline constexpr auto small_matmul_tiles =
    small_matmul_tile_table<W>(std::make_integer_sequence<int, small_matmul_max_tile_rows>{});

// How far ahead of the block being computed the weights are prefetched, in bytes (at least one
// block): a block of a multi-row tile (8 x 3 of F16 at K = 256: 1.5 KB) takes long enough to
// compute that prefetching only the next block would leave little in flight.
inline constexpr index_t small_matmul_prefetch_bytes = 4096;

// One panel: rows [0, m) of x against all of w; m <= small_matmul_panel_rows.
template <class W>
void small_matmul_panel(const float* x, index_t m, const W* w, index_t n, index_t k, float* y,
                        bool accumulate) {
  // ceil(m / max_tile_rows) tiles of nearly equal height, each at most tile_rows high.
  const index_t row_tiles = (m + small_matmul_max_tile_rows - 1) / small_matmul_max_tile_rows;
  const int tile_rows = static_cast<int>((m + row_tiles - 1) / row_tiles);
  const int tile_cols = small_matmul_tile_cols(tile_rows);
  const index_t block_bytes =
      std::max<index_t>(1, static_cast<index_t>(tile_cols) * k * static_cast<index_t>(sizeof(W)));
  const index_t ahead =
      std::max<index_t>(1, (small_matmul_prefetch_bytes + block_bytes - 1) / block_bytes);
  for (index_t col = 0; col < n; col += tile_cols) {
    const int nb = static_cast<int>(std::min<index_t>(tile_cols, n - col));
    // The first tile of each column block prefetches the weight rows `ahead` blocks on.
    const index_t next_col = col + ahead * tile_cols;
    const int next_rows = static_cast<int>(std::clamp<index_t>(n - next_col, 0, tile_cols));
    const W* next = next_rows > 0 ? w + next_col * k : nullptr;
    for (index_t row = 0; row < m; row += tile_rows) {
      const int mb = static_cast<int>(std::min<index_t>(tile_rows, m - row));
      small_matmul_tiles<W>[static_cast<std::size_t>(mb - 1)][static_cast<std::size_t>(nb - 1)](
          x + row * k, k, w + col * k, k, y + row * n + col, n, accumulate,
          row == 0 ? next : nullptr, next_rows);
    }
  }
}

}  // namespace detail

// small_matmul(x, w, y, accumulate): y[M, N] = x[M, K] w[N, K]^T, or y += x w^T when accumulate.
//   x [M, K] float, w [N, K] float / float16 / bfloat16 (PyTorch's [out, in]), y [M, N] float.
//   y may not alias x or w. Any M (one pass over w per 64 rows); built for M up to ~64.
// Deterministic; y[m, n] does not depend on M or on the other rows (see the note at the top).
// Throws redraft::error when the shapes disagree.
template <weight_element W>
void small_matmul(matrix_view<const float> x, matrix_view<const W> w, matrix_view<float> y,
                  bool accumulate = false) {
  const index_t m = x.extent(0), k = x.extent(1), n = w.extent(0);
  REDRAFT_REQUIRE(w.extent(1) == k, "small_matmul: x has ", k, " columns but w has ", w.extent(1));
  REDRAFT_REQUIRE(y.extent(0) == m && y.extent(1) == n, "small_matmul: y is [", y.extent(0), ", ",
                  y.extent(1), "] but x * w^T is [", m, ", ", n, "]");
  for (index_t row = 0; row < m; row += small_matmul_panel_rows) {
    const index_t rows = std::min(small_matmul_panel_rows, m - row);
    detail::small_matmul_panel(x.data() + row * k, rows, w.data(), n, k, y.data() + row * n,
                               accumulate);
  }
}

namespace detail {

// y[MB, NB * width] = x[MB, K] w[K, NB * width] (rows ldx / ldw / ldy apart): per row c of w, NB
// vector loads, MB broadcasts of x[i, c], MB * NB fused multiply-adds into the accumulators.
template <int MB, int NB>
void small_matmul_nn_tile(const float* x, index_t ldx, const float* w, index_t ldw, index_t k,
                          float* y, index_t ldy) {
  using isa = simd_isa;
  using vec = typename isa::vec;
  constexpr int width = isa::width;
  vec acc[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = isa::zero();
  for (index_t c = 0; c < k; ++c) {
    vec wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = isa::load(w + c * ldw + j * width);
    for (int i = 0; i < MB; ++i) {
      const vec xv = isa::broadcast(x[i * ldx + c]);
      for (int j = 0; j < NB; ++j) acc[i][j] = isa::fma(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) isa::store(y + i * ldy + j * width, acc[i][j]);
}

// Tiles of small_matmul_nn: up to 4 vectors of columns, and as many rows as the registers allow
// with 4 (6 on AVX-512, 2 on AVX2).
inline constexpr int small_matmul_nn_tile_vectors = 4;
inline constexpr int small_matmul_nn_max_tile_rows =
    (simd_isa::registers - 1 - small_matmul_nn_tile_vectors) / small_matmul_nn_tile_vectors;

using small_matmul_nn_tile_fn = void (*)(const float*, index_t, const float*, index_t, index_t,
                                         float*, index_t);
template <int MB, int... J>
constexpr std::array<small_matmul_nn_tile_fn, sizeof...(J)> small_matmul_nn_tile_row(
    std::integer_sequence<int, J...>) {
  return {&small_matmul_nn_tile<MB, J + 1>...};
}
template <int... I>
constexpr auto small_matmul_nn_tile_table(std::integer_sequence<int, I...>) {
  return std::array<std::array<small_matmul_nn_tile_fn, small_matmul_nn_tile_vectors>,
                    sizeof...(I)>{small_matmul_nn_tile_row<I + 1>(
      std::make_integer_sequence<int, small_matmul_nn_tile_vectors>{})...};
}
// nn_tiles[mb - 1][nv - 1] = small_matmul_nn_tile<mb, nv>.
inline constexpr auto small_matmul_nn_tiles =
    small_matmul_nn_tile_table(std::make_integer_sequence<int, small_matmul_nn_max_tile_rows>{});

}  // namespace detail

// small_matmul_nn(x, w, y): y[M, N] = x[M, K] w[K, N], all float: w in [in, out] layout, e.g.
// attention's probabilities [n, T] times the values [T, head_dim]. Register tiles over the full
// vectors of N's columns, zero-padded vectors for the last N % width columns.
// NOTE: like small_matmul, y[m, n] is the same sequence of operations whatever M and the other
// rows: one simd_isa::fma per k, in order, from zero. Terms with x[m, k] = 0 add exactly zero
// (the sum is never -0), so masked-out attention entries leave a row as if they were absent.
// Throws redraft::error when the shapes disagree; y may not alias x or w.
inline void small_matmul_nn(matrix_view<const float> x, matrix_view<const float> w,
                            matrix_view<float> y) {
  const index_t m = x.extent(0), k = x.extent(1), n = w.extent(1);
  REDRAFT_REQUIRE(w.extent(0) == k, "small_matmul_nn: x has ", k, " columns but w has ",
                  w.extent(0), " rows");
  REDRAFT_REQUIRE(y.extent(0) == m && y.extent(1) == n, "small_matmul_nn: y is [", y.extent(0),
                  ", ", y.extent(1), "] but x * w is [", m, ", ", n, "]");
  constexpr index_t width = detail::simd_isa::width;
  const index_t vectors = n / width;
  const index_t row_tiles =
      (m + detail::small_matmul_nn_max_tile_rows - 1) / detail::small_matmul_nn_max_tile_rows;
  const index_t tile_rows = row_tiles == 0 ? 0 : (m + row_tiles - 1) / row_tiles;
  for (index_t v = 0; v < vectors; v += detail::small_matmul_nn_tile_vectors) {
    const index_t nv = std::min<index_t>(detail::small_matmul_nn_tile_vectors, vectors - v);
    for (index_t row = 0; row < m; row += tile_rows) {
      const index_t mb = std::min(tile_rows, m - row);
      detail::small_matmul_nn_tiles[static_cast<std::size_t>(mb - 1)][static_cast<std::size_t>(nv -
                                                                                               1)](
          x.data() + row * k, k, w.data() + v * width, n, k, y.data() + row * n + v * width, n);
    }
  }
  const index_t rest = n - vectors * width;
  if (rest > 0) {
    // The last N % width columns: one zero-padded vector per row of w, the same fused
    // multiply-adds as the full vectors (a plain loop's contraction is the compiler's choice).
    using isa = detail::simd_isa;
    float padded[width] = {}, out[width];
    for (index_t row = 0; row < m; ++row) {
      isa::vec acc = isa::zero();
      for (index_t c = 0; c < k; ++c) {
        std::copy(w.data() + c * n + vectors * width, w.data() + c * n + n, padded);
        acc = isa::fma(isa::broadcast(x(row, c)), isa::load(padded), acc);
      }
      isa::store(out, acc);
      std::copy(out, out + rest, y.data() + row * n + vectors * width);
    }
  }
}

}  // namespace redraft
