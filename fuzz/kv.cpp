// libFuzzer entry point of fuzz/fuzz_kv.hpp (built by fuzz/run.sh).
#include "fuzz_kv.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  redraft_fuzz::fuzz_kv(data, size);
  return 0;
}
