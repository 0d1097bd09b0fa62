// The models shipped in data/: the KJV target (data/models/kjv-target, trained by
// tools/train_target.py) and its distilled draft head (data/draft_heads/kjv, redraft-distill).
// Checks that they load through the public API, that tiny_llama reproduces the logits PyTorch
// computed for the same F16 checkpoint (reference_logits.json, written by the training script),
// and that greedy speculative decoding with the pair equals plain greedy decoding of the target,
// with the distilled head actually accepting drafted tokens. See docs/results.md.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "redraft/draft/checkpoint.hpp"
#include "redraft/loop/draft_head_drafter.hpp"
#include "redraft/loop/plain_decoder.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/testing/tiny_llama_io.hpp"

using namespace redraft;
using redraft::testing::tiny_llama;

namespace {

// REDRAFT_GOLDEN_DIR is tests/data/golden; the shipped models live in <repo>/data.
const std::filesystem::path data_dir =
    std::filesystem::path(REDRAFT_GOLDEN_DIR) / ".." / ".." / ".." / "data";
const std::filesystem::path target_dir = data_dir / "models" / "kjv-target";
const std::filesystem::path draft_dir = data_dir / "draft_heads" / "kjv";

std::vector<std::int32_t> bytes_of(const std::string& text) {
  std::vector<std::int32_t> out;
  for (const char c : text) out.push_back(static_cast<unsigned char>(c));
  return out;
}

}  // namespace

TEST_CASE("the shipped KJV target reproduces PyTorch's logits", "[shipped][tiny_llama]") {
  REQUIRE(std::filesystem::exists(target_dir / "config.json"));
  tiny_llama target = redraft::testing::load_tiny_llama(target_dir, 1);
  CHECK(target.vocab_size() == 256);

  std::ifstream in(target_dir / "reference_logits.json");
  REQUIRE(in.good());
  const nlohmann::json ref = nlohmann::json::parse(in);
  const std::vector<std::int32_t> prompt = bytes_of(ref.at("prompt").get<std::string>());
  const nlohmann::json& rows = ref.at("rows");      // [rows] positions
  const nlohmann::json& logits = ref.at("logits");  // [rows, V]
  REQUIRE(rows.size() == logits.size());
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const std::int32_t row = rows[k].get<std::int32_t>();
    CAPTURE(row);
    REQUIRE((row >= 0 && row < static_cast<std::int32_t>(prompt.size())));
    // Prefill of the prompt's first row + 1 tokens: its last row is position `row`.
    const std::vector<std::int32_t> slots{0}, offsets{0, row + 1};
    const model_output out = target.prefill(
        prefill_input{{slots.data(), 1}, {offsets.data(), 2}, {prompt.data(), row + 1}});
    REQUIRE(out.logits.extent(1) == static_cast<index_t>(logits[k].size()));
    double max_diff = 0.0;
    for (index_t v = 0; v < out.logits.extent(1); ++v) {
      max_diff = std::max(max_diff, std::abs(static_cast<double>(out.logits(0, v)) -
                                             logits[k][static_cast<std::size_t>(v)].get<double>()));
    }
    CAPTURE(max_diff);
    // NOTE: both sides compute in float32 from the same F16-rounded weights; only the order of
    // the sums differs (and the JSON keeps 6 decimals).
    CHECK(max_diff < 1e-3);
  }
}

TEST_CASE("speculative greedy with the shipped KJV pair equals plain greedy",
          "[shipped][loop][e2e]") {
  REQUIRE(std::filesystem::exists(target_dir / "config.json"));
  REQUIRE(std::filesystem::exists(draft_dir / "config.json"));
  const std::int32_t width = GENERATE(1, 4);
  const std::int32_t length = GENERATE(3, 5);
  CAPTURE(width, length);
  const cpu_backend cpu;
  tiny_llama target = redraft::testing::load_tiny_llama(target_dir, 2);
  tiny_llama baseline = redraft::testing::load_tiny_llama(target_dir, 2);
  const draft_head<cpu_backend> head = load_draft_head(cpu, draft_dir.string());
  REQUIRE(head.config().hidden_size == target.hidden_size());
  REQUIRE(head.config().vocab_size == target.vocab_size());

  std::vector<generation_request> requests(2);
  requests[0].prompt = bytes_of("And God said, Let there be");
  requests[1].prompt = bytes_of("Blessed are the");
  for (auto& q : requests) q.max_new_tokens = 48;
  decode_options options;
  options.beam_width = width;
  options.beam_length = length;
  options.rule = verifier::greedy;

  plain_decoder<cpu_backend, tiny_llama> plain(cpu, baseline);
  const generation_result base = plain.generate(requests, options);
  draft_head_drafter<cpu_backend> drafter(head, target.embedding());
  speculative_decoder<cpu_backend, tiny_llama, draft_head_drafter<cpu_backend>> spec(cpu, target,
                                                                                     drafter);
  const generation_result got = spec.generate(requests, options);

  for (std::size_t r = 0; r < requests.size(); ++r) {
    CAPTURE(r);
    REQUIRE(got.tokens[r].size() == 48);
    CHECK(got.tokens[r] == base.tokens[r]);
    // The trained target writes text: printable ASCII and newlines only.
    for (const std::int32_t t : base.tokens[r]) CHECK(((t >= 32 && t < 127) || t == '\n'));
    // The distilled head drafts what the target writes: well above one token per step.
    CHECK(got.requests[r].tokens_per_step() > 1.5);
  }
}
