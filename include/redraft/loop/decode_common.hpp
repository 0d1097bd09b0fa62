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
    REDRAFT_REQUIRE(q.max_new_tokens >= 0, fn, ": request ", r, " has max_new_tokens ", q.max_new_tokens,
                    " (must be >= 0)");
    for (std::size_t i = 0; i < q.prompt.size(); ++i) {
      REDRAFT_REQUIRE(q.prompt[i] >= 0 && q.prompt[i] < model.vocab_size(), fn, ": request ", r, " prompt[", i,
                      "] = ", q.prompt[i], " is outside the vocabulary [0, ", model.vocab_size(), ")");
    }
    const std::int64_t need = static_cast<std::int64_t>(q.prompt.size()) + q.max_new_tokens + extra;
    REDRAFT_REQUIRE(need <= model.max_context(), fn, ": request ", r, " needs ", need,
                    " positions (prompt ", q.prompt.size(), " + max_new_tokens ", q.max_new_tokens,
                    " + ", extra, " for the draft tree) but the model's max_context is ", model.max_context());
    const std::int32_t slot = q.slot >= 0 ? q.slot : static_cast<std::int32_t>(r);
    REDRAFT_REQUIRE(seen.insert(slot).second, fn, ": request ", r, " uses slot ", slot,
                    " which another request of the batch also uses");
    slots.push_back(slot);
  }
  return slots;
}

// Checks a model output's shape.
inline void check_model_output(const char* fn, const char* call, const model_output& out, index_t rows,
                               index_t vocab, index_t hidden) {
  REDRAFT_REQUIRE(out.logits.extent(0) == rows && out.logits.extent(1) == vocab, fn, ": the target model's ",
                  call, " returned logits [", out.logits.extent(0), ", ", out.logits.extent(1), "], expected [", rows,
                  ", ", vocab, "]");
  REDRAFT_REQUIRE(out.hidden.extent(0) == rows && out.hidden.extent(1) == hidden, fn, ": the target model's ",
                  call, " returned hidden states [", out.hidden.extent(0), ", ", out.hidden.extent(1),
                  "], expected [", rows, ", ", hidden, "]");
}

// Tracks one request's emitted tokens and stop condition.
struct request_progress {
  std::int32_t index = 0;   // position in the caller's request list
  std::int32_t slot = 0;
  std::int32_t committed = 0;  // KV entries committed (prompt + accepted paths)
  std::int32_t root = 0;       // the last emitted token: next step's root
  bool done = false;

  // Emits `token`; returns false once the request must stop.
  bool emit(std::int32_t token, const generation_request& q, std::vector<std::int32_t>& out, request_stats& stats,
            const token_callback& on_token) {
    out.push_back(token);
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

}  // namespace detail

}  // namespace redraft
