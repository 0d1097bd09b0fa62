// redraft/cuda/thrust_backend.hpp: the Backend concept on Thrust, templated on the Thrust system.
//
//   thrust_backend<System>   System a Thrust system tag. Buffers are allocated through the
//                            system (thrust::malloc / thrust::free on host systems), for_each_index
//                            is thrust::for_each over a counting iterator with the system's
//                            execution policy, fill / copy / inclusive_scan are Thrust algorithms,
//                            and the row primitives run the block helpers of cuda/block/.
//   thrust_host_backend      = thrust_backend<thrust::system::cpp::tag>: Thrust's sequential host
//                            (CPP) system. Built by the ordinary C++ compiler (this header needs
//                            only the CCCL headers, no CUDA toolkit); CI runs every typed test and
//                            the conformance cases on it.
//   cuda_backend             the CUDA system (stream-ordered, cuBLAS, CUB kernels): in
//                            cuda/cuda_backend.cuh, nvcc only.
//
// How the host system exercises the GPU code: on a host system each row primitive runs the
// host-run twin of the CUDA kernel's per-block logic (a block of kernel_tuning::row_threads
// threads simulated one thread after another: the same strides, partials, scans and selects), so
// the CI tests of this backend test the kernels' logic against the CPU backend. Only the CUB
// block-wide collectives and atomics are substituted (by sequential folds and scans).
//
// NOTE: freshly allocated buffers on a host system are filled with 0xFF bytes (NaN floats, -1
// integers): the contract leaves the contents unspecified, and a GPU allocation is not zeroed
// either, so generic code that reads a buffer before writing it fails here, in CI.
//
// Backend-specific structure (what differs between systems) is isolated in
// detail::thrust_system_ops<System>: the primary template below serves host systems; the CUDA
// system specialises it in cuda/cuda_backend.cuh.
#pragma once

#include <thrust/copy.h>
#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/memory.h>
#include <thrust/scan.h>
#include <thrust/sort.h>
#include <thrust/system/cpp/execution_policy.h>
#include <thrust/system/cpp/memory.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/math.hpp"
#include "redraft/core/view.hpp"
#include "redraft/cuda/block/greedy_walk.hpp"
#include "redraft/cuda/block/row_reduce.hpp"
#include "redraft/cuda/block/sampling_walk.hpp"
#include "redraft/cuda/block/top_k.hpp"
#include "redraft/cuda/block/tree_mask.hpp"
#include "redraft/cuda/tuning.hpp"

namespace redraft {

// An owning array of T in the memory of a Thrust system. Movable, not copyable. `Memory` is the
// system's small allocator handle (it frees the storage; on CUDA stream-ordered).
template <class T, class Memory>
class thrust_buffer {
 public:
  thrust_buffer() = default;
  thrust_buffer(T* data, index_t size, Memory memory)
      : data_(data), size_(size), memory_(std::move(memory)) {}
  thrust_buffer(thrust_buffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        memory_(std::move(other.memory_)) {}
  thrust_buffer& operator=(thrust_buffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      memory_ = std::move(other.memory_);
    }
    return *this;
  }
  thrust_buffer(const thrust_buffer&) = delete;
  thrust_buffer& operator=(const thrust_buffer&) = delete;
  ~thrust_buffer() { release(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  index_t size() const { return size_; }

 private:
  void release() {
    if (data_ != nullptr) memory_.deallocate(data_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  index_t size_ = 0;
  Memory memory_{};
};

namespace detail {

// Memory of a host Thrust system: thrust::malloc / thrust::free with the system's tag.
template <class System>
struct thrust_host_memory {
  template <class T>
  T* allocate(index_t n) const {
    T* p = thrust::malloc<T>(System{}, static_cast<std::size_t>(n)).get();
    REDRAFT_REQUIRE(p != nullptr, "thrust_backend::allocate: out of memory for ", n, " elements");
    return p;
  }
  template <class T>
  void deallocate(T* p) const {
    thrust::free(System{}, thrust::pointer<T, System>(p));
  }
};

// ---- Per-row functors of the host-run twins (one call per row) ----

struct twin_row_max {
  matrix_view<const float> x;
  float* out;
  int threads;
  void operator()(index_t r) const {
    const float* row = &x(r, 0);
    const index_t cols = x.extent(1);
    out[r] = block::host_block_reduce(
        threads, [&](int t) { return block::thread_max(row, cols, t, threads); }, block::max_of{});
  }
};

struct twin_row_sum {
  matrix_view<const float> x;
  float* out;
  int threads;
  void operator()(index_t r) const {
    const float* row = &x(r, 0);
    const index_t cols = x.extent(1);
    out[r] = block::host_block_reduce(
        threads, [&](int t) { return block::thread_sum(row, cols, t, threads); },
        block::sum_of<float>{});
  }
};

struct twin_log_softmax {
  matrix_view<const float> x;
  matrix_view<float> y;
  int threads;
  void operator()(index_t r) const {
    const index_t cols = x.extent(1);
    if (cols == 0) return;
    const float* in = &x(r, 0);
    float* out = &y(r, 0);
    const float max = block::host_block_reduce(
        threads, [&](int t) { return block::thread_max(in, cols, t, threads); }, block::max_of{});
    const double sum = block::host_block_reduce(
        threads, [&](int t) { return block::thread_exp_sum(in, cols, max, t, threads); },
        block::sum_of<double>{});
    const float log_sum = static_cast<float>(std::log(sum));
    for (index_t c = 0; c < cols; ++c) out[c] = (in[c] - max) - log_sum;
  }
};

struct twin_row_argmax {
  matrix_view<const float> x;
  std::int32_t* out;
  int threads;
  void operator()(index_t r) const {
    const float* row = &x(r, 0);
    const index_t cols = x.extent(1);
    out[r] = block::host_block_reduce(
                 threads, [&](int t) { return block::thread_best(row, cols, t, threads); },
                 block::best_of{})
                 .index;
  }
};

struct twin_row_top_k {
  matrix_view<const float> x;
  matrix_view<float> values;
  matrix_view<std::int32_t> indices;
  float* scratch_values;          // [rows, k]
  std::int32_t* scratch_indices;  // [rows, k]
  int k;
  int threads;
  void operator()(index_t r) const {
    block::host_top_k_row(&x(r, 0), x.extent(1), k, threads, scratch_values + r * k,
                          scratch_indices + r * k, &values(r, 0), &indices(r, 0));
  }
};

template <class T>
struct twin_verify_greedy {
  step::greedy_walk<T> walk;
  int threads;
  void operator()(index_t b) const {
    block::host_greedy_request(walk, static_cast<std::int32_t>(b), threads);
  }
};

template <class T>
struct twin_verify_lossless {
  step::lossless_walk<T> walk;
  void operator()(index_t b) const {
    block::host_lossless_request(walk, static_cast<std::int32_t>(b));
  }
};

template <class T>
struct twin_verify_typical {
  step::typical_walk<T> walk;
  void operator()(index_t b) const {
    block::host_typical_request(walk, static_cast<std::int32_t>(b));
  }
};

template <class T>
struct twin_redrafter_rows {
  step::redrafter_rows<T> rows;
  void operator()(index_t node) const { block::host_redrafter_row(rows, node); }
};

template <class T>
struct twin_verify_redrafter {
  step::redrafter_walk<T> walk;
  void operator()(index_t b) const {
    block::host_redrafter_request(walk, static_cast<std::int32_t>(b));
  }
};

struct twin_packed_mask {
  step::packed_mask_rows rows;
  void operator()(index_t b) const {
    block::host_packed_mask_request(rows, static_cast<std::int32_t>(b));
  }
};

// Row-major order of the (row, column) pairs of a matrix by (row ascending, value descending,
// column ascending): the fallback top-k for k beyond the block kernel's shared memory.
struct top_k_sort_order {
  const float* x;
  index_t cols;
  REDRAFT_HOST_DEVICE bool operator()(index_t a, index_t b) const {
    const index_t ra = a / cols, rb = b / cols;
    if (ra != rb) return ra < rb;
    return block::beats(x[a], static_cast<std::int32_t>(a % cols), x[b],
                        static_cast<std::int32_t>(b % cols));
  }
};

struct top_k_sort_extract {
  const float* x;
  const index_t* order;   // [rows, cols] sorted flat indices
  float* values;          // [rows, k]
  std::int32_t* indices;  // [rows, k]
  index_t cols;
  int k;
  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const index_t r = i / k, j = i % k;
    const index_t flat = order[r * cols + j];
    values[i] = x[flat];
    indices[i] = static_cast<std::int32_t>(flat % cols);
  }
};

struct gather_rows_functor {
  matrix_view<const float> x;
  const std::int32_t* rows;
  matrix_view<float> y;
  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const index_t cols = y.extent(1);
    const index_t r = i / cols, c = i % cols;
    y(r, c) = x(rows[r], c);
  }
};

// y[i, j] = act(sum_k x[i, k] w[j, k] + bias[j]), one call per output element.
struct matmul_functor {
  matrix_view<const float> x;
  matrix_view<const float> w;
  const float* bias;
  bool silu;
  matrix_view<float> y;
  REDRAFT_HOST_DEVICE void operator()(index_t flat) const {
    const index_t n = y.extent(1), k = x.extent(1);
    const index_t i = flat / n, j = flat % n;
    float acc = 0.0f;
    for (index_t p = 0; p < k; ++p) acc += x(i, p) * w(j, p);
    if (bias != nullptr) acc += bias[j];
    if (silu) acc = acc / (1.0f + exp_hd(-acc));
    y(i, j) = acc;
  }
};

// What a host Thrust system does for the backend. The CUDA system specialises this template.
template <class System>
struct thrust_system_ops {
  using memory = thrust_host_memory<System>;
  static constexpr bool memory_is_host_accessible = true;

  struct context {};  // host systems have no state
  static context make_context() { return {}; }

  static auto policy(const context&) { return System{}; }
  static memory memory_of(const context&) { return {}; }

  template <class T>
  static T* allocate(const context&, index_t n) {
    if (n == 0) return nullptr;
    T* p = memory{}.template allocate<T>(n);
    std::memset(static_cast<void*>(p), 0xFF, static_cast<std::size_t>(n) * sizeof(T));
    return p;
  }
  template <class T>
  static void copy_to_host(const context&, const T* src, index_t n, T* dst) {
    if (n > 0) std::memmove(dst, src, static_cast<std::size_t>(n) * sizeof(T));
  }
  template <class T>
  static void copy_from_host(const context& c, const T* src, index_t n, T* dst) {
    copy_to_host(c, src, n, dst);
  }
  static void synchronize(const context&) {}

  static void matmul(const context& c, matrix_view<const float> x, matrix_view<const float> w,
                     const float* bias, activation act, matrix_view<float> y) {
    thrust::for_each(policy(c), thrust::counting_iterator<index_t>(0),
                     thrust::counting_iterator<index_t>(y.size()),
                     matmul_functor{x, w, bias, act == activation::silu, y});
  }

  template <class F>
  static void for_each_row(const context& c, index_t rows, F f) {
    thrust::for_each(policy(c), thrust::counting_iterator<index_t>(0),
                     thrust::counting_iterator<index_t>(rows), f);
  }
  static void row_max(const context& c, matrix_view<const float> x, vector_view<float> out) {
    for_each_row(c, x.extent(0), twin_row_max{x, out.data(), kernel_tuning::row_threads});
  }
  static void row_sum(const context& c, matrix_view<const float> x, vector_view<float> out) {
    for_each_row(c, x.extent(0), twin_row_sum{x, out.data(), kernel_tuning::row_threads});
  }
  static void log_softmax(const context& c, matrix_view<const float> x, matrix_view<float> y) {
    for_each_row(c, x.extent(0), twin_log_softmax{x, y, kernel_tuning::row_threads});
  }
  static void row_argmax(const context& c, matrix_view<const float> x,
                         vector_view<std::int32_t> out) {
    for_each_row(c, x.extent(0), twin_row_argmax{x, out.data(), kernel_tuning::row_threads});
  }
  static void row_top_k_block(const context& c, matrix_view<const float> x, int k,
                              matrix_view<float> values, matrix_view<std::int32_t> indices) {
    const index_t rows = x.extent(0);
    std::vector<float> scratch_values(static_cast<std::size_t>(rows * k));          // [rows, k]
    std::vector<std::int32_t> scratch_indices(static_cast<std::size_t>(rows * k));  // [rows, k]
    for_each_row(c, rows,
                 twin_row_top_k{x, values, indices, scratch_values.data(), scratch_indices.data(),
                                k, kernel_tuning::row_threads});
  }
  template <class T>
  static void verify_greedy(const context& c, const step::greedy_walk<T>& walk) {
    for_each_row(c, walk.tree.batch, twin_verify_greedy<T>{walk, kernel_tuning::verify_threads});
  }
  template <class T>
  static void verify_lossless(const context& c, const step::lossless_walk<T>& walk) {
    for_each_row(c, walk.tree.batch, twin_verify_lossless<T>{walk});
  }
  template <class T>
  static void verify_typical(const context& c, const step::typical_walk<T>& walk) {
    for_each_row(c, walk.tree.batch, twin_verify_typical<T>{walk});
  }
  template <class T>
  static void verify_redrafter(const context& c, const step::redrafter_walk<T>& walk) {
    for_each_row(c, walk.tree.batch, twin_verify_redrafter<T>{walk});
  }
  template <class T>
  static void redrafter_rows(const context& c, const step::redrafter_rows<T>& rows) {
    for_each_row(c, rows.logits.extent(0), twin_redrafter_rows<T>{rows});
  }
  static void packed_tree_mask(const context& c, const step::packed_mask_rows& rows) {
    for_each_row(c, rows.t.batch, twin_packed_mask{rows});
  }
};

}  // namespace detail

// The backend. A cheap handle: copies share the system's context (on CUDA the stream, cuBLAS
// handle and memory pool). Satisfies every clause of the Backend concept (core/backend.hpp).
template <class System>
class thrust_backend {
  using ops = detail::thrust_system_ops<System>;

 public:
  using system = System;
  using context_type = typename ops::context;
  template <class T>
  using buffer = thrust_buffer<T, typename ops::memory>;

  // Clause 8 (optional): whether backend memory may be read by host code directly.
  static constexpr bool memory_is_host_accessible = ops::memory_is_host_accessible;

  thrust_backend() : context_(ops::make_context()) {}
  explicit thrust_backend(context_type context) : context_(std::move(context)) {}

  const context_type& context() const { return context_; }
  // The Thrust execution policy work of this handle runs with.
  auto policy() const { return ops::policy(context_); }

  // Clause 2: buffers (contents unspecified).
  template <class T>
  buffer<T> allocate(index_t n) const {
    REDRAFT_REQUIRE(n >= 0, "thrust_backend::allocate: element count ", n, " is negative");
    return buffer<T>(ops::template allocate<T>(context_, n), n, ops::memory_of(context_));
  }

  // Clause 3: transfers. copy_to_host returns when the host data is ready.
  template <class T>
  void copy_to_host(const T* src, index_t n, T* dst) const {
    ops::copy_to_host(context_, src, n, dst);
  }
  template <class T>
  void copy_from_host(const T* src, index_t n, T* dst) const {
    ops::copy_from_host(context_, src, n, dst);
  }
  template <class T>
  void copy(const T* src, index_t n, T* dst) const {
    if (n > 0) thrust::copy_n(policy(), src, n, dst);
  }
  template <class T>
  void fill(T* dst, index_t n, T value) const {
    if (n > 0) thrust::fill_n(policy(), dst, n, value);
  }

  // Clause 4.
  void synchronize() const { ops::synchronize(context_); }

  // Clause 5: thrust::for_each over [0, n).
  template <class F>
  void for_each_index(index_t n, F f) const {
    static_assert(std::is_trivially_copyable_v<F>,
                  "for_each_index: the functor must be trivially copyable (views, not buffers)");
    if (n <= 0) return;
    thrust::for_each(policy(), thrust::counting_iterator<index_t>(0),
                     thrust::counting_iterator<index_t>(n), f);
  }

  // Clause 6: y[M, N] = act(x[M, K] * w[N, K]^T + bias[N]).
  void matmul(matrix_view<const float> x, matrix_view<const float> w, const float* bias,
              activation act, matrix_view<float> y) const {
    const index_t m = x.extent(0), k = x.extent(1), n = w.extent(0);
    REDRAFT_REQUIRE(w.extent(1) == k, "matmul: x has ", k, " columns but w has ", w.extent(1));
    REDRAFT_REQUIRE(y.extent(0) == m && y.extent(1) == n, "matmul: y is [", y.extent(0), ", ",
                    y.extent(1), "] but x * w^T is [", m, ", ", n, "]");
    if (m == 0 || n == 0) return;
    ops::matmul(context_, x, w, bias, act, y);
  }

  // Clause 7: row primitives.
  void row_max(matrix_view<const float> x, vector_view<float> out) const {
    check_rows("row_max", x, out.extent(0));
    if (x.extent(0) > 0) ops::row_max(context_, x, out);
  }
  void row_sum(matrix_view<const float> x, vector_view<float> out) const {
    check_rows("row_sum", x, out.extent(0));
    if (x.extent(0) > 0) ops::row_sum(context_, x, out);
  }
  // NOTE: as on the CPU, the normaliser is accumulated in double.
  void log_softmax(matrix_view<const float> x, matrix_view<float> y) const {
    REDRAFT_REQUIRE(x.extent(0) == y.extent(0) && x.extent(1) == y.extent(1), "log_softmax: x is [",
                    x.extent(0), ", ", x.extent(1), "] but y is [", y.extent(0), ", ", y.extent(1),
                    "]");
    if (x.extent(0) > 0 && x.extent(1) > 0) ops::log_softmax(context_, x, y);
  }
  void row_argmax(matrix_view<const float> x, vector_view<std::int32_t> out) const {
    check_rows("row_argmax", x, out.extent(0));
    REDRAFT_REQUIRE(x.extent(1) > 0 || x.extent(0) == 0, "row_argmax: rows are empty");
    if (x.extent(0) > 0) ops::row_argmax(context_, x, out);
  }
  // Sorted descending, ties to the lower index. k <= kernel_tuning::max_block_top_k runs the
  // block top-k (radix select + collect + rank sort); larger k sort every row with Thrust.
  void row_top_k(matrix_view<const float> x, int k, matrix_view<float> values,
                 matrix_view<std::int32_t> indices) const {
    const index_t rows = x.extent(0), cols = x.extent(1);
    REDRAFT_REQUIRE(k >= 0 && k <= cols, "row_top_k: k ", k, " is outside [0, ", cols, "]");
    REDRAFT_REQUIRE(cols <= std::numeric_limits<std::int32_t>::max(), "row_top_k: rows have ", cols,
                    " columns, more than int32 indices can number");
    REDRAFT_REQUIRE(values.extent(0) == rows && values.extent(1) == k &&
                        indices.extent(0) == rows && indices.extent(1) == k,
                    "row_top_k: outputs must be [", rows, ", ", k, "], values are [",
                    values.extent(0), ", ", values.extent(1), "] and indices [", indices.extent(0),
                    ", ", indices.extent(1), "]");
    if (rows == 0 || k == 0) return;
    if (k <= kernel_tuning::max_block_top_k) {
      ops::row_top_k_block(context_, x, k, values, indices);
      return;
    }
    auto order = allocate<index_t>(rows * cols);  // [rows, cols] flat indices
    thrust::copy_n(policy(), thrust::counting_iterator<index_t>(0), rows * cols, order.data());
    thrust::sort(policy(), order.data(), order.data() + rows * cols,
                 detail::top_k_sort_order{x.data(), cols});
    for_each_index(rows * k, detail::top_k_sort_extract{x.data(), order.data(), values.data(),
                                                        indices.data(), cols, k});
  }
  // ---- Fused steps (clause 10 of core/backend.hpp), picked up by step::run_step ----

  // verify_greedy's walk with one block per request and a block-wide argmax per node on the path
  // (cuda/kernels/verify_greedy.cuh; host systems run its host-run twin). Same output.
  template <class T>
  void run_fused(const step::greedy_walk<T>& walk) const {
    ops::verify_greedy(context_, walk);
  }
  // The sampling verifiers' walks with one block per request: row scans, normalisers and the
  // inverse CDF as block collectives in the blocked summation order
  // (cuda/kernels/verify_sampling.cuh, block logic in cuda/block/sampling_walk.hpp; host systems
  // run its host-run twins). The same decisions as the generic steps.
  template <class T>
  void run_fused(const step::lossless_walk<T>& walk) const {
    ops::verify_lossless(context_, walk);
  }
  template <class T>
  void run_fused(const step::typical_walk<T>& walk) const {
    ops::verify_typical(context_, walk);
  }
  template <class T>
  void run_fused(const step::redrafter_walk<T>& walk) const {
    ops::verify_redrafter(context_, walk);
  }
  // verify_redrafter's per-node row statistics with one block per node (logits rows = nodes).
  template <class T>
  void run_fused(const step::redrafter_rows<T>& rows) const {
    ops::redrafter_rows(context_, rows);
  }
  // build_packed_tree_mask's rows with one block per request, parents staged in shared memory
  // (cuda/kernels/tree_mask.cuh; host systems run its host-run twin). Same bits.
  void run_fused(const step::packed_mask_rows& rows) const {
    ops::packed_tree_mask(context_, rows);
  }

  void inclusive_scan(vector_view<const std::int32_t> in, vector_view<std::int32_t> out) const {
    REDRAFT_REQUIRE(in.extent(0) == out.extent(0), "inclusive_scan: input has ", in.extent(0),
                    " elements but output has ", out.extent(0));
    if (in.extent(0) > 0) {
      thrust::inclusive_scan(policy(), in.data(), in.data() + in.extent(0), out.data());
    }
  }
  // y[i] = x[index[i]]. The indices are validated only where backend memory is host-accessible
  // (a device backend would need a copy back per call, in the beam search's inner loop).
  void gather_rows(matrix_view<const float> x, vector_view<const std::int32_t> rows,
                   matrix_view<float> y) const {
    const index_t cols = x.extent(1);
    REDRAFT_REQUIRE(y.extent(0) == rows.extent(0) && y.extent(1) == cols, "gather_rows: y is [",
                    y.extent(0), ", ", y.extent(1), "] but expected [", rows.extent(0), ", ", cols,
                    "]");
    if constexpr (memory_is_host_accessible) {
      for (index_t i = 0; i < rows.extent(0); ++i) {
        REDRAFT_REQUIRE(rows[i] >= 0 && rows[i] < x.extent(0), "gather_rows: index[", i,
                        "] = ", rows[i], " is outside [0, ", x.extent(0), ")");
      }
    }
    for_each_index(y.size(), detail::gather_rows_functor{x, rows.data(), y});
  }

 private:
  static void check_rows(const char* what, matrix_view<const float> x, index_t out_rows) {
    REDRAFT_REQUIRE(x.extent(0) == out_rows, what, ": input has ", x.extent(0),
                    " rows but output has ", out_rows);
  }

  context_type context_;
};

// The host-system instantiation: Thrust's sequential CPP system, built by any C++20 compiler.
using thrust_host_backend = thrust_backend<thrust::system::cpp::tag>;
static_assert(Backend<thrust_host_backend>, "thrust_host_backend must model redraft::Backend");

}  // namespace redraft
