// Replays every seed input (fuzz/corpus/<target>/) and every regression input
// (tests/data/fuzz_regressions/<target>/: inputs that once crashed a fuzz target, kept after the
// fix) through the fuzz targets' functions, in every build, the sanitizer builds included. A
// target signals a broken contract by aborting (FUZZ_CHECK) or by letting an exception other
// than redraft::error escape, either of which fails this test. Beyond that, each stored input has
// an expected outcome below: which stages accept it and which refuse it with which message, so a
// seed that stops reaching the code it was written for (or a refusal whose message drifts) fails
// here. docs/reliability.md says how to add a finding here.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
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

using target_fn = redraft_fuzz::outcome (*)(const std::uint8_t*, std::size_t);

// One expected stage: "<stage>: ok", "<stage>: pass", or "<stage>: refused: <fragment>", where the
// refusal's message must contain the fragment.
void check_stages(const std::vector<std::string>& got, const std::vector<std::string>& expected) {
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i, got[i], expected[i]);
    const std::string::size_type refused = expected[i].find(": refused: ");
    if (refused == std::string::npos) {
      CHECK(got[i] == expected[i]);
    } else {
      const std::string head = expected[i].substr(0, refused + 11);
      CHECK(got[i].compare(0, head.size(), head) == 0);
      CHECK(got[i].find(expected[i].substr(refused + 11), head.size()) != std::string::npos);
    }
  }
}

// The expected outcome of every stored input, by "<target>/<file name>".
const std::map<std::string, std::vector<std::string>>& expected_outcomes() {
  static const std::map<std::string, std::vector<std::string>> table = {
      // Checkpoints: three valid heads (their weights round-trip), a config and a weight refused.
      {"checkpoint/huge_config",
       {"config: refused: field 'vocab_size' = 1e+300 is not an integer", "safetensors: ok"}},
      {"checkpoint/input_proj_f16", {"config: ok", "safetensors: ok", "draft_head: ok"}},
      {"checkpoint/running_sum", {"config: ok", "safetensors: ok", "draft_head: ok"}},
      {"checkpoint/silu", {"config: ok", "safetensors: ok", "draft_head: ok"}},
      {"checkpoint/wrong_shape",
       {"config: ok", "safetensors: ok",
        "draft_head: refused: tensor 'lm_head.1.weight' has shape [5, 4] but the config (V 4, H 2, "
        "E 4, N 1) needs [4, 4]"}},
      {"checkpoint/config_vocab_1e300",
       {"config: refused: field 'vocab_size' = 1e+300 is not an integer", "safetensors: ok"}},
      // Trees from each builder, every mask and the positions.
      {"tree/beams",
       {"build_tree: ok", "dense_mask: ok", "packed_mask: ok", "attention_mask: ok",
        "positions: ok"}},
      {"tree/beams_wide",
       {"build_tree: ok", "dense_mask: ok",
        "packed_mask: refused: words_per_row -1 cannot hold 29 nodes", "attention_mask: ok",
        "positions: ok"}},
      {"tree/choices",
       {"build_tree_from_choices: refused: choices[0] = {-1} has rank -1 outside [0, 1)"}},
      {"tree/parents",
       {"build_tree_from_parents: ok", "dense_mask: ok",
        "packed_mask: refused: words_per_row -1 cannot hold 6 nodes", "attention_mask: ok",
        "positions: ok"}},
      {"tree/positions_base_int32_max",
       {"build_tree_from_parents: ok", "dense_mask: ok",
        "packed_mask: refused: words_per_row -1 cannot hold 2 nodes", "attention_mask: ok",
        "positions: refused: base_positions[1] = 2147483647 plus the tree depth 1 exceeds the "
        "largest int32 position"}},
      // Verifiers on ordinary and hostile logits and parameters.
      {"verify/beams",
       {"tree: ok", "verify_greedy: ok", "verify_lossless: refused: top_k -1 must be >= 0",
        "verify_typical: ok", "verify_redrafter: refused: logit_top_k -1 must be >= 0"}},
      {"verify/hostile",
       {"tree: ok",
        "verify_greedy: refused: tree token 9 at request 0, node 3 is outside the vocabulary",
        "verify_lossless: refused: temperature 1.4013e-45 must be finite and > 0",
        "verify_typical: refused: temperature 1.4013e-45 must be finite and > 0"}},
      {"verify/parents",
       {"tree: ok", "verify_greedy: ok", "verify_lossless: refused: top_k -1 must be >= 0",
        "verify_typical: ok"}},
      {"verify/lossless_subnormal_temperature",
       {"tree: ok", "verify_greedy: refused: logits[1, 0] (request 0, node 1) is NaN or +inf",
        "verify_lossless: refused: temperature 2.9e-39 must be finite and > 0",
        "verify_typical: refused: temperature 1.4013e-45 must be finite and > 0",
        "verify_redrafter: refused: temperature 1.4013e-45 must be finite and > 0"}},
      // KV plans: one refused acceptance, one plan applied (and checked against the naive copy).
      {"kv/acceptance", {"make_kv_plan: refused: committed_lengths[1] = -1 is negative"}},
      {"kv/plan", {"apply_kv_plan: ok"}},
      // Golden cases that pass.
      {"golden/greedy_0.json", {"case: pass"}},
      {"golden/pack_0.json", {"case: pass"}},
      {"golden/pack_1.json", {"case: pass"}},
      {"golden/pack_3.json", {"case: pass"}},
  };
  return table;
}

// Replays the stored inputs of `target`; returns how many there were.
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
      const std::string key = target + "/" + file.filename().string();
      INFO(file.string());
      std::ifstream in(file, std::ios::binary);
      const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                            std::istreambuf_iterator<char>());
      redraft_fuzz::outcome got;
      REQUIRE_NOTHROW(got = fn(bytes.data(), bytes.size()));
      const auto expected = expected_outcomes().find(key);
      INFO("a new stored input needs its expected outcome in tests/test_fuzz_replay.cpp");
      REQUIRE(expected != expected_outcomes().end());
      check_stages(got.stages, expected->second);
      ++count;
    }
  }
  return count;
}

}  // namespace

TEST_CASE("fuzz corpora and regressions replay with their expected outcomes", "[fuzz]") {
  CHECK(replay("checkpoint", redraft_fuzz::fuzz_checkpoint) == 6);
  CHECK(replay("tree", redraft_fuzz::fuzz_tree) == 5);
  CHECK(replay("verify", redraft_fuzz::fuzz_verify) == 4);
  CHECK(replay("kv", redraft_fuzz::fuzz_kv) == 2);
  CHECK(replay("golden", redraft_fuzz::fuzz_golden) == 4);
}

TEST_CASE("fuzz targets refuse or accept empty and one-byte inputs as their decoders say",
          "[fuzz]") {
  const std::string no_vocab = "refused: logits has 0 columns (the vocabulary must not be empty)";
  for (int b = -1; b < 256; b += 17) {
    // Past the end every read gives 0 (fuzz_input.hpp), so one byte decides little.
    const std::uint8_t byte = static_cast<std::uint8_t>(b < 0 ? 0 : b);
    const std::size_t n = b < 0 ? 0 : 1;
    CAPTURE(b);
    // The config length is 0 or `byte` bytes that are not there: no config, no weights.
    check_stages(redraft_fuzz::fuzz_checkpoint(&byte, n).stages,
                 {"safetensors: refused: 0 bytes is too short for the 8-byte header length"});
    // Mode byte % 3: beams of width 0 are refused; the choice and parent builders accept an empty
    // batch, whose masks are empty (an explicit width -1 is refused).
    const std::vector<std::string> empty_tree_masks = {
        "dense_mask: ok", "packed_mask: refused: words_per_row -1 cannot hold 0 nodes",
        "attention_mask: ok", "positions: ok"};
    std::vector<std::string> tree;
    if (byte % 3 == 0) {
      tree = {"build_tree: refused: beam_width 0 must be at least 1"};
    } else {
      tree = {byte % 3 == 1 ? "build_tree_from_choices: ok" : "build_tree_from_parents: ok"};
      tree.insert(tree.end(), empty_tree_masks.begin(), empty_tree_masks.end());
    }
    check_stages(redraft_fuzz::fuzz_tree(&byte, n).stages, tree);
    // The vocabulary decodes to 0: every verifier refuses the empty logits (redrafter: beam trees,
    // i.e. an odd first byte).
    std::vector<std::string> verify = {"tree: ok", "verify_greedy: " + no_vocab,
                                       "verify_lossless: " + no_vocab,
                                       "verify_typical: " + no_vocab};
    if ((byte & 1) != 0) verify.push_back("verify_redrafter: " + no_vocab);
    check_stages(redraft_fuzz::fuzz_verify(&byte, n).stages, verify);
    // An empty plan on an empty cache.
    check_stages(redraft_fuzz::fuzz_kv(&byte, n).stages, {"apply_kv_plan: ok"});
    // Only a digit is a JSON document (a number), which is not a case.
    check_stages(
        redraft_fuzz::fuzz_golden(&byte, n).stages,
        {std::isdigit(byte) != 0 ? "case: refused: no string field 'kind'" : "json: not JSON"});
  }
}
