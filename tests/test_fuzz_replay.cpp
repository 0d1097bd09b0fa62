// Replays every seed input (fuzz/corpus/<target>/) and every regression input
// (tests/data/fuzz_regressions/<target>/: inputs that once crashed a fuzz target, kept after the
// fix) through the fuzz targets' functions, in every build, the sanitizer builds included. A
// target signals a broken contract by aborting (FUZZ_CHECK) or by letting an exception other
// than redraft::error escape, either of which fails this test. docs/reliability.md says how to
// add a finding here.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/fuzz_checkpoint.hpp"
#include "../fuzz/fuzz_golden.hpp"
#include "../fuzz/fuzz_kv.hpp"
#include "../fuzz/fuzz_tree.hpp"
#include "../fuzz/fuzz_verify.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path source_dir = fs::path(REDRAFT_GOLDEN_DIR).parent_path().parent_path().parent_path();

using target_fn = void (*)(const std::uint8_t*, std::size_t);

int replay(const std::string& target, target_fn fn) {
  int count = 0;
  for (const fs::path& dir : {source_dir / "fuzz" / "corpus" / target,
                              source_dir / "tests" / "data" / "fuzz_regressions" / target}) {
    if (!fs::is_directory(dir)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      std::ifstream in(file, std::ios::binary);
      const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                            std::istreambuf_iterator<char>());
      INFO(file.string());
      CHECK_NOTHROW(fn(bytes.data(), bytes.size()));
      ++count;
    }
  }
  return count;
}

}  // namespace

TEST_CASE("fuzz corpora and regressions replay cleanly", "[fuzz]") {
  CHECK(replay("checkpoint", redraft_fuzz::fuzz_checkpoint) >= 3);
  CHECK(replay("tree", redraft_fuzz::fuzz_tree) >= 3);
  CHECK(replay("verify", redraft_fuzz::fuzz_verify) >= 3);
  CHECK(replay("kv", redraft_fuzz::fuzz_kv) >= 2);
  CHECK(replay("golden", redraft_fuzz::fuzz_golden) >= 2);
}

TEST_CASE("fuzz targets survive empty and one-byte inputs", "[fuzz]") {
  for (int b = -1; b < 256; b += 17) {
    const std::uint8_t byte = static_cast<std::uint8_t>(b < 0 ? 0 : b);
    const std::size_t n = b < 0 ? 0 : 1;
    CAPTURE(b);
    redraft_fuzz::fuzz_checkpoint(&byte, n);
    redraft_fuzz::fuzz_tree(&byte, n);
    redraft_fuzz::fuzz_verify(&byte, n);
    redraft_fuzz::fuzz_kv(&byte, n);
    redraft_fuzz::fuzz_golden(&byte, n);
  }
}
