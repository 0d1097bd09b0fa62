// redraft/core/math.hpp: exp and log callable from host and device code.
//
// Device code calls the CUDA math library (::expf, ::exp, ::log); host code the standard
// library. Functors that run under both compilers (REDRAFT_HOST_DEVICE) use these instead of
// writing the #if themselves.
#pragma once

#include <cmath>

#include "redraft/core/macros.hpp"

namespace redraft {

REDRAFT_HOST_DEVICE inline float exp_hd(float v) {
#if defined(__CUDA_ARCH__)
  return ::expf(v);
#else
  return std::exp(v);
#endif
}

REDRAFT_HOST_DEVICE inline double exp_hd(double v) {
#if defined(__CUDA_ARCH__)
  return ::exp(v);
#else
  return std::exp(v);
#endif
}

REDRAFT_HOST_DEVICE inline double log_hd(double v) {
#if defined(__CUDA_ARCH__)
  return ::log(v);
#else
  return std::log(v);
#endif
}

}  // namespace redraft
