// The speculative decoding loop against the synthetic target: exactness of greedy decoding with
// drafters at both ends of acceptance, stop conditions in mid-step, statistics, bad input. Every
// test runs on every backend of REDRAFT_TEST_BACKENDS (the model, the drafters and the loop on the
// same backend), and on cuda_backend in the GPU tests (tests/cuda/).
#include <catch2/catch.hpp>

#include "backends.hpp"
#include "redraft/loop/hybrid_drafter.hpp"
#include "redraft/loop/lookup_drafter.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/loop/suffix_drafter.hpp"
#include "redraft/testing/drafters.hpp"
#include "redraft/testing/synthetic_target.hpp"

using namespace redraft;
using redraft::testing::basic_random_drafter;
using redraft::testing::basic_synthetic_target;
using redraft::testing::oracle_drafter;
using redraft::testing::synthetic_target_config;

namespace {

// Plain greedy decoding of the synthetic target, straight from its definition.
template <class Model>
std::vector<std::int32_t> greedy_reference(const Model& model, std::vector<std::int32_t> seq,
                                           std::int32_t max_new, std::int32_t eos) {
  std::vector<std::int32_t> out;
  while (static_cast<std::int32_t>(out.size()) < max_new) {
    const auto p = model.next_distribution(seq);
    const auto best = static_cast<std::int32_t>(std::max_element(p.begin(), p.end()) - p.begin());
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
    const philox_stream s{seed, static_cast<std::uint32_t>(r), 99};
    generation_request q;
    const std::int32_t len = 1 + static_cast<std::int32_t>(s.bits(0) % 9);
    for (std::int32_t i = 0; i < len; ++i)
      q.prompt.push_back(static_cast<std::int32_t>(s.bits(1 + i) % vocab));
    q.max_new_tokens = max_new + r % 3;  // requests stop at different steps
    requests.push_back(q);
  }
  return requests;
}

}  // namespace

TEMPLATE_TEST_CASE("speculative greedy equals plain greedy on the synthetic target", "[loop]",
                   REDRAFT_TEST_BACKENDS) {
  const std::int32_t batch = GENERATE(1, 3, 8);
  const std::int32_t width = GENERATE(1, 4, 16);
  const std::int32_t length = GENERATE(2, 5, 8);
  const bool oracle = GENERATE(false, true);
  CAPTURE(batch, width, length, oracle);
  synthetic_target_config config;
  config.vocab_size = 24;
  config.num_slots = 8;
  const TestType backend{};
  basic_synthetic_target<TestType> model(backend, config), shadow(backend, config);
  auto requests = make_requests(batch, config.vocab_size, 7, 20);
  // A token that greedy decoding of request 0 emits mid-way serves as its EOS.
  const auto plain0 = greedy_reference(model, requests[0].prompt, 20, -1);
  requests[0].eos_token = plain0[9];

  decode_options options;
  options.beam_width = width;
  options.beam_length = length;
  generation_result result;
  if (oracle) {
    oracle_drafter<basic_synthetic_target<TestType>> drafter(shadow, config.num_slots, 3);
    for (std::int32_t r = 0; r < batch; ++r)
      drafter.set_context(r, requests[static_cast<std::size_t>(r)].prompt);
    speculative_decoder<TestType, basic_synthetic_target<TestType>, decltype(drafter)> decoder(
        model.backend(), model, drafter);
    result = decoder.generate(requests, options,
                              [&](std::int32_t r, std::int32_t tok) { drafter.observe(r, tok); });
  } else {
    basic_random_drafter<TestType> drafter(backend, config.vocab_size, 5);
    speculative_decoder<TestType, basic_synthetic_target<TestType>, decltype(drafter)> decoder(
        model.backend(), model, drafter);
    result = decoder.generate(requests, options);
  }
  for (std::int32_t r = 0; r < batch; ++r) {
    CAPTURE(r);
    const auto& q = requests[static_cast<std::size_t>(r)];
    CHECK(result.tokens[static_cast<std::size_t>(r)] ==
          greedy_reference(model, q.prompt, q.max_new_tokens, q.eos_token));
    const auto& st = result.requests[static_cast<std::size_t>(r)];
    CHECK(st.emitted ==
          static_cast<std::int64_t>(result.tokens[static_cast<std::size_t>(r)].size()));
    CHECK(st.accepted <= st.drafted);
    if (oracle && length > 2 && st.steps > 1) CHECK(st.tokens_per_step() > 1.5);
  }
  CHECK(result.requests[0].stop_reason == "eos");
  CHECK(result.tokens[0].size() == 10);
}

namespace {

// Law of the first `n` emitted tokens of plain sampling at temperature 1, by exact enumeration:
// probability of each outcome, outcome index = t0 * V^(n-1) + t1 * V^(n-2) + ...
template <class Model>
std::vector<double> exact_law(const Model& model, const std::vector<std::int32_t>& prompt, int n) {
  const std::int32_t vocab = model.vocab_size();
  std::vector<double> law(1, 1.0);
  std::vector<std::vector<std::int32_t>> prefixes(1);
  for (int step = 0; step < n; ++step) {
    std::vector<double> next_law;
    std::vector<std::vector<std::int32_t>> next_prefixes;
    for (std::size_t i = 0; i < law.size(); ++i) {
      std::vector<std::int32_t> seq = prompt;
      seq.insert(seq.end(), prefixes[i].begin(), prefixes[i].end());
      const auto p = model.next_distribution(seq);
      for (std::int32_t v = 0; v < vocab; ++v) {
        next_law.push_back(law[i] * p[static_cast<std::size_t>(v)]);
        next_prefixes.push_back(prefixes[i]);
        next_prefixes.back().push_back(v);
      }
    }
    law.swap(next_law);
    prefixes.swap(next_prefixes);
  }
  return law;
}

// Pearson chi-square statistic of `counts` against `law`, pooling cells with expected count < 5.
// Returns (statistic, degrees of freedom).
std::pair<double, int> chi_square(const std::vector<std::int64_t>& counts,
                                  const std::vector<double>& law, std::int64_t total) {
  double stat = 0, pooled_expected = 0;
  std::int64_t pooled_observed = 0;
  int cells = 0;
  for (std::size_t i = 0; i < law.size(); ++i) {
    const double e = law[i] * static_cast<double>(total);
    if (e < 5) {
      pooled_expected += e;
      pooled_observed += counts[i];
      continue;
    }
    stat += (static_cast<double>(counts[i]) - e) * (static_cast<double>(counts[i]) - e) / e;
    ++cells;
  }
  if (pooled_expected > 0) {
    stat += (static_cast<double>(pooled_observed) - pooled_expected) *
            (static_cast<double>(pooled_observed) - pooled_expected) / pooled_expected;
    ++cells;
  }
  return {stat, cells - 1};
}

// Upper quantile of chi-square(df) at z standard deviations (Wilson-Hilferty approximation).
double chi_square_quantile(int df, double z) {
  const double k = df, a = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

template <class B, class Drafter>
std::vector<std::int64_t> sample_first_tokens(basic_synthetic_target<B>& model, Drafter& drafter,
                                              const std::vector<std::int32_t>& prompt,
                                              std::int32_t runs, int n,
                                              const decode_options& options) {
  std::vector<generation_request> requests(static_cast<std::size_t>(runs));
  for (auto& q : requests) {
    q.prompt = prompt;
    q.max_new_tokens = n;
  }
  speculative_decoder<B, basic_synthetic_target<B>, Drafter> decoder(model.backend(), model,
                                                                     drafter);
  const auto result = decoder.generate(requests, options);
  const std::int32_t vocab = model.vocab_size();
  std::size_t outcomes = 1;
  for (int i = 0; i < n; ++i) outcomes *= static_cast<std::size_t>(vocab);
  std::vector<std::int64_t> counts(outcomes, 0);
  for (const auto& tokens : result.tokens) {
    REQUIRE(static_cast<int>(tokens.size()) == n);
    std::size_t index = 0;
    for (int i = 0; i < n; ++i)
      index = index * static_cast<std::size_t>(vocab) +
              static_cast<std::size_t>(tokens[static_cast<std::size_t>(i)]);
    ++counts[index];
  }
  return counts;
}

}  // namespace

TEMPLATE_TEST_CASE("speculative lossless sampling follows the target's law on the first tokens",
                   "[loop][statistics]", REDRAFT_TEST_BACKENDS) {
  synthetic_target_config config;
  config.vocab_size = 4;
  config.window = 2;
  config.logit_scale = 1.5f;
  config.num_slots = 6000;
  const TestType backend{};
  basic_synthetic_target<TestType> model(backend, config);
  const std::vector<std::int32_t> prompt = {1, 2, 3};
  const int n =
      3;  // 64 outcomes: the first token from prefill, then at least two verification levels
  const auto law = exact_law(model, prompt, n);
  decode_options options;
  options.rule = verifier::lossless;
  options.beam_width = 3;
  options.beam_length = 4;
  options.seed = 2024;
  // The Monte Carlo threshold: 5.5 standard deviations of the statistic's normal approximation,
  // i.e. a false alarm rate of about 1e-8 per run with a fixed seed (so it never flakes).
  SECTION("random drafter") {
    basic_random_drafter<TestType> drafter(backend, config.vocab_size, 11);
    const auto counts = sample_first_tokens(model, drafter, prompt, 6000, n, options);
    const auto [stat, df] = chi_square(counts, law, 6000);
    CAPTURE(stat, df);
    CHECK(stat < chi_square_quantile(df, 5.5));
  }
  SECTION("drafter that agrees with the target's argmax") {
    basic_synthetic_target<TestType> shadow(backend, config);
    oracle_drafter<basic_synthetic_target<TestType>> drafter(shadow, config.num_slots, 13);
    for (std::int32_t r = 0; r < 6000; ++r) drafter.set_context(r, prompt);
    std::vector<generation_request> requests(6000, generation_request{prompt, n, -1, -1});
    speculative_decoder<TestType, basic_synthetic_target<TestType>, decltype(drafter)> decoder(
        model.backend(), model, drafter);
    const auto result = decoder.generate(
        requests, options, [&](std::int32_t r, std::int32_t t) { drafter.observe(r, t); });
    std::vector<std::int64_t> counts(law.size(), 0);
    for (const auto& tokens : result.tokens)
      ++counts[static_cast<std::size_t>((tokens[0] * 4 + tokens[1]) * 4 + tokens[2])];
    const auto [stat, df] = chi_square(counts, law, 6000);
    CAPTURE(stat, df);
    CHECK(stat < chi_square_quantile(df, 5.5));
  }
  SECTION("the same statistic flags typical acceptance, which is lossy") {
    basic_random_drafter<TestType> drafter(backend, config.vocab_size, 11);
    decode_options typical = options;
    typical.rule = verifier::typical;
    typical.typical.sample_next_token = true;
    typical.typical.epsilon = 0.2f;
    typical.typical.delta = 0.2f;
    const auto counts = sample_first_tokens(model, drafter, prompt, 6000, n, typical);
    const auto [stat, df] = chi_square(counts, law, 6000);
    CAPTURE(stat, df);
    CHECK(stat > chi_square_quantile(df, 5.5));
  }
}

TEMPLATE_TEST_CASE(
    "speculative greedy equals plain greedy on the synthetic target with lookup, suffix and hybrid "
    "drafters",
    "[loop][lookup]", REDRAFT_TEST_BACKENDS) {
  const std::int32_t batch = GENERATE(1, 3, 8);
  const std::int32_t width = GENERATE(1, 4);
  const std::int32_t length = GENERATE(2, 5, 8);
  const int kind = GENERATE(
      0, 1, 2, 3);  // lookup, suffix, hybrid random + lookup, hybrid oracle + suffix (capped)
  CAPTURE(batch, width, length, kind);
  synthetic_target_config config;
  config.vocab_size = 24;
  config.num_slots = 8;
  const TestType backend{};
  basic_synthetic_target<TestType> model(backend, config), shadow(backend, config);
  auto requests = make_requests(batch, config.vocab_size, 7, 30);
  const auto plain0 = greedy_reference(model, requests[0].prompt, 30, -1);
  requests[0].eos_token = plain0[15];
  decode_options options;
  options.beam_width = width;
  options.beam_length = length;
  // kind 2: the model source drafts at most 3 tokens (root included), the lookup runs to L.
  const hybrid_options split{width - width / 2,
                             width / 2,
                             kind == 3 ? 1 + width * (length - 1) / 2 : 0,
                             kind == 3,
                             kind == 2 ? std::min(length, 3) : 0,
                             0};
  generation_result result;
  if (kind == 0) {
    lookup_drafter<TestType> drafter(backend, lookup_options{2, 1, 8});
    speculative_decoder<TestType, basic_synthetic_target<TestType>, decltype(drafter)> decoder(
        model.backend(), model, drafter);
    result = decoder.generate(requests, options);
  } else if (kind == 1) {
    suffix_drafter<TestType> drafter(backend, suffix_options{6, 0.0f});
    speculative_decoder<TestType, basic_synthetic_target<TestType>, decltype(drafter)> decoder(
        model.backend(), model, drafter);
    result = decoder.generate(requests, options);
  } else if (kind == 2) {
    basic_random_drafter<TestType> random(backend, config.vocab_size, 5);
    lookup_drafter<TestType> lookup(backend);
    hybrid_drafter<TestType, decltype(random), decltype(lookup)> drafter(backend, random, lookup,
                                                                         split);
    speculative_decoder<TestType, basic_synthetic_target<TestType>, decltype(drafter)> decoder(
        model.backend(), model, drafter);
    result = decoder.generate(requests, options);
  } else {
    oracle_drafter<basic_synthetic_target<TestType>> oracle(shadow, config.num_slots, 3);
    for (std::int32_t r = 0; r < batch; ++r)
      oracle.set_context(r, requests[static_cast<std::size_t>(r)].prompt);
    suffix_drafter<TestType> suffix(backend, suffix_options{6, 0.0f});
    hybrid_drafter<TestType, decltype(oracle), decltype(suffix)> drafter(backend, oracle, suffix,
                                                                         split);
    speculative_decoder<TestType, basic_synthetic_target<TestType>, decltype(drafter)> decoder(
        model.backend(), model, drafter);
    result = decoder.generate(requests, options,
                              [&](std::int32_t r, std::int32_t tok) { oracle.observe(r, tok); });
    for (const auto& st : result.steps) CHECK(st.nodes <= st.requests * split.max_nodes);
  }
  std::int64_t accepted = 0;
  for (std::int32_t r = 0; r < batch; ++r) {
    CAPTURE(r);
    const auto& q = requests[static_cast<std::size_t>(r)];
    CHECK(result.tokens[static_cast<std::size_t>(r)] ==
          greedy_reference(model, q.prompt, q.max_new_tokens, q.eos_token));
    accepted += result.requests[static_cast<std::size_t>(r)].accepted;
  }
  CHECK(result.requests[0].stop_reason == "eos");
  // Over 30+ tokens the synthetic target's greedy text repeats itself, so lookups hit (request 0
  // alone stops at EOS too early for that); the oracle's beams are always accepted.
  if (length > 2 && (kind == 3 || (batch > 1 && kind != 2))) CHECK(accepted > 0);
}

TEMPLATE_TEST_CASE(
    "speculative lossless sampling with lookup and hybrid drafters follows the target's law",
    "[loop][statistics][lookup]", REDRAFT_TEST_BACKENDS) {
  synthetic_target_config config;
  config.vocab_size = 4;
  config.window = 2;
  config.logit_scale = 1.5f;
  config.num_slots = 6000;
  const TestType backend{};
  basic_synthetic_target<TestType> model(backend, config);
  // A prompt that repeats, so lookups propose candidates from the first step on.
  const std::vector<std::int32_t> prompt = {1, 2, 3, 1, 2, 0, 1, 2};
  const int n = 3;
  const auto law = exact_law(model, prompt, n);
  decode_options options;
  options.rule = verifier::lossless;
  options.beam_width = 3;
  options.beam_length = 4;
  options.seed = 77;
  SECTION("lookup drafter") {
    lookup_drafter<TestType> drafter(backend);
    const auto counts = sample_first_tokens(model, drafter, prompt, 6000, n, options);
    const auto [stat, df] = chi_square(counts, law, 6000);
    CAPTURE(stat, df);
    CHECK(stat < chi_square_quantile(df, 5.5));
  }
  SECTION("hybrid with the acceptance budget: oracle beams + lookup candidates") {
    basic_synthetic_target<TestType> shadow(backend, config);
    oracle_drafter<basic_synthetic_target<TestType>> oracle(shadow, config.num_slots, 13);
    for (std::int32_t r = 0; r < 6000; ++r) oracle.set_context(r, prompt);
    lookup_drafter<TestType> lookup(backend);
    hybrid_options budget{2, 1, 0, false, 0, 0};
    budget.first_min_acceptance = 0.5f;
    budget.second_min_acceptance = 0.5f;
    hybrid_drafter<TestType, decltype(oracle), decltype(lookup)> drafter(backend, oracle, lookup,
                                                                         budget);
    std::vector<generation_request> requests(6000, generation_request{prompt, n + 2, -1, -1});
    speculative_decoder<TestType, basic_synthetic_target<TestType>, decltype(drafter)> decoder(
        model.backend(), model, drafter);
    const auto result = decoder.generate(
        requests, options, [&](std::int32_t r, std::int32_t t) { oracle.observe(r, t); });
    std::vector<std::int64_t> counts(law.size(), 0);
    for (const auto& tokens : result.tokens)
      ++counts[static_cast<std::size_t>((tokens[0] * 4 + tokens[1]) * 4 + tokens[2])];
    const auto [stat, df] = chi_square(counts, law, 6000);
    CAPTURE(stat, df);
    CHECK(stat < chi_square_quantile(df, 5.5));
  }
  SECTION("hybrid: random beams + suffix candidates, suffix first, node cap 6") {
    basic_random_drafter<TestType> random(backend, config.vocab_size, 11);
    suffix_drafter<TestType> suffix(backend, suffix_options{6, 0.0f});
    using hybrid = hybrid_drafter<TestType, decltype(random), decltype(suffix)>;
    hybrid drafter(backend, random, suffix, hybrid_options{1, 2, 6, true, 0, 0});
    const auto counts = sample_first_tokens(model, drafter, prompt, 6000, n, options);
    const auto [stat, df] = chi_square(counts, law, 6000);
    CAPTURE(stat, df);
    CHECK(stat < chi_square_quantile(df, 5.5));
  }
}

namespace {

// A drafter whose beams do not start at the root it was given.
template <class B>
struct wrong_root_drafter {
  B backend;
  basic_random_drafter<B> inner;
  draft_output<B> draft(const draft_input& in) {
    draft_output<B> out = inner.draft(in);
    std::vector<std::int32_t> beams(static_cast<std::size_t>(out.beams.size()));  // [R, W, L]
    backend.copy_to_host(out.beams.data(), out.beams.size(), beams.data());
    beams[0] = (beams[0] + 1) % 24;  // request 0, beam 0, position 0
    for (index_t w = 1; w < in.beam_width; ++w)
      beams[static_cast<std::size_t>(w * in.beam_length)] = beams[0];
    backend.copy_from_host(beams.data(), out.beams.size(), out.beams.data());
    return out;
  }
};

}  // namespace

TEMPLATE_TEST_CASE("the decoder reports a drafter whose beams do not start at the root",
                   "[loop][errors]", REDRAFT_TEST_BACKENDS) {
  synthetic_target_config config;
  config.vocab_size = 24;
  const TestType backend{};
  basic_synthetic_target<TestType> model(backend, config);
  wrong_root_drafter<TestType> drafter{
      backend, basic_random_drafter<TestType>(backend, config.vocab_size, 1)};
  speculative_decoder<TestType, basic_synthetic_target<TestType>, wrong_root_drafter<TestType>>
      decoder(model.backend(), model, drafter);
  CHECK_THROWS_WITH(decoder.generate({generation_request{{1, 2}, 8, -1, 0}}, decode_options{}),
                    Catch::Contains("the drafter's beams for request 0 start with token"));
}
