// redraft/testing/demo_models.hpp: the built-in models of redraft-demo and redraft-distill.
//
// One place for the shapes and seeds both programs use, so a draft head distilled by
// redraft-distill for "the built-in target" is trained on exactly the target redraft-demo runs.
// Host code only (plain structs).
#pragma once

#include <cstdint>

#include "redraft/draft/draft_config.hpp"
#include "redraft/testing/tiny_llama_weights.hpp"

namespace redraft::testing {

// The seed of the built-in target's deterministic random weights (random_tiny_llama_weights).
inline constexpr std::uint64_t demo_target_seed = 1;

// The seed of the untrained draft head (init_draft_head) the demo falls back to.
inline constexpr std::uint64_t demo_draft_seed = 7;

// The built-in target: a byte-level Llama (V 256, H 256, 4 layers) sized so one decoding step
// streams its ~15 MB of weights from memory (on a CPU the step is then bandwidth-bound, as on a
// GPU).
inline tiny_llama_config demo_target_config() {
  tiny_llama_config c;
  c.vocab_size = 256;
  c.hidden_size = 256;
  c.num_layers = 4;
  c.num_heads = 4;
  c.head_dim = 64;
  c.intermediate_size = 768;
  c.max_context = 512;
  c.tie_word_embeddings = false;
  return c;
}

// The demo's draft head for a target of vocabulary V and hidden size H: exit_dim 2H (no input
// projection), 2 residual blocks, SiLU recurrence, top-k 50 (Apple's defaults).
inline draft_config demo_draft_config(std::int64_t vocab_size, std::int64_t hidden_size) {
  draft_config dc;
  dc.vocab_size = vocab_size;
  dc.hidden_size = hidden_size;
  dc.exit_dim = 2 * hidden_size;
  dc.num_draft_layers = 2;
  return dc;
}

}  // namespace redraft::testing
