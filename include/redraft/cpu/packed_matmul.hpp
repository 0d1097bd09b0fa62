// redraft/cpu/packed_matmul.hpp: y[M, N] = x[M, K] w[N, K]^T for a few rows M, with w repacked
// once into column panels so that no output needs a horizontal sum.
//
// small_matmul (cpu/small_matmul.hpp) reads w in PyTorch's [out, in] layout: each output is a dot
// product held in a vector accumulator and summed across its lanes at the end. For short rows
// (K = 256 in the reference target: 16 vector steps per output) those lane sums cost a third of
// the arithmetic. A model that owns its weights can instead keep them as packed_weights: panels of
// `width` output columns (the vector width), each [K, width] contiguous, the last panel padded
// with zeros. Then a register tile of MB rows x NB panels does, per column c of K,
//   NB weight vector loads (half weights converted in registers), MB broadcasts of x[i, c],
//   MB * NB fused multiply-adds into accumulators that hold `width` outputs each,
// and stores its accumulators as they are: every lane is an output.
//
//   for each panel of up to 64 rows of x                      (one for decoding shapes)
//     for each block of NB weight panels (NB * width columns)  (read from memory once)
//       for each tile of MB rows of the panel                  (x rows from L1)
//
// Tiles as in small_matmul: as many rows as the registers allow (8 on AVX-512, 4 on AVX2), as
// many panels as then fit (8 x 3, 4 x 6, 2 x 8, 1 x 8 on AVX-512), ceil(M / 8) tiles of nearly
// equal height, so for M <= 8 each weight is loaded, and for half weights converted, once.
//
// NOTE: every output y[m, n] is the same sequence of operations whatever the tile, the panel or M:
// one fma per column of K, in order, from zero (then one addition to y when accumulating). So a
// row's result does not depend on the other rows of the call, as with small_matmul; the bits
// differ from small_matmul's (another summation order), so a model uses one or the other for a
// given product.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "redraft/core/aligned_allocator.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/view.hpp"
#include "redraft/cpu/simd.hpp"
#include "redraft/cpu/small_matmul.hpp"

namespace redraft {

// w [N, K] (float, float16 or bfloat16) in column panels for packed_matmul: panel p holds columns
// [p * width, p * width + width) of w^T as [K, width] (element (c, j) is w[p * width + j, c]),
// zero beyond N. width = the vector width of this build (16 floats with AVX-512, else 8), so a
// packed copy belongs to the binary that made it. Costs ceil(N / width) * width * K elements.
template <weight_element W>
class packed_weights {
 public:
  static constexpr index_t width = detail::simd_isa::width;

  packed_weights() = default;
  explicit packed_weights(matrix_view<const W> w) : n_(w.extent(0)), k_(w.extent(1)) {
    const index_t panels = (n_ + width - 1) / width;
    data_.assign(static_cast<std::size_t>(panels * k_ * width), W{});
    for (index_t col = 0; col < n_; ++col) {
      W* panel = data_.data() + (col / width) * k_ * width + col % width;
      for (index_t c = 0; c < k_; ++c) panel[c * width] = w(col, c);
    }
  }

  // Writes the matrix back in its [N, K] layout. Throws redraft::error when w is not [N, K].
  void unpack(matrix_view<W> w) const {
    REDRAFT_REQUIRE(w.extent(0) == n_ && w.extent(1) == k_, "packed_weights::unpack: w is [",
                    w.extent(0), ", ", w.extent(1), "] but the packed matrix is [", n_, ", ", k_,
                    "]");
    for (index_t col = 0; col < n_; ++col) {
      const W* panel = data_.data() + (col / width) * k_ * width + col % width;
      for (index_t c = 0; c < k_; ++c) w(col, c) = panel[c * width];
    }
  }

  index_t rows() const { return n_; }  // N: output columns
  index_t cols() const { return k_; }  // K: input columns
  // Panel p [K, width].
  const W* panel(index_t p) const { return data_.data() + p * k_ * width; }

 private:
  index_t n_ = 0, k_ = 0;
  aligned_vector<W> data_;  // [ceil(N / width), K, width]
};

namespace detail {

template <class W>
using packed_matmul_tile_fn = void (*)(const float* x, index_t ldx, const W* panels, index_t k,
                                       float* y, index_t ldy, index_t cols, bool accumulate,
                                       const W* next, int next_panels);

// y[MB, cols] (=, or += when accumulate) x[MB, K] times NB panels (k * width apart) of which the
// first `cols` columns are stored (cols <= NB * width: the last block of a matrix may end inside
// its last panel). When `next` is not null, next_panels panels there are prefetched along the way.
template <int MB, int NB, class W>
void packed_matmul_tile(const float* x, index_t ldx, const W* panels, index_t k, float* y,
                        index_t ldy, index_t cols, bool accumulate, const W* next,
                        int next_panels) {
  using isa = simd_isa;
  using vec = typename isa::vec;
  constexpr int width = isa::width;
  const index_t stride = k * width;
  vec acc[MB][NB];
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) acc[i][j] = isa::zero();
  for (index_t c = 0; c < k; ++c) {
#if defined(__GNUC__)
    // One prefetch per 64-byte line of each next panel (a step covers 32 or 64 bytes of one).
    if (next != nullptr && (c * width * static_cast<index_t>(sizeof(W))) % 64 == 0)
      for (int j = 0; j < NB; ++j)
        if (j < next_panels) __builtin_prefetch(next + j * stride + c * width, 0, 2);
#endif
    vec wv[NB];
    for (int j = 0; j < NB; ++j) wv[j] = isa::load(panels + j * stride + c * width);
    for (int i = 0; i < MB; ++i) {
      const vec xv = isa::broadcast(x[i * ldx + c]);
      for (int j = 0; j < NB; ++j) acc[i][j] = isa::fma(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MB; ++i) {
    float* row = y + i * ldy;
    for (int j = 0; j < NB; ++j) {
      const index_t at = static_cast<index_t>(j) * width;
      if (at + width <= cols) {
        isa::store(row + at, accumulate ? isa::add(isa::load(row + at), acc[i][j]) : acc[i][j]);
      } else if (at < cols) {
        float lanes[width];
        isa::store(lanes, acc[i][j]);
        for (index_t l = 0; l < cols - at; ++l)
          row[at + l] = accumulate ? row[at + l] + lanes[l] : lanes[l];
      }
    }
  }
}

// The most panels a tile of mb rows takes: MB x NB accumulators, NB weight vectors and one
// broadcast in the registers (one row: 8 panels, eight independent accumulators).
constexpr int packed_matmul_tile_panels(int mb) { return small_matmul_tile_cols(mb); }

template <class W, int MB, int NB>
constexpr packed_matmul_tile_fn<W> packed_matmul_tile_entry() {
  if constexpr (NB <= packed_matmul_tile_panels(MB)) {
    return &packed_matmul_tile<MB, NB, W>;
  } else {
    return nullptr;
  }
}
template <class W, int MB, int... J>
constexpr std::array<packed_matmul_tile_fn<W>, sizeof...(J)> packed_matmul_tile_row(
    std::integer_sequence<int, J...>) {
  return {packed_matmul_tile_entry<W, MB, J + 1>()...};
}
template <class W, int... I>
constexpr auto packed_matmul_tile_table(std::integer_sequence<int, I...>) {
  return std::array<std::array<packed_matmul_tile_fn<W>, 8>, sizeof...(I)>{
      packed_matmul_tile_row<W, I + 1>(std::make_integer_sequence<int, 8>{})...};
}
// tiles[mb - 1][nb - 1] = packed_matmul_tile<mb, nb, W>, for mb in [1, max_tile_rows] and nb in
// [1, packed_matmul_tile_panels(mb)].
template <class W>
inline constexpr auto packed_matmul_tiles =
    packed_matmul_tile_table<W>(std::make_integer_sequence<int, small_matmul_max_tile_rows>{});

// One panel of rows: [0, m) of x against all of w; m <= small_matmul_panel_rows.
template <class W>
void packed_matmul_rows(const float* x, index_t m, const packed_weights<W>& w, float* y,
                        bool accumulate) {
  constexpr index_t width = packed_weights<W>::width;
  const index_t n = w.rows(), k = w.cols();
  const index_t panels = (n + width - 1) / width;
  const index_t row_tiles = (m + small_matmul_max_tile_rows - 1) / small_matmul_max_tile_rows;
  const int tile_rows = static_cast<int>((m + row_tiles - 1) / row_tiles);
  const int tile_panels = packed_matmul_tile_panels(tile_rows);
  for (index_t p = 0; p < panels; p += tile_panels) {
    const int nb = static_cast<int>(std::min<index_t>(tile_panels, panels - p));
    const index_t col = p * width;
    // The first row tile of each block prefetches the next block.
    const index_t next_p = p + tile_panels;
    const int next_panels = static_cast<int>(std::clamp<index_t>(panels - next_p, 0, tile_panels));
    const W* next = next_panels > 0 ? w.panel(next_p) : nullptr;
    for (index_t row = 0; row < m; row += tile_rows) {
      const int mb = static_cast<int>(std::min<index_t>(tile_rows, m - row));
      packed_matmul_tiles<W>[static_cast<std::size_t>(mb - 1)][static_cast<std::size_t>(nb - 1)](
          x + row * k, k, w.panel(p), k, y + row * n + col, n, std::min(n - col, nb * width),
          accumulate, row == 0 ? next : nullptr, next_panels);
    }
  }
}

}  // namespace detail

// packed_matmul(x, w, y, accumulate): y[M, N] = x[M, K] w^T, or y += x w^T when accumulate, for
// packed_weights w of an [N, K] matrix.
//   x [M, K] float, y [M, N] float; y may not alias x. Any M (one pass over w per 64 rows); built
//   for M up to ~64. Deterministic; y[m, n] does not depend on M or on the other rows.
// Throws redraft::error when the shapes disagree.
template <weight_element W>
void packed_matmul(matrix_view<const float> x, const packed_weights<W>& w, matrix_view<float> y,
                   bool accumulate = false) {
  const index_t m = x.extent(0), k = x.extent(1), n = w.rows();
  REDRAFT_REQUIRE(w.cols() == k, "packed_matmul: x has ", k, " columns but w has ", w.cols());
  REDRAFT_REQUIRE(y.extent(0) == m && y.extent(1) == n, "packed_matmul: y is [", y.extent(0), ", ",
                  y.extent(1), "] but x * w^T is [", m, ", ", n, "]");
  for (index_t row = 0; row < m; row += small_matmul_panel_rows) {
    const index_t rows = std::min(small_matmul_panel_rows, m - row);
    detail::packed_matmul_rows(x.data() + row * k, rows, w, y.data() + row * n, accumulate);
  }
}

}  // namespace redraft
