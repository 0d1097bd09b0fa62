// redraft/draft/draft_config.hpp: the shape and variant of a draft head.
//
// A draft head (draft_head.hpp) maps the target model's hidden state h [H] and the embeddings of
// the tokens drafted so far to a log-distribution over the next token [V]:
//
//   s_0 = 0
//   s_k = recurrence(e(x_{k-1}), s_{k-1})                  [H]
//   x   = concat(h, s_k)                                    [2H]
//   x   = input_proj(x)          (only when E != 2H)        [E]
//   x   = x + SiLU(W_i x + b_i)  for i < N                  [E]
//   z   = lm_head x              (no bias)                  [V]
//   log_probs = log_softmax(top_k_warp(z - max(z)))         [V]
//
// Host code only (a plain struct).
#pragma once

#include <cstdint>
#include <string>

#include "redraft/core/error.hpp"

namespace redraft {

// How the recurrent state s_k is formed from the previous token's embedding e and s_{k-1}.
enum class recurrence {
  // s_k = SiLU(W e + U s_{k-1} + b_U): Apple's trained form (`rnn: true`), the default.
  silu,
  // s_k = W e + U s_{k-1} + b_U: the same weights without the activation (TensorRT-LLM's port).
  linear,
  // s_k = e + s_{k-1}: no recurrent weights at all (Apple's `rnn: false`).
  running_sum,
};

// The name used in config.json ("silu", "linear", "running_sum").
inline const char* recurrence_name(recurrence r) {
  switch (r) {
    case recurrence::silu:
      return "silu";
    case recurrence::linear:
      return "linear";
    case recurrence::running_sum:
      return "running_sum";
  }
  return "unknown";
}

// Parses a recurrence name; throws redraft::error naming the accepted values.
inline recurrence parse_recurrence(const std::string& name) {
  if (name == "silu") return recurrence::silu;
  if (name == "linear") return recurrence::linear;
  if (name == "running_sum") return recurrence::running_sum;
  detail::throw_error("recurrence '", name, "' is not one of silu, linear, running_sum");
}

struct draft_config {
  std::int64_t vocab_size = 0;        // V: rows of the embedding table and of lm_head
  std::int64_t hidden_size = 0;       // H: the target model's hidden size
  std::int64_t exit_dim = 0;          // E: width of the residual blocks
  std::int64_t num_draft_layers = 0;  // N: residual blocks (0 allowed)
  redraft::recurrence recurrence = redraft::recurrence::silu;
  // Logits strictly below the logit_top_k-th largest of their row are set to logit_mask_value
  // before log_softmax; logit_top_k >= vocab_size disables the warp.
  std::int64_t logit_top_k = 50;
  float logit_mask_value = -50000.0f;

  // True when the head has an input projection 2H -> E (Apple's layout: exactly when E != 2H).
  bool has_input_proj() const { return exit_dim != 2 * hidden_size; }
  // True when the head has the recurrent weights rnn_w, rnn_u.
  bool has_rnn_weights() const { return recurrence != redraft::recurrence::running_sum; }

  // Throws redraft::error naming the first invalid field, prefixed by `where`.
  void validate(const char* where = "draft_config") const {
    REDRAFT_REQUIRE(vocab_size >= 1, where, ": vocab_size ", vocab_size, " must be at least 1");
    REDRAFT_REQUIRE(vocab_size <= (std::int64_t{1} << 31) - 1, where, ": vocab_size ", vocab_size,
                    " does not fit int32 token ids");
    REDRAFT_REQUIRE(hidden_size >= 1, where, ": hidden_size ", hidden_size, " must be at least 1");
    REDRAFT_REQUIRE(exit_dim >= 1, where, ": exit_dim ", exit_dim, " must be at least 1");
    // NOTE: upper bounds so that no size computed from a (possibly hostile) config overflows:
    // 2 * hidden_size, vocab_size * exit_dim and exit_dim^2 all stay far below 2^63, and the
    // tensor list has at most 2 * num_draft_layers + 6 entries.
    constexpr std::int64_t max_width = std::int64_t{1} << 24;
    REDRAFT_REQUIRE(hidden_size <= max_width, where, ": hidden_size ", hidden_size,
                    " exceeds the limit ", max_width);
    REDRAFT_REQUIRE(exit_dim <= max_width, where, ": exit_dim ", exit_dim, " exceeds the limit ",
                    max_width);
    REDRAFT_REQUIRE(num_draft_layers >= 0, where, ": num_draft_layers ", num_draft_layers,
                    " is negative");
    REDRAFT_REQUIRE(num_draft_layers <= 4096, where, ": num_draft_layers ", num_draft_layers,
                    " exceeds the limit 4096");
    REDRAFT_REQUIRE(logit_top_k >= 1, where, ": logit_top_k ", logit_top_k, " must be at least 1");
    REDRAFT_REQUIRE(logit_mask_value == logit_mask_value && logit_mask_value < 0.0f &&
                        logit_mask_value > -1e30f,
                    where, ": logit_mask_value ", logit_mask_value,
                    " must be a finite negative number (-50000 by default)");
    REDRAFT_REQUIRE(recurrence == redraft::recurrence::silu ||
                        recurrence == redraft::recurrence::linear ||
                        recurrence == redraft::recurrence::running_sum,
                    where, ": recurrence ", static_cast<int>(recurrence), " is not a known value");
  }

  friend bool operator==(const draft_config&, const draft_config&) = default;
};

}  // namespace redraft
