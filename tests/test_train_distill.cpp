// Tests of distillation: the loss against the drafter_loss golden cases, data from the target
// (chain pass = step-by-step hidden states), resume determinism, bad input, and a small run that
// measurably improves the head on a tiny target.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/loop/draft_head_drafter.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/train/distill_batch.hpp"
#include "redraft/train/distill_data.hpp"
#include "redraft/train/distill_trainer.hpp"
#include "redraft/train/drafter_loss.hpp"

namespace {

using namespace redraft;
using redraft::testing::tiny_llama;

testing::tiny_llama_config tiny_config() {
  testing::tiny_llama_config c;
  c.vocab_size = 256;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 64;
  c.max_context = 256;
  c.tie_word_embeddings = false;
  return c;
}

draft_config tiny_head(std::int64_t v, std::int64_t h) {
  draft_config dc;
  dc.vocab_size = v;
  dc.hidden_size = h;
  dc.exit_dim = 2 * h;
  dc.num_draft_layers = 1;
  return dc;
}

std::filesystem::path temp_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("redraft_test_train_" + name);
  std::filesystem::remove_all(dir);
  return dir;
}

const distill_dataset& shared_data() {
  static const distill_dataset data = [] {
    tiny_llama target = tiny_llama::random(tiny_config(), 3, 8);
    distill_data_options o;
    o.continuation_tokens = 64;
    o.samples_per_prompt = 1;
    o.sampling.temperature = 0.7f;
    o.keep_distributions = true;
    o.slots = 8;
    auto prompts = default_prompts(256);
    prompts.resize(12);
    return generate_distill_data(target, prompts, o);
  }();
  return data;
}

}  // namespace

TEST_CASE("multi_step_loss: matches the drafter_loss golden cases and drafter_cross_entropy",
          "[train][loss]") {
  const std::string file =
      GENERATE(std::string("drafter_loss_0.json"), std::string("drafter_loss_1.json"));
  CAPTURE(file);
  std::ifstream in(std::string(REDRAFT_GOLDEN_DIR) + "/" + file);
  REQUIRE(in.good());
  const nlohmann::json c = nlohmann::json::parse(in);
  const auto& logits_json = c["inputs"]["logits"];
  const auto& labels_json = c["inputs"]["labels"];
  const std::vector<std::int64_t> shape = logits_json["shape"].get<std::vector<std::int64_t>>();
  const std::vector<float> logits = logits_json["data"].get<std::vector<float>>();
  const std::vector<std::int32_t> labels = labels_json["data"].get<std::vector<std::int32_t>>();
  const index_t n = shape[0], b = shape[1], t = shape[2], v = shape[3];
  const double expected = c["expected"]["loss"].get<double>();
  // Rows m = (b, t); labels[m, i] = labels[b, t + i + 2] (ignored past the end).
  std::vector<std::int32_t> step_labels(static_cast<std::size_t>(b * t * n), -100);
  for (index_t bi = 0; bi < b; ++bi)
    for (index_t ti = 0; ti < t; ++ti)
      for (index_t i = 0; i < n; ++i)
        if (ti + i + 2 < t)
          step_labels[static_cast<std::size_t>((bi * t + ti) * n + i)] =
              labels[static_cast<std::size_t>(bi * t + ti + i + 2)];
  draft_config dc;
  dc.vocab_size = v;
  dc.hidden_size = 1;
  dc.exit_dim = 2;
  dc.logit_top_k = v;
  const distill_loss_stats got = multi_step_loss<float>(logits.data(), b * t, n, step_labels.data(),
                                                        nullptr, dc, distill_loss_options{});
  CHECK(got.loss == Approx(expected).epsilon(1e-5));
  const drafter_loss_result ref =
      drafter_cross_entropy(view<const float, 4>(logits.data(), n, b, t, v),
                            view<const std::int32_t, 2>(labels.data(), b, t));
  CHECK(got.loss == Approx(ref.loss).epsilon(1e-9));
  for (index_t i = 0; i < n; ++i) {
    CHECK(got.counted[static_cast<std::size_t>(i)] == ref.counted[static_cast<std::size_t>(i)]);
    CHECK(got.correct[static_cast<std::size_t>(i)] == ref.correct[static_cast<std::size_t>(i)]);
  }
}

TEST_CASE(
    "generate_distill_data: chain-pass hidden states and log-probs equal prefill of each prefix",
    "[train][data]") {
  tiny_llama target = tiny_llama::random(tiny_config(), 5, 3);
  distill_data_options o;
  o.continuation_tokens = 20;
  o.samples_per_prompt = 1;
  o.keep_distributions = true;
  o.slots = 3;
  const std::vector<std::vector<std::int32_t>> prompts{{72, 101, 108}, {1, 2, 3, 4, 5, 6}};
  const distill_dataset data = generate_distill_data(target, prompts, o);
  REQUIRE(data.sequences.size() == 4);
  // Greedy continuations are plain greedy decoding.
  std::vector<generation_request> requests(2);
  for (int r = 0; r < 2; ++r) {
    requests[static_cast<std::size_t>(r)].prompt = prompts[static_cast<std::size_t>(r)];
    requests[static_cast<std::size_t>(r)].max_new_tokens = 20;
  }
  const generation_result plain = plain_decode(target, requests);
  for (std::size_t r = 0; r < 2; ++r) {
    const distill_sequence& s = data.sequences[2 * r];
    CHECK_FALSE(s.sampled);
    CHECK(data.sequences[2 * r + 1].sampled);
    CHECK(std::vector<std::int32_t>(s.tokens.begin() + s.prompt_length, s.tokens.end()) ==
          plain.tokens[r]);
  }
  // Hidden state / log-probs at position t equal the last row of a prefill of tokens [0, t].
  for (const std::size_t si : {std::size_t(0), std::size_t(3)}) {
    const distill_sequence& s = data.sequences[si];
    for (const std::int32_t t : {0, 2, s.prompt_length, s.length() - 1}) {
      CAPTURE(si, t);
      const std::vector<std::int32_t> slot{0}, offsets{0, t + 1};
      const model_output out = target.prefill(
          prefill_input{{slot.data(), 1}, {offsets.data(), 2}, {s.tokens.data(), t + 1}});
      double lse = 0.0, max = -1e30;
      for (index_t v = 0; v < 256; ++v) max = std::max(max, static_cast<double>(out.logits(0, v)));
      for (index_t v = 0; v < 256; ++v) lse += std::exp(out.logits(0, v) - max);
      lse = max + std::log(lse);
      for (index_t k = 0; k < 32; ++k)
        CHECK(s.hidden[static_cast<std::size_t>(t * 32 + k)] ==
              Approx(out.hidden(0, k)).margin(2e-4));
      for (index_t v = 0; v < 256; v += 17)
        CHECK(s.log_probs[static_cast<std::size_t>(t * 256 + v)] ==
              Approx(out.logits(0, v) - lse).margin(2e-4));
    }
  }
  // Deterministic.
  tiny_llama again = tiny_llama::random(tiny_config(), 5, 3);
  CHECK(generate_distill_data(again, prompts, o).fingerprint() == data.fingerprint());
}

TEST_CASE(
    "assemble_distill_batch: teacher forcing, step i consumes x_{t+1+i} and predicts x_{t+2+i}",
    "[train][data]") {
  distill_dataset data;
  data.vocab_size = 10;
  data.hidden_size = 1;
  data.embedding.assign(10, 0.0f);
  distill_sequence s;
  s.tokens = {1, 2, 3, 4, 5, 6};
  s.prompt_length = 3;
  s.hidden = {0, 10, 20, 30, 40, 50};
  data.sequences.push_back(s);
  const auto positions = distill_positions(data);
  REQUIRE(positions.size() == 3);  // t = 1, 2, 3 (labels x3.. must be generated: index >= 3)
  CHECK(positions[0].t == 1);
  distill_batch b;
  assemble_distill_batch(data, positions, {0, 2}, 3, distill_loss_options{}, b);
  CHECK(b.hidden == std::vector<float>{10, 30});
  // t = 1: inputs x2 x3 x4 = 3 4 5; labels x3 x4 x5 = 4 5 6.
  // t = 3: inputs x4 x5 (x6 past the end -> 0) = 5 6 0; labels x5 = 6, then ignored.
  CHECK(b.inputs == std::vector<std::int32_t>{3, 4, 5, 5, 6, 0});
  CHECK(b.labels == std::vector<std::int32_t>{4, 5, 6, 6, -100, -100});
}

TEST_CASE("distill_trainer: an interrupted run resumes to bit-identical weights",
          "[train][resume]") {
  const distill_dataset& data = shared_data();
  const draft_config dc = tiny_head(256, 32);
  const distill_loss_kind kind = GENERATE(distill_loss_kind::cross_entropy, distill_loss_kind::kl);
  CAPTURE(distill_loss_name(kind));
  distill_options o;
  o.next_n = 3;
  o.batch = 16;
  o.loss.kind = kind;
  o.optimizer.total_steps = 20;
  o.optimizer.warmup_steps = 4;
  o.checkpoint_every = 5;
  o.seed = 11;
  const auto full_dir = temp_dir("full"), cut_dir = temp_dir("cut");
  distill_trainer full(data, dc, o);
  full.train(full_dir);
  {
    distill_trainer first(data, dc, o);
    first.train(cut_dir, {}, 12);  // "interrupted" after step 12: the last checkpoint is step 10
  }
  distill_trainer second(data, dc, o);
  second.resume(cut_dir);
  CHECK(second.step() == 10);
  second.train(cut_dir);
  CHECK(second.step() == 20);
  CHECK(second.parameters().values() == full.parameters().values());
  // The saved checkpoints are identical too, and load into draft_head<cpu_backend>.
  const draft_head<cpu_backend> a = load_draft_head(cpu_backend{}, full_dir);
  const draft_head<cpu_backend> b = load_draft_head(cpu_backend{}, cut_dir);
  for (const auto& name : a.parameter_names())
    CHECK(a.get_parameter(name) == b.get_parameter(name));
  CHECK(parameters_from_head<float>(a).values() == full.parameters().values());

  // Resuming with a different option is refused with the option's name.
  distill_options other = o;
  other.optimizer.learning_rate = 2e-3;
  distill_trainer wrong(data, dc, other);
  CHECK_THROWS_WITH(wrong.resume(cut_dir), Catch::Contains("learning_rate"));
  std::filesystem::remove_all(full_dir);
  std::filesystem::remove_all(cut_dir);
}

TEST_CASE("distill: bad input gives a clear redraft::error", "[train][errors]") {
  const distill_dataset& data = shared_data();
  distill_options o;
  o.optimizer.total_steps = 4;
  SECTION("empty prompt set") {
    tiny_llama target = tiny_llama::random(tiny_config(), 3, 1);
    CHECK_THROWS_WITH(generate_distill_data(target, {}, distill_data_options{}),
                      Catch::Contains("prompt set is empty"));
    CHECK_THROWS_WITH(distill_trainer(distill_dataset{256, 32, {}, {}}, tiny_head(256, 32), o),
                      Catch::Contains("no sequence"));
  }
  SECTION("head and target sizes differ") {
    CHECK_THROWS_WITH(distill_trainer(data, tiny_head(256, 48), o),
                      Catch::Contains("hidden_size 48"));
  }
  SECTION("a checkpoint of another size") {
    const auto dir = temp_dir("mismatch");
    draft_config big = tiny_head(256, 32);
    big.exit_dim = 48;  // adds an input projection: a different head
    o.checkpoint_every = 2;
    distill_trainer t(data, big, o);
    t.train(dir);
    distill_trainer u(data, tiny_head(256, 32), o);
    CHECK_THROWS_WITH(u.resume(dir), Catch::Contains("differs from the trainer"));
    std::filesystem::remove_all(dir);
  }
  SECTION("kl without distributions") {
    distill_dataset hard = data;
    for (auto& s : hard.sequences) s.log_probs.clear();
    o.loss.kind = distill_loss_kind::kl;
    CHECK_THROWS_WITH(distill_trainer(hard, tiny_head(256, 32), o),
                      Catch::Contains("distributions"));
  }
  SECTION("non-finite loss stops training and keeps the last good checkpoint") {
    const auto dir = temp_dir("nan");
    o.optimizer.total_steps = 10;
    o.checkpoint_every = 3;
    distill_dataset poisoned = data;
    {
      distill_trainer t(poisoned, tiny_head(256, 32), o);
      t.train(dir, {}, 7);  // checkpoints at 3 and 6
    }
    const std::vector<float> saved =
        load_draft_head(cpu_backend{}, dir).get_parameter("rnn_w.weight");
    for (auto& s : poisoned.sequences) std::fill(s.hidden.begin(), s.hidden.end(), NAN);
    distill_trainer t(poisoned, tiny_head(256, 32), o);
    t.resume(dir);
    CHECK_THROWS_WITH(t.train(dir), Catch::Contains("non-finite") && Catch::Contains("step 7") &&
                                        Catch::Contains("last good checkpoint"));
    const draft_head<cpu_backend> kept = load_draft_head(cpu_backend{}, dir);
    CHECK(kept.get_parameter("rnn_w.weight") == saved);
    distill_trainer check(data, tiny_head(256, 32), o);
    check.resume(dir);
    CHECK(check.step() == 6);
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("distill_trainer: a short run raises top-1 accuracy and tokens per step on a tiny target",
          "[train][e2e]") {
  tiny_llama target = tiny_llama::random(tiny_config(), 3, 8);
  distill_data_options d;
  d.continuation_tokens = 96;
  d.slots = 8;
  const distill_dataset data = generate_distill_data(target, default_prompts(256), d);
  const draft_config dc = tiny_head(256, 32);
  distill_options o;
  o.next_n = 4;
  o.batch = 64;
  o.optimizer.learning_rate = 1e-2;
  o.optimizer.total_steps = 300;
  o.optimizer.warmup_steps = 20;
  o.seed = 7;
  distill_trainer trainer(data, dc, o);
  const distill_loss_stats before = trainer.evaluate(data);
  trainer.train({});
  const distill_loss_stats after = trainer.evaluate(data);
  for (std::size_t i = 0; i < 4; ++i) {
    CAPTURE(i, before.accuracy(i), after.accuracy(i));
    CHECK(after.accuracy(i) > before.accuracy(i) + 0.1);
  }
  CHECK(after.loss < before.loss);

  // Tokens per step of greedy speculative decoding of two training prompts (the head has seen the
  // target's greedy continuations of these; held-out prompts need far more data, see
  // docs/distill.md).
  const auto tokens_per_step = [&](const draft_head<cpu_backend>& head) {
    tiny_llama model = tiny_llama::random(tiny_config(), 3, 2);
    std::vector<generation_request> requests(2);
    requests[0].prompt = default_prompts(256)[0];
    requests[1].prompt = default_prompts(256)[5];
    for (auto& q : requests) q.max_new_tokens = 64;
    draft_head_drafter<cpu_backend> drafter(head, model.embedding());
    speculative_decoder<cpu_backend, tiny_llama, draft_head_drafter<cpu_backend>> spec(
        cpu_backend{}, model, drafter);
    decode_options opt;
    opt.beam_width = 4;
    opt.beam_length = 5;
    const generation_result r = spec.generate(requests, opt);
    double steps = 0, emitted = 0;
    for (const auto& s : r.requests) {
      steps += s.steps;
      emitted += static_cast<double>(s.emitted - 1);
    }
    return emitted / steps;
  };
  draft_head<cpu_backend> untrained(cpu_backend{}, dc);
  init_draft_head(untrained, o.seed);
  const double tps_before = tokens_per_step(untrained), tps_after = tokens_per_step(trainer.head());
  CAPTURE(tps_before, tps_after);
  CHECK(tps_after > tps_before + 0.3);
}
