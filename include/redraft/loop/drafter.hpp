// redraft/loop/drafter.hpp: the Drafter concept: anything that proposes up to W candidate
// continuations ("beams") of up to L tokens, root included.
//
// The speculative decoder calls `d.draft(in)` once per step for the requests still running. The
// ReDrafter draft head (draft/) is the default drafter; tests plug in oracles and random
// drafters through the same contract; model-free drafters (loop/lookup_drafter.hpp,
// loop/suffix_drafter.hpp) read the requests' token history, and loop/hybrid_drafter.hpp merges
// several drafters into one tree.
//
// The contract, for D and a value `d`:
//  1. `d.draft(in)` returns draft_output<B> for the backend B the decoder runs on, with
//     beams [R, W, L] (column 0 = in.roots[r] for every beam of request r, rows best first) and,
//     when in.want_log_probs, log_probs [R, W, L-1, V]: the drafter's log-distribution that
//     produced each drafted token (only verify_redrafter reads it); otherwise empty. A drafter
//     that has no such distribution (a model-free one) throws redraft::error when asked for it.
//  2. It may keep state per slot but must not assume every slot appears every step.
//  3. Short and missing candidates: a drafter may fill beam_lengths [R, W] with the number of
//     valid tokens of each beam, root included, in [1, L]. Positions at or past a beam's length
//     are ignored (fill them with -1); a beam of length 1 is the root alone and adds no node. An
//     empty beam_lengths means every beam has all L tokens (what beam-search drafters return).
//     Duplicate beams, or beams that are prefixes of earlier ones, are allowed: the trie merges
//     them and they cost no node.
//  4. Node cap: when in.max_nodes > 0 the model-free and hybrid drafters keep each request's tree
//     (the trie of its beams, root included) within in.max_nodes nodes, by shortening or dropping
//     candidates. Beam-search drafters ignore it (their trees have at most 1 + W (L - 1) nodes).
//     The speculative decoder passes 0 (no cap); a caller with a node budget sets it.
//
// The history (optional, host memory): in.history[r] spans request r's tokens so far, prompt then
// emitted tokens; its last token is in.roots[r]. in.history_fresh[r] is 1 on the first draft of a
// request (a new request on the slot: forget what the slot held), 0 afterwards; between two calls
// a request's history only grows at the end. Both are empty when the caller has no history to
// give; the speculative decoder always fills them, and drafters that need them say so with a
// redraft::error when they are missing.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>

#include "redraft/core/backend.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

struct draft_input {
  matrix_view<const float>
      hidden;  // [R, H] backend memory: target hidden state at the last accepted token
  vector_view<const std::int32_t>
      roots;  // [R] host: root token of each request (the target's last next token)
  vector_view<const std::int32_t>
      slots;                     // [R] host: the requests' KV slots (for stateful drafters)
  std::int32_t beam_width = 1;   // W
  std::int32_t beam_length = 2;  // L, root included
  bool want_log_probs = false;
  // Optional, default-initialised: `draft_input{hidden, roots, slots, W, L, want_log_probs}` still
  // compiles cleanly.
  vector_view<const std::span<const std::int32_t>>
      history{};  // [R] host or empty: prompt + emitted tokens
  vector_view<const std::uint8_t>
      history_fresh{};  // [R] host or empty: 1 = first draft of the request
  std::int32_t max_nodes =
      0;  // node cap per request tree, root included; 0: none (1 + W (L - 1) at most)
};

template <class B>
struct draft_output {
  typename B::template buffer<std::int32_t> beams;           // [R, W, L]
  typename B::template buffer<float> log_probs;              // [R, W, L-1, V] or empty
  typename B::template buffer<std::int32_t> beam_lengths{};  // [R, W] in [1, L], or empty: all L
};

template <class D, class B>
concept Drafter = Backend<B> && requires(D d, const draft_input& in) {
  { d.draft(in) } -> std::same_as<draft_output<B>>;
};

}  // namespace redraft
