// Tests of draft head checkpoints: save -> load -> identical forward, half-precision storage,
// config.json parsing, and the messages for every kind of wrong checkpoint.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "backends.hpp"
#include "draft_test_util.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/beam_search.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "toy_backend.hpp"

namespace fs = std::filesystem;
using redraft::index_t;

namespace {

fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("redraft_test_checkpoint_" + name);
  fs::remove_all(dir);
  return dir;
}

// Runs a small beam search with log-probs; returns (beams, log_probs) on the host.
template <class B>
std::pair<std::vector<int>, std::vector<float>> run(const redraft::draft_head<B>& head) {
  const auto& c = head.config();
  std::mt19937 rng(77);
  const auto embedding =
      redraft_test::random_values(static_cast<std::size_t>(c.vocab_size * c.hidden_size), 1.0, rng);
  const auto hidden =
      redraft_test::random_values(static_cast<std::size_t>(2 * c.hidden_size), 1.0, rng);
  const std::vector<std::int32_t> roots = {1, 2};
  const auto r = redraft::beam_search(
      head, redraft::matrix_view<const float>(hidden.data(), 2, c.hidden_size),
      redraft::vector_view<const std::int32_t>(roots.data(), 2),
      redraft::matrix_view<const float>(embedding.data(), c.vocab_size, c.hidden_size), 3, 4,
      {.want_log_probs = true});
  std::vector<int> beams(static_cast<std::size_t>(r.beams.size()));
  head.backend().copy_to_host(r.beams.data(), r.beams.size(), beams.data());
  std::vector<float> lp(static_cast<std::size_t>(r.log_probs.size()));
  head.backend().copy_to_host(r.log_probs.data(), r.log_probs.size(), lp.data());
  return {beams, lp};
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

}  // namespace

TEMPLATE_TEST_CASE("checkpoint: save -> load gives an identical forward", "[draft][checkpoint]",
                   REDRAFT_TEST_BACKENDS) {
  const auto rec = GENERATE(redraft::recurrence::silu, redraft::recurrence::linear,
                            redraft::recurrence::running_sum);
  const bool input_proj = GENERATE(true, false);
  CAPTURE(redraft::recurrence_name(rec), input_proj);
  const auto config = redraft_test::make_config(33, 4, input_proj ? 10 : 8, 2, rec, 9);
  TestType backend;
  const auto head =
      redraft::make_draft_head(backend, config, redraft_test::random_weights(config, 4));
  const fs::path dir = scratch_dir("roundtrip");
  redraft::save_draft_head(head, dir);
  REQUIRE(fs::exists(dir / "config.json"));
  REQUIRE(fs::exists(dir / "model.safetensors"));
  const auto loaded = redraft::load_draft_head(backend, dir);
  CHECK(loaded.config() == config);
  CHECK(loaded.parameter_names() == head.parameter_names());
  for (const auto& name : head.parameter_names())
    CHECK(loaded.get_parameter(name) == head.get_parameter(name));
  CHECK(run(loaded) == run(head));
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: f16 and bf16 storage round the weights once", "[draft][checkpoint]") {
  const auto config = redraft_test::make_config(20, 4, 8, 1, redraft::recurrence::silu, 5);
  redraft::cpu_backend backend;
  const auto head =
      redraft::make_draft_head(backend, config, redraft_test::random_weights(config, 8));
  for (const auto dtype : {redraft::safetensors_dtype::f16, redraft::safetensors_dtype::bf16}) {
    CAPTURE(static_cast<int>(dtype));
    const fs::path dir = scratch_dir("half");
    redraft::save_draft_head(head, dir, dtype);
    const auto stored = redraft::read_safetensors(dir / "model.safetensors");
    CHECK(stored.at("rnn_u.weight").stored_dtype ==
          (dtype == redraft::safetensors_dtype::f16 ? "F16" : "BF16"));
    const auto loaded = redraft::load_draft_head(backend, dir);
    for (const auto& name : head.parameter_names()) {
      const auto original = head.get_parameter(name);
      const auto back = loaded.get_parameter(name);
      for (std::size_t i = 0; i < original.size(); ++i) {
        const float expected =
            dtype == redraft::safetensors_dtype::f16
                ? redraft::detail::f16_to_float(redraft::detail::float_to_f16(original[i]))
                : redraft::detail::bf16_to_float(redraft::detail::float_to_bf16(original[i]));
        REQUIRE(back[i] == expected);
      }
    }
    fs::remove_all(dir);
  }
}

TEST_CASE("checkpoint: config.json fields", "[draft][checkpoint]") {
  using nlohmann::json;
  const json base = {
      {"vocab_size", 10}, {"hidden_size", 4}, {"exit_dim", 8}, {"num_draft_layers", 1}};
  auto c = redraft::draft_config_from_json(base);
  CHECK(c.recurrence == redraft::recurrence::silu);  // Apple's default
  CHECK(c.logit_top_k == 50);
  CHECK(c.logit_mask_value == -50000.0f);

  json j = base;
  j["rnn"] = false;
  CHECK(redraft::draft_config_from_json(j).recurrence == redraft::recurrence::running_sum);
  j["rnn"] = true;
  j["recurrence"] = "linear";
  CHECK(redraft::draft_config_from_json(j).recurrence == redraft::recurrence::linear);
  j["recurrence"] = "running_sum";
  CHECK_THROWS_WITH(redraft::draft_config_from_json(j),
                    Catch::Contains("'rnn' is true but 'recurrence' is 'running_sum'"));
  j["recurrence"] = "tanh";
  CHECK_THROWS_WITH(redraft::draft_config_from_json(j), Catch::Contains("recurrence 'tanh'"));
  j = base;
  j["architectures"] = {"Drafter"};  // unknown fields are ignored
  j["logit_top_k"] = 7;
  CHECK(redraft::draft_config_from_json(j).logit_top_k == 7);
  j = base;
  j.erase("exit_dim");
  CHECK_THROWS_WITH(redraft::draft_config_from_json(j), Catch::Contains("no field 'exit_dim'"));
  j = base;
  j["hidden_size"] = "4";
  CHECK_THROWS_WITH(redraft::draft_config_from_json(j),
                    Catch::Contains("'hidden_size' = \"4\" is not an integer"));
  j = base;
  j["hidden_size"] = 4.5;
  CHECK_THROWS_AS(redraft::draft_config_from_json(j), redraft::error);
  j = base;
  j["vocab_size"] = -3;
  CHECK_THROWS_WITH(redraft::draft_config_from_json(j), Catch::Contains("vocab_size -3"));
  // to_json -> from_json is the identity.
  auto full = redraft_test::make_config(11, 3, 5, 2, redraft::recurrence::linear, 4);
  full.logit_mask_value = -1234.5f;
  CHECK(redraft::draft_config_from_json(redraft::draft_config_to_json(full)) == full);
}

TEST_CASE("checkpoint: wrong tensors are reported exactly", "[draft][checkpoint]") {
  const auto config = redraft_test::make_config(20, 4, 10, 1, redraft::recurrence::silu, 5);
  redraft::cpu_backend backend;
  const auto good = redraft_test::random_weights(config, 2);
  CHECK_NOTHROW(redraft::make_draft_head(backend, config, good));

  auto w = good;
  w.erase("input_proj.weight");
  CHECK_THROWS_WITH(redraft::make_draft_head(backend, config, w),
                    Catch::Contains("tensor 'input_proj.weight' [10, 8] is missing") &&
                        Catch::Contains("needs an input projection"));
  w = good;
  w.erase("rnn_w.weight");
  CHECK_THROWS_WITH(redraft::make_draft_head(backend, config, w),
                    Catch::Contains("tensor 'rnn_w.weight' [4, 4] is missing"));
  w = good;
  w["lm_head.1.weight"].shape = {10, 20};
  CHECK_THROWS_WITH(
      redraft::make_draft_head(backend, config, w),
      Catch::Contains("tensor 'lm_head.1.weight' has shape [10, 20] but the config") &&
          Catch::Contains("needs [20, 10]"));
  w = good;
  w["lm_head.2.weight"] = w["lm_head.1.weight"];
  CHECK_THROWS_WITH(redraft::make_draft_head(backend, config, w),
                    Catch::Contains("unexpected tensor 'lm_head.2.weight'") &&
                        Catch::Contains("num_draft_layers is 1"));
  w = good;
  w["rnn_u.bias"].stored_dtype = "F64";
  CHECK_THROWS_WITH(redraft::make_draft_head(backend, config, w),
                    Catch::Contains("tensor 'rnn_u.bias' has dtype F64"));
  // A running-sum head must not carry recurrent weights; a head with E == 2H no projection.
  auto sum_config = config;
  sum_config.recurrence = redraft::recurrence::running_sum;
  CHECK_THROWS_WITH(redraft::make_draft_head(backend, sum_config, good),
                    Catch::Contains("unexpected tensor 'rnn_u.bias'"));
  auto square = config;
  square.exit_dim = 8;
  auto square_weights = redraft_test::random_weights(square, 1);
  square_weights["input_proj.bias"] = {{8}, std::vector<float>(8), "F32"};
  CHECK_THROWS_WITH(redraft::make_draft_head(backend, square, square_weights),
                    Catch::Contains("unexpected tensor 'input_proj.bias'") &&
                        Catch::Contains("no input projection"));

  // Files: missing directory, bad config.json, corrupt safetensors.
  const fs::path dir = scratch_dir("bad");
  CHECK_THROWS_WITH(redraft::load_draft_head(backend, dir), Catch::Contains("cannot open"));
  redraft::save_draft_head(redraft::make_draft_head(backend, config, good), dir);
  write_text(dir / "config.json", "{\"vocab_size\": 20,");
  CHECK_THROWS_WITH(redraft::load_draft_head(backend, dir),
                    Catch::Contains("config.json is not valid JSON"));
  write_text(dir / "config.json", redraft::draft_config_to_json(square).dump());
  CHECK_THROWS_WITH(redraft::load_draft_head(backend, dir),
                    Catch::Contains("model.safetensors: tensor 'lm_head.0.linear.weight' has shape "
                                    "[10, 10] but the config (V 20, H 4, E 8, N 1) needs [8, 8]"));
  write_text(dir / "model.safetensors", "garbage");
  CHECK_THROWS_WITH(redraft::load_draft_head(backend, dir), Catch::Contains("too short"));
  fs::remove_all(dir);
}
