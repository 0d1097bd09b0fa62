// policy_example: the adaptive speculation policy's estimator on five hand-made steps, printed
// number by number (docs/loop.md's worked example is this program's output).
//
// One request; candidates W in {1, 2} x L in {2, 3, 4} and plain steps. The steps a decoder
// would report (times in milliseconds):
//   1. plain                 1 node,  verify 1.0
//   2. W 1, L 4              4 nodes, draft 0.3, verify 1.6, accepted 2 (beam 0)
//   3. plain                 1 node,  verify 1.0   (replaces step 1's first-touch sample)
//   4. W 1, L 4              4 nodes, draft 0.3, verify 1.6, accepted 3 (beam 0)
//   5. W 2, L 4              6 nodes, draft 0.5, verify 2.0, accepted 3: depth 1 on beam 0,
//                            depths 2-3 on beam 1, which shares depth 1 with beam 0
// then asks for step 6 and prints why it chose what it chose.
#include <cstdint>
#include <cstdio>
#include <vector>

#include "redraft/loop/adaptive_policy.hpp"
#include "redraft/loop/policy_trace.hpp"  // traced_policy::name: "plain", "1x4", ...

using namespace redraft;

namespace {

struct observed_step {
  draft_shape shape;
  std::int32_t nodes;
  double draft_ms, verify_ms;
  std::vector<std::int32_t> accepted_rank;  // [L - 1], -1 past the accepted path
  std::vector<std::int32_t> shared_prefix;  // [W]
};

void observe(adaptive_policy& policy, std::uint32_t index, const observed_step& s) {
  step_report r;
  r.step = index;
  r.shape = s.shape;
  r.requests = 1;
  r.nodes = s.nodes;
  r.draft_s = s.draft_ms * 1e-3;
  r.target_s = s.verify_ms * 1e-3;
  std::int32_t accepted = 0;
  for (const std::int32_t rank : s.accepted_rank) accepted += rank >= 0;
  r.emitted = accepted + 1;
  if (!s.shape.is_plain()) {
    r.accepted_len = {&accepted, 1};
    r.accepted_rank = {s.accepted_rank.data(), 1, s.shape.beam_length - 1};
    r.shared_prefix = {s.shared_prefix.data(), 1, s.shape.beam_width};
  }
  policy.observe(r);
}

}  // namespace

int main() {
  adaptive_policy_config config;
  config.widths = {1, 2};
  config.lengths = {2, 3, 4};
  adaptive_policy policy(config);
  decode_options options;
  policy.start(options);

  const std::vector<observed_step> steps = {
      {draft_shape::plain(), 1, 0.0, 1.0, {}, {}}, {{1, 4}, 4, 0.3, 1.6, {0, 0, -1}, {0}},
      {draft_shape::plain(), 1, 0.0, 1.0, {}, {}}, {{1, 4}, 4, 0.3, 1.6, {0, 0, 0}, {0}},
      {{2, 4}, 6, 0.5, 2.0, {0, 1, 1}, {0, 1}},
  };
  const std::int32_t remaining = 100;  // tokens the request may still emit
  for (std::uint32_t i = 0; i < steps.size(); ++i) {
    // The decoder asks before every step; the first three are the calibration.
    const draft_shape asked = policy.choose(step_context{i + 1, &options, {&remaining, 1}});
    std::printf("step %u: policy asks for %s%s, the step runs W %d, L %d\n", i + 1,
                traced_policy::name(asked).c_str(),
                policy.last_choice() == policy_choice::calibrate ? " (calibration)" : "",
                steps[i].shape.beam_width, steps[i].shape.beam_length);
    observe(policy, i + 1, steps[i]);
  }

  std::printf("\nverify(n), ms:");
  for (int n = 1; n <= 8; ++n) std::printf("  n=%d: %.3f", n, 1e3 * policy.verify_cost(n));
  std::printf("\ndraft(W, L), ms:");
  for (const std::int32_t w : config.widths)
    for (const std::int32_t l : config.lengths)
      std::printf("  %dx%d: %.3f", w, l, 1e3 * policy.draft_cost({w, l}, 1));
  std::printf("\n\nq(W, d) = P(accepted >= d), mean [optimistic]:\n");
  for (std::size_t j = 0; j < config.widths.size(); ++j) {
    std::printf("  W %d:", config.widths[j]);
    for (std::int32_t d = 1; d <= 3; ++d)
      std::printf("  d=%d: %.3f [%.3f]", d, policy.acceptance(j, d),
                  policy.optimistic_acceptance(j, d));
    std::printf("\n");
  }
  std::printf("\nshape   tokens  nodes  draft ms  verify ms  tokens/ms  optimistic\n");
  const auto estimates = policy.estimates({&remaining, 1});
  for (const auto& e : estimates) {
    std::printf("%-6s  %6.3f  %5.2f  %8.3f  %9.3f  %9.3f  %10.3f\n",
                traced_policy::name(e.shape).c_str(), e.tokens, e.nodes, 1e3 * e.draft_s,
                1e3 * e.verify_s, e.rate() * 1e-3, e.optimistic_rate() * 1e-3);
  }
  const draft_shape next = policy.choose(step_context{6, &options, {&remaining, 1}});
  std::printf(
      "\nstep 6: %s %dx%d (probe budget %.3f ms: %g plain steps' time, %.3f ms, plus the smaller "
      "of 3%% of %.1f ms observed and 0.5%% of it plus half of the %.3f ms saved against plain; "
      "%.3f ms spent)\n",
      policy_choice_name(policy.last_choice()), next.beam_width, next.beam_length,
      1e3 * policy.probe_allowance(), policy.config().explore_free_steps,
      1e3 * policy.probe_grant_s(), 1e3 * policy.elapsed_s(), 1e3 * policy.gain_s(),
      1e3 * policy.probe_loss_s());
  return 0;
}
