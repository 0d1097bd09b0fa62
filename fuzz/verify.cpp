// libFuzzer entry point of fuzz/fuzz_verify.hpp (built by fuzz/run.sh).
#include "fuzz_verify.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  redraft_fuzz::fuzz_verify(data, size);
  return 0;
}
