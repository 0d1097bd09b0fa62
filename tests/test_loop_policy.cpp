// Speculation policies in the decoding loop: exactness whatever shape a policy picks (greedy
// output = plain greedy output; lossless sampling follows the target's law), and the adaptive
// policy's choices against a simulated clock: a synthetic target whose verify cost is a + b n and
// a drafter of known acceptance per depth, so the best shape is known exactly.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "redraft/draft/draft_init.hpp"
#include "redraft/loop/adaptive_policy.hpp"
#include "redraft/loop/draft_head_drafter.hpp"
#include "redraft/loop/hybrid_drafter.hpp"
#include "redraft/loop/lookup_drafter.hpp"
#include "redraft/loop/plain_decoder.hpp"
#include "redraft/loop/policy_trace.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/testing/drafters.hpp"
#include "redraft/testing/simulated_cost.hpp"
#include "redraft/testing/synthetic_target.hpp"
#include "redraft/testing/tiny_llama.hpp"

using namespace redraft;
using redraft::testing::costed_target;
using redraft::testing::linear_cost;
using redraft::testing::profile_drafter;
using redraft::testing::simulated_clock;
using redraft::testing::synthetic_target;
using redraft::testing::synthetic_target_config;

namespace {

std::vector<std::int32_t> greedy_reference(const synthetic_target& model,
                                           std::vector<std::int32_t> seq, std::int32_t max_new,
                                           std::int32_t eos) {
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
                                              std::int32_t max_new) {
  std::vector<generation_request> requests;
  for (std::int32_t r = 0; r < batch; ++r) {
    const philox_stream s{31, static_cast<std::uint32_t>(r), 5};
    generation_request q;
    const std::int32_t len = 1 + static_cast<std::int32_t>(s.bits(0) % 7);
    for (std::int32_t i = 0; i < len; ++i)
      q.prompt.push_back(static_cast<std::int32_t>(s.bits(1 + i) % vocab));
    q.max_new_tokens = max_new + r % 3;
    requests.push_back(q);
  }
  return requests;
}

// A policy that picks a pseudo-random shape every step, plain steps included, from its step
// number and everything the previous reports said (so its choices depend on earlier random
// draws): the decoder must stay exact whatever it does.
class erratic_policy {
 public:
  explicit erratic_policy(std::uint64_t seed) : seed_(seed) {}
  std::int32_t start(const decode_options&) const { return 6; }
  bool needs_reports() const { return true; }
  draft_shape choose(const step_context& ctx) {
    // Step 1 wide, step 2 plain (so even short runs see both), then random.
    const philox_stream s{seed_, ctx.step, history_};
    if (ctx.step == 2 || (ctx.step > 2 && s.bits(0) % 3 == 0)) return draft_shape::plain();
    return {ctx.step == 1 ? 3 : 1 + static_cast<std::int32_t>(s.bits(1) % 5),
            2 + static_cast<std::int32_t>(s.bits(2) % 5)};
  }
  void observe(const step_report& r) {
    history_ = history_ * 31u + static_cast<std::uint32_t>(r.emitted);
    for (index_t i = 0; i < r.accepted_len.extent(0); ++i)
      history_ = history_ * 7u + static_cast<std::uint32_t>(r.accepted_len[i]);
    shapes.push_back(r.shape);
    // The report's detail agrees with itself: ranks ascend along the path and stay below W.
    for (index_t i = 0; i < r.accepted_len.extent(0); ++i) {
      for (std::int32_t d = 0; d < r.shape.beam_length - 1; ++d) {
        const std::int32_t rank = r.accepted_rank(i, d);
        if (d < r.accepted_len[i]) {
          consistent &= rank >= 0 && rank < r.shape.beam_width &&
                        (d == 0 || rank >= r.accepted_rank(i, d - 1));
        } else {
          consistent &= rank == -1;
        }
      }
      consistent &= r.shared_prefix(i, 0) == 0;
    }
  }
  std::vector<draft_shape> shapes;
  bool consistent = true;

 private:
  std::uint64_t seed_;
  std::uint32_t history_ = 0;
};

static_assert(SpeculationPolicy<erratic_policy>);

// Not a policy: choose() has the wrong return type.
struct not_a_policy {
  std::int32_t start(const decode_options&) const { return 2; }
  bool needs_reports() const { return false; }
  std::int32_t choose(const step_context&) { return 2; }
  void observe(const step_report&) {}
};
static_assert(!SpeculationPolicy<not_a_policy>);

}  // namespace

TEST_CASE("fixed_policy is the default and uses decode_options' shape every step",
          "[loop][policy]") {
  synthetic_target_config config;
  config.vocab_size = 24;
  synthetic_target model(config);
  redraft::testing::random_drafter drafter(config.vocab_size, 5);
  speculative_decoder<cpu_backend, synthetic_target, decltype(drafter)> decoder(cpu_backend{},
                                                                                model, drafter);
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(decoder.policy())>, fixed_policy>);
  decode_options options;
  options.beam_width = 3;
  options.beam_length = 4;
  const auto requests = make_requests(3, config.vocab_size, 12);
  const auto result = decoder.generate(requests, options);
  for (const auto& st : result.steps) {
    CHECK(st.beam_width == 3);
    CHECK(st.beam_length == 4);
  }
  for (std::size_t r = 0; r < requests.size(); ++r) {
    CHECK(result.tokens[r] ==
          greedy_reference(model, requests[r].prompt, requests[r].max_new_tokens, -1));
    CHECK(result.requests[r].drafted == 3 * result.requests[r].steps);
  }
}

TEST_CASE("phase timing reads the injected clock, and is skipped when nobody needs it",
          "[loop][policy]") {
  synthetic_target_config config;
  config.vocab_size = 24;
  synthetic_target model(config);
  simulated_clock clock;
  costed_target<synthetic_target> target(model, clock, linear_cost{2.0, 0.5});
  redraft::testing::random_drafter drafter(config.vocab_size, 5);
  speculative_decoder<cpu_backend, costed_target<synthetic_target>, decltype(drafter), fixed_policy,
                      simulated_clock>
      decoder(cpu_backend{}, target, drafter, fixed_policy{}, clock);
  const auto requests = make_requests(2, config.vocab_size, 10);
  decode_options options;
  options.beam_width = 2;
  options.beam_length = 3;
  const auto timed = decoder.generate(requests, options);
  double verify_total = 0;
  for (const auto& st : timed.steps) {
    CHECK(st.target_s == Approx(2.0 + 0.5 * st.nodes));  // the simulated cost, exactly
    CHECK(st.draft_s == 0.0);  // the random drafter costs no simulated time
    verify_total += st.target_s;
  }
  CHECK(timed.total_s == Approx(verify_total + timed.prefill_s));
  options.phase_timing = false;
  const auto untimed = decoder.generate(requests, options);
  CHECK(untimed.tokens == timed.tokens);
  for (const auto& st : untimed.steps) CHECK(st.total_s() == 0.0);
  CHECK(untimed.total_s > 0.0);  // the run's totals are still timed
}

TEST_CASE("greedy output equals plain greedy whatever shapes the policy picks", "[loop][policy]") {
  const std::int32_t batch = GENERATE(1, 4, 7);
  const bool oracle = GENERATE(false, true);
  CAPTURE(batch, oracle);
  synthetic_target_config config;
  config.vocab_size = 24;
  synthetic_target model(config), shadow(config);
  auto requests = make_requests(batch, config.vocab_size, 30);
  const auto plain0 = greedy_reference(model, requests[0].prompt, 30, -1);
  requests[0].eos_token = plain0[13];
  decode_options options;
  erratic_policy policy(static_cast<std::uint64_t>(batch) * 2 + (oracle ? 1 : 0));
  generation_result result;
  std::vector<draft_shape> shapes;
  if (oracle) {
    redraft::testing::oracle_drafter<synthetic_target> drafter(shadow, config.num_slots, 3);
    for (std::int32_t r = 0; r < batch; ++r)
      drafter.set_context(r, requests[static_cast<std::size_t>(r)].prompt);
    speculative_decoder<cpu_backend, synthetic_target, decltype(drafter), erratic_policy> decoder(
        cpu_backend{}, model, drafter, policy);
    result = decoder.generate(requests, options,
                              [&](std::int32_t r, std::int32_t tok) { drafter.observe(r, tok); });
    shapes = decoder.policy().shapes;
    CHECK(decoder.policy().consistent);
  } else {
    redraft::testing::random_drafter drafter(config.vocab_size, 5);
    speculative_decoder<cpu_backend, synthetic_target, decltype(drafter), erratic_policy> decoder(
        cpu_backend{}, model, drafter, policy);
    result = decoder.generate(requests, options);
    shapes = decoder.policy().shapes;
    CHECK(decoder.policy().consistent);
  }
  REQUIRE(shapes.size() == result.steps.size());
  std::int32_t plain_steps = 0;
  for (std::size_t s = 0; s < shapes.size(); ++s) {
    CHECK(result.steps[s].beam_width == shapes[s].beam_width);
    CHECK(result.steps[s].beam_length == shapes[s].beam_length);
    if (shapes[s].is_plain()) {
      ++plain_steps;
      CHECK(result.steps[s].nodes == result.steps[s].requests);
      CHECK(result.steps[s].draft_s == 0.0);
    }
  }
  CHECK(plain_steps > 0);
  for (std::int32_t r = 0; r < batch; ++r) {
    CAPTURE(r);
    const auto& q = requests[static_cast<std::size_t>(r)];
    CHECK(result.tokens[static_cast<std::size_t>(r)] ==
          greedy_reference(model, q.prompt, q.max_new_tokens, q.eos_token));
    const auto& st = result.requests[static_cast<std::size_t>(r)];
    CHECK(st.accepted <= st.drafted);
    CHECK(st.accepted_at_depth.size() == 5);
  }
  CHECK(result.requests[0].stop_reason == "eos");
}

TEST_CASE("the decoder rejects a shape the policy may not pick", "[loop][policy][errors]") {
  struct bad_policy {
    draft_shape shape;
    std::int32_t start(const decode_options&) const { return 4; }
    bool needs_reports() const { return false; }
    draft_shape choose(const step_context&) const { return shape; }
    void observe(const step_report&) {}
  };
  synthetic_target_config config;
  config.vocab_size = 24;
  synthetic_target model(config);
  redraft::testing::random_drafter drafter(config.vocab_size, 5);
  const auto run = [&](draft_shape shape) {
    speculative_decoder<cpu_backend, synthetic_target, decltype(drafter), bad_policy> decoder(
        cpu_backend{}, model, drafter, bad_policy{shape});
    return decoder.generate({generation_request{{1, 2}, 8, -1, 0}}, decode_options{});
  };
  CHECK_THROWS_WITH(run({2, 5}), Catch::Contains("chose beam_width 2, beam_length 5 for step 1") &&
                                     Catch::Contains("1 <= L <= 4"));
  CHECK_THROWS_WITH(run({3, 1}), Catch::Contains("beam_width 3, beam_length 1"));
  CHECK_THROWS_WITH(run({0, 3}), Catch::Contains("beam_width 0"));
  CHECK_NOTHROW(run({1, 1}));
  CHECK_THROWS_WITH(adaptive_policy(adaptive_policy_config{{1, 4, 2}, {2, 3}}),
                    Catch::Contains("widths must be ascending and >= 1 (widths[2] = 2)"));
  CHECK_THROWS_WITH(adaptive_policy(adaptive_policy_config{{1}, {1, 3}}),
                    Catch::Contains("lengths must be ascending and >= 2 (lengths[0] = 1)"));
  adaptive_policy_config decay;
  decay.decay = 0.0;
  CHECK_THROWS_WITH(adaptive_policy(decay), Catch::Contains("decay 0 must be in (0, 1]"));
}

TEST_CASE("the adaptive policy keeps greedy exact on the tiny Llama with a draft head",
          "[loop][policy][e2e]") {
  redraft::testing::tiny_llama_config c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.num_layers = 1;
  c.num_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 64;
  c.max_context = 128;
  const auto target = redraft::testing::tiny_llama::random(c, 9, 4);
  auto plain_target = target;
  draft_config d;
  d.vocab_size = c.vocab_size;
  d.hidden_size = c.hidden_size;
  d.exit_dim = 2 * c.hidden_size;
  d.num_draft_layers = 1;
  draft_head<cpu_backend> head(cpu_backend{}, d);
  init_draft_head(head, 4);
  auto spec_target = target;
  draft_head_drafter<cpu_backend> drafter(head, spec_target.embedding());
  adaptive_policy_config pc;
  pc.widths = {1, 2, 4};
  speculative_decoder<cpu_backend, redraft::testing::tiny_llama, decltype(drafter), adaptive_policy>
      decoder(cpu_backend{}, spec_target, drafter, adaptive_policy(pc));
  std::vector<generation_request> requests;
  for (std::int32_t r = 0; r < 4; ++r)
    requests.push_back(generation_request{{1 + r, 7, 3 * r + 2}, 40 - 5 * r, -1, r});
  const auto got = decoder.generate(requests, decode_options{});
  const auto want = plain_decode(plain_target, requests);
  CHECK(got.tokens == want.tokens);
  CHECK(got.steps.front().beam_length == 1);  // the first step measures a plain step
  CHECK(got.steps[1].beam_length == 6);       // the second the longest, narrowest shape
}

namespace {

// Law of the first `n` emitted tokens of plain sampling at temperature 1, by exact enumeration.
std::vector<double> exact_law(const synthetic_target& model,
                              const std::vector<std::int32_t>& prompt, int n) {
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

// Pearson chi-square of `counts` against `law`, pooling cells with expected count < 5:
// (statistic, degrees of freedom).
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
    const double diff = static_cast<double>(pooled_observed) - pooled_expected;
    stat += diff * diff / pooled_expected;
    ++cells;
  }
  return {stat, cells - 1};
}

// Upper quantile of chi-square(df) at z standard deviations (Wilson-Hilferty).
double chi_square_quantile(int df, double z) {
  const double k = df, a = 2.0 / (9.0 * k);
  return k * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

template <class Decoder>
std::vector<std::int64_t> first_token_counts(Decoder& decoder,
                                             const std::vector<std::int32_t>& prompt,
                                             std::int32_t runs, int n, std::int32_t vocab,
                                             const decode_options& options) {
  std::vector<generation_request> requests(static_cast<std::size_t>(runs),
                                           generation_request{prompt, n, -1, -1});
  const auto result = decoder.generate(requests, options);
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

// The synthetic target of the chi-square tests: V = 4, so the first 4 tokens have 256 outcomes;
// one slot per run.
synthetic_target_config statistics_config() {
  synthetic_target_config config;
  config.vocab_size = 4;
  config.window = 2;
  config.logit_scale = 1.5f;
  config.num_slots = 6000;
  return config;
}

}  // namespace

TEST_CASE("lossless sampling follows the target's law whatever shapes the policy picks",
          "[loop][policy][statistics]") {
  const synthetic_target_config config = statistics_config();
  synthetic_target model(config);
  const std::vector<std::int32_t> prompt = {1, 2, 3};
  const int n = 4;  // 256 outcomes: the prefill's token and at least one step after a plain step
  const auto law = exact_law(model, prompt, n);
  decode_options options;
  options.rule = verifier::lossless;
  options.seed = 77;
  const std::int32_t runs = 6000;
  // 5.5 standard deviations: a false alarm rate of about 1e-8 with a fixed seed.
  SECTION("a policy whose shapes depend on earlier steps' draws, plain steps included") {
    redraft::testing::random_drafter drafter(config.vocab_size, 11);
    speculative_decoder<cpu_backend, synthetic_target, decltype(drafter), erratic_policy> decoder(
        cpu_backend{}, model, drafter, erratic_policy(5));
    const auto counts = first_token_counts(decoder, prompt, runs, n, config.vocab_size, options);
    bool plain = false, wide = false;
    for (const auto& s : decoder.policy().shapes) {
      plain |= s.is_plain();
      wide |= s.beam_width > 1;
    }
    CHECK((plain && wide));
    const auto [stat, df] = chi_square(counts, law, runs);
    CAPTURE(stat, df);
    CHECK(stat < chi_square_quantile(df, 5.5));
  }
  SECTION("the adaptive policy on a simulated clock") {
    simulated_clock clock;
    costed_target<synthetic_target> target(model, clock, linear_cost{1e-3, 1e-6});
    profile_drafter drafter(model, {0.9, 0.9, 0.9, 0.9, 0.9}, 3, clock, 1e-5, 1e-8);
    adaptive_policy_config pc;
    pc.widths = {1, 2, 4};
    speculative_decoder<cpu_backend, costed_target<synthetic_target>, profile_drafter,
                        adaptive_policy, simulated_clock>
        decoder(cpu_backend{}, target, drafter, adaptive_policy(pc), clock);
    std::vector<generation_request> requests(static_cast<std::size_t>(runs),
                                             generation_request{prompt, n, -1, -1});
    const auto result = decoder.generate(requests, options);
    std::set<std::pair<std::int32_t, std::int32_t>> shapes;
    for (const auto& st : result.steps) shapes.insert({st.beam_width, st.beam_length});
    CHECK(shapes.size() >= 2);
    std::vector<std::int64_t> counts(law.size(), 0);
    for (const auto& tokens : result.tokens) {
      std::size_t index = 0;
      for (int i = 0; i < n; ++i)
        index = index * 4 + static_cast<std::size_t>(tokens[static_cast<std::size_t>(i)]);
      ++counts[index];
    }
    const auto [stat, df] = chi_square(counts, law, runs);
    CAPTURE(stat, df);
    CHECK(stat < chi_square_quantile(df, 5.5));
  }
}

// --- the adaptive policy's choices on a simulated clock ---

namespace {

struct scenario {
  std::vector<double> alpha;    // the drafter's acceptance profile
  linear_cost verify;           // a + b n
  double c0 = 0.02, c1 = 0.01;  // draft cost (L - 1)(c0 + c1 W A)
};

// One request's accepted length over `drafted` drafted tokens (beam 0) under the profile alpha
// (P(accepted >= d | accepted >= d - 1) = alpha[d - 1]), from the stream's draws 0, 1, ...
std::int32_t draw_accepted(const std::vector<double>& alpha, std::int32_t drafted,
                           const philox_stream& u) {
  std::int32_t accepted = 0;
  while (accepted < drafted && u.uniform(static_cast<std::uint64_t>(accepted)) <
                                   alpha[static_cast<std::size_t>(accepted)])
    ++accepted;
  return accepted;
}

// The exact expected tokens per second of every candidate of `config` for A requests.
std::map<std::pair<std::int32_t, std::int32_t>, double> true_rates(
    const scenario& s, const adaptive_policy_config& config, std::int32_t requests) {
  std::map<std::pair<std::int32_t, std::int32_t>, double> out;
  out[{1, 1}] = requests / s.verify(requests);
  for (const std::int32_t w : config.widths) {
    for (const std::int32_t l : config.lengths) {
      double tokens = 1;
      for (const double q : redraft::testing::profile_acceptance(s.alpha, w, l - 1)) tokens += q;
      const double nodes = redraft::testing::profile_expected_nodes(s.alpha, w, l);
      const double time = s.verify(requests * nodes) + (l - 1) * (s.c0 + s.c1 * w * requests);
      out[{w, l}] = requests * tokens / time;
    }
  }
  return out;
}

std::pair<std::int32_t, std::int32_t> best_of(
    const std::map<std::pair<std::int32_t, std::int32_t>, double>& rates, double* margin) {
  auto best = rates.begin();
  for (auto it = rates.begin(); it != rates.end(); ++it)
    if (it->second > best->second) best = it;
  double second = 0;
  for (auto it = rates.begin(); it != rates.end(); ++it)
    if (it != best) second = std::max(second, it->second);
  *margin = best->second / second;
  return best->first;
}

// A synthetic target (V = 32) on a simulated clock with the scenario's verify cost, and a
// profile drafter with its acceptance and draft cost; decoder() makes an adaptive decoder on them.
struct simulated_setup {
  using decoder_type = speculative_decoder<cpu_backend, costed_target<synthetic_target>,
                                           profile_drafter, adaptive_policy, simulated_clock>;
  static synthetic_target_config target_config(std::int32_t slots) {
    synthetic_target_config config;
    config.vocab_size = 32;
    config.num_slots = slots;
    return config;
  }
  // seed: the profile drafter's acceptance draws (17 unless a test runs several).
  simulated_setup(const scenario& s, std::int32_t slots, std::uint64_t seed = 17)
      : model(target_config(slots)),
        target(model, clock, s.verify),
        drafter(model, s.alpha, seed, clock, s.c0, s.c1) {}
  simulated_setup(const simulated_setup&) = delete;
  decoder_type decoder(adaptive_policy policy) {
    return decoder_type(cpu_backend{}, target, drafter, std::move(policy), clock);
  }
  synthetic_target model;
  simulated_clock clock;
  costed_target<synthetic_target> target;
  profile_drafter drafter;
};

// Runs `requests` requests of max_new tokens; every tokens_per_phase emitted tokens the next
// phase's acceptance profile and costs take over. Returns the per-step shapes.
struct simulated_run {
  std::vector<step_stats> steps;
  std::vector<std::int64_t> emitted_before;  // tokens emitted before each step
  bool exact = true;
};

simulated_run run_simulated(const std::vector<scenario>& phases, std::int64_t tokens_per_phase,
                            const adaptive_policy_config& pc, std::int32_t batch,
                            std::int32_t max_new, std::uint64_t seed = 17) {
  simulated_setup bench(phases[0], batch, seed);
  synthetic_target& model = bench.model;
  costed_target<synthetic_target>& target = bench.target;
  profile_drafter& drafter = bench.drafter;
  auto decoder = bench.decoder(adaptive_policy(pc));
  const auto requests = make_requests(batch, model.vocab_size(), max_new);
  std::int64_t emitted = 0;
  std::size_t phase = 0;
  simulated_run run;
  const auto result = decoder.generate(requests, decode_options{}, [&](std::int32_t, std::int32_t) {
    ++emitted;
    if (phase + 1 < phases.size() &&
        emitted >= static_cast<std::int64_t>(phase + 1) * tokens_per_phase) {
      ++phase;
      drafter.set_profile(phases[phase].alpha);
      drafter.set_cost(phases[phase].c0, phases[phase].c1);
      target.set_cost(phases[phase].verify);
    }
  });
  std::int64_t before = batch;  // the prefill's tokens
  for (const auto& st : result.steps) {
    run.emitted_before.push_back(before);
    before += st.emitted;
  }
  run.steps = result.steps;
  for (std::size_t r = 0; r < requests.size(); ++r)
    run.exact &= result.tokens[r] ==
                 greedy_reference(model, requests[r].prompt, requests[r].max_new_tokens, -1);
  return run;
}

// Over the steps whose emitted-before count lies in [from, to) with all `batch` requests
// running: the most chosen shape, its share, and the mean true rate of the chosen shapes
// relative to the best.
struct window_summary {
  std::pair<std::int32_t, std::int32_t> modal;
  double share = 0, efficiency = 0;
  std::int32_t steps = 0;
};

window_summary summarize(const simulated_run& run, std::int64_t from, std::int64_t to,
                         const std::map<std::pair<std::int32_t, std::int32_t>, double>& rates,
                         std::int32_t batch) {
  std::map<std::pair<std::int32_t, std::int32_t>, std::int32_t> count;
  double best = 0;
  for (const auto& [shape, rate] : rates) best = std::max(best, rate);
  window_summary w;
  double sum = 0;
  for (std::size_t s = 0; s < run.steps.size(); ++s) {
    if (run.emitted_before[s] < from || run.emitted_before[s] >= to ||
        run.steps[s].requests != batch)
      continue;
    const std::pair<std::int32_t, std::int32_t> shape{run.steps[s].beam_width,
                                                      run.steps[s].beam_length};
    ++count[shape];
    sum += rates.at(shape) / best;
    ++w.steps;
  }
  std::int32_t most = 0;
  for (const auto& [shape, c] : count)
    if (c > most) {
      most = c;
      w.modal = shape;
    }
  w.share = w.steps ? static_cast<double>(most) / w.steps : 0.0;
  w.efficiency = w.steps ? sum / w.steps : 0.0;
  return w;
}

adaptive_policy_config test_config() {
  adaptive_policy_config pc;
  pc.widths = {1, 2, 4, 8};
  pc.lengths = {2, 3, 4, 5, 6};
  return pc;
}

}  // namespace

TEST_CASE("the adaptive policy measures the verify cost a + b n and extrapolates it",
          "[loop][policy]") {
  const scenario s{{0.6, 0.95, 0.95, 0.2, 0.2}, {1.0, 0.1}};
  simulated_setup bench(s, 4);
  auto decoder = bench.decoder(adaptive_policy(test_config()));
  const auto result = decoder.generate(make_requests(4, 32, 60), decode_options{});
  const adaptive_policy& p = decoder.policy();
  for (const auto& st : result.steps) {
    CAPTURE(st.nodes);
    CHECK(st.target_s == Approx(s.verify(st.nodes)).epsilon(1e-9));
    CHECK(p.verify_cost(st.nodes) == Approx(s.verify(st.nodes)).epsilon(1e-9));
    if (st.beam_length > 1) {
      CHECK(
          st.draft_s ==
          Approx((st.beam_length - 1) * (s.c0 + s.c1 * st.beam_width * st.requests)).epsilon(1e-9));
    }
  }
  // A line extrapolates exactly; the draft model recovers c0 and c1 once W A has varied.
  CHECK(p.verify_cost(1000) == Approx(s.verify(1000)).epsilon(1e-6));
  CHECK(p.draft_cost({8, 6}, 4) == Approx(5 * (s.c0 + s.c1 * 8 * 4)).epsilon(1e-6));
  CHECK(p.elapsed_s() > 0);
  // Probes lose at most the budget, overrun by at most the last probe.
  double longest = 0;
  for (const auto& st : result.steps) longest = std::max(longest, st.total_s());
  CHECK(p.probe_loss_s() <= 0.03 * p.elapsed_s() + longest);
}

TEST_CASE("the adaptive policy picks the shape with the most expected tokens per second",
          "[loop][policy]") {
  const std::int32_t batch = GENERATE(1, 4);
  CAPTURE(batch);
  const scenario s{{0.6, 0.95, 0.95, 0.2, 0.2}, {1.0, 0.1}};
  const adaptive_policy_config pc = test_config();
  const auto rates = true_rates(s, pc, batch);
  double margin = 0;
  const auto optimum = best_of(rates, &margin);
  CAPTURE(optimum.first, optimum.second, margin);
  REQUIRE((optimum.second > 2 && optimum.second < 6));  // neither extreme
  if (batch == 1) REQUIRE(optimum.first > 1);
  REQUIRE(margin > 1.03);
  const std::int32_t max_new = batch == 1 ? 900 : 300;
  // Ten runs with different acceptance draws: one run's choices hang on a few lucky or unlucky
  // steps, so a check on one seed passes or fails by chance when the policy changes a little.
  std::int32_t modal_optimum = 0;
  double share = 0, efficiency = 0;
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    CAPTURE(seed);
    const simulated_run run = run_simulated({s}, 1 << 30, pc, batch, max_new, seed);
    CHECK(run.exact);
    const window_summary w =
        summarize(run, batch * max_new / 5, batch * max_new * 9 / 10, rates, batch);
    CAPTURE(w.modal.first, w.modal.second, w.share, w.efficiency, w.steps);
    CHECK(w.steps > 30);
    CHECK(w.efficiency > 0.94);
    modal_optimum += w.modal == optimum;
    share += w.share / 10;
    efficiency += w.efficiency / 10;
  }
  // Forty runs read 97.3% at batch 1 (lowest 94.2%) and 96.7% at batch 4 (lowest 94.2%).
  CHECK(efficiency > 0.96);
  // At batch 4, 2 x 4 is 4% behind the optimum 1 x 4 and is the modal shape of a run now and then.
  CAPTURE(modal_optimum, share);
  CHECK(modal_optimum >= 8);
  CHECK(share > 0.6);
}

TEST_CASE("the adaptive policy falls back to plain steps when the tree costs too much",
          "[loop][policy]") {
  const scenario s{{0.3, 0.3, 0.3, 0.3, 0.3}, {1.0, 1.0}};
  const adaptive_policy_config pc = test_config();
  const auto rates = true_rates(s, pc, 2);
  double margin = 0;
  const auto optimum = best_of(rates, &margin);
  REQUIRE(optimum == std::pair<std::int32_t, std::int32_t>{1, 1});
  REQUIRE(margin > 1.1);
  const simulated_run run = run_simulated({s}, 1 << 30, pc, 2, 200);
  CHECK(run.exact);
  const window_summary w = summarize(run, 40, 360, rates, 2);
  CAPTURE(w.modal.first, w.modal.second, w.share, w.efficiency, w.steps);
  CHECK(w.modal == optimum);
  CHECK(w.share > 0.9);
  CHECK(w.efficiency > 0.97);
}

TEST_CASE(
    "where nothing pays, probes are held to explore_free_fraction and the policy keeps "
    "plain decoding's speed",
    "[loop][policy]") {
  // Every tree costs a little more than its tokens are worth (1 x 2 reaches 97% of plain's rate):
  // near-break-even shapes whose optimistic estimates keep beating plain's, which a budget of
  // 20% of the decoding time would let probes try again and again.
  const scenario s{{0.45, 0.3, 0.3, 0.3, 0.3}, {1.0, 0.5}};
  adaptive_policy_config pc = test_config();
  pc.explore_fraction = 0.2;
  pc.explore_steps = 0;
  const std::int32_t batch = 2;
  double margin = 0;
  REQUIRE(best_of(true_rates(s, pc, batch), &margin) ==
          std::pair<std::int32_t, std::int32_t>{1, 1});
  REQUIRE(margin < 1.05);
  const auto requests = make_requests(batch, 32, 1000);
  // Speed relative to plain decoding on the same simulated clock, and the probes' share of time.
  const auto run = [&](const adaptive_policy_config& config) {
    simulated_setup bench(s, batch);
    auto decoder = bench.decoder(adaptive_policy(config));
    const generation_result result = decoder.generate(requests, decode_options{});
    speculative_decoder<cpu_backend, costed_target<synthetic_target>, profile_drafter, plain_policy,
                        simulated_clock>
        plain(cpu_backend{}, bench.target, bench.drafter, plain_policy{}, bench.clock);
    const generation_result base = plain.generate(requests, decode_options{});
    for (std::size_t r = 0; r < requests.size(); ++r) CHECK(result.tokens[r] == base.tokens[r]);
    const adaptive_policy& p = decoder.policy();
    double longest = 0;
    for (const auto& st : result.steps) longest = std::max(longest, st.total_s());
    // The budget's own guarantee: overrun by at most the last probe.
    CHECK(p.probe_loss_s() <= p.probe_allowance() + longest);
    return std::pair<double, double>{base.total_s / result.total_s,
                                     p.probe_loss_s() / p.elapsed_s()};
  };
  const auto [speed, probe_share] = run(pc);
  CAPTURE(speed, probe_share);
  CHECK(probe_share <= 0.005 + 0.002);
  CHECK(speed > 0.99);
  // The same policy without the gain cap (a free fraction as large as the budget) probes more
  // and loses speed: the cap is what holds it at plain decoding's speed.
  adaptive_policy_config uncapped = pc;
  uncapped.explore_free_fraction = 0.2;
  const auto [speed_uncapped, probe_share_uncapped] = run(uncapped);
  CAPTURE(speed_uncapped, probe_share_uncapped);
  CHECK(probe_share_uncapped > 2 * probe_share + 0.005);
  CHECK(speed_uncapped < speed - 0.005);
  CHECK_THROWS_WITH(adaptive_policy([] {
                      adaptive_policy_config bad;
                      bad.explore_gain_share = 1.5;
                      return bad;
                    }()),
                    Catch::Contains("explore_gain_share 1.5 must be in [0, 1]"));
  CHECK_THROWS_WITH(adaptive_policy([] {
                      adaptive_policy_config bad;
                      bad.explore_free_fraction = -0.1;
                      return bad;
                    }()),
                    Catch::Contains("explore_free_fraction -0.1 must be in [0, 1)"));
}

TEST_CASE("the adaptive policy keeps its choice when the machine slows down and speeds up",
          "[loop][policy]") {
  // Every cost (verify and draft) x 1.6 in alternate stretches, as when another process shares
  // the core: the best shape does not change, but a shape measured in a fast stretch looks cheap
  // in a slow one unless the policy tracks the machine's speed.
  const scenario fast{{0.6, 0.95, 0.95, 0.2, 0.2}, {1.0, 0.1}};
  scenario slow = fast;
  slow.verify = {1.6, 0.16};
  slow.c0 *= 1.6;
  slow.c1 *= 1.6;
  const std::int32_t batch = 4;
  const auto rates = true_rates(fast, test_config(), batch);  // the same ranking in both
  std::vector<scenario> phases;
  for (int k = 0; k < 8; ++k) phases.push_back(k % 2 == 0 ? fast : slow);
  const std::int64_t phase_tokens = 300;
  const std::int32_t max_new = static_cast<std::int32_t>(8 * phase_tokens / batch + 40);
  // The mean efficiency of forty runs with different acceptance draws (one run's choices hang on
  // a few lucky or unlucky steps).
  const auto efficiency = [&](double smoothing) {
    adaptive_policy_config pc = test_config();
    pc.speed_smoothing = smoothing;
    double mean = 0;
    for (std::uint64_t seed = 1; seed <= 40; ++seed) {
      const simulated_run run = run_simulated(phases, phase_tokens, pc, batch, max_new, seed);
      CHECK(run.exact);
      // After the first phase (calibration and warm-up), to the end of the last.
      const window_summary w = summarize(run, phase_tokens, 8 * phase_tokens, rates, batch);
      CAPTURE(smoothing, seed, w.modal.first, w.modal.second, w.share, w.steps);
      CHECK(w.steps > 100);
      mean += w.efficiency / 40;
    }
    return mean;
  };
  const double tracked = efficiency(0.1), untracked = efficiency(0.0);
  CAPTURE(tracked, untracked);
  CHECK(tracked > 0.95);
  // Tracking costs nothing here, and does not measurably help either: forty runs read 95.3%
  // tracked against 95.6% untracked (one run's efficiency spreads over 91-99%). With the
  // acceptance estimated per depth rather than as products, it read 96.0% against 94.6%; an
  // untracked policy then misjudged shapes measured in the other stretch more often.
  CHECK(tracked > untracked - 0.01);
  CHECK_THROWS_WITH(adaptive_policy([] {
                      adaptive_policy_config bad;
                      bad.speed_smoothing = 1.0;
                      return bad;
                    }()),
                    Catch::Contains("speed_smoothing 1 must be in [0, 1)"));
}

TEST_CASE("the adaptive policy re-converges after the acceptance curve shifts mid-run",
          "[loop][policy]") {
  // High acceptance at depths 1-3, then almost none (plain steps win), then high again: plain
  // steps teach nothing about acceptance, so returning needs the policy's probes.
  const scenario high{{0.6, 0.95, 0.95, 0.2, 0.2}, {1.0, 0.1}};
  const scenario low{{0.05, 0.05, 0.05, 0.05, 0.05}, {1.0, 0.1}};
  const adaptive_policy_config pc = test_config();
  const std::int32_t batch = 4;
  const std::int64_t phase_tokens = 1200;
  const std::vector<scenario> phases{high, low, high};
  // Ten runs with different acceptance draws (one run's choices hang on a few lucky or unlucky
  // steps): per phase, the efficiency of each run and how many runs' modal shape was the optimum.
  std::vector<std::vector<double>> efficiency(phases.size());
  std::vector<std::int32_t> modal_optimum(phases.size(), 0);
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    const simulated_run run =
        run_simulated(phases, phase_tokens, pc, batch, 3 * phase_tokens / batch + 40, seed);
    CHECK(run.exact);
    for (std::size_t k = 0; k < phases.size(); ++k) {
      const auto rates = true_rates(phases[k], pc, batch);
      double margin = 0;
      const auto optimum = best_of(rates, &margin);
      REQUIRE(margin > 1.03);
      // The second half of each phase.
      const std::int64_t from = static_cast<std::int64_t>(k) * phase_tokens + phase_tokens / 2;
      const window_summary w = summarize(run, from, from + phase_tokens / 2, rates, batch);
      efficiency[k].push_back(w.efficiency);
      modal_optimum[k] += w.modal == optimum;
    }
  }
  for (std::size_t k = 0; k < phases.size(); ++k) {
    std::vector<double> e = efficiency[k];
    std::sort(e.begin(), e.end());
    CAPTURE(k, modal_optimum[k], e[0], e[1], e[2], e[4]);
    if (k < 2) {
      // Every run: mostly the optimum (the rest: probes, plain steps among them, since a cost the
      // policy stopped measuring grows uncertain and is measured again, and 2 x 4, 5% behind).
      CHECK(modal_optimum[k] >= 8);
      CHECK(e[0] > 0.93);
    } else {
      // Back from the plain stretch every speculative estimate is stale and only probes can
      // refresh it. Most runs return to the optimum 1 x 4 or 2 x 4 (5% behind), but not all: in
      // one of these ten (seed 4) the probes at the acceptance collapse lost more than the budget
      // and the policy stays on plain steps through the whole third phase (0.73; the policy
      // before explore_free_steps did the same on this seed), and two more return late (0.85,
      // 0.91). A known limit, checked so it does not spread. plain_margin slows the return: a
      // tree's probes from a plain stretch are charged the margin (median 0.949, second lowest
      // 0.846; 0.961 and 0.866 at plain_margin 0).
      CHECK(e[4] > 0.94);  // the lower of the two median runs
      CHECK(e[1] > 0.83);  // at most one run stays far behind
    }
  }
}

TEST_CASE(
    "the adaptive policy reads the verify cost at the step's context: plain steps first, "
    "then a tree",
    "[loop][policy]") {
  // verify = a + b n + k C (C: the tokens the batch has committed). The context term is the same
  // for every shape, so plain steps (fewest nodes) win while C is small and 1 x L trees once it is
  // large (their tokens share it): with b = 5 and k = 0.01 the switch is near C = 450 (about 110
  // tokens per request at batch 4). One speed factor cannot describe this: it scales every node
  // count by the running shape's growth (with context_slope() held at 0 the test fails: the
  // median run's early plain share is 0.77, one run's late tree share 0.39).
  scenario s{{0.9, 0.9, 0.9, 0.9, 0.9}, {1.0, 5.0, 0.01}};
  const adaptive_policy_config pc = test_config();
  const std::int32_t batch = 4, max_new = 300;
  std::vector<double> early_plain, late_tree, slope_error;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    simulated_setup bench(s, batch, seed);
    auto decoder = bench.decoder(adaptive_policy(pc));
    const auto requests = make_requests(batch, bench.model.vocab_size(), max_new);
    const auto result = decoder.generate(requests, decode_options{});
    std::int64_t emitted = batch;  // the prefill's tokens
    double early = 0, early_n = 0, late = 0, late_n = 0;
    for (const auto& st : result.steps) {
      const double per_request = static_cast<double>(emitted) / batch;
      if (st.requests == batch && per_request >= 10 && per_request < 60) {
        early += st.beam_length == 1;
        ++early_n;
      }
      if (st.requests == batch && per_request >= 200 && per_request < 290) {
        late += st.beam_length > 1;
        ++late_n;
      }
      emitted += st.emitted;
    }
    REQUIRE((early_n > 20 && late_n > 10));
    early_plain.push_back(early / early_n);
    late_tree.push_back(late / late_n);
    const adaptive_policy& p = decoder.policy();
    slope_error.push_back(std::abs(p.context_slope() * p.speed() / s.verify.k - 1.0));
  }
  std::sort(early_plain.begin(), early_plain.end());
  std::sort(late_tree.begin(), late_tree.end());
  std::sort(slope_error.begin(), slope_error.end());
  CAPTURE(early_plain, late_tree, slope_error);
  CHECK(early_plain[2] > 0.8);  // the median run: mostly plain steps early
  CHECK(late_tree[2] > 0.8);    // ... and mostly trees late
  CHECK(late_tree[0] > 0.5);    // every run switches
  CHECK(slope_error[4] < 0.1);  // the slope within 10% in every run
}

// --- a hybrid drafter under a policy: the step's W is the hybrid's beam budget ---

TEST_CASE("a hybrid drafter that follows the policy's W keeps greedy exact",
          "[loop][policy][hybrid]") {
  const std::int32_t batch = GENERATE(1, 4);
  CAPTURE(batch);
  synthetic_target_config config;
  config.vocab_size = 24;
  config.num_slots = batch;
  synthetic_target model(config);
  auto requests = make_requests(batch, config.vocab_size, 40);
  hybrid_options split{2, 1, 0, false, 0, 0};
  split.follow_step_width = true;
  SECTION("pseudo-random shapes, plain steps included") {
    redraft::testing::random_drafter random(config.vocab_size, 5);
    lookup_drafter<cpu_backend> lookup(cpu_backend{});
    hybrid_drafter<cpu_backend, decltype(random), decltype(lookup)> drafter(cpu_backend{}, random,
                                                                            lookup, split);
    speculative_decoder<cpu_backend, synthetic_target, decltype(drafter), erratic_policy> decoder(
        cpu_backend{}, model, drafter, erratic_policy(static_cast<std::uint64_t>(batch) + 40));
    const auto result = decoder.generate(requests, decode_options{});
    std::set<std::int32_t> widths;
    for (const auto& st : result.steps)
      if (st.beam_length > 1) widths.insert(st.beam_width);
    CHECK(widths.size() >= 3);  // the hybrid served several budgets
    for (std::int32_t r = 0; r < batch; ++r) {
      const auto& q = requests[static_cast<std::size_t>(r)];
      CHECK(result.tokens[static_cast<std::size_t>(r)] ==
            greedy_reference(model, q.prompt, q.max_new_tokens, q.eos_token));
    }
  }
  SECTION("the adaptive policy on a simulated clock") {
    simulated_clock clock;
    costed_target<synthetic_target> target(model, clock, linear_cost{1.0, 0.05});
    profile_drafter profile(model, {0.6, 0.95, 0.95, 0.2, 0.2}, 3, clock, 0.02, 0.01);
    lookup_drafter<cpu_backend> lookup(cpu_backend{});
    hybrid_drafter<cpu_backend, profile_drafter, decltype(lookup)> drafter(cpu_backend{}, profile,
                                                                           lookup, split);
    adaptive_policy_config pc;
    pc.widths = {2, 4};  // every speculative step splits its W between both sources
    speculative_decoder<cpu_backend, costed_target<synthetic_target>, decltype(drafter),
                        adaptive_policy, simulated_clock>
        decoder(cpu_backend{}, target, drafter, adaptive_policy(pc), clock);
    const auto result = decoder.generate(requests, decode_options{});
    std::int32_t wide = 0;
    for (const auto& st : result.steps) wide += st.beam_length > 1 && st.beam_width > 1;
    CHECK(wide > 0);  // steps where both sources drafted
    for (std::int32_t r = 0; r < batch; ++r) {
      const auto& q = requests[static_cast<std::size_t>(r)];
      CHECK(result.tokens[static_cast<std::size_t>(r)] ==
            greedy_reference(model, q.prompt, q.max_new_tokens, q.eos_token));
    }
  }
}

TEST_CASE("lossless sampling with a hybrid drafter that follows the policy's W",
          "[loop][policy][hybrid][statistics]") {
  const synthetic_target_config config = statistics_config();
  synthetic_target model(config);
  // A prompt that repeats, so the lookup source proposes candidates from the first step on.
  const std::vector<std::int32_t> prompt = {1, 2, 3, 1, 2};
  const int n = 4;
  const auto law = exact_law(model, prompt, n);
  decode_options options;
  options.rule = verifier::lossless;
  options.seed = 91;
  const std::int32_t runs = 6000;
  hybrid_options split{1, 1, 0, false, 0, 0};
  split.follow_step_width = true;
  std::vector<std::int64_t> counts;
  std::set<std::int32_t> widths;
  SECTION("pseudo-random shapes, plain steps included") {
    redraft::testing::random_drafter random(config.vocab_size, 13);
    lookup_drafter<cpu_backend> lookup(cpu_backend{});
    hybrid_drafter<cpu_backend, decltype(random), decltype(lookup)> drafter(cpu_backend{}, random,
                                                                            lookup, split);
    speculative_decoder<cpu_backend, synthetic_target, decltype(drafter), erratic_policy> decoder(
        cpu_backend{}, model, drafter, erratic_policy(8));
    counts = first_token_counts(decoder, prompt, runs, n, config.vocab_size, options);
    for (const auto& s : decoder.policy().shapes) widths.insert(s.is_plain() ? 0 : s.beam_width);
  }
  SECTION("the adaptive policy on a simulated clock") {
    simulated_clock clock;
    costed_target<synthetic_target> target(model, clock, linear_cost{1e-3, 1e-6});
    profile_drafter profile(model, {0.9, 0.9, 0.9, 0.9, 0.9}, 3, clock, 1e-5, 1e-8);
    lookup_drafter<cpu_backend> lookup(cpu_backend{});
    hybrid_drafter<cpu_backend, profile_drafter, decltype(lookup)> drafter(cpu_backend{}, profile,
                                                                           lookup, split);
    adaptive_policy_config pc;
    pc.widths = {2};  // both sources draft every speculative step (the profile drafter needs W < 3)
    speculative_decoder<cpu_backend, costed_target<synthetic_target>, decltype(drafter),
                        adaptive_policy, simulated_clock>
        decoder(cpu_backend{}, target, drafter, adaptive_policy(pc), clock);
    const auto result =
        decoder.generate(std::vector<generation_request>(static_cast<std::size_t>(runs),
                                                         generation_request{prompt, n, -1, -1}),
                         options);
    counts.assign(law.size(), 0);
    for (const auto& tokens : result.tokens) {
      REQUIRE(static_cast<int>(tokens.size()) == n);
      std::size_t index = 0;
      for (const std::int32_t t : tokens) index = index * 4 + static_cast<std::size_t>(t);
      ++counts[index];
    }
    for (const auto& st : result.steps) widths.insert(st.beam_length == 1 ? 0 : st.beam_width);
  }
  CHECK(widths.size() >= 2);
  const auto [stat, df] = chi_square(counts, law, runs);
  CAPTURE(stat, df);
  CHECK(stat < chi_square_quantile(df, 5.5));
}

TEST_CASE("the adaptive policy persists across generate() calls: no second calibration",
          "[loop][policy]") {
  const scenario s{{0.6, 0.95, 0.95, 0.2, 0.2}, {1.0, 0.1}};
  const adaptive_policy_config pc = test_config();
  const std::int32_t batch = 4;
  const auto rates = true_rates(s, pc, batch);
  double best = 0;
  for (const auto& [shape, rate] : rates) best = std::max(best, rate);
  // The mean true rate, relative to the optimum's, of a call's full-batch steps.
  const auto efficiency = [&](const generation_result& r) {
    double sum = 0;
    std::int32_t steps = 0;
    for (const auto& st : r.steps) {
      if (st.requests != batch) continue;
      sum += rates.at({st.beam_width, st.beam_length}) / best;
      ++steps;
    }
    return steps ? sum / steps : 0.0;
  };
  // Ten runs with different acceptance draws: a short call's handful of steps hangs on a few
  // lucky or unlucky draws.
  double again_mean = 0, first_mean = 0, again_min = 1;
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    CAPTURE(seed);
    simulated_setup bench(s, batch, seed);
    auto warm = bench.decoder(adaptive_policy(pc));
    warm.generate(make_requests(batch, 32, 200), decode_options{});
    const auto calibrated = warm.policy().choice_counts();
    CHECK(calibrated[0] >= 2);  // calibration steps
    // A short second call: the warm policy starts from what it learned, a fresh one calibrates.
    const auto short_requests = make_requests(batch, 32, 24);
    const generation_result again = warm.generate(short_requests, decode_options{});
    CHECK(warm.policy().choice_counts()[0] == calibrated[0]);
    auto fresh = bench.decoder(adaptive_policy(pc));
    const generation_result first = fresh.generate(short_requests, decode_options{});
    CHECK(fresh.policy().choice_counts()[0] == calibrated[0]);
    again_min = std::min(again_min, efficiency(again));
    again_mean += efficiency(again) / 10;
    first_mean += efficiency(first) / 10;
    // The policy is a value: a copy starts a new decoder where the old one left off.
    auto copy = bench.decoder(warm.policy());
    copy.generate(short_requests, decode_options{});
    CHECK(copy.policy().choice_counts()[0] == calibrated[0]);
    for (std::size_t r = 0; r < short_requests.size(); ++r)
      CHECK(again.tokens[r] == greedy_reference(bench.model, short_requests[r].prompt,
                                                short_requests[r].max_new_tokens, -1));
  }
  // The runs read 0.86-1.0 (a call of about eight steps, the last ones near the requests' ends;
  // one probe of 4 x 6 among them costs 0.06), 0.96 on average.
  CAPTURE(again_mean, again_min, first_mean);
  CHECK(again_mean > 0.95);
  CHECK(again_min > 0.85);
  CHECK(again_mean > first_mean + 0.03);
}

TEST_CASE("the adaptive policy explores less once its estimates are backed by many steps",
          "[loop][policy]") {
  // The optimum scenario over a long run: with explore_steps the probe budget shrinks as
  // sqrt(explore_steps / steps); without (0) it stays explore_fraction of the decoding time.
  const scenario s{{0.6, 0.95, 0.95, 0.2, 0.2}, {1.0, 0.1}};
  const auto run = [&](std::int32_t explore_steps) {
    adaptive_policy_config pc = test_config();
    pc.explore_steps = explore_steps;
    simulated_setup bench(s, 1);
    auto decoder = bench.decoder(adaptive_policy(pc));
    const auto result = decoder.generate(make_requests(1, 32, 1500), decode_options{});
    double longest = 0;
    for (const auto& st : result.steps) longest = std::max(longest, st.total_s());
    const adaptive_policy& p = decoder.policy();
    // Each step's time at its own step count's fraction.
    double allowance = 0;
    for (std::size_t k = 1; k <= result.steps.size(); ++k) {
      const double fraction = explore_steps > 0 && k > static_cast<std::size_t>(explore_steps)
                                  ? 0.03 * std::sqrt(explore_steps / static_cast<double>(k))
                                  : 0.03;
      allowance += fraction * result.steps[k - 1].total_s();
    }
    CHECK(p.probe_loss_s() <= allowance + longest);
    return p.probe_loss_s() / p.elapsed_s();  // the share of the time probes lost
  };
  const double shrinking = run(32), constant = run(0);
  CAPTURE(shrinking, constant);
  CHECK(shrinking < 0.75 * constant);
  CHECK_THROWS_WITH(adaptive_policy(adaptive_policy_config{{1}, {2}, true, 0.98, 0.03, -1}),
                    Catch::Contains("explore_steps -1 must be >= 0"));
}

TEST_CASE("traced_policy records every step's choice and estimates without changing them",
          "[loop][policy][trace]") {
  // verify = 1 + 0.1 n + 0.001 C: a context term, so the trace's kappa has something to show.
  const scenario s{{0.6, 0.95, 0.95, 0.2, 0.2}, {1.0, 0.1, 0.001}};
  adaptive_policy_config pc = test_config();
  pc.widths = {1, 2};  // 1 + 2 x 5 = 11 candidates
  const std::size_t candidates = 11;
  const auto requests = make_requests(2, 32, 40);
  simulated_setup plain_bench(s, 2), traced_bench(s, 2);
  auto untraced = plain_bench.decoder(adaptive_policy(pc));
  const generation_result want = untraced.generate(requests, decode_options{});
  speculative_decoder<cpu_backend, costed_target<synthetic_target>, profile_drafter, traced_policy,
                      simulated_clock>
      traced(cpu_backend{}, traced_bench.target, traced_bench.drafter,
             traced_policy(adaptive_policy(pc)), traced_bench.clock);
  traced.policy().set_run(7);
  const generation_result got = traced.generate(requests, decode_options{});
  // The same shapes, step by step, as the untraced policy on the same simulated clock.
  REQUIRE(got.steps.size() == want.steps.size());
  for (std::size_t k = 0; k < got.steps.size(); ++k) {
    CHECK(got.steps[k].beam_width == want.steps[k].beam_width);
    CHECK(got.steps[k].beam_length == want.steps[k].beam_length);
  }
  CHECK(traced.policy().inner().choice_counts() == untraced.policy().choice_counts());
  const auto& records = traced.policy().records();
  REQUIRE(records.size() == got.steps.size());
  std::array<std::int64_t, 3> reasons{};
  for (std::size_t k = 0; k < records.size(); ++k) {
    const auto& r = records[k];
    const step_stats& st = got.steps[k];
    CAPTURE(k);
    CHECK(r.run == 7);
    CHECK(r.step == k + 1);
    CHECK(r.shape.beam_width == st.beam_width);
    CHECK(r.shape.beam_length == st.beam_length);
    CHECK(r.nodes == st.nodes);
    CHECK(r.emitted == st.emitted);
    CHECK(r.draft_s == st.draft_s);
    CHECK(r.verify_s == Approx(st.total_s() - st.draft_s));
    // The context it chose at: the tokens in the KV cache, the prompts at the first step, then
    // growing by the tokens each step emits while no request has finished.
    if (k == 0) {
      std::int64_t prompts = 0;
      for (const auto& q : requests) prompts += static_cast<std::int64_t>(q.prompt.size());
      CHECK(r.context == prompts);
    } else if (st.requests == got.steps[k - 1].requests) {
      CHECK(r.context == records[k - 1].context + records[k - 1].emitted);
    }
    REQUIRE(r.estimates.size() == candidates);
    REQUIRE(r.cost_weight.size() == candidates);
    CHECK(r.estimates.front().shape.is_plain());
    for (const auto& e : r.estimates) CHECK(e.rate() <= r.estimates[r.best].rate());
    // An exploiting step runs the best mean estimate.
    if (r.choice == policy_choice::exploit) CHECK(r.estimates[r.best].shape == r.shape);
    ++reasons[static_cast<std::size_t>(r.choice)];
  }
  // kappa as the policy had it at each choice: 0 before any pair of same-shape steps, the
  // simulated 0.001 s per context token (speed x kappa: seconds now) by the last step.
  CHECK(records.front().kappa == 0);
  CHECK(records.back().kappa * records.back().speed == Approx(0.001).epsilon(0.02));
  CHECK(reasons == traced.policy().inner().choice_counts());
  CHECK(reasons[0] == 3);
  CHECK(reasons[1] > 0);

  // The CSV: the header, then one row per step and candidate, the step's columns repeated.
  std::ostringstream csv;
  traced.policy().write_csv(csv);
  std::istringstream lines(csv.str());
  std::string line;
  REQUIRE(std::getline(lines, line));
  CHECK(line == traced_policy::header);
  std::vector<std::vector<std::string>> rows;
  while (std::getline(lines, line)) {
    std::vector<std::string> cells;
    std::stringstream in(line);
    std::string cell;
    while (std::getline(in, cell, ',')) cells.push_back(cell);
    REQUIRE(cells.size() == 22);
    rows.push_back(cells);
  }
  REQUIRE(rows.size() == records.size() * candidates);
  for (std::size_t k = 0; k < records.size(); ++k) {
    const auto& r = records[k];
    std::int32_t best_rows = 0;
    for (std::size_t c = 0; c < candidates; ++c) {
      const auto& cells = rows[k * candidates + c];
      CAPTURE(k, c);
      CHECK(cells[0] == "7");
      CHECK(cells[1] == std::to_string(k + 1));
      CHECK(cells[2] == (r.choice == policy_choice::calibrate ? "calibrate"
                         : r.choice == policy_choice::exploit ? "exploit"
                                                              : "probe"));
      CHECK(cells[3] == traced_policy::name(r.shape));
      CHECK(std::stoi(cells[4]) == r.nodes);
      CHECK(std::stoi(cells[5]) == r.emitted);
      CHECK(std::stod(cells[7]) == Approx(r.verify_s).epsilon(1e-5));
      CHECK(std::stoll(cells[11]) == r.context);
      CHECK(std::stod(cells[12]) == Approx(r.kappa).epsilon(1e-5));
      CHECK(cells[13] == traced_policy::name(r.estimates[c].shape));
      CHECK(std::stod(cells[14]) == Approx(r.estimates[c].tokens).epsilon(1e-5));
      CHECK(std::stod(cells[18]) == Approx(r.estimates[c].rate()).epsilon(1e-5));
      CHECK(std::stod(cells[19]) == Approx(r.estimates[c].optimistic_rate()).epsilon(1e-5));
      best_rows += cells[21] == "1";
      CHECK((cells[21] == "1") == (c == r.best));
    }
    CHECK(best_rows == 1);
  }
  CHECK(rows[0][13] == "plain");
  CHECK(rows[1][13] == "1x2");
  CHECK(rows[candidates - 1][13] == "2x6");
}

namespace {

// What drive_policy() changes from a steady machine and the scenario's acceptance (the defaults:
// nothing). Call sites name the fields they set: {.slow = 1.5, .slow_steps = 5}.
struct drive_options {
  double slow = 1.0;            // every cost times this ...
  std::int32_t slow_steps = 0;  // ... for the first slow_steps steps
  std::pair<std::int32_t, std::int32_t> forced{0,
                                               0};  // from step .first (0: none) on, accept .second
  std::int32_t forced_steps = 1;                    // ... for this many steps
  std::pair<std::int32_t, double> hiccup{0, 1.0};   // step .first's costs times .second (a stall)
  // > 0: generate() calls of call_steps steps each (the step number restarts at 1), every cost
  // growing by the factor 1 + context_growth over a call, as a step's cost grows with its
  // requests' context.
  std::int32_t call_steps = 0;
  double context_growth = 0.0;
  std::vector<policy_choice>* choices = nullptr;  // when set, receives each step's reason
  std::uint64_t seed = 5;                         // keys the acceptance draws
};

// Drives an adaptive policy directly with step reports of one request (W = 1): verify cost
// a + b n and draft cost (L - 1) c, changed as `o` says; the step's accepted length follows the
// profile alpha (P(accepted >= d) = alpha_1 ... alpha_d) except at the forced steps. Returns the
// shapes run.
std::vector<draft_shape> drive_policy(adaptive_policy& p, const scenario& s, std::int32_t steps,
                                      const drive_options& o = {}) {
  std::vector<draft_shape> shapes;
  const std::vector<std::int32_t> remaining{1 << 20};
  const decode_options options;
  std::vector<std::int32_t> accepted_len(1), rank(8), shared(1, 0);
  for (std::int32_t k = 1; k <= steps; ++k) {
    const std::int32_t call_step = o.call_steps > 0 ? (k - 1) % o.call_steps + 1 : k;
    const double context =
        o.call_steps > 0 ? 1.0 + o.context_growth * (call_step - 1) / o.call_steps : 1.0;
    const draft_shape shape = p.choose(
        step_context{static_cast<std::uint32_t>(call_step), &options, {remaining.data(), 1}});
    shapes.push_back(shape);
    if (o.choices != nullptr) o.choices->push_back(p.last_choice());
    const double f = context * (k <= o.slow_steps ? o.slow : 1.0) *
                     (k == o.hiccup.first ? o.hiccup.second : 1.0);
    const std::int32_t drafted = shape.beam_length - 1;
    std::int32_t accepted =
        draw_accepted(s.alpha, drafted, philox_stream{o.seed, 0, static_cast<std::uint32_t>(k)});
    if (k >= o.forced.first && k < o.forced.first + o.forced_steps)
      accepted = std::min(o.forced.second, drafted);
    step_report r;
    r.step = static_cast<std::uint32_t>(call_step);
    r.shape = shape;
    r.requests = 1;
    r.nodes = shape.is_plain() ? 1 : 1 + drafted;
    r.emitted = accepted + 1;
    r.draft_s = f * drafted * (s.c0 + s.c1);
    r.target_s = f * s.verify(r.nodes);
    if (!shape.is_plain()) {
      accepted_len[0] = accepted;
      for (std::int32_t d = 0; d < drafted; ++d)
        rank[static_cast<std::size_t>(d)] = d < accepted ? 0 : -1;
      r.accepted_len = {accepted_len.data(), 1};
      r.accepted_rank = {rank.data(), 1, drafted};
      r.shared_prefix = {shared.data(), 1, 1};
    }
    p.observe(r);
  }
  return shapes;
}

// A scenario for one request and W = 1 (the candidates L 2-6 and plain steps): the config, every
// candidate's exact rate, the optimum and its margin over the next best.
struct one_beam_case {
  adaptive_policy_config config;
  std::map<std::pair<std::int32_t, std::int32_t>, double> rates;
  std::pair<std::int32_t, std::int32_t> optimum;
  double margin = 0;
};
one_beam_case one_beam(const scenario& s) {
  one_beam_case c;
  c.config.widths = {1};
  c.rates = true_rates(s, c.config, 1);
  c.optimum = best_of(c.rates, &c.margin);
  return c;
}

// Over shapes[from..]: steps per L (W = 1 throughout; plain steps count as L = 1) and the mean
// true rate of the chosen shapes relative to the optimum's.
struct tail_summary {
  std::map<std::int32_t, std::int32_t> count;
  double efficiency = 0;
};
tail_summary summarize_tail(const std::vector<draft_shape>& shapes, std::size_t from,
                            const std::map<std::pair<std::int32_t, std::int32_t>, double>& rates,
                            std::pair<std::int32_t, std::int32_t> optimum) {
  tail_summary t;
  const double steps = static_cast<double>(shapes.size() - from);
  for (std::size_t k = from; k < shapes.size(); ++k) {
    ++t.count[shapes[k].beam_length];
    t.efficiency +=
        rates.at({shapes[k].beam_width, shapes[k].beam_length}) / rates.at(optimum) / steps;
  }
  return t;
}

}  // namespace

TEST_CASE(
    "a verify cost measured only in a slow stretch does not lock the policy on a shorter shape",
    "[loop][policy]") {
  // KJV-like costs and acceptance at batch 1 (1 x 5 best, 1 x 3 18% behind). The first 5 steps run
  // 1.5x slow (a burst of load): calibration measures the 6-node tree there, and its one 1 x 6
  // step accepts only 2 tokens, so the policy starts on a short shape whose node count it then
  // measures at normal speed every step. The 6-node cost keeps its slow value; before the fix the
  // shorter shape's fresh bin counted as certainty for it (a neighbour within a factor 1.5), the
  // optimistic cost never dropped, 1 x 5 and 1 x 6 were never measured again, and the policy ran
  // 1 x 3 to the end (82% of the optimum's rate).
  const scenario normal{{0.98, 0.97, 0.98, 0.75, 0.63}, {1.0, 0.11}, 0.05, 0.05};
  const one_beam_case c = one_beam(normal);
  REQUIRE(c.optimum == std::pair<std::int32_t, std::int32_t>{1, 5});
  adaptive_policy p(c.config);
  auto [count, efficiency] =
      summarize_tail(drive_policy(p, normal, 800, {.slow = 1.5, .slow_steps = 5, .forced = {2, 2}}),
                     400, c.rates, c.optimum);
  CAPTURE(count[3], count[4], count[5], count[6], efficiency);
  // 1 x 6 is 1% behind 1 x 5: the policy may split between the two, not fall back to 1 x 3.
  CHECK(count[5] > 250);
  CHECK(count[5] + count[6] > 370);
  CHECK(efficiency > 0.97);
}

TEST_CASE(
    "a plain step measured only while the machine warmed up is measured again: no lock-out of "
    "plain decoding",
    "[loop][policy]") {
  // Plain decoding is best here (1 x 2, the best tree, reaches 93% of its rate). The first 3
  // steps, the calibration, run 1.6x slow (the process warming up), so plain decoding is measured
  // at 1.6x its cost, and every tree at normal speed afterwards. Before the fix a verify cost's
  // optimistic value was never more than 30% below its stale estimate: plain decoding's optimistic
  // rate never beat 1 x 2's, it was never measured again, and the policy ran 1 x 2 to the end
  // (93% of the optimum's rate).
  const scenario normal{{0.3, 0.3, 0.3, 0.3, 0.3}, {1.0, 0.5}, 0.05, 0.05};
  const one_beam_case c = one_beam(normal);
  REQUIRE(c.optimum == std::pair<std::int32_t, std::int32_t>{1, 1});
  REQUIRE(c.margin < 1.1);
  adaptive_policy p(c.config);
  auto [count, efficiency] = summarize_tail(
      drive_policy(p, normal, 1000, {.slow = 1.6, .slow_steps = 3}), 500, c.rates, c.optimum);
  const std::int32_t plain = count[1];
  CAPTURE(plain, efficiency, p.verify_cost(1), normal.verify(1));
  CHECK(plain > 400);
  CHECK(efficiency > 0.98);
  CHECK(p.verify_cost(1) == Approx(normal.verify(1)).epsilon(0.05));
  // cost_confidence 0 asks for no optimism: every optimistic verify cost is the estimate, at
  // node counts never measured too (1 x 6's 6 nodes after calibration: only 1 and 6 measured,
  // 1 x 3's 3 nodes have no bin within a factor 1.5).
  adaptive_policy_config no_optimism = c.config;
  no_optimism.cost_confidence = 0.0;
  adaptive_policy exact(no_optimism);
  drive_policy(exact, normal, 3);
  const std::vector<std::int32_t> remaining{100};
  for (const shape_estimate& e : exact.estimates({remaining.data(), 1}))
    CHECK(e.optimistic_verify_s == e.verify_s);
}

TEST_CASE("one stalled step does not hold the policy on plain steps", "[loop][policy]") {
  // 1 x 3 is best, plain decoding at 77% of its rate. Steps 4-7 accept nothing (bad luck early,
  // so plain looks best for a while) and step 7 stalls for 30x its cost (a page fault, another
  // process), as in a KJV sampling run at batch 1. Before the fix the stall counted in full
  // against what speculation had saved, the probe budget went deeply negative, and the policy ran
  // plain steps to the end (all 800 steps below, 77% of the optimum's rate; without the stall 18
  // plain steps, 98%); now a step counts at most twice its expected time in the policy's
  // accounts, as a sample does in the cost bins.
  const scenario normal{{0.5, 0.45, 0.3, 0.3, 0.3}, {1.0, 0.15}, 0.02, 0.02};
  const one_beam_case c = one_beam(normal);
  CAPTURE(c.optimum.second, c.margin, c.rates.at({1, 1}) / c.rates.at(c.optimum));
  REQUIRE(c.optimum.second > 1);
  adaptive_policy p(c.config);
  auto [count, efficiency] = summarize_tail(
      drive_policy(p, normal, 1000, {.forced = {4, 0}, .forced_steps = 4, .hiccup = {7, 30.0}}),
      200, c.rates, c.optimum);
  CAPTURE(count[1], count[2], count[3], count[4], efficiency, p.gain_s(), p.probe_allowance());
  CHECK(count[1] < 200);
  CHECK(efficiency > 0.94);
}

TEST_CASE("unlucky early steps do not hold the policy on plain steps", "[loop][policy]") {
  // 1 x 2 is best (19% above plain decoding, 1 x 3 10%), as under sampling on the KJV pair at batch
  // 1. Steps 2-4 accept nothing: the calibration's 1 x 6 and the first probe. Before
  // explore_free_steps, the calibration's loss against plain decoding (counted in the gain) and the
  // probe's loss had to be repaid from explore_free_fraction (0.5%) of the decoding time before the
  // next probe: the policy ran plain steps on 196 of steps 4-200 (a KJV demo call is ~160 steps;
  // 141 with plain_margin).
  const scenario normal{{0.5, 0.35, 0.3, 0.3, 0.3}, {1.0, 0.3}, 0.02, 0.02};
  const one_beam_case c = one_beam(normal);
  CAPTURE(c.rates.at({1, 1}) / c.rates.at(c.optimum));
  REQUIRE(c.optimum == std::pair<std::int32_t, std::int32_t>{1, 2});
  // Plain steps from step `from` (1-based) to 200, steps 2 .. unlucky + 1 accepting nothing.
  const auto plain_steps = [&](const adaptive_policy_config& config, std::int32_t unlucky,
                               std::size_t from) {
    adaptive_policy p(config);
    const auto shapes = drive_policy(p, normal, 200, {.forced = {2, 0}, .forced_steps = unlucky});
    std::int32_t plain = 0;
    for (std::size_t k = from - 1; k < shapes.size(); ++k) plain += shapes[k].is_plain();
    return plain;
  };
  const std::int32_t with_grant = plain_steps(c.config, 3, 4);
  adaptive_policy_config no_grant = c.config;
  no_grant.explore_free_steps = 0;
  const std::int32_t without_grant = plain_steps(no_grant, 3, 4);
  CAPTURE(with_grant, without_grant);
  CHECK(with_grant < 20);
  CHECK(without_grant > 100);

  // More unlucky steps than the grant covers (every tree of steps 2-9 accepts nothing, the
  // calibration's and the first probes: as in a KJV demo run at sampling batch 1 that then held
  // the policy on plain steps for ~450 steps). Probes chosen before depth 1 has
  // explore_free_trials observations cost the budget nothing, so the policy probes again once
  // the luck turns.
  const std::int32_t with_free_trials = plain_steps(c.config, 8, 11);
  adaptive_policy_config charged = c.config;
  charged.explore_free_trials = 0;
  const std::int32_t without_free_trials = plain_steps(charged, 8, 11);
  CAPTURE(with_free_trials, without_free_trials);
  CHECK(with_free_trials < 20);
  CHECK(without_free_trials > 100);
  CHECK_THROWS_WITH(adaptive_policy([] {
                      adaptive_policy_config bad;
                      bad.explore_free_trials = -2;
                      return bad;
                    }()),
                    Catch::Contains("explore_free_trials -2 must be >= 0"));
  CHECK_THROWS_WITH(adaptive_policy([] {
                      adaptive_policy_config bad;
                      bad.explore_free_steps = -1;
                      return bad;
                    }()),
                    Catch::Contains("explore_free_steps -1 must be >= 0"));
}

TEST_CASE("a batch whose requests accept alike does not hold the policy on plain steps",
          "[loop][policy]") {
  // A batch of 16 copies of one request (W = 1): each step draws one accepted length and every
  // request accepts it, as copied greedy prompts do. 1 x 3 is best (plain decoding at 80% of its
  // rate). The first four tree steps after calibration accept nothing anywhere: one such step at
  // batch 16 loses more than the probe budget. Counted in full (token_floor_sigmas huge), the
  // probe and gain accounts go deep into debt and the policy runs plain steps for most of the
  // next 300; counted at least 5 standard deviations of independent requests under the estimate,
  // it returns to trees.
  const std::int32_t batch = 16;
  const scenario s{{0.9, 0.8, 0.5, 0.4, 0.3}, {1.0, 0.05}, 0.02, 0.01};
  adaptive_policy_config pc;
  pc.widths = {1};
  const auto rates = true_rates(s, pc, batch);
  double margin = 0;
  const auto optimum = best_of(rates, &margin);
  CAPTURE(rates.at({1, 1}) / rates.at(optimum));
  REQUIRE(optimum == std::pair<std::int32_t, std::int32_t>{1, 3});
  REQUIRE(rates.at({1, 1}) / rates.at(optimum) < 0.85);
  const decode_options options;
  const std::vector<std::int32_t> remaining(batch, 1 << 20);
  // Step k's report: every request of the batch accepted `accepted` tokens, all on beam 0.
  std::vector<std::int32_t> accepted_len(batch), rank(batch * 8), shared(batch, 0);
  const auto copied_step = [&](std::uint32_t k, draft_shape shape, std::int32_t accepted) {
    const std::int32_t drafted = shape.beam_length - 1;
    step_report r;
    r.step = k;
    r.shape = shape;
    r.requests = batch;
    r.nodes = batch * (shape.is_plain() ? 1 : 1 + drafted);
    r.emitted = batch * (accepted + 1);
    r.context_tokens = 16 * k;
    r.draft_s = drafted * (s.c0 + s.c1 * batch);
    r.target_s = s.verify(r.nodes);
    if (!shape.is_plain()) {
      for (std::int32_t i = 0; i < batch; ++i) {
        accepted_len[static_cast<std::size_t>(i)] = accepted;
        for (std::int32_t d = 0; d < drafted; ++d)
          rank[static_cast<std::size_t>(i * drafted + d)] = d < accepted ? 0 : -1;
      }
      r.accepted_len = {accepted_len.data(), batch};
      r.accepted_rank = {rank.data(), batch, drafted};
      r.shared_prefix = {shared.data(), batch, 1};
    }
    return r;
  };
  const auto run = [&](const adaptive_policy_config& config) {
    adaptive_policy p(config);
    std::int32_t plain = 0, failed = 0;
    for (std::uint32_t k = 1; k <= 306; ++k) {
      const draft_shape shape =
          p.choose(step_context{k, &options, {remaining.data(), batch}, 16 * k});
      std::int32_t accepted = draw_accepted(s.alpha, shape.beam_length - 1, philox_stream{9, 0, k});
      if (k > 3 && !shape.is_plain() && failed < 4) {
        accepted = 0;
        ++failed;
      }
      if (k > 6) plain += shape.is_plain();
      p.observe(copied_step(k, shape, accepted));
    }
    return std::tuple<std::int32_t, double, adaptive_policy>{
        plain, p.probe_realized_loss_s() - p.probe_loss_s(), p};
  };
  auto [plain, forgiven, policy] = run(pc);
  adaptive_policy_config full = pc;
  full.token_floor_sigmas = 1e9;
  const auto [plain_full, forgiven_full, policy_full] = run(full);
  CAPTURE(plain, forgiven, plain_full, forgiven_full);
  // With the floor the policy comes back after about 50 plain steps: the acceptance estimates
  // count the 16 copies as 16 observations of nothing accepted, and a probe waits until their
  // confidence has faded (53 here); counted in full, the accounts hold it on plain steps far
  // longer (296 of 300). Three such steps (`failed < 3` in run) no longer need the floor (32 plain
  // steps with it, 79 without): they tell about depth 1 only, and the next probe is a short, cheap
  // tree. With the acceptance estimated per depth rather than as a product of conditional rates,
  // every deeper cell took the misses too, and three such steps held the policy on plain steps
  // either way (297 of 300 with the floor, 299 without).
  CHECK(plain < 80);
  CHECK(plain_full > 200);
  CHECK(forgiven > 0);  // the floor counted some probe's tokens above what it emitted
  CHECK(forgiven_full == Approx(0).margin(1e-12));  // counted in full: charged what they lost
  {
    // A step the caller ran at another shape than the one chosen counts the tokens it emitted:
    // the floor belongs to the chosen shape's estimate. The step accepts nothing, over a node
    // count never measured (17), so the speed factor stays and the gain moves by exactly the
    // tokens at the plain cost per token minus the step's time.
    // Steps that accept one token per request until the policy exploits a tree.
    std::uint32_t k = 307;
    draft_shape chosen = draft_shape::plain();
    for (;; ++k) {
      REQUIRE(k < 400);
      chosen = policy.choose(step_context{k, &options, {remaining.data(), batch}, 16 * k});
      if (!chosen.is_plain() && policy.last_choice() == policy_choice::exploit) break;
      policy.observe(copied_step(k, chosen, chosen.is_plain() ? 0 : 1));
    }
    const std::int64_t context = 16 * k;
    const draft_shape ran = chosen == draft_shape{1, 2} ? draft_shape{1, 3} : draft_shape{1, 2};
    step_report r = copied_step(k, ran, 0);
    r.nodes = 17;
    r.target_s = s.verify(r.nodes);
    const double c = static_cast<double>(context);
    const double counted_s =
        std::min(r.total_s(), 2.0 * (policy.draft_cost(ran, batch) + policy.verify_cost(17, c)));
    const double expected_gain =
        policy.gain_s() + batch * policy.verify_cost(batch, c) / batch - counted_s;
    policy.observe(r);
    CHECK(policy.gain_s() == Approx(expected_gain).epsilon(1e-9));
  }
  CHECK_THROWS_WITH(adaptive_policy([] {
                      adaptive_policy_config bad;
                      bad.token_floor_sigmas = 0;
                      return bad;
                    }()),
                    Catch::Contains("token_floor_sigmas 0 must be > 0"));
}

TEST_CASE("plain_margin: a tree must beat plain decoding by the margin to be exploited",
          "[loop][policy]") {
  // 1 x 2 is the best shape, 6.4% ahead of plain decoding (1 x 3 and longer lose). Without a
  // margin the policy exploits it about half of the time (its estimate rests on about 50 steps,
  // whose noise is the size of the 6%). With the default margin (5%) it keeps plain steps: the
  // tree's estimate, from the probes' few steps, puts its gain under the margin. That is the
  // margin's price (here it gives up 6%); its use is on a real machine, where a tree's estimate
  // rests on two noisy cost measurements and an acceptance estimate, so that where every tree is
  // within a few percent of plain decoding the estimated winner is as likely slower than plain
  // steps as faster. Either way the policy stays at plain decoding's speed or better.
  const scenario near{{0.44, 0.3, 0.3, 0.3, 0.3}, {1.0, 0.5}, 0.02, 0.01};
  const one_beam_case c = one_beam(near);
  const double plain_share = c.rates.at({1, 1}) / c.rates.at(c.optimum);
  CAPTURE(plain_share);
  REQUIRE(c.optimum == std::pair<std::int32_t, std::int32_t>{1, 2});
  REQUIRE((plain_share > 0.93 && plain_share < 0.95));
  REQUIRE(c.config.plain_margin == 0.05);
  const std::vector<std::int32_t> remaining{1 << 20};
  const auto run = [&](const adaptive_policy_config& config, std::uint64_t seed,
                       double* estimated_gain) {
    adaptive_policy p(config);
    const tail_summary t =
        summarize_tail(drive_policy(p, near, 1000, {.seed = seed}), 200, c.rates, c.optimum);
    const std::vector<shape_estimate> e = p.estimates({remaining.data(), 1});
    *estimated_gain = e[1].rate() / e[0].rate();  // 1 x 2 (candidates: plain, 1 x 2, ...)
    return t;
  };
  adaptive_policy_config no_margin = c.config;
  no_margin.plain_margin = 0.0;
  // Means of ten runs with different acceptance draws: which of two shapes 6% apart one run
  // exploits hangs on a few lucky or unlucky steps (one run's tree share without the margin
  // ranges from 1% to 90%).
  double efficiency = 0, efficiency_without = 0, plain_with = 0, tree_without = 0, gain = 0;
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    double g = 0, g_without = 0;
    const tail_summary with_margin = run(c.config, seed, &g);
    const tail_summary without_margin = run(no_margin, seed, &g_without);
    CAPTURE(seed, with_margin.efficiency, g, without_margin.efficiency, g_without);
    CHECK(with_margin.efficiency > 0.99 * plain_share);  // plain speed, less under 1% of probes
    efficiency += with_margin.efficiency / 10;
    efficiency_without += without_margin.efficiency / 10;
    plain_with += with_margin.count.count(1) ? with_margin.count.at(1) / 10.0 : 0.0;
    tree_without += without_margin.count.count(2) ? without_margin.count.at(2) / 10.0 : 0.0;
    gain += g / 10;
  }
  CAPTURE(efficiency, efficiency_without, plain_with, tree_without, gain);
  CHECK(tree_without > 400);  // of 800: the tree about half of the time (two runs in ten: < 3%)
  CHECK(efficiency_without > efficiency + 0.01);
  CHECK(plain_with > 600);  // mostly plain steps, a few probes
  CHECK(gain < 1.05);       // held back by the rule: its estimate is within the margin
  CHECK_THROWS_WITH(adaptive_policy([] {
                      adaptive_policy_config bad;
                      bad.plain_margin = -0.01;
                      return bad;
                    }()),
                    Catch::Contains("plain_margin -0.01 must be in [0, 1)"));
}

TEST_CASE("a call's first steps are not stored at the last call's speed", "[loop][policy]") {
  // One request; a plain step costs 1 ms and a 1 x 4 step 3 ms at a call's start, and a long
  // call ends at twice that (its context grew), so the speed factor ends near 2. The next call's
  // first measured step (its first step runs cold and teaches nothing) is a 1 x 4 step, whose
  // node count has one sample only (the calibration's, which the second replaces): it cannot
  // re-measure the factor. Stored at the last call's factor, its 3 ms
  // came out as 1.6 ms, 1 x 4 then looked half as dear as it is, and the factor was re-measured
  // against that wrong value (on the KJV pair at sampling batch 16 the policy ran 1 x 3 for a
  // whole call, 15-25% slower than plain steps). Held until the plain step re-measures the
  // factor, it is stored at the call's own speed.
  adaptive_policy_config config;
  config.widths = {1};
  config.lengths = {4};  // the one tree shape, so that plain steps are the best estimate
  adaptive_policy p(config);
  const decode_options options;
  const std::vector<std::int32_t> remaining{1 << 20};
  const auto step = [&](std::uint32_t k, draft_shape shape, double seconds) {
    p.choose(step_context{k, &options, {remaining.data(), 1}});
    step_report r;
    r.step = k;
    r.shape = shape;
    r.requests = 1;
    r.nodes = shape.is_plain() ? 1 : shape.beam_length;
    r.emitted = r.nodes;   // a tree step accepts every drafted token
    r.target_s = seconds;  // no acceptance detail: this test is about costs only
    p.observe(r);
  };
  const draft_shape tree{1, 4};
  const std::uint32_t call = 40;
  step(1, draft_shape::plain(), 1e-3);
  step(2, tree, 3e-3);
  for (std::uint32_t k = 3; k <= call; ++k)
    step(k, draft_shape::plain(), 1e-3 * (1.0 + static_cast<double>(k - 1) / (call - 1)));
  const double end_of_call = p.speed();
  CAPTURE(end_of_call);
  REQUIRE(end_of_call > 1.3);  // the factor followed the growth, with its lag
  // The next call. Its first step runs cold (1.8x a warm plain step): its cost teaches nothing,
  // neither the factor nor the bins.
  const double cost1 = p.verify_cost(1), cost4 = p.verify_cost(4);
  step(1, draft_shape::plain(), 1.8e-3);
  CHECK(p.speed() == end_of_call);
  CHECK(p.verify_cost(1) == cost1);
  CHECK(p.verify_cost(4) == cost4);
  p.choose(step_context{2, &options, {remaining.data(), 1}});
  step_report r;
  r.step = 2;
  r.shape = tree;
  r.requests = 1;
  r.nodes = 4;
  r.emitted = 4;
  r.target_s = 3e-3;
  p.observe(r);
  step(3, draft_shape::plain(), 1e-3);
  CAPTURE(p.speed(), p.verify_cost(1), p.verify_cost(4));
  CHECK(p.speed() < 0.6 * end_of_call);
  CHECK(p.verify_cost(4) / p.verify_cost(1) == Approx(3.0).epsilon(0.1));
}

TEST_CASE("a new generate() call re-measures the machine's speed at its first warm step",
          "[loop][policy]") {
  // Calls of 150 steps whose costs double from a call's first step to its last (a step's cost
  // grows with its requests' context: 1.5 ms to 3.1 ms per step over a 160-token call at batch 16
  // on the KJV pair) and fall back at the next call. Carried over at speed_smoothing 0.1, the
  // speed factor took ten steps to come down from the last call's end, and the costs measured in
  // them were stored up to 2x too low.
  const scenario s{{0.5, 0.45, 0.3, 0.3, 0.3}, {1.0, 0.15}, 0.02, 0.02};
  const one_beam_case c = one_beam(s);
  adaptive_policy p(c.config);
  const std::int32_t call = 150;
  drive_policy(p, s, call, {.call_steps = call, .context_growth = 1.0});
  const double end_of_call = p.speed();
  // Ten more such calls: no probe at a call's first step, where the factor waits for its
  // re-measurement (a probe is mostly of a shape whose cost bin is cold, which cannot re-measure
  // it), while the calls' other steps probe as before.
  {
    adaptive_policy more = p;
    std::vector<policy_choice> choices;
    drive_policy(more, s, 10 * call,
                 {.call_steps = call, .context_growth = 1.0, .choices = &choices});
    std::int32_t first_probes = 0, other_probes = 0;
    for (std::size_t k = 0; k < choices.size(); ++k)
      (k % call == 0 ? first_probes : other_probes) += choices[k] == policy_choice::probe;
    CAPTURE(first_probes, other_probes);
    CHECK(first_probes == 0);
    CHECK(other_probes > 10);
  }
  CAPTURE(end_of_call);
  CHECK(end_of_call > 1.5);  // the factor followed the growth (to 2 at the last step, lagging)
  // The next call's first warm step (its step 1 runs cold and teaches nothing; step 2): the
  // policy resets the factor from the step's own measurement. drive_policy restarts at step 1
  // with costs x 1 (x 1.007 at step 2).
  adaptive_policy next = p;
  const draft_shape first =
      drive_policy(next, s, 2, {.call_steps = call, .context_growth = 1.0})[1];
  const double nodes = first.is_plain() ? 1.0 : first.beam_length;
  CAPTURE(next.speed(), nodes);
  // Smoothing 0.1 alone would move it by a factor 0.5^0.1 = 0.93 at most.
  CHECK(next.speed() < 0.6 * end_of_call);
  // The step's own node count is now estimated at what it measured (costs x 1 again).
  CHECK(next.verify_cost(nodes) == Approx(s.verify(nodes)).epsilon(0.02));
  // After calls too short for the context to grow (under 16 steps), no reset: a resetting step
  // teaches its own cost bin nothing, so short calls would stop the bins from learning. Calls of 8
  // steps, costs x 1 to x 1.875 within each; the next call's first step moves the factor by the
  // smoothing alone, and it does move it: after short calls step 1 is not skipped as cold (calls
  // of a step or two would otherwise teach the costs nothing).
  adaptive_policy short_calls(c.config);
  drive_policy(short_calls, s, 160, {.call_steps = 8, .context_growth = 1.0});
  const double before = short_calls.speed();
  drive_policy(short_calls, s, 1, {.call_steps = 8, .context_growth = 1.0});
  CAPTURE(before, short_calls.speed());
  CHECK(short_calls.speed() >= 0.93 * before);
  CHECK(short_calls.speed() < before);
}
