// The GPU test runner: the typed tests of tests/test_*.cpp compiled by nvcc for cuda_backend
// (tests/cuda/<name>.cu) and the cross-checks of cuda_vs_cpu.cu, in one executable.
//
// Without a CUDA device only the [no_gpu] cases run, then the program prints "SKIPPED: <reason>"
// and exits with 77, which CTest reports as skipped (tests/cuda/CMakeLists.txt).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include "redraft/cuda.cuh"

using namespace redraft;

TEST_CASE("REDRAFT_CUDA_CHECK names the call, the error, the file and the line", "[cuda][no_gpu]") {
  try {
    REDRAFT_CUDA_CHECK(cudaErrorInvalidValue);
    FAIL("no throw");
  } catch (const redraft::error& e) {
    const std::string m = e.what();
    CHECK(m.find("cudaErrorInvalidValue") != std::string::npos);
    CHECK(m.find("main.cu:") != std::string::npos);
    CHECK(m.find("REDRAFT_CUDA_CHECK") == std::string::npos);  // the call text, not the macro
  }
}

int main(int argc, char** argv) {
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  const Catch::ConfigData& asked = session.configData();
  if (asked.listTests || asked.listTestNamesOnly || asked.listTags)
    return session.run();  // no GPU needed
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    session.configData().testsOrTags = {"[no_gpu]"};
    session.useConfigData(session.configData());
    const int failed = session.run();
    std::printf(
        "SKIPPED: no CUDA device (cudaGetDeviceCount: %s, %d devices); only the [no_gpu] "
        "cases ran\n",
        status == cudaSuccess ? "ok" : cudaGetErrorName(status), devices);
    return failed != 0 ? 1 : 77;
  }
  return session.run();
}
