// redraft/testing/tiny_llama_weights.hpp: configuration and weights of the tiny Llama-style
// reference target model (testing/tiny_llama.hpp), and their seeded random initialisation.
//
// The parameter set is Hugging Face's LlamaForCausalLM with multi-head attention (as many key/value
// heads as query heads), no biases and SiLU-gated MLPs; every matrix is row-major in PyTorch's
// [out, in] layout, so a tensor of a HF checkpoint maps onto a field one to one
// (tiny_llama_io.hpp). Host memory only.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"

namespace redraft::testing {

// Model hyper-parameters (the HF config.json name of each field in brackets).
struct tiny_llama_config {
  std::int32_t vocab_size = 256;         // V [vocab_size]
  std::int32_t hidden_size = 64;         // H [hidden_size]
  std::int32_t num_layers = 2;           // [num_hidden_layers]
  std::int32_t num_heads = 4;            // [num_attention_heads] (= num_key_value_heads)
  std::int32_t head_dim = 16;            // [head_dim]; even, usually hidden_size / num_heads
  std::int32_t intermediate_size = 128;  // I [intermediate_size]
  std::int32_t max_context = 512;        // [max_position_embeddings]: positions and slot length
  float rope_theta = 10000.0f;           // [rope_theta]
  float rms_norm_eps = 1e-5f;            // [rms_norm_eps]
  bool tie_word_embeddings = true;       // [tie_word_embeddings]: lm_head = embed_tokens

  // heads * head_dim: the width of the attention projections.
  std::int32_t attention_width() const { return num_heads * head_dim; }
};

// One decoder layer. Shapes with D = num_heads * head_dim.
struct tiny_llama_layer_weights {
  std::vector<float> input_layernorm;           // [H]
  std::vector<float> q_proj;                    // [D, H]
  std::vector<float> k_proj;                    // [D, H]
  std::vector<float> v_proj;                    // [D, H]
  std::vector<float> o_proj;                    // [H, D]
  std::vector<float> post_attention_layernorm;  // [H]
  std::vector<float> gate_proj;                 // [I, H]
  std::vector<float> up_proj;                   // [I, H]
  std::vector<float> down_proj;                 // [H, I]
};

struct tiny_llama_weights {
  std::vector<float> embed_tokens;               // [V, H]
  std::vector<tiny_llama_layer_weights> layers;  // [num_layers]
  std::vector<float> norm;                       // [H] final norm
  std::vector<float> lm_head;                    // [V, H]; empty when tie_word_embeddings
};

// Throws redraft::error naming `fn` and the offending field unless every size is positive,
// head_dim is even (RoPE rotates halves), rope_theta > 0 and rms_norm_eps > 0.
inline void check_config(const char* fn, const tiny_llama_config& c) {
  REDRAFT_REQUIRE(c.vocab_size >= 1, fn, ": vocab_size ", c.vocab_size, " must be at least 1");
  REDRAFT_REQUIRE(c.hidden_size >= 1, fn, ": hidden_size ", c.hidden_size, " must be at least 1");
  REDRAFT_REQUIRE(c.num_layers >= 1, fn, ": num_layers ", c.num_layers, " must be at least 1");
  REDRAFT_REQUIRE(c.num_heads >= 1, fn, ": num_heads ", c.num_heads, " must be at least 1");
  REDRAFT_REQUIRE(c.head_dim >= 2 && c.head_dim % 2 == 0, fn, ": head_dim ", c.head_dim,
                  " must be even and at least 2 (RoPE rotates its two halves)");
  REDRAFT_REQUIRE(c.intermediate_size >= 1, fn, ": intermediate_size ", c.intermediate_size,
                  " must be at least 1");
  REDRAFT_REQUIRE(c.max_context >= 1, fn, ": max_context ", c.max_context, " must be at least 1");
  REDRAFT_REQUIRE(c.rope_theta > 0.0f, fn, ": rope_theta ", c.rope_theta, " must be positive");
  REDRAFT_REQUIRE(c.rms_norm_eps > 0.0f, fn, ": rms_norm_eps ", c.rms_norm_eps,
                  " must be positive");
}

// Throws redraft::error naming `fn`, the tensor (in HF names) and both sizes when a weight does
// not have the size the configuration implies.
inline void check_weights(const char* fn, const tiny_llama_config& c, const tiny_llama_weights& w) {
  check_config(fn, c);
  const std::size_t v = static_cast<std::size_t>(c.vocab_size);
  const std::size_t h = static_cast<std::size_t>(c.hidden_size);
  const std::size_t d = static_cast<std::size_t>(c.attention_width());
  const std::size_t i = static_cast<std::size_t>(c.intermediate_size);
  const auto expect = [fn](const std::vector<float>& t, std::size_t n, const char* name,
                           int layer) {
    if (layer >= 0) {
      REDRAFT_REQUIRE(t.size() == n, fn, ": model.layers.", layer, ".", name, " has ", t.size(),
                      " values but the configuration implies ", n);
    } else {
      REDRAFT_REQUIRE(t.size() == n, fn, ": ", name, " has ", t.size(),
                      " values but the configuration implies ", n);
    }
  };
  expect(w.embed_tokens, v * h, "model.embed_tokens.weight", -1);
  REDRAFT_REQUIRE(w.layers.size() == static_cast<std::size_t>(c.num_layers), fn, ": weights have ",
                  w.layers.size(), " layers but num_layers is ", c.num_layers);
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const auto& lw = w.layers[l];
    const int li = static_cast<int>(l);
    expect(lw.input_layernorm, h, "input_layernorm.weight", li);
    expect(lw.q_proj, d * h, "self_attn.q_proj.weight", li);
    expect(lw.k_proj, d * h, "self_attn.k_proj.weight", li);
    expect(lw.v_proj, d * h, "self_attn.v_proj.weight", li);
    expect(lw.o_proj, h * d, "self_attn.o_proj.weight", li);
    expect(lw.post_attention_layernorm, h, "post_attention_layernorm.weight", li);
    expect(lw.gate_proj, i * h, "mlp.gate_proj.weight", li);
    expect(lw.up_proj, i * h, "mlp.up_proj.weight", li);
    expect(lw.down_proj, h * i, "mlp.down_proj.weight", li);
  }
  expect(w.norm, h, "model.norm.weight", -1);
  if (c.tie_word_embeddings) {
    REDRAFT_REQUIRE(w.lm_head.empty(), fn, ": lm_head.weight has ", w.lm_head.size(),
                    " values but tie_word_embeddings is set (the head is embed_tokens)");
  } else {
    expect(w.lm_head, v * h, "lm_head.weight", -1);
  }
}

namespace detail {

// Fills n values uniform in [center - half_width, center + half_width) from the Philox stream
// (seed, tensor_id, 0): value i uses draw i.
inline std::vector<float> philox_uniform_tensor(std::uint64_t seed, std::uint32_t tensor_id,
                                                std::size_t n, float center, float half_width) {
  const philox_stream stream{seed, tensor_id, 0};
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = center + half_width * (2.0f * stream.uniform(i) - 1.0f);
  }
  return out;
}

}  // namespace detail

// random_tiny_llama_weights(config, seed): deterministic random weights.
//
// Every tensor is uniform (a uniform of half-width sqrt(3) sigma has standard deviation sigma)
// from its own Philox stream (seed, tensor number, 0), tensors numbered in HF name order
// (embed_tokens = 0, then 9 per layer, then norm, then lm_head), so the values are bit-identical
// on every platform and compiler.
// NOTE: scales are chosen so a random model is neither uniform nor one-hot, nor a model that
// repeats its input: with RMS-normed inputs the q/k/v/gate/up projections have unit-variance
// outputs (sigma = 1/sqrt(fan_in), q and k 1.5x that so attention depends on content); the
// residual writers o/down add updates of RMS ~3/sqrt(H), four times the embedding's sigma
// 0.75/sqrt(H), so the last token's own embedding does not dominate the final hidden state (with
// tied embeddings it would otherwise make "repeat the input token" the argmax almost always);
// layer norm weights are 1 +- 0.1; the head gives logits of standard deviation ~3 (untied: sigma
// 3/sqrt(H); tied: the final norm weight is 4 +- 0.4). Measured with the default configuration:
// mean next-token entropy ~2.6 nats (of ln 256 = 5.5), the argmax repeats the last input token
// for under 10% of random contexts.
// Complexity O(number of parameters).
inline tiny_llama_weights random_tiny_llama_weights(const tiny_llama_config& config,
                                                    std::uint64_t seed) {
  check_config("random_tiny_llama_weights", config);
  const std::size_t v = static_cast<std::size_t>(config.vocab_size);
  const std::size_t h = static_cast<std::size_t>(config.hidden_size);
  const std::size_t d = static_cast<std::size_t>(config.attention_width());
  const std::size_t i = static_cast<std::size_t>(config.intermediate_size);
  const float sqrt3 = std::sqrt(3.0f);
  const float residual_sigma = 3.0f / std::sqrt(static_cast<float>(h));
  const float embedding_sigma = 0.75f / std::sqrt(static_cast<float>(h));
  const float in_sigma = 1.0f / std::sqrt(static_cast<float>(h));
  std::uint32_t id = 0;
  const auto uniform = [&](std::size_t n, float sigma) {
    return detail::philox_uniform_tensor(seed, id++, n, 0.0f, sqrt3 * sigma);
  };
  const auto norm_weight = [&](float center) {
    return detail::philox_uniform_tensor(seed, id++, h, center, 0.1f * center);
  };

  tiny_llama_weights w;
  w.embed_tokens = uniform(v * h, embedding_sigma);  // [V, H]
  for (std::int32_t l = 0; l < config.num_layers; ++l) {
    tiny_llama_layer_weights lw;
    lw.input_layernorm = norm_weight(1.0f);                                         // [H]
    lw.q_proj = uniform(d * h, 1.5f * in_sigma);                                    // [D, H]
    lw.k_proj = uniform(d * h, 1.5f * in_sigma);                                    // [D, H]
    lw.v_proj = uniform(d * h, in_sigma);                                           // [D, H]
    lw.o_proj = uniform(h * d, residual_sigma / std::sqrt(static_cast<float>(d)));  // [H, D]
    lw.post_attention_layernorm = norm_weight(1.0f);                                // [H]
    lw.gate_proj = uniform(i * h, in_sigma);                                        // [I, H]
    lw.up_proj = uniform(i * h, in_sigma);                                          // [I, H]
    lw.down_proj =
        uniform(h * i, residual_sigma / std::sqrt(0.5f * static_cast<float>(i)));  // [H, I]
    w.layers.push_back(std::move(lw));
  }
  // NOTE: tied logits are (4 norm(h)) . e_v with e of sigma 0.75/sqrt(H): standard deviation ~3.
  w.norm = norm_weight(config.tie_word_embeddings ? 4.0f : 1.0f);  // [H]
  if (!config.tie_word_embeddings) {
    w.lm_head = uniform(v * h, 3.0f / std::sqrt(static_cast<float>(h)));  // [V, H]
  }
  return w;
}

}  // namespace redraft::testing
