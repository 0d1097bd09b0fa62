// redraft/cuda/half_interop.cuh: CUDA's 16-bit float types and redraft's (core/half.hpp).
//
// redraft::half and redraft::bfloat16 have the layout of __half and __nv_bfloat16 (two bytes, the
// IEEE / bfloat16 bits, two-byte alignment), asserted below, so an engine's device logits are
// handed to the verifiers by a pointer cast, with no conversion pass:
//   const __nv_bfloat16* logits = ...;                                    // [n_total, V]
//   verify_lossless(gpu, tree, redraft::as_redraft(logits, n_total, V), params, uniforms);
// NOTE: CUDA's headers declare a global `half` (= __half); name redraft's as redraft::half.
// nvcc only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "redraft/core/half.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

static_assert(sizeof(__half) == sizeof(half) && alignof(__half) == alignof(half),
              "redraft::half must have __half's layout");
static_assert(sizeof(__nv_bfloat16) == sizeof(bfloat16) &&
                  alignof(__nv_bfloat16) == alignof(bfloat16),
              "redraft::bfloat16 must have __nv_bfloat16's layout");
static_assert(std::is_trivially_copyable_v<half> && std::is_trivially_copyable_v<bfloat16>,
              "16-bit logits must be trivially copyable");

// A view of CUDA half / bfloat16 logits [rows, V] as redraft's element types.
inline matrix_view<const half> as_redraft(const __half* logits, index_t rows, index_t vocab) {
  return matrix_view<const half>(reinterpret_cast<const half*>(logits), rows, vocab);
}
inline matrix_view<const bfloat16> as_redraft(const __nv_bfloat16* logits, index_t rows,
                                              index_t vocab) {
  return matrix_view<const bfloat16>(reinterpret_cast<const bfloat16*>(logits), rows, vocab);
}

}  // namespace redraft
