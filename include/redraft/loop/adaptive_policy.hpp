// redraft/loop/adaptive_policy.hpp: a SpeculationPolicy (loop/speculation_policy.hpp) that picks,
// before every step, the draft shape with the most expected emitted tokens per second, from
// costs and acceptance measured online. It steps back to plain decoding when speculation does
// not pay. docs/loop.md explains the estimator with a worked example.
//
// For a candidate shape s = (W, L) and the A requests of the step (request i may still emit
// rem_i tokens), the estimate is
//   tokens(s) = sum_i (1 + sum_{d=1}^{min(L-1, rem_i-1)} q(W, d))   q(W, d) = P(accepted >= d | W)
//   time(s)   = draft(W, L, A) + verify(n, C),  n = A * nodes(W, L)    nodes: mean tree size per
//   request rate(s)   = tokens(s) / time(s)
// and a plain step has tokens = A, time = verify(A, C). The parts:
//  - verify(n, C): the step's time outside drafting (tree, target pass, verification, KV commit)
//    as a function of the batch's total node count n and the tokens its requests have in the KV
//    cache, C (step_context::context_tokens): f(n) + kappa C. f is a decayed mean per node count
//    (geometric bins above 64; a sample counts at most twice its bin's value), each bin read at C
//    along kappa, interpolated piecewise linearly, extrapolated with the steepest of the last
//    segment's slope and the least-squares slope. kappa, the cost of a context token, is the same
//    for every node count (the attention reads each request's cache once for its whole tree); it
//    is fitted on the changes between steps of one node count a few steps apart (context_slope()).
//  - draft(W, L, A) = (L - 1) (c0 + c1 W A): beam search runs L - 1 head steps over W A rows;
//    c0, c1 >= 0 by decayed least squares (c0 = 0 while W A has not varied).
//  - q(W, d): a step of shape (W, L) tells, per request, how many tokens every narrower and
//    shorter shape would have accepted on the same beams (step_report's accepted_rank), so one
//    step updates every cell (W' <= W, d <= L - 1). q(W, d) = c(W, 1) ... c(W, d), each
//    conditional rate c(W, k) = P(accepted >= k | accepted >= k - 1) a Beta estimate over the
//    requests that reached depth k - 1, with a prior of weight 1 at its neighbours' value (the
//    depth before's rate, or what the narrower width implies), so a cell never tried borrows from
//    them; q is kept within q(W, d) >= q(W narrower, d) and q(W, d) <= q(W, d - 1). A step that
//    stops at depth 1 tells about c(W, 1) only, which every shape shares.
//  - nodes(W, L): the same counterfactual from step_report's shared_prefix; 1 + W (L - 1) before
//    any data.
// Machine speed: the costs (f and kappa) are stored divided by a speed factor and estimated
// multiplied by it.
// Each step whose node count has a warm measurement moves the factor towards its measured /
// expected cost (geometric smoothing, weight speed_smoothing), so a slowdown that hits every
// shape alike (another process on the core) changes one number, and a shape measured in a fast
// stretch does not look cheap in a slow one: the choice between shapes depends on their
// relative costs only. In a generate() call that follows a call of 16 steps or more, the first
// step runs cold (after the prefill, or whatever ran between calls) and adds nothing to the costs
// or the factor, and the first warm step after it sets the factor from its own measurement
// instead (a guard from before kappa, when the factor also carried the context's growth; with
// kappa it moves little there). Until that step, the
// policy does not probe, and the costs of steps whose node count is cold are held and stored at
// the re-measured factor.
// Forgetting: a cell's (and a node count's) older observations lose weight by `decay` at each
// step that observes it again, so a cell the policy stopped trying keeps its last value rather
// than sliding to the prior; cost bins and the draft fit lose weight by `decay` at every step.
// A second, per-step decayed count ("freshness") says how recent a cell's data is; it sets the
// cell's confidence interval, so stale cells grow uncertain and get tried again.
//
// Exploration. The first three steps of a fresh policy calibrate: plain, the narrowest and
// longest candidate, plain again (a cost's first sample pays for first-touch allocations and
// cold caches; the second replaces it). Then each step exploits the best mean estimate (with
// plain steps allowed, a tree's tokens count 1 / (1 + plain_margin) against a plain step's, in
// the choice, in a probe's expected loss and in its charge: a tree must beat plain decoding by a
// margin, since the noise of its estimate is a risk plain steps do not carry), unless a probe
// may pay: a shape whose optimistic rate beats the best's optimistic rate (so a neighbour
// that only shares the best's uncertainty is no probe), whose expected loss (its time minus the
// time the best shape would need for its tokens) fits in the probe budget: explore_fraction of
// the decoding time so far (each step's time at the fraction of its own step number, which
// shrinks as sqrt(explore_steps / step) past explore_steps steps) minus what earlier probes lost
// (signed: a lucky probe refunds; an unlucky one is counted at most token_floor_sigmas standard
// deviations of its tokens below their estimate, since requests that draft alike accept alike).
// With plain steps allowed the budget is also capped by what speculation gained:
// explore_free_fraction of the decoding time plus explore_gain_share of the time the other steps
// saved against plain decoding (each speculative step's tokens at the measured plain cost per
// token, minus its time), so where nothing pays, probes lose at most explore_free_fraction and the
// policy keeps plain speed; on top of both, a one-time grant of explore_free_steps plain steps'
// time, so that a few unlucky early steps do not keep the policy from looking again for hundreds of
// steps; and probes are not charged at all until depth 1 of the narrowest width has
// explore_free_trials request observations (at batch 1, the first few tree steps). Optimistic rate:
// acceptance at mean + `confidence` standard deviations (freshness-weighted), and verify cost times
// exp(-cost_confidence / sqrt(w)), w the weight of the bins near n (at most 64 times the weight of
// the bins verify(n) is read from), so a node count measured long ago, or never, is measured again
// when it might pay, even while a nearby count is measured every step; plain steps included, whose
// cost has no other uncertainty. Probes therefore cost at most about explore_fraction of the time,
// an expensive tree is tried rarely, and a shape whose acceptance went stale is tried again.
//
// Persistence. Everything learned lives in the policy object: the speculative decoder keeps its
// policy across generate() calls (speculative_decoder::policy()), so only the first call
// calibrates, later calls start from the learned costs and acceptance, and exploration keeps
// shrinking. The policy is a value: copy it into another decoder to start where it left off.
// Its costs are the machine's and the target's, its acceptance the drafter's on the text seen:
// start a fresh policy when either changes.
//
// Determinism: a pure function of the step reports it observed; with a simulated clock
// (DecodeClock) the choices of a run are reproducible. It never sees a step's random draws.
// Threads: the const queries (estimates(), verify_cost(), ...) fill a cache of the cost bins, so
// one policy object must not be read from two threads at once (copy it instead).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/speculation_policy.hpp"

namespace redraft {

struct adaptive_policy_config {
  std::vector<std::int32_t> widths{1, 2, 4, 8, 16};  // candidate W, ascending, >= 1
  std::vector<std::int32_t> lengths{2, 3, 4, 5, 6};  // candidate L, ascending, >= 2 (root included)
  bool allow_plain = true;                           // plain steps (L = 1) are candidates
  double decay = 0.98;             // weight an observation keeps per later step, in (0, 1]
  double explore_fraction = 0.03;  // probes may lose at most this fraction of the decoding time
  // ... of the first explore_steps steps; step S > explore_steps adds its time at the fraction
  // times sqrt(explore_steps / S), so probe time grows like the square root of the decoding time
  // (less exploration once the estimates are backed by many steps). 0: it never shrinks.
  std::int32_t explore_steps = 64;
  double confidence = 1.0;  // optimistic acceptance = mean + confidence standard deviations
  // optimistic verify cost = mean max(1/2, exp(-cost_confidence / sqrt(weight))), weight the
  // decayed number of measurements behind it (1/2 when never measured)
  double cost_confidence = 0.3;
  // With plain steps allowed, probes are also paid from what speculation has gained: what they
  // may lose never exceeds explore_free_fraction of the decoding time plus explore_gain_share of
  // the time the policy's other steps saved against plain decoding (estimated, signed). Where
  // nothing pays, the gain is zero or negative and exploration stays under the free fraction.
  double explore_free_fraction = 0.005;
  double explore_gain_share = 0.5;
  // ... and, with plain steps allowed, probes may always lose the time of this many plain steps
  // (at the largest batch seen) on top of both bounds: a few unlucky early steps (a calibration
  // tree or a first probe that accepted nothing) would otherwise leave the policy on plain steps
  // until explore_free_fraction of the decoding time repaid them, which in a run of a few hundred
  // steps is the whole run.
  double explore_free_steps = 2.0;
  // ... and probes cost the budget nothing until the narrowest candidate width's depth-1
  // acceptance has this many request observations (counted without decay): before that, a tree
  // that accepted nothing may have been unlucky rather than bad. At batch 1 under sampling, five
  // such tree steps at a run's start spent the grant and held the policy on plain steps for
  // about 450 steps; at a batch of this size or more the calibration step alone makes the count.
  // 0: every probe is charged.
  double explore_free_trials = 8.0;
  // With plain steps allowed, a tree's tokens count 1 / (1 + plain_margin) when shapes are
  // compared: a tree is exploited only when its estimated rate beats plain decoding's by more
  // than this fraction, and a tree probed while plain steps are best is charged with its tokens
  // counted at that worth. Why: a tree's estimate rests on two cost measurements and an
  // acceptance estimate, a plain step's on one cost, so where every tree is within a few percent
  // of plain decoding the estimated winner is as likely to be slower than plain steps as faster.
  // The margin gives up at most that fraction of a gain too small to tell from noise, and keeps
  // such runs at plain decoding's speed. 0: compare rates as estimated.
  double plain_margin = 0.05;
  // The weight of each step in the machine-speed factor, in [0, 1) (0: no speed tracking). Costs
  // are stored divided by the factor and estimated multiplied by it, so a slowdown that hits every
  // shape alike (another process, the clock frequency) moves this one number instead of making
  // the shapes measured before it look cheap.
  double speed_smoothing = 0.1;
  // The probe and gain accounts count a step's emitted tokens as at least their expected number
  // minus this many standard deviations, the requests taken as independent (> 0). Requests that
  // draft alike accept alike (copied prompts, a shared system prompt), so one step in which no
  // request accepted anything can cost several times the probe budget; the acceptance estimates
  // take the step's outcome in full either way. At 5 an independent batch essentially never
  // reaches the floor.
  double token_floor_sigmas = 5.0;
};

// The estimate for one candidate shape (see the file comment).
struct shape_estimate {
  draft_shape shape;
  double tokens = 0;               // expected emitted tokens, all requests
  double tokens_sd = 0;            // their standard deviation, requests taken as independent
  double nodes = 0;                // expected tree nodes, all requests
  double draft_s = 0;              // expected drafting time
  double verify_s = 0;             // expected time of everything else
  double optimistic_tokens = 0;    // tokens with the optimistic acceptance
  double optimistic_verify_s = 0;  // verify_s lowered where few measurements back it
  double time_s() const { return draft_s + verify_s; }
  double rate() const { return time_s() > 0 ? tokens / time_s() : 0.0; }
  double optimistic_rate() const {
    const double t = draft_s + optimistic_verify_s;
    return t > 0 ? optimistic_tokens / t : 0.0;
  }
};

// Why a shape was chosen.
enum class policy_choice { calibrate, exploit, probe };

// "calibrate", "exploit" or "probe" (the policy trace's `choice` column, Python's names).
inline const char* policy_choice_name(policy_choice c) {
  static constexpr const char* names[] = {"calibrate", "exploit", "probe"};
  return names[static_cast<std::size_t>(c)];
}

class adaptive_policy {
 public:
  explicit adaptive_policy(adaptive_policy_config config = {}) : config_(std::move(config)) {
    constexpr const char* fn = "adaptive_policy";
    REDRAFT_REQUIRE(!config_.widths.empty() && !config_.lengths.empty(), fn,
                    ": widths and lengths need at least one candidate each (got ",
                    config_.widths.size(), " widths, ", config_.lengths.size(), " lengths)");
    for (std::size_t i = 0; i < config_.widths.size(); ++i)
      REDRAFT_REQUIRE(
          config_.widths[i] >= 1 && (i == 0 || config_.widths[i] > config_.widths[i - 1]), fn,
          ": widths must be ascending and >= 1 (widths[", i, "] = ", config_.widths[i], ")");
    for (std::size_t i = 0; i < config_.lengths.size(); ++i)
      REDRAFT_REQUIRE(
          config_.lengths[i] >= 2 && (i == 0 || config_.lengths[i] > config_.lengths[i - 1]), fn,
          ": lengths must be ascending and >= 2 (lengths[", i, "] = ", config_.lengths[i], ")");
    REDRAFT_REQUIRE(config_.decay > 0.0 && config_.decay <= 1.0, fn, ": decay ", config_.decay,
                    " must be in (0, 1]");
    REDRAFT_REQUIRE(config_.explore_fraction >= 0.0 && config_.explore_fraction < 1.0, fn,
                    ": explore_fraction ", config_.explore_fraction, " must be in [0, 1)");
    REDRAFT_REQUIRE(config_.explore_steps >= 0, fn, ": explore_steps ", config_.explore_steps,
                    " must be >= 0");
    REDRAFT_REQUIRE(config_.confidence >= 0.0, fn, ": confidence ", config_.confidence,
                    " must be >= 0");
    REDRAFT_REQUIRE(config_.cost_confidence >= 0.0 && config_.cost_confidence < 1.0, fn,
                    ": cost_confidence ", config_.cost_confidence, " must be in [0, 1)");
    REDRAFT_REQUIRE(config_.explore_free_fraction >= 0.0 && config_.explore_free_fraction < 1.0, fn,
                    ": explore_free_fraction ", config_.explore_free_fraction,
                    " must be in [0, 1)");
    REDRAFT_REQUIRE(config_.plain_margin >= 0.0 && config_.plain_margin < 1.0, fn,
                    ": plain_margin ", config_.plain_margin, " must be in [0, 1)");
    REDRAFT_REQUIRE(config_.explore_free_steps >= 0.0, fn, ": explore_free_steps ",
                    config_.explore_free_steps, " must be >= 0");
    REDRAFT_REQUIRE(config_.explore_free_trials >= 0.0, fn, ": explore_free_trials ",
                    config_.explore_free_trials, " must be >= 0");
    REDRAFT_REQUIRE(config_.explore_gain_share >= 0.0 && config_.explore_gain_share <= 1.0, fn,
                    ": explore_gain_share ", config_.explore_gain_share, " must be in [0, 1]");
    REDRAFT_REQUIRE(config_.speed_smoothing >= 0.0 && config_.speed_smoothing < 1.0, fn,
                    ": speed_smoothing ", config_.speed_smoothing, " must be in [0, 1)");
    REDRAFT_REQUIRE(config_.token_floor_sigmas > 0.0, fn, ": token_floor_sigmas ",
                    config_.token_floor_sigmas, " must be > 0");
    const std::size_t cells = config_.widths.size() * static_cast<std::size_t>(max_depth());
    hits_.assign(cells, 0.0);
    seen_.assign(cells, 0.0);
    fresh_.assign(cells, 0.0);
    node_sum_.assign(config_.widths.size() * config_.lengths.size(), 0.0);
    node_weight_.assign(node_sum_.size(), 0.0);
  }

  const adaptive_policy_config& config() const { return config_; }

  // --- SpeculationPolicy ---
  std::int32_t start(const decode_options&) const { return config_.lengths.back(); }
  bool needs_reports() const { return true; }

  draft_shape choose(const step_context& ctx) {
    // A new generate() call: the speed factor carried over reflects the last call's end (its
    // requests' long contexts), not this call's start (see update_speed). NOTE: only after a call
    // long enough for its context to have grown: a resynchronising step teaches its own cost bin
    // nothing (the factor takes all of its news), so a caller whose calls last a step or two
    // would otherwise stop the bins from learning.
    if (ctx.step == 1) {
      resync_speed_ = call_steps_ >= resync_after_steps;
      cold_step_ = resync_speed_;
      call_steps_ = 0;
    }
    ++call_steps_;
    context_ = static_cast<double>(ctx.context_tokens);
    // Calibration, once per policy: plain, narrowest-longest, plain (the first sample of a
    // cost pays for first-touch allocations and cold caches: the second replaces it). The
    // narrowest-longest shape's cost keeps its first, pessimistic sample until it is measured
    // again, so a run where speculation does not pay spends one speculative step, not two.
    if (calibration_steps_ < 3) {
      const bool plain = config_.allow_plain && calibration_steps_ != 1;
      ++calibration_steps_;
      return record(plain ? draft_shape::plain()
                          : draft_shape{config_.widths.front(), config_.lengths.back()},
                    policy_choice::calibrate, 0, 1.0);
    }
    const std::vector<shape_estimate> all = estimates(ctx.remaining);
    const shape_estimate* best = &all.front();
    for (const auto& e : all)
      if (adjusted_rate(e) > adjusted_rate(*best)) best = &e;
    const double best_rate = best->rate();
    // The probe: the most promising shape among those the budget affords.
    const shape_estimate* probe = nullptr;
    // NOTE: the grant only grows (a budget that shrinks can leave the policy in a hole it needs
    // hundreds of steps to climb out of); ctx.remaining's extent is the step's batch.
    if (config_.allow_plain)
      free_s_ = std::max(free_s_,
                         config_.explore_free_steps *
                             verify_cost(static_cast<double>(ctx.remaining.extent(0)), context_));
    const double budget = probe_allowance() - probe_loss_s_;
    // NOTE: no probe while the speed factor waits for its re-measurement at a call's start: a
    // probe is usually of a shape whose cost bin is cold, which cannot re-measure it, and the
    // call's costs would be read at the last call's speed until a warm step came.
    if (!resync_speed_) {
      for (const auto& e : all) {
        // Only a shape that might beat the best even when the best is as good as it might be:
        // a neighbour that shares the best's cells and uncertainty is no probe.
        // (Candidates other than the best share their worth against it, so the optimistic rate
        // alone ranks them.)
        const double worth = token_worth(e.shape, best->shape);
        if (e.shape == best->shape || worth * e.optimistic_rate() <= best->optimistic_rate())
          continue;
        const double loss = expected_loss(e, worth, best_rate);
        if (loss > budget) continue;
        if (probe == nullptr || e.optimistic_rate() > probe->optimistic_rate()) probe = &e;
      }
    }
    if (probe != nullptr) {
      const double worth = token_worth(probe->shape, best->shape);
      return record(probe->shape, policy_choice::probe, best_rate, worth,
                    probe->tokens - config_.token_floor_sigmas * probe->tokens_sd);
    }
    return record(best->shape, policy_choice::exploit, best_rate, 1.0,
                  best->tokens - config_.token_floor_sigmas * best->tokens_sd);
  }

  void observe(const step_report& report) {
    ++steps_;
    decay_all();
    elapsed_s_ += report.total_s();
    // NOTE: each step adds its own time at the fraction of its own step count. Scaling all the
    // time so far by today's shrunken fraction instead took back allowance that earlier probes
    // had already spent, and a policy whose budget went negative that way could not probe when
    // the acceptance changed (it stayed on plain steps for hundreds of steps).
    allowance_s_ += explore_fraction_now() * report.total_s();
    const double seconds = accounted_time(report);
    if (last_choice_ == policy_choice::probe && last_best_rate_ > 0) {
      // Signed: a probe that beat the estimate refunds the budget (clamping at 0 would charge
      // every near-best probe for its noise).
      probe_realized_loss_s_ += seconds - report.emitted * last_worth_ / last_best_rate_;
      if (depth1_trials_ >= config_.explore_free_trials)
        probe_loss_s_ += seconds - counted_tokens(report) * last_worth_ / last_best_rate_;
    }
    const double context = static_cast<double>(report.context_tokens);
    // NOTE: a generate() call's first step runs cold (the prefill, or whatever the caller ran
    // between calls, evicted the caches; the demo times plain decoding in between): on the KJV
    // pair at batch 1 it cost a median 1.08x its call's later steps of the same node count, up to
    // 2.2x. Its costs teach neither the bins nor the speed factor, which the call's first warm
    // step re-measured from it: the factor jumped by up to 1.7x at a call's start, the costs
    // stored while it came back down read low, and the policy ran 1 x 4 for whole calls at 0.76
    // of 1 x 2's rate. Only where the factor is re-measured (a call after one of 16 steps or
    // more): a caller whose calls last a step or two would otherwise teach the costs nothing, and
    // the policy's first step (calibration) replaces every bin's first sample anyway.
    const bool cold = cold_step_;
    cold_step_ = false;
    if (!cold) update_speed(report.nodes, context, report.verify_cost_s());
    if (last_choice_ != policy_choice::probe) add_gain(report, seconds);
    if (!cold)
      store_costs({report.shape, report.requests, report.nodes, context, report.verify_cost_s(),
                   report.draft_s, steps_});
    if (report.shape.is_plain()) return;
    const std::int32_t w_count = report.shape.beam_width, l_count = report.shape.beam_length;
    if (report.accepted_len.extent(0) != report.requests) return;  // no acceptance detail
    const std::int32_t depth_count = max_depth();
    const std::int32_t observed = std::min(l_count - 1, depth_count);
    std::vector<double> trials(static_cast<std::size_t>(observed) + 1), hits(trials.size());
    for (std::size_t j = 0; j < config_.widths.size() && config_.widths[j] <= w_count; ++j) {
      const std::int32_t width = config_.widths[j];
      std::fill(trials.begin(), trials.end(), 0.0);
      std::fill(hits.begin(), hits.end(), 0.0);
      for (std::size_t k = 0; k < config_.lengths.size() && config_.lengths[k] <= l_count; ++k) {
        node_sum_[node_cell(j, k)] *= config_.decay;
        node_weight_[node_cell(j, k)] *= config_.decay;
      }
      for (std::int32_t i = 0; i < report.requests; ++i) {
        // Accepted tokens had the step used only beams 0..width-1.
        std::int32_t accepted = 0;
        for (std::int32_t d = 0; d < report.accepted_len[i]; ++d)
          if (report.accepted_rank(i, d) < width) ++accepted;
        // Depth d is a trial of the cell's conditional rate when depths 1..d-1 were accepted.
        for (std::int32_t d = 1; d <= std::min(observed, accepted + 1); ++d) {
          trials[static_cast<std::size_t>(d)] += 1.0;
          if (accepted >= d) hits[static_cast<std::size_t>(d)] += 1.0;
        }
        // Nodes of every shorter candidate over the same beams.
        for (std::size_t k = 0; k < config_.lengths.size() && config_.lengths[k] <= l_count; ++k) {
          const std::int32_t drafted = config_.lengths[k] - 1;
          std::int32_t nodes = 1;
          for (std::int32_t w = 0; w < width; ++w)
            nodes += drafted - std::min(report.shared_prefix(i, w), drafted);
          node_sum_[node_cell(j, k)] += nodes;
          node_weight_[node_cell(j, k)] += 1.0;
        }
      }
      // The cells this step tried forget their older trials (cells it did not try keep theirs,
      // and only their confidence decays).
      for (std::int32_t d = 1; d <= observed; ++d) {
        const std::size_t c = cell(j, d), t = static_cast<std::size_t>(d);
        if (trials[t] == 0.0) break;
        if (j == 0 && d == 1) depth1_trials_ += trials[t];
        hits_[c] = hits_[c] * config_.decay + hits[t];
        seen_[c] = seen_[c] * config_.decay + trials[t];
        fresh_[c] += trials[t];
      }
    }
  }

  // --- the estimator, for inspection (docs/loop.md's worked example, tests) ---

  // Estimates of every candidate (plain first when allowed) for requests that may still emit
  // `remaining` [A] tokens each, at the context of the latest step (context()).
  std::vector<shape_estimate> estimates(vector_view<const std::int32_t> remaining) const {
    const std::int32_t a = static_cast<std::int32_t>(remaining.extent(0));
    const acceptance_table q = acceptance_estimates();
    std::vector<shape_estimate> out;
    out.reserve(config_.widths.size() * config_.lengths.size() + 1);
    if (config_.allow_plain) {
      shape_estimate e;
      e.shape = draft_shape::plain();
      e.tokens = e.optimistic_tokens = a;
      e.nodes = a;
      e.verify_s = verify_cost(a, context_);
      e.optimistic_verify_s = e.verify_s * cost_optimism(a);
      out.push_back(e);
    }
    // Per width, over depths 1..D (index D): the sums a request that may accept up to D tokens
    // adds. Its accepted count K has P(K >= d) = q(W, d), so E K = sum q and
    // E K^2 = sum (2d - 1) q.
    const std::size_t depth_count = static_cast<std::size_t>(max_depth());
    std::vector<double> mean_sum(depth_count + 1), square_sum(depth_count + 1),
        optimistic_sum(depth_count + 1);
    for (std::size_t j = 0; j < config_.widths.size(); ++j) {
      for (std::int32_t d = 1; d <= max_depth(); ++d) {
        const auto t = static_cast<std::size_t>(d);
        mean_sum[t] = mean_sum[t - 1] + q.mean[cell(j, d)];
        square_sum[t] = square_sum[t - 1] + (2.0 * d - 1.0) * q.mean[cell(j, d)];
        optimistic_sum[t] = optimistic_sum[t - 1] + q.optimistic[cell(j, d)];
      }
      for (std::size_t k = 0; k < config_.lengths.size(); ++k) {
        shape_estimate e;
        e.shape = {config_.widths[j], config_.lengths[k]};
        double variance = 0;
        for (std::int32_t i = 0; i < a; ++i) {
          e.tokens += 1.0;
          e.optimistic_tokens += 1.0;
          const auto depths = static_cast<std::size_t>(
              std::max(0, std::min(e.shape.beam_length - 1, remaining[i] - 1)));
          const double mean = mean_sum[depths], square = square_sum[depths];
          e.optimistic_tokens += optimistic_sum[depths];
          e.tokens += mean;
          variance += std::max(0.0, square - mean * mean);
        }
        e.tokens_sd = std::sqrt(variance);
        e.nodes = a * nodes_per_request(j, k);
        e.draft_s = draft_cost(e.shape, a);
        e.verify_s = verify_cost(e.nodes, context_);
        e.optimistic_verify_s = e.verify_s * cost_optimism(e.nodes);
        out.push_back(e);
      }
    }
    return out;
  }

  // verify(n, C): seconds of a step outside drafting for n nodes in all, over C context tokens in
  // all (step_context::context_tokens), at the machine's current speed; 0 before any measurement.
  // Without C: at the context of the latest step.
  double verify_cost(double n, double context) const { return speed_ * cost_curve(n, context); }
  double verify_cost(double n) const { return verify_cost(n, context_); }

  // The context of the latest step chosen or observed (step_context::context_tokens).
  double context() const { return context_; }
  // kappa: the verify cost's seconds per context token, in stored units (times speed() for
  // seconds now); see cost_curve. The least-squares slope through the origin of (change of a
  // node count's measured cost) over (change of the context) between two steps of the same node
  // count at most max_pair_gap steps apart, each change divided by the speed factor of the later
  // step, decayed by context_pair_decay per pair, at least 0. NOTE: first differences of steps
  // close in time, not a regression on the stored costs: within one generate() call the context
  // only grows, so a regression over a stretch of steps reads a drift of the machine's speed as
  // a context slope, and the stored costs are divided by a speed factor that follows the running
  // shape's growth, which hides the common part of it. Between steps a few apart the speed
  // barely moves and its changes go both ways, while the context grows at every step and drops
  // at every new call.
  double context_slope() const { return pair_cc_ > 0 ? std::max(0.0, pair_cy_ / pair_cc_) : 0.0; }

  // The machine-speed factor (1 at the start; see adaptive_policy_config::speed_smoothing).
  double speed() const { return speed_; }

  // The weight of the measurements behind verify(n): the bins whose node counts lie within a
  // factor 1.5 of n (a neighbourhood, so shapes of similar size share their certainty), but at
  // most neighbour_borrow times the weight of the bins verify(n) is read from (the bin at n;
  // between two bins, their interpolation's 1 / ((1 - f)^2 / w_lo + f^2 / w_hi) for the fraction
  // f of the way; beyond the measured counts, the nearest bin's). A count the policy runs every
  // step thus vouches only for a while for a neighbouring count it stopped measuring: without the
  // cap, a count measured only in a slow stretch stayed certain for good, its shapes looked slow
  // and were never measured again (a lock-in on a shorter shape).
  double verify_cost_weight(double n) const {
    if (cost_.empty()) return 0.0;
    const cost_points& pt = points(context_);
    const std::size_t m = pt.x.size();
    // The bins' mean node counts ascend with their keys, so the neighbourhood is one run of bins.
    std::size_t i = first_index(m, [&](std::size_t j) { return 1.5 * pt.x[j] < n; });
    double near = 0;
    for (; i < m && pt.x[i] <= 1.5 * n; ++i) near += pt.w[i];
    return std::min(near, neighbour_borrow * read_weight(n));
  }

  // draft(W, L, A): seconds of drafting a shape for A requests; 0 for plain steps and before any
  // measurement.
  double draft_cost(draft_shape shape, std::int32_t requests) const {
    if (shape.is_plain() || draft_.w == 0.0) return 0.0;
    const double x1 = shape.beam_length - 1, x2 = x1 * shape.beam_width * requests;
    const auto [c0, c1] = draft_coefficients();
    return speed_ * (c0 * x1 + c1 * x2);
  }

  // q(W, d) = P(accepted >= d) with W = widths[j], 1 <= d <= L_max - 1: the mean estimate.
  double acceptance(std::size_t j, std::int32_t d) const {
    return acceptance_estimates().mean[cell(j, d)];
  }
  double optimistic_acceptance(std::size_t j, std::int32_t d) const {
    return acceptance_estimates().optimistic[cell(j, d)];
  }

  // What a token of `shape` counts for against `reference`: 1 / (1 + plain_margin) for a tree
  // against a plain step (with plain steps allowed), else 1. The margin is a tree's risk premium
  // for taking a plain step's place; a plain step in a tree's place carries no such risk.
  double token_worth(draft_shape shape, draft_shape reference) const {
    return config_.allow_plain && !shape.is_plain() && reference.is_plain()
               ? 1.0 / (1.0 + config_.plain_margin)
               : 1.0;
  }
  // The rate an exploiting step maximises: e.rate(), a tree's discounted by token_worth against
  // a plain step (so trees rank among themselves by their rates, and a tree wins over plain
  // steps only when it beats them by more than plain_margin).
  double adjusted_rate(const shape_estimate& e) const {
    return e.rate() * token_worth(e.shape, draft_shape::plain());
  }

  policy_choice last_choice() const { return last_choice_; }
  // Steps chosen so far for each reason, indexed by policy_choice (calibrate, exploit, probe).
  const std::array<std::int64_t, 3>& choice_counts() const { return choices_; }
  double elapsed_s() const { return elapsed_s_; }  // decoding time observed (all steps)
  // What the probes were charged: each its time minus the time the best shape of the moment
  // would have needed for its tokens (signed), its tokens counted at least at their expected
  // number minus config().token_floor_sigmas standard deviations.
  double probe_loss_s() const { return probe_loss_s_; }
  // What the probes lost as measured (signed: a probe that beat the estimate counts negative),
  // for inspection; the budget does not use it (see observe()).
  double probe_realized_loss_s() const { return probe_realized_loss_s_; }
  // Time the calibration and exploiting steps saved against plain decoding (signed, estimated
  // with the plain step's measured cost at each step's batch).
  double gain_s() const { return gain_s_; }
  // The grant probes may always spend, with plain steps allowed: explore_free_steps times the
  // plain step's estimated time at the largest batch chosen for so far (0 before any).
  double probe_grant_s() const { return free_s_; }
  // What probes may lose in all so far (probe_loss_s() counts against it): each step's time at
  // explore_fraction, shrinking past explore_steps (a step's share is fixed when it is observed);
  // with plain steps allowed, at most explore_free_fraction of it plus explore_gain_share of
  // gain_s(), and probe_grant_s() on top.
  double probe_allowance() const {
    if (!config_.allow_plain) return allowance_s_;  // no plain fallback to compare with
    return free_s_ + std::min(allowance_s_, config_.explore_free_fraction * elapsed_s_ +
                                                config_.explore_gain_share * gain_s_);
  }

 private:
  struct cost_bin {
    std::int32_t key = 0;
    double weight = 0, n = 0, seconds = 0, c = 0;  // weighted sums: weight, nodes, seconds, context
    std::int32_t samples = 0;
    // the latest sample, in seconds of the clock, for context_slope()
    double last_seconds = 0, last_context = 0;
    std::int64_t last_step = -1;
  };
  // The bins as points at a context, ascending node count: x the bin's mean node count, y its
  // cost read at the context (bin_value), w its weight. NOTE: cached until the bins, kappa or the
  // context change (decay_all, add_cost): every candidate of a step reads the same points, and
  // computing them per read (two divisions per bin visited) was most of choose()'s time.
  struct cost_points {
    std::vector<double> x, y, w;
    double context = 0;
    std::uint64_t version = 0;
  };
  struct acceptance_table {
    std::vector<double> mean, optimistic;  // [widths, L_max - 1]
  };
  struct regression {
    double w = 0, s11 = 0, s12 = 0, s22 = 0, s1y = 0, s2y = 0;
  };

  // verify(n, C) in the units costs are stored in (seconds divided by the speed factor): per node
  // count, a decayed mean moved to context C along the common slope kappa (context_slope(), so a
  // bin measured at other contexts than C is read at C; bin_value()), interpolated piecewise
  // linearly in n, extrapolated with
  // the steepest of the last segment's slope and the least-squares slope. NOTE: the context part
  // is additive, not a factor: the attention reads each request's cache once for all of its tree
  // nodes, so on the KJV pair at batch 16 a plain step grows 150% over a 160-token call and a
  // 1 x 4 step 43%, by the same 1.6-2.3 ms per 100 tokens of every request's context.
  double cost_curve(double n, double context) const {
    if (cost_.empty()) return 0.0;
    return std::max(0.0, interpolate(n, points(context)));
  }
  // A bin's decayed mean cost moved to context C along the slope kappa (stored units).
  static double bin_value(const cost_bin& b, double context, double kappa) {
    return (b.seconds + kappa * (context * b.weight - b.c)) / b.weight;
  }
  double interpolate(double n, const cost_points& pt) const {
    const std::size_t m = pt.x.size();
    const auto x = [&](std::size_t i) { return pt.x[i]; };
    const auto y = [&](std::size_t i) { return pt.y[i]; };
    if (m == 1) return y(0) * n / x(0);
    if (n <= x(0)) {
      const double slope = std::max(0.0, (y(1) - y(0)) / (x(1) - x(0)));
      return std::max(0.0, y(0) - slope * (x(0) - n));
    }
    // The first bin at or above n (bins ascend in n).
    const std::size_t i = first_index(m, [&](std::size_t j) { return x(j) < n; });
    if (i < m) {
      const double f = (n - x(i - 1)) / (x(i) - x(i - 1));
      return y(i - 1) + f * (y(i) - y(i - 1));
    }
    // Beyond the largest measured n: the steeper of the last segment and the least-squares line.
    // NOTE: cached until the next cost sample (decay scales a bin's sums alike, so it changes
    // neither the means nor the fit; the context moves every bin alike, so it changes neither
    // slope): every candidate of every step until then shares it.
    if (!beyond_slope_) {
      double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
      for (std::size_t j = 0; j < m; ++j) {
        const double w = pt.w[j];
        sw += w;
        sx += w * x(j);
        sy += w * y(j);
        sxx += w * x(j) * x(j);
        sxy += w * x(j) * y(j);
      }
      const double var = sxx - sx * sx / sw;
      const double fit_slope = var > 0 ? (sxy - sx * sy / sw) / var : 0.0;
      beyond_slope_ = std::max({0.0, (y(m - 1) - y(m - 2)) / (x(m - 1) - x(m - 2)), fit_slope});
    }
    return y(m - 1) + *beyond_slope_ * (n - x(m - 1));
  }

  std::int32_t max_depth() const { return config_.lengths.back() - 1; }
  std::size_t cell(std::size_t j, std::int32_t d) const {
    return j * static_cast<std::size_t>(max_depth()) + static_cast<std::size_t>(d - 1);
  }
  std::size_t node_cell(std::size_t j, std::size_t k) const {
    return j * config_.lengths.size() + k;
  }

  // best_rate: the best shape's estimated rate; worth: token_worth of the chosen shape against it;
  // tokens_floor: the fewest tokens the accounts count the step for (counted_tokens()).
  draft_shape record(draft_shape shape, policy_choice why, double best_rate, double worth,
                     double tokens_floor = 0.0) {
    last_choice_ = why;
    ++choices_[static_cast<std::size_t>(why)];
    last_best_rate_ = best_rate;
    last_worth_ = worth;
    last_tokens_floor_ = tokens_floor;
    last_shape_ = shape;
    return shape;
  }

  // The certainty of a count is at most this many times that of the bins it is read from
  // (verify_cost_weight()): a stale bin's weight decays by `decay` per step, so a neighbour stops
  // vouching for it after about ln(neighbour_borrow) / -ln(decay) steps (200 at decay 0.98).
  static constexpr double neighbour_borrow = 64.0;

  // A generate() call resynchronises the speed factor only after a call of at least this many
  // steps (choose()).
  static constexpr std::int64_t resync_after_steps = 16;
  // ... and holds the costs of at most this many steps before the re-measurement (store_costs()).
  static constexpr std::size_t max_held_steps = 4;
  // context_slope() pairs a bin's samples at most this many steps apart, and each pair's weight
  // decays by context_pair_decay per later pair (a memory of a few hundred pairs: the slope is a
  // property of the target, and one pair's change is mostly noise).
  static constexpr std::int64_t max_pair_gap = 3;
  static constexpr double context_pair_decay = 0.995;
  static constexpr double pair_clip = 3.0;

  // One step's measured costs, in seconds of the clock.
  struct cost_sample {
    draft_shape shape;
    std::int32_t requests = 0, nodes = 0;
    double context = 0, verify_s = 0, draft_s = 0;
    std::int64_t step = 0;  // steps_ when observed
  };

  // Stores a step's costs divided by the speed factor. While the factor waits for its
  // re-measurement at a call's start (a step whose node count has a warm bin), the costs are held
  // and stored once it comes, at the re-measured speed. NOTE: stored at the last call's speed,
  // they came out up to 1.7x too low (a step's cost grows with the context, and falls back at a
  // new call); a cold bin filled that way then re-measured the factor against its own wrong
  // values, plain steps looked 1.7x dearer than they were, and the policy ran 1 x 3 for a whole
  // call at sampling batch 16 on the KJV pair, 15-25% slower than plain steps. If no warm step
  // comes within max_held_steps steps, the held costs are stored at the factor as it is.
  void store_costs(const cost_sample& sample) {
    if (resync_speed_ && held_.size() < max_held_steps) {
      held_.push_back(sample);
      return;
    }
    resync_speed_ = false;
    held_.push_back(sample);
    for (const cost_sample& c : held_) {
      add_cost(c.nodes, c.context, c.verify_s, c.step);
      if (!c.shape.is_plain()) add_draft(c.shape, c.requests, c.draft_s / speed_);
    }
    held_.clear();
  }

  // The weight of the bins verify(n) is read from (verify_cost_weight()).
  double read_weight(double n) const {
    const cost_points& pt = points(context_);
    const std::size_t m = pt.x.size();
    if (n <= pt.x[0]) return pt.w[0];
    // The first bin at or above n (mean node counts ascend with the keys).
    const std::size_t hi = first_index(m, [&](std::size_t j) { return pt.x[j] < n; });
    if (hi == m) return pt.w[m - 1];
    const std::size_t lo = hi - 1;
    const double f = (n - pt.x[lo]) / (pt.x[hi] - pt.x[lo]);
    return 1.0 / ((1.0 - f) * (1.0 - f) / pt.w[lo] + f * f / pt.w[hi]);
  }

  // The cost_points at a context, from the cache while it is current.
  const cost_points& points(double context) const {
    if (points_.version == bins_version_ && points_.context == context) return points_;
    const double kappa = context_slope();
    const std::size_t m = cost_.size();
    points_.x.resize(m);
    points_.y.resize(m);
    points_.w.resize(m);
    for (std::size_t i = 0; i < m; ++i) {
      points_.x[i] = cost_[i].n / cost_[i].weight;
      points_.y[i] = bin_value(cost_[i], context, kappa);
      points_.w[i] = cost_[i].weight;
    }
    points_.context = context;
    points_.version = bins_version_;
    return points_;
  }

  // The first i in [0, m) for which below(i) is false (below is true on a prefix).
  template <class Below>
  static std::size_t first_index(std::size_t m, const Below& below) {
    std::size_t lo = 0, hi = m;
    while (lo < hi) {
      const std::size_t mid = lo + (hi - lo) / 2;
      if (below(mid))
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }

  // The factor that makes a verify cost optimistic, exp(-cost_confidence / sqrt(w)) but at least
  // 1/2: a lower bound on a positive cost measured with relative noise, from the weight w behind
  // it. Well measured costs are trusted (w 4: 0.86, w 1: 0.74); the bound falls as w decays, to
  // half the estimate (what a cost never measured near n gets), so a cost measured long ago is
  // measured again when it might pay, even if it was measured up to 2x too high (the most one
  // sample may count against its bin's mean, add_cost). A bound that falls to 0 instead would make
  // every unmeasured tree look free and spend the probe budget on the largest of them.
  // NOTE: the earlier bound, 1 - c / sqrt(1 + w), never went below 0.7: once plain decoding's only
  // measurements came from the first steps of a run (measured 1.4x slow on an EPYC, the process
  // still warming up), its optimistic rate never beat a tree's, it was never measured again, and
  // the policy kept a tree 10% slower than plain.
  double cost_optimism(double n) const {
    const double c = config_.cost_confidence, w = verify_cost_weight(n);
    if (c == 0.0) return 1.0;  // no optimism asked for, even where nothing was measured
    return w > 0 ? std::max(0.5, std::exp(-c / std::sqrt(w))) : 0.5;
  }

  // explore_fraction, shrunk by sqrt(explore_steps / steps) past explore_steps steps.
  double explore_fraction_now() const {
    const double k = config_.explore_steps;
    if (k <= 0 || static_cast<double>(steps_) <= k) return config_.explore_fraction;
    return config_.explore_fraction * std::sqrt(k / static_cast<double>(steps_));
  }

  // The time e needs beyond what the best shape would need for e's tokens, each token counted at
  // `worth` (token_worth against the best).
  static double expected_loss(const shape_estimate& e, double worth, double best_rate) {
    return best_rate > 0 ? std::max(0.0, e.time_s() - worth * e.tokens / best_rate) : 0.0;
  }

  void decay_all() {
    ++bins_version_;
    const double k = config_.decay;
    for (double& x : fresh_) x *= k;
    for (auto& b : cost_) {
      b.weight *= k;
      b.n *= k;
      b.seconds *= k;
      b.c *= k;
    }
    draft_.w *= k;
    draft_.s11 *= k;
    draft_.s12 *= k;
    draft_.s22 *= k;
    draft_.s1y *= k;
    draft_.s2y *= k;
  }

  // Node counts up to 64 have a bin each; above, 8 bins per doubling.
  static std::int32_t cost_key(std::int32_t n) {
    return n <= 64 ? n : 64 + static_cast<std::int32_t>(std::floor(8.0 * std::log2(n / 64.0)));
  }

  // The first bin whose key is >= key (cost_ is sorted by key).
  std::vector<cost_bin>::iterator bin_at(std::int32_t key) {
    return std::lower_bound(cost_.begin(), cost_.end(), key,
                            [](const cost_bin& b, std::int32_t k) { return b.key < k; });
  }

  // Adds a step's verify cost (seconds of the clock, measured at step `step` over `context`
  // context tokens) to its node count's bin, divided by the speed factor, and its change since
  // the bin's latest sample to context_slope()'s sums.
  void add_cost(std::int32_t nodes, double context, double clock_seconds, std::int64_t step) {
    const double kappa = context_slope();
    double seconds = clock_seconds / speed_;
    beyond_slope_.reset();
    ++bins_version_;
    const std::int32_t key = cost_key(nodes);
    auto it = bin_at(key);
    if (it == cost_.end() || it->key != key) it = cost_.insert(it, cost_bin{key});
    const double value = it->weight > 0 ? bin_value(*it, context, kappa) : seconds;
    if (it->last_step >= 0 && step - it->last_step <= max_pair_gap && context != it->last_context &&
        value > 0) {
      const double dc = context - it->last_context;
      const double dy = (clock_seconds - it->last_seconds) / speed_;
      // NOTE: robust: the change's residual against the current slope is clipped at pair_clip
      // times the residuals' decayed mean size (relative to the bin's value). A step the machine
      // slowed (another process, a stall) or a drift of its speed moves a pair by far more than
      // the context does, once in a while and with either sign; unclipped, the latest such pair
      // outweighed hundreds of ordinary ones and the slope swung with it (in the simulated test
      // where every cost alternates 1x and 1.6x, the policy fell to 91% of the optimum's rate).
      // Clipping the change itself instead cut the pairs across a new call or a finished request
      // (a large drop of the context, and the most telling pairs) to the size of ordinary ones.
      const double predicted = kappa * dc, residual = dy - predicted;
      const double bound = pair_size_weight_ > 0  // (the mean's weights start at 0)
                               ? pair_clip * pair_size_ / pair_size_weight_ * value
                               : value;
      pair_size_ =
          context_pair_decay * pair_size_ + (1.0 - context_pair_decay) * std::abs(residual) / value;
      pair_size_weight_ = context_pair_decay * pair_size_weight_ + (1.0 - context_pair_decay);
      pair_cy_ =
          context_pair_decay * pair_cy_ + dc * (predicted + std::clamp(residual, -bound, bound));
      pair_cc_ = context_pair_decay * pair_cc_ + dc * dc;
    }
    // NOTE: a bin's first sample paid for first-touch allocations and cold caches; the second
    // replaces it.
    if (it->samples == 1) {
      it->weight = it->n = it->seconds = it->c = 0;
    }
    ++it->samples;
    // NOTE: one step slowed by something else on the machine (a page fault, another process)
    // would otherwise move a bin for many steps: a sample counts at most 2x the bin's value at
    // its context.
    if (it->weight >= 1.0) seconds = std::min(seconds, 2.0 * bin_value(*it, context, kappa));
    it->weight += 1.0;
    it->n += nodes;
    it->seconds += seconds;
    it->c += context;
    it->last_seconds = clock_seconds;
    it->last_context = context;
    it->last_step = step;
  }

  // Moves the speed factor towards this step's measured / expected cost, where the step's node
  // count already has a warm measurement (the bin's first sample is replaced, so at least two):
  // geometric smoothing with weight speed_smoothing, a step counting at most a factor 2.
  // The first such step of a generate() call moves the factor all the way (still at most a
  // factor 2). NOTE: the expected cost is read at the step's context (verify(n, C) = f(n) +
  // kappa C), so the factor only carries what changes every shape's cost alike. Before the
  // context term it also carried the context's growth (on the KJV pair at batch 16 a step cost
  // 1.5 ms at the first step of a 160-token call and 3.1 ms at the last): carried over at
  // smoothing 0.1, it took 10 steps to fall from the last call's end, costs stored in those
  // steps came out 1.7x too low, and the policy ran 1 x 2 steps 15% slower than plain ones for
  // whole calls. The resynchronisation was the fix then; with kappa it moves the factor little
  // and stays as a guard against a kappa not yet learnt (a policy's first calls).
  void update_speed(std::int32_t nodes, double context, double seconds) {
    if (config_.speed_smoothing == 0.0 || seconds <= 0.0) return;
    const std::int32_t key = cost_key(nodes);
    const auto it = bin_at(key);
    if (it == cost_.end() || it->key != key || it->samples < 2) return;
    const double expected = verify_cost(nodes, context);
    if (expected <= 0.0) return;
    const double weight = resync_speed_ ? 1.0 : config_.speed_smoothing;
    resync_speed_ = false;
    speed_ *= std::pow(std::clamp(seconds / expected, 0.5, 2.0), weight);
  }

  // The step's time as the probe and gain accounts count it: at most twice what the estimates
  // (before this step's samples) expected of its shape and node count. NOTE: one step stalled by
  // something else on the machine (a page fault, another process: a 4 ms step among 0.3 ms ones
  // on the KJV pair) otherwise counted in full against what speculation had saved, drove the
  // probe budget deeply negative and held the policy on plain steps for thousands of steps; the
  // cost bins already cap a sample at twice their mean (add_cost).
  double accounted_time(const step_report& report) const {
    const double expected = draft_cost(report.shape, report.requests) +
                            verify_cost(report.nodes, static_cast<double>(report.context_tokens));
    return expected > 0 ? std::min(report.total_s(), 2.0 * expected) : report.total_s();
  }

  // A speculative step's saving: its tokens at the plain step's estimated cost per token for its
  // batch (measured before this step's cost is added), minus its accounted time. Plain steps save
  // nothing.
  void add_gain(const step_report& report, double seconds) {
    if (report.shape.is_plain() || report.requests <= 0 || cost_.empty()) return;
    const double plain_per_token =
        verify_cost(report.requests, static_cast<double>(report.context_tokens)) / report.requests;
    gain_s_ += counted_tokens(report) * plain_per_token - seconds;
  }

  // A step's emitted tokens as the probe and gain accounts count them: at least the expected
  // number minus token_floor_sigmas standard deviations (adaptive_policy_config). NOTE: with
  // copied greedy requests (the demo's batches) every request accepts the same tokens, and at
  // batch 16 a 1 x 5 probe that accepted nothing anywhere lost 9 ms against a budget of 6.5 ms
  // (an exploiting 1 x 6 step that did the same cost the gain 11 ms): the policy ran plain steps
  // for the rest of a 110-step call.
  // A step of another shape than the one chosen (the caller overrode it) counts as emitted.
  double counted_tokens(const step_report& report) const {
    if (report.shape != last_shape_) return report.emitted;
    return std::max<double>(report.emitted, last_tokens_floor_);
  }

  void add_draft(draft_shape shape, std::int32_t requests, double seconds) {
    const double x1 = shape.beam_length - 1, x2 = x1 * shape.beam_width * requests;
    if (draft_samples_++ == 1) draft_ = regression{};  // the first drafting paid for allocations
    draft_.w += 1.0;
    draft_.s11 += x1 * x1;
    draft_.s12 += x1 * x2;
    draft_.s22 += x2 * x2;
    draft_.s1y += x1 * seconds;
    draft_.s2y += x2 * seconds;
  }

  // (c0, c1) of draft = (L - 1)(c0 + c1 W A): least squares, both >= 0; c1 alone while the rows
  // W A have not varied (the two features are then proportional).
  std::pair<double, double> draft_coefficients() const {
    const regression& r = draft_;
    const double det = r.s11 * r.s22 - r.s12 * r.s12;
    if (det > 1e-9 * r.s11 * r.s22) {
      const double c0 = (r.s1y * r.s22 - r.s2y * r.s12) / det,
                   c1 = (r.s2y * r.s11 - r.s1y * r.s12) / det;
      if (c0 >= 0 && c1 >= 0) return {c0, c1};
    }
    return {0.0, r.s22 > 0 ? std::max(0.0, r.s2y / r.s22) : 0.0};
  }

  // Mean tree nodes per request of candidate (widths[j], lengths[k]); before data, the beams'
  // 1 + W (L - 1) nodes (no shared prefixes), a prior of weight 1/4.
  double nodes_per_request(std::size_t j, std::size_t k) const {
    constexpr double prior_weight = 0.25;
    const double full = 1.0 + config_.widths[j] * (config_.lengths[k] - 1.0);
    return (node_sum_[node_cell(j, k)] + prior_weight * full) /
           (node_weight_[node_cell(j, k)] + prior_weight);
  }

  // q(W, d) for every cell, as the product of the conditional rates c(W, k) = P(accepted >= k |
  // accepted >= k - 1), k = 1..d, each a Beta estimate with a prior of weight 1 at its
  // neighbours' value; q kept within the bounds every cell obeys (more beams never accept less;
  // deeper never more). A step that stops at depth 1 tells about c(W, 1) only, which every shape
  // shares, so an unlucky step does not make one long shape look worse than the shorter ones.
  // The standard deviation of q follows the product (delta method, the factors independent).
  acceptance_table acceptance_estimates() const {
    constexpr double prior_weight = 1.0;
    const std::int32_t depths = max_depth();
    acceptance_table t;
    t.mean.assign(hits_.size(), 0.0);
    t.optimistic.assign(hits_.size(), 0.0);
    for (std::size_t j = 0; j < config_.widths.size(); ++j) {
      double prev = 1.0, prev_var = 0.0, prev_cond = 0.5, prev_opt = 1.0;
      for (std::int32_t d = 1; d <= depths; ++d) {
        const std::size_t c = cell(j, d);
        const double narrower = j > 0 ? t.mean[cell(j - 1, d)] : 0.0;
        const double narrower_opt = j > 0 ? t.optimistic[cell(j - 1, d)] : 0.0;
        // The prior: the depth trend continued (the previous depth's conditional rate, 0.5 at
        // depth 1), or what the narrower width's value implies.
        double prior = prev_cond;
        if (prev > 0.0) prior = std::max(prior, std::min(1.0, narrower / prev));
        const double cond = (hits_[c] + prior_weight * prior) / (seen_[c] + prior_weight);
        const double p = std::min(std::max(prev * cond, narrower), prev);
        const double cond_kept = prev > 0.0 ? p / prev : 0.0;
        const double cond_var =
            cond * (1.0 - cond) / (std::min(seen_[c], fresh_[c]) + prior_weight);
        const double var = cond_kept * cond_kept * prev_var + prev * prev * cond_var;
        const double opt =
            std::min(prev_opt, std::max(narrower_opt, p + config_.confidence * std::sqrt(var)));
        t.mean[c] = p;
        t.optimistic[c] = std::max(opt, p);
        prev = p;
        prev_var = var;
        prev_cond = cond_kept;
        prev_opt = t.optimistic[c];
      }
    }
    return t;
  }

  adaptive_policy_config config_;
  // [widths, L_max - 1]: the conditional rate's hits and trials (requests that reached the depth
  // before), decayed at each step that tries the cell; fresh: trials decayed at every step (how
  // recent the cell's data is).
  std::vector<double> hits_, seen_, fresh_;
  std::vector<double> node_sum_, node_weight_;  // [widths, lengths] sums, decayed like hits_
  std::vector<cost_bin> cost_;                  // ascending key
  mutable std::optional<double> beyond_slope_;  // cost_curve's slope past the last bin (cache)
  mutable cost_points points_;                  // points()' cache
  std::uint64_t bins_version_ = 1;              // changes with every change of the bins or kappa
  double pair_cy_ = 0, pair_cc_ = 0;  // context_slope()'s decayed sums of dC x dy and dC^2
  double pair_size_ = 0, pair_size_weight_ = 0;  // decayed sum of |dy| / the bin's value, weight
  double context_ = 0;                           // the latest step's context_tokens
  regression draft_;
  std::int32_t draft_samples_ = 0, calibration_steps_ = 0;
  std::int64_t steps_ = 0;  // steps observed (all generate() calls)
  double elapsed_s_ = 0, probe_loss_s_ = 0, gain_s_ = 0;
  double depth1_trials_ = 0;   // requests observed at depth 1 of the narrowest width, undecayed
  double allowance_s_ = 0;     // sum over steps of explore_fraction_now() x the step's time
  double free_s_ = 0;          // explore_free_steps plain steps' time (the largest batch's so far)
  double speed_ = 1.0;         // the machine-speed factor (speed_smoothing)
  bool resync_speed_ = false;  // a generate() call began: the next warm step sets speed_
  bool cold_step_ = false;     // the step being chosen is such a call's first: observe() skips it
  std::vector<cost_sample> held_;  // costs of the steps before that step (store_costs())
  std::int64_t call_steps_ = 0;    // steps chosen in the current generate() call
  policy_choice last_choice_ = policy_choice::calibrate;
  std::array<std::int64_t, 3> choices_{};
  double last_best_rate_ = 0, last_worth_ = 1, last_tokens_floor_ = 0;
  draft_shape last_shape_ = draft_shape::plain();  // the shape chosen last
  double probe_realized_loss_s_ = 0;
};

static_assert(SpeculationPolicy<adaptive_policy>);

}  // namespace redraft
