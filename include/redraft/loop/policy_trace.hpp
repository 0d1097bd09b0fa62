// redraft/loop/policy_trace.hpp: traced_policy, a SpeculationPolicy that runs an adaptive_policy
// (loop/adaptive_policy.hpp) and records, for every step, what it chose, why, what the step then
// measured, and the estimate of every candidate at the moment of the choice; write_csv() writes
// the record as a CSV to read a run's decisions after the fact (redraft-demo --policy-trace FILE;
// docs/loop.md). The record is kept in memory (about 2 KB per step with the default 26
// candidates) and formatted only when written, so tracing adds little to a step's time: one more
// call of estimates() and a copy of its result.
//
// Long form, one row per step and candidate shape (plain first when allowed, then W x L in the
// policy's candidate order), so a step with C candidates has C rows that repeat its step
// columns:
//   run            the caller's label (set_run(); redraft-demo: the repeat, from 0)
//   step           the step of its generate() call (1-based, step_context::step)
//   choice         calibrate | exploit | probe (adaptive_policy::last_choice())
//   shape          the shape the policy chose, "plain" or "WxL"
//   nodes emitted  the step's tree nodes and emitted tokens, all requests (step_report)
//   draft_s verify_s  the step's measured drafting time and everything else (verify_cost_s())
//   speed          the policy's machine-speed factor when it chose (adaptive_policy::speed())
//   budget_s probe_loss_s  the probe allowance and what probes had lost when it chose
//   context        the batch's committed tokens when it chose (step_context::context_tokens), the
//                  context its verify estimates are read at
//   kappa          the verify cost's slope per context token when it chose, in stored units
//                  (adaptive_policy::context_slope()): speed x kappa is seconds per token now
//   candidate      this row's candidate shape
//   tokens est_nodes est_draft_s est_verify_s rate optimistic_rate
//                  its estimate (shape_estimate): expected tokens, nodes, drafting and verify
//                  seconds, tokens per second, and the optimistic rate probes are chosen by
//   cost_weight    the weight of the verify measurements near its node count
//                  (adaptive_policy::verify_cost_weight)
//   best           1 for the candidate with the best adjusted rate (adaptive_policy::adjusted_rate:
//                  the mean rate, a tree's discounted by plain_margin; what an exploiting step
//                  runs)
// Times in seconds of the decoder's clock. Tracing reads the policy after its choice and never
// changes it: on the same step reports, a traced policy chooses exactly what the untraced one
// would.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "redraft/loop/adaptive_policy.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/speculation_policy.hpp"

namespace redraft {

class traced_policy {
 public:
  static constexpr const char* header =
      "run,step,choice,shape,nodes,emitted,draft_s,verify_s,speed,budget_s,probe_loss_s,"
      "context,kappa,candidate,tokens,est_nodes,est_draft_s,est_verify_s,rate,optimistic_rate,"
      "cost_weight,best";

  // One traced step: what the policy saw when it chose, and what the step measured.
  struct step_record {
    std::int32_t run = 0;
    std::uint32_t step = 0;
    policy_choice choice = policy_choice::calibrate;
    draft_shape shape;  // as chosen
    std::int32_t nodes = 0, emitted = 0;
    double draft_s = 0, verify_s = 0;
    double speed = 1, budget_s = 0, probe_loss_s = 0;
    std::int64_t context = 0;               // step_context::context_tokens
    double kappa = 0;                       // adaptive_policy::context_slope() when it chose
    std::vector<shape_estimate> estimates;  // [candidates] as estimates() returned them
    std::vector<double> cost_weight;        // [candidates] verify_cost_weight(nodes)
    std::size_t best = 0;                   // the index of the best adjusted rate
  };

  explicit traced_policy(adaptive_policy inner) : inner_(std::move(inner)) {}

  // The `run` column of the steps recorded from now on.
  void set_run(std::int32_t run) { run_ = run; }

  const adaptive_policy& inner() const { return inner_; }
  const std::vector<step_record>& records() const { return records_; }

  // The header line, then C rows per recorded step (C candidates).
  void write_csv(std::ostream& out) const {
    const auto old_precision = out.precision(6);
    out << header << '\n';
    for (const step_record& r : records_) {
      for (std::size_t c = 0; c < r.estimates.size(); ++c) {
        const shape_estimate& e = r.estimates[c];
        out << r.run << ',' << r.step << ',' << policy_choice_name(r.choice) << ',' << name(r.shape)
            << ',' << r.nodes << ',' << r.emitted << ',' << r.draft_s << ',' << r.verify_s << ','
            << r.speed << ',' << r.budget_s << ',' << r.probe_loss_s << ',' << r.context << ','
            << r.kappa << ',' << name(e.shape) << ',' << e.tokens << ',' << e.nodes << ','
            << e.draft_s << ',' << e.verify_s << ',' << e.rate() << ',' << e.optimistic_rate()
            << ',' << r.cost_weight[c] << ',' << (c == r.best ? 1 : 0) << '\n';
      }
    }
    out.precision(old_precision);
  }

  static std::string name(draft_shape s) {
    return s.is_plain() ? std::string("plain")
                        : std::to_string(s.beam_width) + "x" + std::to_string(s.beam_length);
  }

  // --- SpeculationPolicy: the inner policy's, recording each step ---
  std::int32_t start(const decode_options& options) { return inner_.start(options); }
  bool needs_reports() const { return inner_.needs_reports(); }

  draft_shape choose(const step_context& ctx) {
    const draft_shape shape = inner_.choose(ctx);
    step_record r;
    r.run = run_;
    r.step = ctx.step;
    r.choice = inner_.last_choice();
    r.shape = shape;
    // choose() only records its choice, so these are the estimates it chose from.
    r.estimates = inner_.estimates(ctx.remaining);
    for (std::size_t c = 0; c < r.estimates.size(); ++c) {
      r.cost_weight.push_back(inner_.verify_cost_weight(r.estimates[c].nodes));
      if (inner_.adjusted_rate(r.estimates[c]) > inner_.adjusted_rate(r.estimates[r.best]))
        r.best = c;
    }
    r.speed = inner_.speed();
    r.budget_s = inner_.probe_allowance();
    r.probe_loss_s = inner_.probe_loss_s();
    r.context = ctx.context_tokens;
    r.kappa = inner_.context_slope();
    records_.push_back(std::move(r));
    return shape;
  }

  void observe(const step_report& report) {
    inner_.observe(report);
    step_record& r = records_.back();
    r.nodes = report.nodes;
    r.emitted = report.emitted;
    r.draft_s = report.draft_s;
    r.verify_s = report.verify_cost_s();
  }

 private:
  adaptive_policy inner_;
  std::int32_t run_ = 0;
  std::vector<step_record> records_;  // [steps]
};

static_assert(SpeculationPolicy<traced_policy>);

}  // namespace redraft
