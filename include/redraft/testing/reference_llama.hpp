// redraft/testing/reference_llama.hpp: the naive double-precision forward pass of the tiny Llama
// (testing/tiny_llama_weights.hpp), the scalar reference the cached model is checked against.
//
// No KV cache, no batching, no Eigen: every token of the sequence is recomputed with plain loops
// in double, attending to the tokens its mask row allows. A causal mask gives an ordinary
// sequence; prompt + tree tokens with an "ancestor-or-self or prompt" mask give what tree
// verification must compute. Host code; O(n^2 D + n params) per call.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/testing/tiny_llama_weights.hpp"

namespace redraft::testing {

struct reference_llama_output {
  std::vector<double> logits;  // [n, V]
  std::vector<double> hidden;  // [n, H] after the final norm
};

// reference_llama_forward(config, weights, tokens [n], positions [n], allowed [n, n]):
// row i attends to every j with allowed[i * n + j] != 0 (an empty `allowed` means causal, j <= i).
// Throws redraft::error for mismatched sizes, tokens outside [0, V), or a row that attends to
// nothing.
inline reference_llama_output reference_llama_forward(
    const tiny_llama_config& c, const tiny_llama_weights& w,
    const std::vector<std::int32_t>& tokens, const std::vector<std::int32_t>& positions,
    const std::vector<std::uint8_t>& allowed = {}) {
  const char* fn = "reference_llama_forward";
  check_weights(fn, c, w);
  const std::size_t n = tokens.size();
  REDRAFT_REQUIRE(positions.size() == n, fn, ": positions has ", positions.size(),
                  " entries but tokens has ", n);
  REDRAFT_REQUIRE(allowed.empty() || allowed.size() == n * n, fn, ": allowed has ", allowed.size(),
                  " entries, expected ", n * n);
  for (std::size_t i = 0; i < n; ++i) {
    REDRAFT_REQUIRE(tokens[i] >= 0 && tokens[i] < c.vocab_size, fn, ": tokens[", i,
                    "] = ", tokens[i], " is outside [0, ", c.vocab_size, ")");
  }
  const auto can_see = [&](std::size_t i, std::size_t j) {
    return allowed.empty() ? j <= i : allowed[i * n + j] != 0;
  };
  for (std::size_t i = 0; i < n; ++i) {
    bool any = false;
    for (std::size_t j = 0; j < n; ++j) any = any || can_see(i, j);
    REDRAFT_REQUIRE(any, fn, ": row ", i, " of allowed attends to nothing");
  }
  const std::size_t hs = static_cast<std::size_t>(c.hidden_size);
  const std::size_t d = static_cast<std::size_t>(c.attention_width());
  const std::size_t hd = static_cast<std::size_t>(c.head_dim);
  const std::size_t heads = static_cast<std::size_t>(c.num_heads);
  const std::size_t inter = static_cast<std::size_t>(c.intermediate_size);
  const std::size_t vocab = static_cast<std::size_t>(c.vocab_size);

  // y[out] = W[out, in] x[in]
  const auto matvec = [](const std::vector<float>& m, const std::vector<double>& x,
                         std::size_t out) {
    std::vector<double> y(out, 0.0);
    const std::size_t in = x.size();
    for (std::size_t o = 0; o < out; ++o) {
      double s = 0.0;
      for (std::size_t k = 0; k < in; ++k) s += static_cast<double>(m[o * in + k]) * x[k];
      y[o] = s;
    }
    return y;
  };
  const auto rms_norm = [&](const std::vector<double>& x, const std::vector<float>& weight) {
    double ss = 0.0;
    for (double v : x) ss += v * v;
    const double inv =
        1.0 / std::sqrt(ss / static_cast<double>(x.size()) + static_cast<double>(c.rms_norm_eps));
    std::vector<double> y(x.size());
    for (std::size_t k = 0; k < x.size(); ++k) y[k] = x[k] * inv * static_cast<double>(weight[k]);
    return y;
  };
  // HF rotate_half at position p: pairs (j, j + hd/2) rotated by p * theta^(-2j/hd).
  const auto rope = [&](std::vector<double>& v, std::int32_t p) {
    for (std::size_t h = 0; h < heads; ++h) {
      for (std::size_t j = 0; j < hd / 2; ++j) {
        const double angle = static_cast<double>(p) *
                             std::pow(static_cast<double>(c.rope_theta),
                                      -2.0 * static_cast<double>(j) / static_cast<double>(hd));
        const double a = v[h * hd + j], b = v[h * hd + j + hd / 2];
        v[h * hd + j] = a * std::cos(angle) - b * std::sin(angle);
        v[h * hd + j + hd / 2] = b * std::cos(angle) + a * std::sin(angle);
      }
    }
  };

  std::vector<std::vector<double>> x(n, std::vector<double>(hs));  // [n][H]
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < hs; ++k) {
      x[i][k] = w.embed_tokens[static_cast<std::size_t>(tokens[i]) * hs + k];
    }
  }
  for (const auto& lw : w.layers) {
    std::vector<std::vector<double>> q(n), k(n), v(n);  // [n][D]
    for (std::size_t i = 0; i < n; ++i) {
      const auto a = rms_norm(x[i], lw.input_layernorm);
      q[i] = matvec(lw.q_proj, a, d);
      k[i] = matvec(lw.k_proj, a, d);
      v[i] = matvec(lw.v_proj, a, d);
      rope(q[i], positions[i]);
      rope(k[i], positions[i]);
    }
    for (std::size_t i = 0; i < n; ++i) {
      std::vector<double> attn(d, 0.0);  // [D]
      for (std::size_t h = 0; h < heads; ++h) {
        std::vector<double> s(n, 0.0);
        double max = -1e300;
        for (std::size_t j = 0; j < n; ++j) {
          if (!can_see(i, j)) continue;
          double dot = 0.0;
          for (std::size_t e = 0; e < hd; ++e) dot += q[i][h * hd + e] * k[j][h * hd + e];
          s[j] = dot / std::sqrt(static_cast<double>(hd));
          max = s[j] > max ? s[j] : max;
        }
        double sum = 0.0;
        for (std::size_t j = 0; j < n; ++j) {
          s[j] = can_see(i, j) ? std::exp(s[j] - max) : 0.0;
          sum += s[j];
        }
        for (std::size_t j = 0; j < n; ++j) {
          for (std::size_t e = 0; e < hd; ++e) attn[h * hd + e] += s[j] / sum * v[j][h * hd + e];
        }
      }
      const auto o = matvec(lw.o_proj, attn, hs);
      for (std::size_t e = 0; e < hs; ++e) x[i][e] += o[e];
    }
    // The attention of every row reads the layer's input, so the MLP runs after all of them.
    for (std::size_t i = 0; i < n; ++i) {
      const auto m = rms_norm(x[i], lw.post_attention_layernorm);
      const auto g = matvec(lw.gate_proj, m, inter);
      const auto u = matvec(lw.up_proj, m, inter);
      std::vector<double> act(inter);
      for (std::size_t e = 0; e < inter; ++e) act[e] = g[e] / (1.0 + std::exp(-g[e])) * u[e];
      const auto down = matvec(lw.down_proj, act, hs);
      for (std::size_t e = 0; e < hs; ++e) x[i][e] += down[e];
    }
  }
  reference_llama_output out;
  out.logits.resize(n * vocab);
  out.hidden.resize(n * hs);
  const std::vector<float>& head = c.tie_word_embeddings ? w.embed_tokens : w.lm_head;
  for (std::size_t i = 0; i < n; ++i) {
    const auto h = rms_norm(x[i], w.norm);
    const auto logits = matvec(head, h, vocab);
    for (std::size_t e = 0; e < hs; ++e) out.hidden[i * hs + e] = h[e];
    for (std::size_t e = 0; e < vocab; ++e) out.logits[i * vocab + e] = logits[e];
  }
  return out;
}

}  // namespace redraft::testing
