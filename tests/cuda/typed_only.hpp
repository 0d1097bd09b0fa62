// tests/cuda/typed_only.hpp: included by each tests/cuda/<name>.cu before the test source it
// compiles for cuda_backend. The typed bodies (TEMPLATE_TEST_CASE over REDRAFT_TEST_BACKENDS)
// become cuda_backend tests; every plain TEST_CASE of that source is host-only (it already runs in
// the ordinary test executables), so here it turns into an uninstantiated function template: the
// body still has to compile, but it is neither registered nor run.
#pragma once

#include <catch2/catch.hpp>

#ifndef REDRAFT_TEST_CUDA
#error "tests/cuda/typed_only.hpp is for the nvcc-compiled GPU tests (REDRAFT_TEST_CUDA)"
#endif

#undef TEST_CASE
#define TEST_CASE(...) \
  template <class>     \
  [[maybe_unused]] void INTERNAL_CATCH_UNIQUE_NAME(redraft_host_only_test_)()
