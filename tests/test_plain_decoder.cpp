// Tests of loop/plain_decoder.hpp on the tiny Llama: greedy output equals re-running the whole
// sequence each step, sampling follows the processed target law, streams are per request, stop
// conditions, the KV cache left behind, and bad input. On every backend (the tiny Llama is
// CPU-only, so there on the synthetic target): greedy output equals the target's definition (the
// token choice itself is host code, the same on every backend).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <map>
#include <vector>

#include "backends.hpp"
#include "redraft/loop/plain_decoder.hpp"
#include "redraft/testing/synthetic_target.hpp"
#include "redraft/testing/tiny_llama.hpp"

using namespace redraft;
using redraft::testing::tiny_llama;
using redraft::testing::tiny_llama_config;

namespace {

tiny_llama_config small_config(std::int32_t vocab = 40) {
  tiny_llama_config c;
  c.vocab_size = vocab;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.head_dim = 8;
  c.intermediate_size = 48;
  c.max_context = 64;
  return c;
}

// Logits of the next token after `seq`, by prefilling the whole sequence (no verify, no commit).
std::vector<float> next_logits(tiny_llama& model, const std::vector<std::int32_t>& seq) {
  const std::int32_t slot = 0, offsets[2] = {0, static_cast<std::int32_t>(seq.size())};
  const model_output out = model.prefill(
      prefill_input{{&slot, 1}, {offsets, 2}, {seq.data(), static_cast<index_t>(seq.size())}});
  return std::vector<float>(out.logits.data(), out.logits.data() + out.logits.extent(1));
}

// Greedy decoding straight from the definition.
std::vector<std::int32_t> greedy_reference(tiny_llama& model, std::vector<std::int32_t> seq,
                                           std::int32_t max_new, std::int32_t eos) {
  std::vector<std::int32_t> out;
  while (static_cast<std::int32_t>(out.size()) < max_new) {
    const auto logits = next_logits(model, seq);
    const auto best =
        static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(best);
    seq.push_back(best);
    if (best == eos) break;
  }
  return out;
}

std::vector<generation_request> make_requests(std::int32_t batch, std::int32_t vocab,
                                              std::uint64_t seed, std::int32_t max_new) {
  std::vector<generation_request> requests;
  for (std::int32_t r = 0; r < batch; ++r) {
    const philox_stream s{seed, static_cast<std::uint32_t>(r), 77};
    generation_request q;
    const std::int32_t len = 1 + static_cast<std::int32_t>(s.bits(0) % 12);
    for (std::int32_t i = 0; i < len; ++i)
      q.prompt.push_back(static_cast<std::int32_t>(s.bits(1 + i) % vocab));
    q.max_new_tokens = max_new + r % 4;
    requests.push_back(q);
  }
  return requests;
}

// The processed sampling distribution of a logits row, in double, from the definition
// (temperature, then top-k keeping ties, then the smallest top-p set, ties kept).
std::vector<double> processed_law(const std::vector<float>& logits, const sampling_params& sp) {
  const std::size_t v = logits.size();
  std::vector<double> z(v);
  for (std::size_t i = 0; i < v; ++i) z[i] = static_cast<double>(logits[i]);
  std::vector<float> sorted(logits);
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  std::vector<bool> keep(v, true);
  if (sp.top_k > 0 && static_cast<std::size_t>(sp.top_k) < v) {
    for (std::size_t i = 0; i < v; ++i)
      keep[i] = logits[i] >= sorted[static_cast<std::size_t>(sp.top_k) - 1];
  }
  const double max = static_cast<double>(sorted[0]);
  std::vector<double> p(v, 0.0);
  double sum = 0.0;
  for (std::size_t i = 0; i < v; ++i) {
    p[i] = keep[i] ? std::exp((z[i] - max) / static_cast<double>(sp.temperature)) : 0.0;
    sum += p[i];
  }
  for (double& x : p) x /= sum;
  if (sp.top_p < 1.0f) {
    std::vector<double> mass_above(v, 0.0);
    for (std::size_t i = 0; i < v; ++i)
      for (std::size_t j = 0; j < v; ++j)
        if (logits[j] > logits[i]) mass_above[i] += p[j];
    double kept = 0.0;
    for (std::size_t i = 0; i < v; ++i) {
      if (mass_above[i] >= static_cast<double>(sp.top_p)) p[i] = 0.0;
      kept += p[i];
    }
    for (double& x : p) x /= kept;
  }
  return p;
}

// Chi-square statistic of counts against expected probabilities, pooling cells expected < 5;
// returns {statistic, degrees of freedom}.
std::pair<double, int> chi_square(const std::vector<std::int64_t>& counts,
                                  const std::vector<double>& law, std::int64_t n) {
  double stat = 0.0, pooled_expected = 0.0, pooled_count = 0.0;
  int cells = 0;
  for (std::size_t i = 0; i < law.size(); ++i) {
    const double e = law[i] * static_cast<double>(n);
    if (e < 5.0) {
      pooled_expected += e;
      pooled_count += static_cast<double>(counts[i]);
      if (law[i] == 0.0) REQUIRE(counts[i] == 0);  // impossible tokens never appear
      continue;
    }
    stat += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
    ++cells;
  }
  if (pooled_expected > 0.0) {
    stat += (pooled_count - pooled_expected) * (pooled_count - pooled_expected) /
            std::max(pooled_expected, 1e-9);
    ++cells;
  }
  return {stat, cells - 1};
}

}  // namespace

TEST_CASE("plain_choose_token: argmax and inverse CDF", "[plain_decoder]") {
  const std::vector<float> row{0.0f, 2.0f, 2.0f, std::log(2.0f)};
  CHECK(plain_choose_token(row.data(), 4, verifier::greedy, {}, 0.0f) ==
        1);  // ties to the lower index
  // p = [1, e^2, e^2, 2] / (3 + 2 e^2): the CDF crosses u * sum in token order.
  const double sum = 3.0 + 2.0 * std::exp(2.0);
  const sampling_params sp;
  CHECK(plain_choose_token(row.data(), 4, verifier::lossless, sp, 0.0f) == 0);
  CHECK(plain_choose_token(row.data(), 4, verifier::lossless, sp, static_cast<float>(0.99 / sum)) ==
        0);
  CHECK(plain_choose_token(row.data(), 4, verifier::lossless, sp, static_cast<float>(1.01 / sum)) ==
        1);
  CHECK(plain_choose_token(row.data(), 4, verifier::lossless, sp,
                           static_cast<float>((1.0 + std::exp(2.0) + 0.01) / sum)) == 2);
  CHECK(plain_choose_token(row.data(), 4, verifier::lossless, sp, 0.9999f) == 3);
  // top-k 1 keeps both tied maxima; u below one half picks the first.
  const sampling_params top1{1.0f, 1, 1.0f};
  CHECK(plain_choose_token(row.data(), 4, verifier::lossless, top1, 0.0f) == 1);
  CHECK(plain_choose_token(row.data(), 4, verifier::lossless, top1, 0.49f) == 1);
  CHECK(plain_choose_token(row.data(), 4, verifier::lossless, top1, 0.51f) == 2);
  const std::vector<float> bad{0.0f, std::nanf("")};
  CHECK_THROWS_WITH(plain_choose_token(bad.data(), 2, verifier::greedy, {}, 0.0f),
                    Catch::Contains("column 1"));
}

TEST_CASE("plain_decoder: greedy output equals re-running the whole sequence every step",
          "[plain_decoder]") {
  const std::int32_t batch = GENERATE(1, 3, 8);
  const std::uint64_t seed = GENERATE(1u, 2u);
  CAPTURE(batch, seed);
  const tiny_llama_config config = small_config();
  tiny_llama model = tiny_llama::random(config, seed, 8);
  tiny_llama reference(config, model.weights(), 1);
  auto requests = make_requests(batch, config.vocab_size, seed, 12);
  // Request 0 stops at an EOS it emits mid-way; the last request (if several) asks for nothing.
  const auto plain0 = greedy_reference(reference, requests[0].prompt, 12, -1);
  requests[0].eos_token = plain0[5];
  if (batch > 1) requests.back().max_new_tokens = 0;
  std::vector<std::pair<std::int32_t, std::int32_t>> streamed;
  const generation_result result = plain_decode(
      model, requests, {}, [&](std::int32_t r, std::int32_t t) { streamed.emplace_back(r, t); });
  std::map<std::int32_t, std::vector<std::int32_t>> by_request;
  for (const auto& [r, t] : streamed) by_request[r].push_back(t);
  for (std::int32_t r = 0; r < batch; ++r) {
    CAPTURE(r);
    const auto& q = requests[static_cast<std::size_t>(r)];
    const auto& tokens = result.tokens[static_cast<std::size_t>(r)];
    CHECK(tokens == greedy_reference(reference, q.prompt, q.max_new_tokens, q.eos_token));
    CHECK(by_request[r] == tokens);
    const auto& st = result.requests[static_cast<std::size_t>(r)];
    CHECK(st.emitted == static_cast<std::int64_t>(tokens.size()));
    CHECK(st.steps == std::max<std::int64_t>(0, st.emitted - 1));
    CHECK(st.drafted == 0);
    if (q.max_new_tokens == 0) {
      CHECK(tokens.empty());
      CHECK(st.stop_reason == "max_new_tokens");
    } else if (tokens.back() == q.eos_token) {
      CHECK(st.stop_reason == "eos");
    } else {
      CHECK(static_cast<std::int32_t>(tokens.size()) == q.max_new_tokens);
      CHECK(st.stop_reason == "max_new_tokens");
    }
    // The slot holds prompt + emitted tokens but the last one, as plain prefill computes them.
    if (!tokens.empty()) {
      std::vector<std::int32_t> seq = q.prompt;
      seq.insert(seq.end(), tokens.begin(), tokens.end() - 1);
      REQUIRE(model.committed_length(r) == static_cast<std::int32_t>(seq.size()));
      next_logits(reference, seq);
      const auto a = model.kv_cache(r), b = reference.kv_cache(0);
      double diff = 0.0;
      for (index_t l = 0; l < a.extent(0); ++l)
        for (index_t kv = 0; kv < 2; ++kv)
          for (index_t h = 0; h < a.extent(2); ++h)
            for (index_t p = 0; p < static_cast<index_t>(seq.size()); ++p)
              for (index_t e = 0; e < a.extent(4); ++e)
                diff = std::max(
                    diff, static_cast<double>(std::abs(a(l, kv, h, p, e) - b(l, kv, h, p, e))));
      CHECK(diff < 1e-5);
    }
  }
  CHECK(plain0[5] == result.tokens[0].back());
  CHECK(result.requests[0].stop_reason == "eos");
  CHECK(static_cast<std::int32_t>(result.steps.size()) ==
        std::max_element(
            result.requests.begin(), result.requests.end(),
            [](const request_stats& x, const request_stats& y) { return x.steps < y.steps; })
            ->steps);
}

TEST_CASE("plain_decoder: sampling is seeded, per request, and follows the processed law",
          "[plain_decoder][sampling]") {
  tiny_llama_config config = small_config(12);
  config.max_context = 16;  // 3000 slots of 8 KB each
  const std::int32_t n = 3000;
  tiny_llama model = tiny_llama::random(config, 5, n);
  tiny_llama reference(config, model.weights(), 1);
  const sampling_params sp =
      GENERATE(sampling_params{1.0f, 0, 1.0f}, sampling_params{0.7f, 4, 1.0f},
               sampling_params{1.3f, 0, 0.8f});
  CAPTURE(sp.temperature, sp.top_k, sp.top_p);
  decode_options options;
  options.rule = verifier::lossless;
  options.sampling = sp;
  options.seed = 1234;
  const std::vector<std::int32_t> prompt{3, 1, 4, 1, 5};
  std::vector<generation_request> requests(static_cast<std::size_t>(n));
  for (auto& q : requests) {
    q.prompt = prompt;
    q.max_new_tokens = 2;
  }
  const generation_result result = plain_decode(model, requests, options);

  // Exact law of the first two tokens: p(t0) p(t1 | t0).
  const std::vector<double> first = processed_law(next_logits(reference, prompt), sp);
  std::vector<double> joint(static_cast<std::size_t>(config.vocab_size * config.vocab_size), 0.0);
  for (std::int32_t t0 = 0; t0 < config.vocab_size; ++t0) {
    if (first[static_cast<std::size_t>(t0)] == 0.0) continue;
    std::vector<std::int32_t> seq = prompt;
    seq.push_back(t0);
    const std::vector<double> second = processed_law(next_logits(reference, seq), sp);
    for (std::int32_t t1 = 0; t1 < config.vocab_size; ++t1) {
      joint[static_cast<std::size_t>(t0 * config.vocab_size + t1)] =
          first[static_cast<std::size_t>(t0)] * second[static_cast<std::size_t>(t1)];
    }
  }
  std::vector<std::int64_t> counts(joint.size(), 0);
  for (const auto& tokens : result.tokens) {
    REQUIRE(tokens.size() == 2);
    ++counts[static_cast<std::size_t>(tokens[0] * config.vocab_size + tokens[1])];
  }
  const auto [stat, df] = chi_square(counts, joint, n);
  CAPTURE(stat, df);
  REQUIRE(df >= 3);
  // NOTE: df + 6 sqrt(2 df) is beyond the 1e-6 tail for these df: a failure is a real mismatch.
  CHECK(stat < df + 6.0 * std::sqrt(2.0 * df));

  // Deterministic in the seed, different with another seed, and keyed by the request index: a
  // change to request 1 does not change request 0's or 2's tokens.
  std::vector<generation_request> few(requests.begin(), requests.begin() + 3);
  for (auto& q : few) q.max_new_tokens = 6;
  const auto again = plain_decode(model, few, options);
  CHECK(plain_decode(model, few, options).tokens == again.tokens);
  few[1].prompt = {7, 7};
  const auto changed = plain_decode(model, few, options);
  CHECK(changed.tokens[0] == again.tokens[0]);
  CHECK(changed.tokens[2] == again.tokens[2]);
  options.seed = 4321;
  std::vector<generation_request> many(requests.begin(), requests.begin() + 40);
  for (auto& q : many) q.max_new_tokens = 6;
  const auto a = plain_decode(model, many, options);
  options.seed = 1234;
  const auto b = plain_decode(model, many, options);
  CHECK(a.tokens != b.tokens);
}

TEST_CASE("plain_decoder: bad input throws before the model is touched",
          "[plain_decoder][errors]") {
  const tiny_llama_config config = small_config();
  tiny_llama model = tiny_llama::random(config, 9, 2);
  generation_request good;
  good.prompt = {1, 2, 3};
  good.max_new_tokens = 4;
  REQUIRE(plain_decode(model, {good}).tokens[0].size() == 4);
  const std::int32_t committed = model.committed_length(0);

  generation_request empty = good;
  empty.prompt.clear();
  CHECK_THROWS_WITH(plain_decode(model, {good, empty}),
                    Catch::Contains("request 1 has an empty prompt"));
  generation_request too_long = good;
  too_long.max_new_tokens = 62;
  CHECK_THROWS_WITH(plain_decode(model, {good, too_long}), Catch::Contains("max_context is 64"));
  generation_request bad_token = good;
  bad_token.prompt[1] = 40;
  CHECK_THROWS_WITH(plain_decode(model, {good, bad_token}), Catch::Contains("prompt[1] = 40"));
  generation_request same_slot = good;
  same_slot.slot = 0;
  CHECK_THROWS_WITH(plain_decode(model, {good, same_slot}), Catch::Contains("slot 0"));
  generation_request unknown_slot = good;
  unknown_slot.slot = 5;
  CHECK_THROWS_WITH(plain_decode(model, {unknown_slot}), Catch::Contains("slot 5"));
  decode_options cold;
  cold.rule = verifier::lossless;
  cold.sampling.temperature = 0.0f;
  CHECK_THROWS_WITH(plain_decode(model, {good}, cold), Catch::Contains("temperature 0"));
  CHECK(model.committed_length(0) == committed);
}

TEMPLATE_TEST_CASE("plain_decoder on the synthetic target: greedy follows the definition",
                   "[plain_decoder]", REDRAFT_TEST_BACKENDS) {
  using target = redraft::testing::basic_synthetic_target<TestType>;
  redraft::testing::synthetic_target_config config;
  config.vocab_size = 20;
  config.num_slots = 8;
  const std::int32_t batch = GENERATE(1, 5);
  CAPTURE(batch);
  target model(TestType{}, config);
  auto requests = make_requests(batch, config.vocab_size, 3, 14);
  plain_decoder<TestType, target> decoder(model.backend(), model);
  const generation_result result = decoder.generate(requests);
  for (std::int32_t r = 0; r < batch; ++r) {
    CAPTURE(r);
    const auto& q = requests[static_cast<std::size_t>(r)];
    // Greedy straight from the model's exact next-token law.
    std::vector<std::int32_t> seq = q.prompt, expected;
    while (static_cast<std::int32_t>(expected.size()) < q.max_new_tokens) {
      const auto p = model.next_distribution(seq);
      expected.push_back(
          static_cast<std::int32_t>(std::max_element(p.begin(), p.end()) - p.begin()));
      seq.push_back(expected.back());
    }
    CHECK(result.tokens[static_cast<std::size_t>(r)] == expected);
    // The slot holds the prompt and every emitted token but the last (never fed back).
    CHECK(model.committed(r).size() == q.prompt.size() + expected.size() - 1);
  }
}
