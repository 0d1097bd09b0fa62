// redraft-conformance [--backend cpu|thrust_host] DIR: runs every *.json case of DIR (golden
// format, see tests/data/golden/README.md) through the library on the chosen backend (default
// cpu; thrust_host when built with the CCCL headers) and compares with the expected outputs.
// Prints one line per case, then "N passed, M failed" (and skipped kinds); exits non-zero if a
// case failed or could not be read.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "golden_format.hpp"
#include "kind_beam_search.hpp"
#include "kind_drafter_loss.hpp"
#include "kind_greedy_accept.hpp"
#include "kind_pack.hpp"
#include "kind_redrafter_accept.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#if defined(REDRAFT_CONFORMANCE_THRUST_HOST)
#include "redraft/cuda/thrust_backend.hpp"
#endif

namespace fs = std::filesystem;
using namespace redraft::conformance;

namespace {

using kind_table = std::map<std::string, std::function<case_result(const json&)>>;

template <class B>
kind_table kinds_on() {
  return {
      {"pack", run_pack<B>},
      {"beam_search", run_beam_search<B>},
      {"greedy_accept", run_greedy_accept<B>},
      {"redrafter_accept", run_redrafter_accept<B>},
      {"drafter_loss", run_drafter_loss},
  };
}

}  // namespace

int main(int argc, char** argv) {
  std::string backend = "cpu";
  if (argc == 4 && std::string(argv[1]) == "--backend") backend = argv[2];
  if (argc != 2 && !(argc == 4 && std::string(argv[1]) == "--backend")) {
    std::fprintf(stderr, "usage: redraft-conformance [--backend cpu|thrust_host] DIR\n");
    return 2;
  }
  const fs::path dir = argv[argc - 1];
  if (!fs::is_directory(dir)) {
    std::fprintf(stderr, "redraft-conformance: %s is not a directory\n", argv[argc - 1]);
    return 2;
  }
  kind_table kinds;
  if (backend == "cpu") {
    kinds = kinds_on<redraft::cpu_backend>();
#if defined(REDRAFT_CONFORMANCE_THRUST_HOST)
  } else if (backend == "thrust_host") {
    kinds = kinds_on<redraft::thrust_host_backend>();
#endif
  } else {
    std::fprintf(stderr,
                 "redraft-conformance: unknown or unavailable backend '%s' (built with: cpu%s)\n",
                 backend.c_str(),
#if defined(REDRAFT_CONFORMANCE_THRUST_HOST)
                 ", thrust_host"
#else
                 ""
#endif
    );
    return 2;
  }
  std::printf("backend: %s\n", backend.c_str());

  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".json")
      files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());

  int passed = 0, failed = 0, skipped = 0, unreadable = 0;
  for (const fs::path& file : files) {
    const std::string name = file.filename().string();
    case_result result;
    try {
      std::ifstream in(file);
      const json c = json::parse(in);
      REDRAFT_REQUIRE(c.is_object() && c.contains("kind") && c.at("kind").is_string(),
                      "no string field 'kind'");
      REDRAFT_REQUIRE(c.contains("inputs") && c.contains("expected"),
                      "needs 'inputs' and 'expected'");
      const std::string kind = c.at("kind").get<std::string>();
      const auto it = kinds.find(kind);
      result = it == kinds.end() ? case_result::skip("unknown kind '" + kind + "'") : it->second(c);
    } catch (const std::exception& e) {
      std::printf("%-40s UNREADABLE  %s\n", name.c_str(), e.what());
      ++unreadable;
      continue;
    }
    switch (result.outcome) {
      case case_result::status::pass:
        std::printf("%-40s PASS\n", name.c_str());
        ++passed;
        break;
      case case_result::status::fail:
        std::printf("%-40s FAIL  %s\n", name.c_str(), result.message.c_str());
        ++failed;
        break;
      case case_result::status::skip:
        std::printf("%-40s SKIP  %s\n", name.c_str(), result.message.c_str());
        ++skipped;
        break;
    }
  }
  std::printf("%d passed, %d failed", passed, failed + unreadable);
  if (skipped > 0) std::printf(", %d skipped", skipped);
  if (unreadable > 0) std::printf(" (%d could not be read)", unreadable);
  std::printf("\n");
  return (failed + unreadable) > 0 || files.empty() ? 1 : 0;
}
