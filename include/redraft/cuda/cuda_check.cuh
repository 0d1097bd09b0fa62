// redraft/cuda/cuda_check.cuh: checking CUDA runtime and cuBLAS calls.
//
// Two tiers, as in the rest of cuda/: the low tier (kernel launchers in cuda/kernels/) returns
// cudaError_t and never throws; the public, throwing tier wraps every call in
//   REDRAFT_CUDA_CHECK(cudaMemcpyAsync(...));
// which throws redraft::error naming the call, the error, the file and the line:
//   "CUDA error: cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream) failed with
//    cudaErrorInvalidValue (invalid argument) at redraft/cuda/cuda_backend.cuh:120"
// nvcc only (needs the CUDA runtime headers).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "redraft/core/error.hpp"

namespace redraft::detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* call, const char* file,
                                          int line) {
  throw_error("CUDA error: ", call, " failed with ", cudaGetErrorName(status), " (",
              cudaGetErrorString(status), ") at ", file, ":", line);
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call,
                                            const char* file, int line) {
  throw_error("cuBLAS error: ", call, " failed with ", cublasGetStatusName(status), " (",
              cublasGetStatusString(status), ") at ", file, ":", line);
}

}  // namespace redraft::detail

// REDRAFT_CUDA_CHECK(call): evaluates a cudaError_t expression once; throws redraft::error if it
// is not cudaSuccess.
#define REDRAFT_CUDA_CHECK(call)                                                       \
  do {                                                                                 \
    const cudaError_t redraft_status_ = (call);                                        \
    if (redraft_status_ != cudaSuccess)                                                \
      ::redraft::detail::throw_cuda_error(redraft_status_, #call, __FILE__, __LINE__); \
  } while (0)

// REDRAFT_CUBLAS_CHECK(call): the same for cublasStatus_t.
#define REDRAFT_CUBLAS_CHECK(call)                                                       \
  do {                                                                                   \
    const cublasStatus_t redraft_status_ = (call);                                       \
    if (redraft_status_ != CUBLAS_STATUS_SUCCESS)                                        \
      ::redraft::detail::throw_cublas_error(redraft_status_, #call, __FILE__, __LINE__); \
  } while (0)
