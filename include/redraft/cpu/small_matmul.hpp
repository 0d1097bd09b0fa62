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
// Tiles: MB x NB = 1 x 8 for single-row panels (eight independent accumulators), else 4 x 4.
// Weights may be float, float16 or bfloat16 (converted to float in registers as they are
// loaded); x, y and all arithmetic are float.
//
// NOTE: every output y[m, n] is one dot product with the same sequence of operations whatever
// the tile, the panel or M: vector fma over the K / width full steps in order, one more over the
// zero-padded remainder, then simd_isa::sum (or sum4, the same additions for four outputs). So a
// row's result does not depend on the other rows of the call (a tree pass of n nodes gives each
// node the logits of a one-row step), and does not depend on buffer alignment.
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
    if (next != nullptr)
      for (int j = 0; j < next_rows; ++j) __builtin_prefetch(next + j * k + c);
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
  for (int i = 0; i < MB; ++i) {
    float sums[NB];
    int j = 0;
    for (; j + 4 <= NB; j += 4) isa::sum4(&acc[i][j], sums + j);
    for (; j < NB; ++j) sums[j] = isa::sum(acc[i][j]);
    for (j = 0; j < NB; ++j) {
      float& out = y[i * ldy + j];
      out = accumulate ? out + sums[j] : sums[j];
    }
  }
}

// tiles[mb - 1][nb - 1] = small_matmul_tile<mb, nb, W>, for mb in [1, 4], nb in [1, 8].
template <class W, int MB, int... J>
constexpr std::array<small_matmul_tile_fn<W>, sizeof...(J)> small_matmul_tile_row(
    std::integer_sequence<int, J...>) {
  return {&small_matmul_tile<MB, J + 1, W>...};
}
template <class W>
inline constexpr std::array<std::array<small_matmul_tile_fn<W>, 8>, 4> small_matmul_tiles = {
    small_matmul_tile_row<W, 1>(std::make_integer_sequence<int, 8>{}),
    small_matmul_tile_row<W, 2>(std::make_integer_sequence<int, 8>{}),
    small_matmul_tile_row<W, 3>(std::make_integer_sequence<int, 8>{}),
    small_matmul_tile_row<W, 4>(std::make_integer_sequence<int, 8>{})};

// One panel: rows [0, m) of x against all of w; m <= small_matmul_panel_rows.
template <class W>
void small_matmul_panel(const float* x, index_t m, const W* w, index_t n, index_t k, float* y,
                        bool accumulate) {
  const int tile_rows = m == 1 ? 1 : 4;
  const int tile_cols = m == 1 ? 8 : 4;
  for (index_t col = 0; col < n; col += tile_cols) {
    const int nb = static_cast<int>(std::min<index_t>(tile_cols, n - col));
    // The first tile of each column block prefetches the next block's weight rows.
    const int next_rows = static_cast<int>(std::min<index_t>(tile_cols, n - col - nb));
    const W* next = next_rows > 0 ? w + (col + nb) * k : nullptr;
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

}  // namespace redraft
