// redraft/cuda/cuda_backend.cuh: the CUDA instantiation of thrust_backend (nvcc only).
//
//   cuda_backend = thrust_backend<thrust::system::cuda::tag>
//
// A handle to one CUDA stream on one device, shared by its copies (Backend clause 1):
//  * stream-ordered: every operation is issued on the stream (kernels, Thrust algorithms with
//    thrust::cuda::par_nosync, cuBLAS, cudaMemcpyAsync); only copy_to_host and synchronize
//    wait for it (clauses 3, 4);
//  * memory comes from the context's own stream-ordered pool (cudaMemPoolCreate;
//    cudaMallocFromPoolAsync / cudaFreeAsync) with its release threshold raised to "keep
//    everything", so after the first decoding step every allocation, buffers and Thrust
//    temporaries alike, is served from cached memory: no cudaMalloc, no device-wide
//    synchronisation inside a decoding loop. The pool is the context's, not the device's default
//    pool, so the rest of the process (other libraries' cudaMallocAsync) keeps its own release
//    behaviour; it is destroyed with the context;
//  * matmul is cublasSgemm (FP32, default math mode) with the row-major trick, followed by one
//    element-wise pass for bias and activation;
//  * row primitives are the kernels of cuda/kernels/row_ops.cuh; verify_greedy, the three
//    sampling verifiers and the packed tree mask have fused block-per-request kernels
//    (kernels/verify_greedy.cuh, kernels/verify_sampling.cuh, kernels/tree_mask.cuh) that the
//    generic entry points pick up; logits may be float, half or bfloat16 (half_interop.cuh);
//    build_tree runs build_tree_parallel (clause 8: device memory).
// Errors of CUDA calls throw redraft::error naming the call, file and line (cuda_check.cuh).
#pragma once

#if !defined(__CUDACC__)
#error "redraft/cuda/cuda_backend.cuh is for nvcc; host code uses thrust_host_backend"
#endif

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <thrust/system/cuda/execution_policy.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>

#include "redraft/cuda/cuda_check.cuh"
#include "redraft/cuda/half_interop.cuh"
#include "redraft/cuda/kernels/row_ops.cuh"
#include "redraft/cuda/kernels/tree_mask.cuh"
#include "redraft/cuda/kernels/verify_greedy.cuh"
#include "redraft/cuda/kernels/verify_sampling.cuh"
#include "redraft/cuda/thrust_backend.hpp"

namespace redraft {

// The state shared by the copies of one cuda_backend handle.
class cuda_context {
 public:
  // Thrust's temporary storage (scan, sort) from the same stream-ordered pool.
  struct stream_allocator {
    using value_type = char;
    cudaStream_t stream = nullptr;
    cudaMemPool_t pool = nullptr;
    char* allocate(std::ptrdiff_t n) {
      void* p = nullptr;
      REDRAFT_CUDA_CHECK(cudaMallocFromPoolAsync(&p, static_cast<std::size_t>(n), pool, stream));
      return static_cast<char*>(p);
    }
    void deallocate(char* p, std::size_t) { cudaFreeAsync(p, stream); }
  };

  // Uses `stream` (not owned) if given, else creates a non-blocking stream on the current device.
  explicit cuda_context(cudaStream_t stream = nullptr) {
    REDRAFT_CUDA_CHECK(cudaGetDevice(&device_));
    if (stream == nullptr) {
      REDRAFT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      owns_stream_ = true;
    } else {
      stream_ = stream;
    }
    // The context's own pool of device memory on this device (not the device's default pool,
    // whose settings belong to the whole process), keeping everything it has allocated.
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device_;
    REDRAFT_CUDA_CHECK(cudaMemPoolCreate(&pool_, &props));
    std::uint64_t keep_all = std::numeric_limits<std::uint64_t>::max();
    REDRAFT_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep_all));
    REDRAFT_CUBLAS_CHECK(cublasCreate(&cublas_));
    REDRAFT_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    allocator_.stream = stream_;
    allocator_.pool = pool_;
  }
  cuda_context(const cuda_context&) = delete;
  cuda_context& operator=(const cuda_context&) = delete;
  // Every buffer holds the context (cuda_stream_memory), so none is left when this runs; the
  // synchronize lets their stream-ordered frees complete before the pool goes.
  ~cuda_context() {
    cublasDestroy(cublas_);
    cudaStreamSynchronize(stream_);
    cudaMemPoolDestroy(pool_);
    if (owns_stream_) cudaStreamDestroy(stream_);
  }

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  int device() const { return device_; }
  cudaMemPool_t pool() const { return pool_; }
  stream_allocator& allocator() { return allocator_; }

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  bool owns_stream_ = false;
  cudaMemPool_t pool_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  stream_allocator allocator_;
};

namespace detail {

// Memory of the CUDA system: stream-ordered frees (the context outlives every buffer it made).
struct cuda_stream_memory {
  std::shared_ptr<cuda_context> context;
  template <class T>
  void deallocate(T* p) const {
    cudaFreeAsync(p, context->stream());
  }
};

// y[i, j] = act(y[i, j] + bias[j]) after the GEMM.
struct bias_activation_functor {
  matrix_view<float> y;
  const float* bias;
  bool silu;
  __device__ void operator()(index_t flat) const {
    const index_t j = flat % y.extent(1);
    float v = y[flat];
    if (bias != nullptr) v += bias[j];
    if (silu) v = v / (1.0f + ::expf(-v));
    y[flat] = v;
  }
};

template <>
struct thrust_system_ops<thrust::system::cuda::tag> {
  using memory = cuda_stream_memory;
  static constexpr bool memory_is_host_accessible = false;
  using context = std::shared_ptr<cuda_context>;

  static context make_context() { return std::make_shared<cuda_context>(); }
  static auto policy(const context& c) {
    return thrust::cuda::par_nosync(c->allocator()).on(c->stream());
  }
  static memory memory_of(const context& c) { return memory{c}; }

  template <class T>
  static T* allocate(const context& c, index_t n) {
    if (n == 0) return nullptr;
    void* p = nullptr;
    REDRAFT_CUDA_CHECK(cudaMallocFromPoolAsync(&p, static_cast<std::size_t>(n) * sizeof(T),
                                               c->pool(), c->stream()));
    return static_cast<T*>(p);
  }
  template <class T>
  static void copy_to_host(const context& c, const T* src, index_t n, T* dst) {
    if (n == 0) return;
    REDRAFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(n) * sizeof(T),
                                       cudaMemcpyDefault, c->stream()));
    REDRAFT_CUDA_CHECK(cudaStreamSynchronize(c->stream()));
  }
  template <class T>
  static void copy_from_host(const context& c, const T* src, index_t n, T* dst) {
    // NOTE: from pageable host memory cudaMemcpyAsync returns once the source has been staged,
    // so the caller may free or reuse `src` right away (clause 3 asks no more).
    if (n == 0) return;
    REDRAFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(n) * sizeof(T),
                                       cudaMemcpyDefault, c->stream()));
  }
  static void synchronize(const context& c) {
    REDRAFT_CUDA_CHECK(cudaStreamSynchronize(c->stream()));
  }

  // Row-major y[M, N] = x[M, K] w[N, K]^T is column-major y^T[N, M] = w^T' x^T: one SGEMM with
  // op(A) = T on w (ld K) and op(B) = N on x (ld K), ldc N.
  static void matmul(const context& c, matrix_view<const float> x, matrix_view<const float> w,
                     const float* bias, activation act, matrix_view<float> y) {
    const index_t m = x.extent(0), k = x.extent(1), n = w.extent(0);
    REDRAFT_REQUIRE(m <= std::numeric_limits<int>::max() && n <= std::numeric_limits<int>::max() &&
                        k <= std::numeric_limits<int>::max(),
                    "matmul: [", m, ", ", k, "] x [", n, ", ", k, "]^T exceeds cuBLAS's int sizes");
    const float one = 1.0f, zero = 0.0f;
    if (k == 0) {
      REDRAFT_CUDA_CHECK(cudaMemsetAsync(
          y.data(), 0, static_cast<std::size_t>(m * n) * sizeof(float), c->stream()));
    } else {
      REDRAFT_CUBLAS_CHECK(cublasSgemm(c->cublas(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                       static_cast<int>(m), static_cast<int>(k), &one, w.data(),
                                       static_cast<int>(k), x.data(), static_cast<int>(k), &zero,
                                       y.data(), static_cast<int>(n)));
    }
    if (bias != nullptr || act == activation::silu) {
      thrust::for_each(policy(c), thrust::counting_iterator<index_t>(0),
                       thrust::counting_iterator<index_t>(m * n),
                       bias_activation_functor{y, bias, act == activation::silu});
    }
  }

  static void row_max(const context& c, matrix_view<const float> x, vector_view<float> out) {
    REDRAFT_CUDA_CHECK(
        kernels::launch_row_max(x.data(), x.extent(0), x.extent(1), out.data(), c->stream()));
  }
  static void row_sum(const context& c, matrix_view<const float> x, vector_view<float> out) {
    REDRAFT_CUDA_CHECK(
        kernels::launch_row_sum(x.data(), x.extent(0), x.extent(1), out.data(), c->stream()));
  }
  static void log_softmax(const context& c, matrix_view<const float> x, matrix_view<float> y) {
    REDRAFT_CUDA_CHECK(
        kernels::launch_log_softmax(x.data(), y.data(), x.extent(0), x.extent(1), c->stream()));
  }
  static void row_argmax(const context& c, matrix_view<const float> x,
                         vector_view<std::int32_t> out) {
    REDRAFT_CUDA_CHECK(
        kernels::launch_row_argmax(x.data(), x.extent(0), x.extent(1), out.data(), c->stream()));
  }
  static void row_top_k_block(const context& c, matrix_view<const float> x, int k,
                              matrix_view<float> values, matrix_view<std::int32_t> indices) {
    REDRAFT_CUDA_CHECK(kernels::launch_row_top_k(x.data(), x.extent(0), x.extent(1), k,
                                                 values.data(), indices.data(), c->stream()));
  }
  template <class T>
  static void verify_greedy(const context& c, const step::greedy_walk<T>& walk) {
    REDRAFT_CUDA_CHECK(kernels::launch_verify_greedy(walk, c->stream()));
  }
  template <class T>
  static void verify_lossless(const context& c, const step::lossless_walk<T>& walk) {
    REDRAFT_CUDA_CHECK(kernels::launch_verify_lossless(walk, c->stream()));
  }
  template <class T>
  static void verify_typical(const context& c, const step::typical_walk<T>& walk) {
    REDRAFT_CUDA_CHECK(kernels::launch_verify_typical(walk, c->stream()));
  }
  template <class T>
  static void verify_redrafter(const context& c, const step::redrafter_walk<T>& walk) {
    REDRAFT_CUDA_CHECK(kernels::launch_verify_redrafter(walk, c->stream()));
  }
  template <class T>
  static void redrafter_rows(const context& c, const step::redrafter_rows<T>& rows) {
    REDRAFT_CUDA_CHECK(kernels::launch_redrafter_rows(rows, rows.logits.extent(0), c->stream()));
  }
  static void packed_tree_mask(const context& c, const step::packed_mask_rows& rows) {
    if (rows.max_nodes <= kernel_tuning::mask_max_nodes) {
      REDRAFT_CUDA_CHECK(kernels::launch_packed_tree_mask(rows, rows.max_nodes, c->stream()));
      return;
    }
    // Trees too large for the shared-memory stage: the generic one-thread-per-row functor (the
    // row count is the struct's host value: no transfer, no synchronisation).
    thrust::for_each(policy(c), thrust::counting_iterator<index_t>(0),
                     thrust::counting_iterator<index_t>(rows.count()), rows);
  }
};

}  // namespace detail

// The CUDA backend: a stream, cuBLAS and a stream-ordered caching pool on the current device.
//   cuda_backend b;                                     // a new non-blocking stream
//   cuda_backend b(std::make_shared<cuda_context>(s));  // an existing stream s (not owned)
using cuda_backend = thrust_backend<thrust::system::cuda::tag>;
static_assert(Backend<cuda_backend>, "cuda_backend must model redraft::Backend");

}  // namespace redraft
