// redraft/loop/speculation_policy.hpp: the SpeculationPolicy concept, which chooses the draft
// shape of every step of the speculative decoder, the fixed-shape policy (the library default),
// the all-plain policy, and the clock the decoder times its phases with.
//
// Before each step the decoder asks the policy for one draft shape for the whole batch: W beams
// of L tokens (root included), or a plain step (L = 1: no drafting, a one-node tree per request,
// exactly one emitted token). After the step it reports what happened: the shape, the node
// count, the phase times measured with the decoder's clock, and per request how far the accepted
// path reached and which beam ranks it ran through. A policy decides from earlier steps only: the
// decoder asks before it draws the step's uniforms or drafts, so the shape can never depend on
// that step's random draws, and greedy exactness and lossless sampling hold for every policy.
//
// The contract, for a type P and a value `p` of it:
//  1. `p.start(options)` is called at the start of every generate(); it returns the largest
//     beam_length (>= 1) that choose() may return during that call (the decoder checks that every
//     request has room for it: prompt + max_new_tokens + L - 1 <= the model's max_context) and may
//     throw redraft::error for options it cannot serve.
//  2. `p.choose(ctx)` returns the draft shape of step ctx.step: beam_width >= 1 and
//     1 <= beam_length <= start()'s value; beam_length 1 is a plain step and then beam_width is 1.
//     The decoder throws redraft::error naming the step and the shape otherwise.
//  3. `p.observe(report)` is called after every step, plain steps included, once the step's tokens
//     are emitted. The report's views are valid only during the call.
//  4. `p.needs_reports()`: true if observe() reads the phase times and the per-request acceptance
//     detail. When false, and decode_options::phase_timing is false too, the decoder neither
//     synchronises the backend between phases nor reads the clock, and leaves the detail empty.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>

#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/loop/generation.hpp"

namespace redraft {

// The draft shape of one step: W beams of L tokens, root included. L = 1 is a plain step.
struct draft_shape {
  std::int32_t beam_width = 1;   // W
  std::int32_t beam_length = 1;  // L; 1: plain step (nothing drafted)

  static constexpr draft_shape plain() { return {1, 1}; }
  constexpr bool is_plain() const { return beam_length == 1; }
  // Upper bound on the tree nodes of one request: 1 + W (L - 1) (fewer when beams share prefixes).
  constexpr std::int32_t max_nodes() const { return 1 + beam_width * (beam_length - 1); }
  friend constexpr bool operator==(const draft_shape&, const draft_shape&) = default;
};

// What a policy sees before step `step`.
struct step_context {
  std::uint32_t step = 0;                     // 1-based; step 0 is the prefill's first token
  const decode_options* options = nullptr;    // the options of the generate() call
  vector_view<const std::int32_t> remaining;  // [A] tokens each running request may still emit
  // Tokens in the KV cache of the running requests, all together (prompts and tokens emitted so
  // far): what the target pass's attention reads besides the tree.
  std::int64_t context_tokens = 0;
  std::int32_t requests() const { return static_cast<std::int32_t>(remaining.extent(0)); }
};

// What a policy learns after a step. Times are seconds of the decoder's clock (0 when the decoder
// does not time phases, see contract clause 4). The acceptance detail is filled for speculative
// steps when needs_reports() is true, else empty:
//   accepted_len   [A]         drafted tokens accepted per request (0 .. L-1)
//   accepted_rank  [A, L - 1]  for depth d + 1 <= accepted_len: the lowest beam rank w whose beam
//                              holds the accepted node at that depth (nondecreasing along the
//                              path); -1 beyond the accepted path
//   shared_prefix  [A, W]      drafted positions of beam w that an earlier beam already created
//                              (the trie shares them): beam w adds L - 1 - shared_prefix[w] nodes
// So a step of shape (W, L) also tells what a smaller shape (W' <= W, L' <= L) would have done on
// the same beams: it would have accepted min(L' - 1, #{d : accepted_rank[d] < W'}) tokens (for the
// greedy and lossless rules, whose decisions at a node depend only on the children tried first)
// and verified 1 + sum_{w < W'} (L' - 1 - min(shared_prefix[w], L' - 1)) nodes.
struct step_report {
  std::uint32_t step = 0;
  draft_shape shape;
  std::int32_t requests = 0;  // A
  std::int32_t nodes = 0;     // packed tree nodes verified, all requests
  std::int32_t emitted = 0;   // tokens emitted by the step, all requests
  double draft_s = 0, tree_s = 0, target_s = 0, verify_s = 0, kv_s = 0;
  vector_view<const std::int32_t> accepted_len;   // [A]
  matrix_view<const std::int32_t> accepted_rank;  // [A, L - 1]
  matrix_view<const std::int32_t> shared_prefix;  // [A, W]
  std::int64_t context_tokens = 0;                // the step's step_context::context_tokens

  // Everything but drafting: tree, target pass, verification, emission and KV commit.
  double verify_cost_s() const { return tree_s + target_s + verify_s + kv_s; }
  double total_s() const { return draft_s + verify_cost_s(); }
};

template <class P>
concept SpeculationPolicy = requires(P p, const P cp, const decode_options& options,
                                     const step_context& ctx, const step_report& report) {
  { p.start(options) } -> std::convertible_to<std::int32_t>;
  { p.choose(ctx) } -> std::same_as<draft_shape>;
  p.observe(report);
  { cp.needs_reports() } -> std::convertible_to<bool>;
};

// The library default: every step uses decode_options' beam_width and beam_length (W >= 1,
// L >= 2), the decoder's behaviour before policies existed.
class fixed_policy {
 public:
  std::int32_t start(const decode_options& options) {
    REDRAFT_REQUIRE(options.beam_width >= 1, "speculative_decoder::generate: beam_width ",
                    options.beam_width, " must be at least 1");
    REDRAFT_REQUIRE(options.beam_length >= 2, "speculative_decoder::generate: beam_length ",
                    options.beam_length, " must be at least 2 (the root plus one drafted token)");
    return options.beam_length;
  }
  draft_shape choose(const step_context& ctx) const {
    return {ctx.options->beam_width, ctx.options->beam_length};
  }
  void observe(const step_report&) {}
  bool needs_reports() const { return false; }
};

static_assert(SpeculationPolicy<fixed_policy>);

// Every step plain (no drafting): the speculative decoder then emits what plain decoding would,
// one token per request per step. It measures the decoder's own cost of a plain step against
// plain_decoder (redraft-demo --policy plain), the fallback the adaptive policy relies on.
class plain_policy {
 public:
  std::int32_t start(const decode_options&) const { return 1; }
  draft_shape choose(const step_context&) const { return draft_shape::plain(); }
  void observe(const step_report&) {}
  bool needs_reports() const { return false; }
};

static_assert(SpeculationPolicy<plain_policy>);

// A clock the decoder reads to time its phases: `c.now()` in seconds (any fixed origin).
template <class C>
concept DecodeClock = std::copy_constructible<C> && requires(const C c) {
  { c.now() } -> std::convertible_to<double>;
};

// The default clock: std::chrono::steady_clock.
struct steady_seconds {
  double now() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

static_assert(DecodeClock<steady_seconds>);

}  // namespace redraft
