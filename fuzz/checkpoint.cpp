// libFuzzer entry point of fuzz/fuzz_checkpoint.hpp (built by fuzz/run.sh).
#include "fuzz_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  redraft_fuzz::fuzz_checkpoint(data, size);
  return 0;
}
