// redraft/cpu/cpu_backend.hpp: the CPU backend, on Eigen.
//
// Memory is ordinary host memory; for_each_index is a plain loop on the calling thread, so a
// cpu_backend value may be used from several threads at once as long as each works on its own
// buffers. Dense products of up to 64 rows go through small_matmul (cpu/small_matmul.hpp), larger
// ones through Eigen's GEMM; products with packed weights (Backend clause 11) through
// packed_matmul (cpu/packed_matmul.hpp), the kernel the draft head and the reference target use.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>
#include "redraft/cpu/eigen.hpp"

#include "redraft/core/aligned_allocator.hpp"
#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/view.hpp"
#include "redraft/cpu/packed_matmul.hpp"
#include "redraft/cpu/small_matmul.hpp"

namespace redraft {

// An owning host array, 64-byte aligned (core/aligned_allocator.hpp: results must not depend on
// where a buffer landed). Unlike std::vector it is not copyable by accident (copies of large
// logits buffers should be explicit), and it exposes the backend buffer interface.
template <class T>
class host_buffer {
 public:
  host_buffer() = default;
  explicit host_buffer(index_t n) : storage_(static_cast<std::size_t>(n)) {}
  host_buffer(host_buffer&&) noexcept = default;
  host_buffer& operator=(host_buffer&&) noexcept = default;
  host_buffer(const host_buffer&) = delete;
  host_buffer& operator=(const host_buffer&) = delete;

  T* data() { return storage_.data(); }
  const T* data() const { return storage_.data(); }
  index_t size() const { return static_cast<index_t>(storage_.size()); }
  T& operator[](index_t i) { return storage_[static_cast<std::size_t>(i)]; }
  const T& operator[](index_t i) const { return storage_[static_cast<std::size_t>(i)]; }
  T* begin() { return data(); }
  T* end() { return data() + size(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size(); }

 private:
  aligned_vector<T> storage_;
};

class cpu_backend {
 public:
  template <class T>
  using buffer = host_buffer<T>;

  // Clause 8: backend memory is host memory.
  static constexpr bool memory_is_host_accessible = true;

  // Clause 2: buffers. Contents are value-initialised (zero) on the CPU.
  template <class T>
  buffer<T> allocate(index_t n) const {
    REDRAFT_REQUIRE(n >= 0, "cpu_backend::allocate: element count ", n, " is negative");
    return buffer<T>(n);
  }

  // Clause 3: transfers. Host and backend memory are the same space.
  template <class T>
  void copy_to_host(const T* src, index_t n, T* dst) const {
    copy(src, n, dst);
  }
  template <class T>
  void copy_from_host(const T* src, index_t n, T* dst) const {
    copy(src, n, dst);
  }
  template <class T>
  void copy(const T* src, index_t n, T* dst) const {
    if (n > 0) std::memmove(dst, src, static_cast<std::size_t>(n) * sizeof(T));
  }
  template <class T>
  void fill(T* dst, index_t n, T value) const {
    std::fill(dst, dst + n, value);
  }

  // Clause 4: everything runs synchronously on the calling thread.
  void synchronize() const {}

  // Clause 5.
  template <class F>
  void for_each_index(index_t n, F f) const {
    for (index_t i = 0; i < n; ++i) f(i);
  }

  // Clause 6: y[M, N] = act(x[M, K] * w[N, K]^T + bias[N]). Up to small_matmul_max_rows rows
  // through small_matmul (weights read once, each output independent of M), above through
  // Eigen's GEMM.
  void matmul(matrix_view<const float> x, matrix_view<const float> w, const float* bias,
              activation act, matrix_view<float> y) const {
    matmul_impl(x, w, bias, act, y);
  }

  // Clause 9: the same product with weights stored as float16 or bfloat16, converted to float
  // as they are read (F32 accumulation). Any M goes through small_matmul.
  template <class W>
  requires(std::same_as<W, float16> ||
           std::same_as<W, bfloat16>) void matmul(matrix_view<const float> x,
                                                  matrix_view<const W> w, const float* bias,
                                                  activation act, matrix_view<float> y) const {
    matmul_impl(x, w, bias, act, y);
  }

  // Clause 9's preference: F16 weights only where an F16 load is a hardware conversion. On the
  // SSE2 and portable paths (a build without -march) converting each F16 weight as it is read
  // costs more than streaming a float: the draft head's beam search ran 2x faster with float
  // copies of its F16 weights there on a production-shaped head, 3.4-3.8x on the shipped KJV
  // head (docs/draft.md). BF16 widens with a shift everywhere.
  template <class W>
  static constexpr bool prefers_half_weights =
      !std::same_as<W, float16> || detail::simd_isa::fast_f16;

  // Clause 11: weights packed into column panels (packed_matmul), W float, float16 or bfloat16.
  // Any M goes through packed_matmul: each weight read once per 64 rows, no horizontal sums.
  template <class W>
  using packed_matrix = packed_weights<W>;

  template <weight_element W>
  packed_weights<W> pack(matrix_view<const W> w) const {
    return packed_weights<W>(w);
  }
  template <weight_element W>
  void unpack(const packed_weights<W>& packed, matrix_view<W> w) const {
    packed.unpack(w);
  }
  template <weight_element W>
  void matmul(matrix_view<const float> x, const packed_weights<W>& w, const float* bias,
              activation act, matrix_view<float> y) const {
    const index_t m = x.extent(0), k = x.extent(1), n = w.rows();
    REDRAFT_REQUIRE(w.cols() == k, "matmul: x has ", k, " columns but w has ", w.cols());
    REDRAFT_REQUIRE(y.extent(0) == m && y.extent(1) == n, "matmul: y is [", y.extent(0), ", ",
                    y.extent(1), "] but x * w^T is [", m, ", ", n, "]");
    if (m == 0 || n == 0) return;
    packed_matmul(x, w, y);
    add_bias_activate(bias, act, y);
  }

  // Rows up to which matmul uses small_matmul (measured crossover with Eigen's GEMM:
  // docs/draft.md).
  static constexpr index_t small_matmul_max_rows = 64;

  // Clause 7: row primitives.
  void row_max(matrix_view<const float> x, vector_view<float> out) const {
    check_rows("row_max", x, out.extent(0));
    for (index_t r = 0; r < x.extent(0); ++r) {
      const float* row = &x(r, 0);
      out[r] = x.extent(1) == 0 ? -std::numeric_limits<float>::infinity()
                                : *std::max_element(row, row + x.extent(1));
    }
  }

  void row_sum(matrix_view<const float> x, vector_view<float> out) const {
    check_rows("row_sum", x, out.extent(0));
    for (index_t r = 0; r < x.extent(0); ++r) {
      out[r] = const_map(&x(r, 0), 1, x.extent(1)).sum();
    }
  }

  // NOTE: the max is subtracted before exp so no term overflows; the sum is accumulated in
  // double so a row of 128k similar values loses no precision to the float accumulator.
  void log_softmax(matrix_view<const float> x, matrix_view<float> y) const {
    REDRAFT_REQUIRE(x.extent(0) == y.extent(0) && x.extent(1) == y.extent(1), "log_softmax: x is [",
                    x.extent(0), ", ", x.extent(1), "] but y is [", y.extent(0), ", ", y.extent(1),
                    "]");
    const index_t cols = x.extent(1);
    for (index_t r = 0; r < x.extent(0); ++r) {
      if (cols == 0) continue;
      const float* in = &x(r, 0);
      float* out = &y(r, 0);
      const float max = *std::max_element(in, in + cols);
      double sum = 0.0;
      for (index_t c = 0; c < cols; ++c) sum += std::exp(static_cast<double>(in[c] - max));
      const float log_sum = static_cast<float>(std::log(sum));
      for (index_t c = 0; c < cols; ++c) out[c] = (in[c] - max) - log_sum;
    }
  }

  void row_argmax(matrix_view<const float> x, vector_view<std::int32_t> out) const {
    check_rows("row_argmax", x, out.extent(0));
    REDRAFT_REQUIRE(x.extent(1) > 0 || x.extent(0) == 0, "row_argmax: rows are empty");
    for (index_t r = 0; r < x.extent(0); ++r) {
      const float* row = &x(r, 0);
      // std::max_element returns the first maximum: ties go to the lower index.
      out[r] = static_cast<std::int32_t>(std::max_element(row, row + x.extent(1)) - row);
    }
  }

  void row_top_k(matrix_view<const float> x, int k, matrix_view<float> values,
                 matrix_view<std::int32_t> indices) const {
    const index_t rows = x.extent(0), cols = x.extent(1);
    REDRAFT_REQUIRE(k >= 0 && k <= cols, "row_top_k: k ", k, " is outside [0, ", cols, "]");
    REDRAFT_REQUIRE(values.extent(0) == rows && values.extent(1) == k &&
                        indices.extent(0) == rows && indices.extent(1) == k,
                    "row_top_k: outputs must be [", rows, ", ", k, "], values are [",
                    values.extent(0), ", ", values.extent(1), "] and indices [", indices.extent(0),
                    ", ", indices.extent(1), "]");
    std::vector<std::int32_t> order(static_cast<std::size_t>(cols));
    for (index_t r = 0; r < rows; ++r) {
      const float* row = &x(r, 0);
      std::iota(order.begin(), order.end(), 0);
      const auto before = [row](std::int32_t a, std::int32_t b) {
        return row[a] > row[b] || (row[a] == row[b] && a < b);
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
      for (int j = 0; j < k; ++j) {
        indices(r, j) = order[static_cast<std::size_t>(j)];
        values(r, j) = row[order[static_cast<std::size_t>(j)]];
      }
    }
  }

  void inclusive_scan(vector_view<const std::int32_t> in, vector_view<std::int32_t> out) const {
    REDRAFT_REQUIRE(in.extent(0) == out.extent(0), "inclusive_scan: input has ", in.extent(0),
                    " elements but output has ", out.extent(0));
    std::int32_t running = 0;
    for (index_t i = 0; i < in.extent(0); ++i) {
      running += in[i];
      out[i] = running;
    }
  }

  void gather_rows(matrix_view<const float> x, vector_view<const std::int32_t> rows,
                   matrix_view<float> y) const {
    const index_t cols = x.extent(1);
    REDRAFT_REQUIRE(y.extent(0) == rows.extent(0) && y.extent(1) == cols, "gather_rows: y is [",
                    y.extent(0), ", ", y.extent(1), "] but expected [", rows.extent(0), ", ", cols,
                    "]");
    for (index_t i = 0; i < rows.extent(0); ++i) {
      REDRAFT_REQUIRE(rows[i] >= 0 && rows[i] < x.extent(0), "gather_rows: index[", i,
                      "] = ", rows[i], " is outside [0, ", x.extent(0), ")");
    }
    for (index_t i = 0; i < rows.extent(0); ++i) {
      if (cols > 0) std::memcpy(&y(i, 0), &x(rows[i], 0), static_cast<std::size_t>(cols) * 4);
    }
  }

 private:
  using const_map =
      Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  using mutable_map =
      Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

  template <class W>
  static void matmul_impl(matrix_view<const float> x, matrix_view<const W> w, const float* bias,
                          activation act, matrix_view<float> y) {
    const index_t m = x.extent(0), k = x.extent(1), n = w.extent(0);
    REDRAFT_REQUIRE(w.extent(1) == k, "matmul: x has ", k, " columns but w has ", w.extent(1));
    REDRAFT_REQUIRE(y.extent(0) == m && y.extent(1) == n, "matmul: y is [", y.extent(0), ", ",
                    y.extent(1), "] but x * w^T is [", m, ", ", n, "]");
    if (m == 0 || n == 0) return;
    if constexpr (std::is_same_v<W, float>) {
      if (m > small_matmul_max_rows && k > 0) {
        mutable_map(y.data(), m, n).noalias() =
            const_map(x.data(), m, k) * const_map(w.data(), n, k).transpose();
      } else {
        small_matmul(x, w, y);
      }
    } else {
      small_matmul(x, w, y);
    }
    add_bias_activate(bias, act, y);
  }

  // y = act(y + bias), the products' epilogue; bias [N] nullable.
  static void add_bias_activate(const float* bias, activation act, matrix_view<float> y) {
    mutable_map ym(y.data(), y.extent(0), y.extent(1));
    if (bias != nullptr) {
      ym.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias, y.extent(1));
    }
    if (act == activation::silu) {
      ym = ym.array() / (1.0f + (-ym.array()).exp());
    }
  }

  static void check_rows(const char* what, matrix_view<const float> x, index_t out_rows) {
    REDRAFT_REQUIRE(x.extent(0) == out_rows, what, ": input has ", x.extent(0),
                    " rows but output has ", out_rows);
  }
};

static_assert(Backend<cpu_backend>, "cpu_backend must model redraft::Backend");
static_assert(backend_has_half_matmul_v<cpu_backend, float16> &&
                  backend_has_half_matmul_v<cpu_backend, bfloat16>,
              "cpu_backend offers Backend clause 9 (half-precision weights)");
static_assert(backend_has_packed_matmul_v<cpu_backend, float> &&
                  backend_has_packed_matmul_v<cpu_backend, float16> &&
                  backend_has_packed_matmul_v<cpu_backend, bfloat16>,
              "cpu_backend offers Backend clause 11 (packed weights)");

}  // namespace redraft
