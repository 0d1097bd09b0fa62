// redraft/loop/generation.hpp: requests, options, statistics and results of a decoding run,
// shared by the speculative decoder and the plain decoder.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "redraft/verify/logits_processing.hpp"
#include "redraft/verify/redrafter.hpp"
#include "redraft/verify/typical.hpp"

namespace redraft {

// One sequence to continue.
struct generation_request {
  std::vector<std::int32_t> prompt;  // [prompt length], at least 1 token
  std::int32_t max_new_tokens = 32;  // stop after this many emitted tokens (>= 0)
  std::int32_t eos_token = -1;       // stop after emitting this token (-1: none)
  std::int32_t slot = -1;            // the model's KV slot; -1: the request's index
};

// Which verification rule decides acceptance (see docs/verify.md).
enum class verifier {
  greedy,     // exact greedy decoding of the target
  lossless,   // sampling; output law equals sampling the target (the default for sampling)
  redrafter,  // Apple's stochastic rule, for parity; not distribution-preserving
  typical,    // Medusa's typical acceptance; lossy, opt-in
};

// Which tree-mask formats the decoder builds for TargetModel::verify.
enum class tree_mask_format { dense, packed, both };

struct decode_options {
  std::int32_t beam_width = 4;   // W of fixed_policy (the default speculation policy)
  std::int32_t beam_length = 5;  // L of fixed_policy, root included
  verifier rule = verifier::greedy;
  sampling_params sampling;    // lossless (and the first token when sampling)
  redrafter_params redrafter;  // verifier::redrafter
  typical_params typical;      // verifier::typical
  std::uint64_t seed = 0;      // Philox seed: request r, step s draws from stream (seed, r, s)
  tree_mask_format masks = tree_mask_format::both;
  // Time every phase of every step (step_stats). Timing synchronises the backend after each
  // phase; with false, and a speculation policy that does not need reports, the speculative
  // decoder skips it and step_stats' times stay 0 (generation_result's totals are still timed).
  bool phase_timing = true;
  // Run every speculative step as a capturable_step (loop/capturable_step.hpp, docs/cuda.md):
  // from the drafter's beams to the KV plan nothing allocates, transfers or synchronises, with
  // buffers sized once per generate() for (requests, beam_width, the policy's longest L); one
  // transfer per step then reads the results. The target must serve verify_input::node_capacity.
  // Needs a policy without step reports (fixed_policy); prefill and plain steps (L = 1) run as
  // usual; a step's tree, target and verify time is all counted in step_stats::verify_s.
  bool capturable = false;
};

// Called with (request index, token) for every emitted token, in order.
using token_callback = std::function<void(std::int32_t request, std::int32_t token)>;

// Per-request counters. `accepted_at_depth[d]` counts the steps in which the drafted token at
// depth d + 1 was accepted, so accepted_at_depth[d] / steps is the acceptance rate at depth d + 1.
struct request_stats {
  std::int32_t steps = 0;  // verification steps (the prefill's first token is not a step)
  std::int64_t drafted =
      0;  // drafted tokens offered: L - 1 of each step's shape (0 for plain steps)
  std::int64_t accepted = 0;  // drafted tokens accepted
  std::int64_t emitted = 0;   // tokens emitted, the first token from prefill included
  std::vector<std::int64_t>
      accepted_at_depth;    // [L_max - 1], L_max: the largest L the policy may pick
  std::string stop_reason;  // "eos" or "max_new_tokens"

  // Emitted tokens per verification step (the prefill's token excluded).
  double tokens_per_step() const { return steps == 0 ? 0.0 : double(emitted - 1) / steps; }
};

// Per-step timings (seconds) and sizes.
struct step_stats {
  std::int32_t requests = 0;                     // requests in the step
  std::int32_t nodes = 0;                        // packed tree nodes verified
  std::int32_t emitted = 0;                      // tokens emitted by the step
  std::int32_t beam_width = 1, beam_length = 1;  // the step's draft shape (1, 1: a plain step)
  double draft_s = 0, tree_s = 0, target_s = 0, verify_s = 0, kv_s = 0;
  double total_s() const { return draft_s + tree_s + target_s + verify_s + kv_s; }
};

struct generation_result {
  std::vector<std::vector<std::int32_t>> tokens;  // [R][emitted] generated tokens per request
  std::vector<request_stats> requests;            // [R]
  std::vector<step_stats> steps;                  // [steps]
  double prefill_s = 0;
  double total_s = 0;

  std::int64_t total_emitted() const {
    std::int64_t n = 0;
    for (const auto& t : tokens) n += static_cast<std::int64_t>(t.size());
    return n;
  }
};

}  // namespace redraft
