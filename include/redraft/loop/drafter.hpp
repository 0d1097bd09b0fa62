// redraft/loop/drafter.hpp: the Drafter concept: anything that proposes W beams of L tokens.
//
// The speculative decoder calls `d.draft(in)` once per step for the requests still running. The
// ReDrafter draft head (draft/) is the default drafter; tests plug in oracles and random
// drafters through the same contract, and engines can plug in other drafters whose proposals
// are beams (EAGLE-style or n-gram drafters can emit their candidates as beams too).
//
// The contract, for D and a value `d`:
//  1. `d.draft(in)` returns draft_output<B> for the backend B the decoder runs on, with
//     beams [R, W, L] (column 0 = in.roots[r] for every beam of request r, rows best first) and,
//     when in.want_log_probs, log_probs [R, W, L-1, V]: the drafter's log-distribution that
//     produced each drafted token (only verify_redrafter reads it); otherwise empty.
//  2. It may keep state per slot but must not assume every slot appears every step.
#pragma once

#include <concepts>
#include <cstdint>

#include "redraft/core/backend.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

struct draft_input {
  matrix_view<const float> hidden;        // [R, H] backend memory: target hidden state at the last accepted token
  vector_view<const std::int32_t> roots;  // [R] host: root token of each request (the target's last next token)
  vector_view<const std::int32_t> slots;  // [R] host: the requests' KV slots (for stateful drafters)
  std::int32_t beam_width = 1;            // W
  std::int32_t beam_length = 2;           // L, root included
  bool want_log_probs = false;
};

template <class B>
struct draft_output {
  typename B::template buffer<std::int32_t> beams;  // [R, W, L]
  typename B::template buffer<float> log_probs;     // [R, W, L-1, V] or empty
};

template <class D, class B>
concept Drafter = Backend<B> && requires(D d, const draft_input& in) {
  { d.draft(in) } -> std::same_as<draft_output<B>>;
};

}  // namespace redraft
