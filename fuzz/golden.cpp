// libFuzzer entry point of fuzz/fuzz_golden.hpp (built by fuzz/run.sh).
#include "fuzz_golden.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  redraft_fuzz::fuzz_golden(data, size);
  return 0;
}
