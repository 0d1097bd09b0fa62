// redraft/loop/decode_common.hpp: the bookkeeping shared by the speculative and the plain
// decoder: request validation, model-output checks, per-request progress, timing.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/target_model.hpp"

namespace redraft {

namespace detail {

using decode_clock = std::chrono::steady_clock;

inline double seconds_since(decode_clock::time_point start) {
  return std::chrono::duration<double>(decode_clock::now() - start).count();
}

// Checks every request against the model before anything runs; `extra` is how many positions
// past prompt + max_new_tokens a step may touch (L - 1 for speculative, 0 for plain decoding).
template <class M>
std::vector<std::int32_t> check_requests(const char* fn, const M& model,
                                         const std::vector<generation_request>& requests,
                                         std::int32_t extra) {
  std::vector<std::int32_t> slots;
  std::set<std::int32_t> seen;
  for (std::size_t r = 0; r < requests.size(); ++r) {
    const generation_request& q = requests[r];
    REDRAFT_REQUIRE(!q.prompt.empty(), fn, ": request ", r, " has an empty prompt");
    REDRAFT_REQUIRE(q.max_new_tokens >= 0, fn, ": request ", r, " has max_new_tokens ",
                    q.max_new_tokens, " (must be >= 0)");
    for (std::size_t i = 0; i < q.prompt.size(); ++i) {
      REDRAFT_REQUIRE(q.prompt[i] >= 0 && q.prompt[i] < model.vocab_size(), fn, ": request ", r,
                      " prompt[", i, "] = ", q.prompt[i], " is outside the vocabulary [0, ",
                      model.vocab_size(), ")");
    }
    const std::int64_t need = static_cast<std::int64_t>(q.prompt.size()) + q.max_new_tokens + extra;
    REDRAFT_REQUIRE(need <= model.max_context(), fn, ": request ", r, " needs ", need,
                    " positions (prompt ", q.prompt.size(), " + max_new_tokens ", q.max_new_tokens,
                    " + ", extra, " for the draft tree) but the model's max_context is ",
                    model.max_context());
    const std::int32_t slot = q.slot >= 0 ? q.slot : static_cast<std::int32_t>(r);
    REDRAFT_REQUIRE(seen.insert(slot).second, fn, ": request ", r, " uses slot ", slot,
                    " which another request of the batch also uses");
    slots.push_back(slot);
  }
  return slots;
}

// Checks a model output's shape.
inline void check_model_output(const char* fn, const char* call, const model_output& out,
                               index_t rows, index_t vocab, index_t hidden) {
  REDRAFT_REQUIRE(out.logits.extent(0) == rows && out.logits.extent(1) == vocab, fn,
                  ": the target model's ", call, " returned logits [", out.logits.extent(0), ", ",
                  out.logits.extent(1), "], expected [", rows, ", ", vocab, "]");
  REDRAFT_REQUIRE(out.hidden.extent(0) == rows && out.hidden.extent(1) == hidden, fn,
                  ": the target model's ", call, " returned hidden states [", out.hidden.extent(0),
                  ", ", out.hidden.extent(1), "], expected [", rows, ", ", hidden, "]");
}

// Tracks one request's emitted tokens and stop condition.
struct request_progress {
  std::int32_t index = 0;  // position in the caller's request list
  std::int32_t slot = 0;
  std::int32_t committed = 0;  // KV entries committed (prompt + accepted paths)
  std::int32_t root = 0;       // the last emitted token: next step's root
  bool done = false;
  // Prompt + emitted tokens, kept only when keep_history (the speculative decoder's drafters read
  // it through draft_input::history); emit() appends, so keeping it costs O(1) per token.
  bool keep_history = false;
  std::vector<std::int32_t> history;

  // Emits `token`; returns false once the request must stop.
  bool emit(std::int32_t token, const generation_request& q, std::vector<std::int32_t>& out,
            request_stats& stats, const token_callback& on_token) {
    out.push_back(token);
    if (keep_history) history.push_back(token);
    ++stats.emitted;
    if (on_token) on_token(index, token);
    if (token == q.eos_token) {
      stats.stop_reason = "eos";
      done = true;
    } else if (static_cast<std::int32_t>(out.size()) >= q.max_new_tokens) {
      stats.stop_reason = "max_new_tokens";
      done = true;
    }
    return !done;
  }
};

// The indices of the requests still running, in the caller's order.
inline std::vector<std::int32_t> running(const std::vector<request_progress>& progress) {
  std::vector<std::int32_t> out;
  for (const auto& p : progress)
    if (!p.done) out.push_back(p.index);
  return out;
}

// The progress of every request before decoding, and the result sized for them; a request with
// max_new_tokens 0 is done from the start.
inline std::vector<request_progress> start_progress(const std::vector<generation_request>& requests,
                                                    const std::vector<std::int32_t>& slots,
                                                    generation_result& result,
                                                    std::int32_t beam_length) {
  result.tokens.resize(requests.size());
  result.requests.resize(requests.size());
  std::vector<request_progress> progress(requests.size());
  for (std::size_t r = 0; r < requests.size(); ++r) {
    const generation_request& q = requests[r];
    progress[r] = {static_cast<std::int32_t>(r),
                   slots[r],
                   static_cast<std::int32_t>(q.prompt.size()),
                   0,
                   q.max_new_tokens == 0,
                   false,
                   {}};
    result.requests[r].accepted_at_depth.assign(
        static_cast<std::size_t>(beam_length > 1 ? beam_length - 1 : 0), 0);
    if (q.max_new_tokens == 0) result.requests[r].stop_reason = "max_new_tokens";
  }
  return progress;
}

// One prefill over the prompts of the `active` requests; returns the model's rows (row i for
// active[i]), shape-checked.
template <class M>
model_output prefill_requests(const char* fn, M& model,
                              const std::vector<generation_request>& requests,
                              const std::vector<request_progress>& progress,
                              const std::vector<std::int32_t>& active) {
  std::vector<std::int32_t> slots, offsets{0}, tokens;
  for (const std::int32_t r : active) {
    const auto& prompt = requests[static_cast<std::size_t>(r)].prompt;
    slots.push_back(progress[static_cast<std::size_t>(r)].slot);
    tokens.insert(tokens.end(), prompt.begin(), prompt.end());
    offsets.push_back(static_cast<std::int32_t>(tokens.size()));
  }
  const index_t a = static_cast<index_t>(active.size());
  const model_output out =
      model.prefill(prefill_input{{slots.data(), a},
                                  {offsets.data(), a + 1},
                                  {tokens.data(), static_cast<index_t>(tokens.size())}});
  check_model_output(fn, "prefill", out, a, model.vocab_size(), model.hidden_size());
  return out;
}

}  // namespace detail

}  // namespace redraft
