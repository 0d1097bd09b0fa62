// tests/backends.hpp: the backends every typed test runs on.
//
//   TEMPLATE_TEST_CASE("...", "[tags]", REDRAFT_TEST_BACKENDS) { ... TestType ... }
//
// Always the CPU (Eigen) backend and the from-scratch toy backend; plus the Thrust backend on
// Thrust's host (CPP) system when the build found the CCCL headers (tests/CMakeLists.txt defines
// REDRAFT_TEST_THRUST_HOST): the CI instantiation of the CUDA backend's code (docs/cuda.md).
// In the GPU tests (tests/cuda/, nvcc, REDRAFT_TEST_CUDA) the same bodies run on cuda_backend
// alone. REDRAFT_TEST_NON_CPU_BACKENDS is the list without the CPU backend, for checks against it.
#pragma once

#include "redraft/cpu/cpu_backend.hpp"
#include "toy_backend.hpp"

#if defined(REDRAFT_TEST_CUDA)
#include "redraft/cuda.cuh"
#define REDRAFT_TEST_BACKENDS redraft::cuda_backend
#define REDRAFT_TEST_NON_CPU_BACKENDS redraft::cuda_backend
#elif defined(REDRAFT_TEST_THRUST_HOST)
#include "redraft/cuda/thrust_backend.hpp"
#define REDRAFT_TEST_BACKENDS \
  redraft::cpu_backend, redraft_test::toy_backend, redraft::thrust_host_backend
#define REDRAFT_TEST_NON_CPU_BACKENDS redraft_test::toy_backend, redraft::thrust_host_backend
#else
#define REDRAFT_TEST_BACKENDS redraft::cpu_backend, redraft_test::toy_backend
#define REDRAFT_TEST_NON_CPU_BACKENDS redraft_test::toy_backend
#endif
