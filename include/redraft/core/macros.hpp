// redraft/core/macros.hpp: the only macros the library defines (all prefixed REDRAFT_).
#pragma once

// Functions and functors that run both on the host and inside CUDA kernels. Outside nvcc this
// expands to nothing, so core/ compiles with any C++20 compiler.
#if defined(__CUDACC__)
#define REDRAFT_HOST_DEVICE __host__ __device__
#else
#define REDRAFT_HOST_DEVICE
#endif

#define REDRAFT_VERSION_MAJOR 0
#define REDRAFT_VERSION_MINOR 1
#define REDRAFT_VERSION_PATCH 0
