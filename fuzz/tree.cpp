// libFuzzer entry point of fuzz/fuzz_tree.hpp (built by fuzz/run.sh).
#include "fuzz_tree.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  redraft_fuzz::fuzz_tree(data, size);
  return 0;
}
