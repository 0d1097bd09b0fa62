// redraft/testing/reference_draft.hpp: naive double-precision references of the draft head and its
// beam search, written straight from the equations (draft/draft_head.hpp, draft/beam_search.hpp)
// with plain loops over host std::vectors. Use them to check a backend or an engine's drafter.
//
// Weights come as named host tensors in PyTorch layout (the checkpoint names). Every function is
// deterministic; complexity is that of the textbook loops (no batching).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "redraft/draft/draft_config.hpp"
#include "redraft/draft/safetensors.hpp"

namespace redraft::testing {

// y[out] = W[out, in] x[in] + bias[out] (bias optional).
inline std::vector<double> reference_linear(const tensor_data& w, const tensor_data* bias,
                                            const std::vector<double>& x) {
  const std::size_t rows = static_cast<std::size_t>(w.shape[0]);
  const std::size_t cols = static_cast<std::size_t>(w.shape[1]);
  std::vector<double> y(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    double acc = bias ? bias->values[r] : 0.0;
    for (std::size_t c = 0; c < cols; ++c) acc += double(w.values[r * cols + c]) * x[c];
    y[r] = acc;
  }
  return y;
}

inline double reference_silu(double v) { return v / (1.0 + std::exp(-v)); }

// s_k from e(x_{k-1}) [H] and s_{k-1} [H].
inline std::vector<double> reference_draft_state(const draft_config& config,
                                                 const std::map<std::string, tensor_data>& weights,
                                                 const std::vector<double>& embedded,
                                                 const std::vector<double>& state) {
  std::vector<double> next(state.size());
  if (config.recurrence == recurrence::running_sum) {
    for (std::size_t i = 0; i < next.size(); ++i) next[i] = embedded[i] + state[i];
    return next;
  }
  const auto from_embedding = reference_linear(weights.at("rnn_w.weight"), nullptr, embedded);
  const auto from_state =
      reference_linear(weights.at("rnn_u.weight"), &weights.at("rnn_u.bias"), state);
  for (std::size_t i = 0; i < next.size(); ++i) {
    const double v = from_embedding[i] + from_state[i];
    next[i] = config.recurrence == recurrence::silu ? reference_silu(v) : v;
  }
  return next;
}

// log_softmax(top_k_warp(z - max z)) [V] for hidden h [H] and state s [H].
inline std::vector<double> reference_draft_log_probs(
    const draft_config& config, const std::map<std::string, tensor_data>& weights,
    const std::vector<double>& hidden, const std::vector<double>& state) {
  std::vector<double> x(hidden);
  x.insert(x.end(), state.begin(), state.end());
  if (config.has_input_proj()) {
    x = reference_linear(weights.at("input_proj.weight"), &weights.at("input_proj.bias"), x);
  }
  for (std::int64_t i = 0; i < config.num_draft_layers; ++i) {
    const std::string prefix = "lm_head." + std::to_string(i) + ".linear.";
    const auto t = reference_linear(weights.at(prefix + "weight"), &weights.at(prefix + "bias"), x);
    for (std::size_t j = 0; j < x.size(); ++j) x[j] += reference_silu(t[j]);
  }
  std::vector<double> z = reference_linear(
      weights.at("lm_head." + std::to_string(config.num_draft_layers) + ".weight"), nullptr, x);
  const double max = *std::max_element(z.begin(), z.end());
  for (double& v : z) v -= max;
  if (config.logit_top_k < config.vocab_size) {
    std::vector<double> sorted(z);
    std::sort(sorted.begin(), sorted.end(), std::greater<double>());
    const double kth = sorted[static_cast<std::size_t>(config.logit_top_k - 1)];
    for (double& v : z) v = v < kth ? double(config.logit_mask_value) : v;
  }
  double sum = 0.0;
  for (double v : z) sum += std::exp(v);  // the max is 0 after the subtraction
  const double log_sum = std::log(sum);
  for (double& v : z) v -= log_sum;
  return z;
}

struct reference_beam_search_result {
  std::vector<std::int32_t> beams;  // [B, W, L]
  std::vector<double> scores;       // [B, W]
  std::vector<double> log_probs;    // [B, W, L-1, V]
  // The smallest gap between consecutive candidates among the top W + 1 of any step: when it is
  // tiny, float and double computations may legitimately order the beams differently.
  double min_gap = std::numeric_limits<double>::infinity();
};

// Beam search one beam at a time, with a full sort of the W*V candidates of each step.
//   embedding [V, H], hidden [B, H], roots [B].
inline reference_beam_search_result reference_beam_search(
    const draft_config& config, const std::map<std::string, tensor_data>& weights,
    const std::vector<float>& embedding, const std::vector<float>& hidden,
    const std::vector<std::int32_t>& roots, std::int64_t width, std::int64_t length) {
  const std::size_t batch = roots.size(), w_n = static_cast<std::size_t>(width);
  const std::size_t l_n = static_cast<std::size_t>(length),
                    v_n = static_cast<std::size_t>(config.vocab_size);
  const std::size_t h_n = static_cast<std::size_t>(config.hidden_size);
  reference_beam_search_result out;
  out.beams.resize(batch * w_n * l_n);
  out.scores.resize(batch * w_n);
  out.log_probs.resize(batch * w_n * (l_n - 1) * v_n);
  for (std::size_t b = 0; b < batch; ++b) {
    const std::vector<double> h(hidden.begin() + long(b * h_n),
                                hidden.begin() + long((b + 1) * h_n));
    struct beam {
      std::vector<std::int32_t> tokens;
      std::vector<double> state;
      std::vector<std::vector<double>> log_probs;  // per drafted position
      double score;
    };
    std::vector<beam> beams(w_n);
    for (std::size_t w = 0; w < w_n; ++w) {
      beams[w] = {{roots[b]},
                  std::vector<double>(h_n, 0.0),
                  {},
                  w == 0 ? 0.0 : double(config.logit_mask_value)};
    }
    for (std::size_t k = 1; k < l_n; ++k) {
      std::vector<std::vector<double>> step_log_probs(w_n);
      std::vector<double> candidates(w_n * v_n);
      for (std::size_t w = 0; w < w_n; ++w) {
        std::vector<double> e(h_n);
        const std::size_t token = static_cast<std::size_t>(beams[w].tokens.back());
        for (std::size_t i = 0; i < h_n; ++i) e[i] = embedding[token * h_n + i];
        beams[w].state = reference_draft_state(config, weights, e, beams[w].state);
        step_log_probs[w] = reference_draft_log_probs(config, weights, h, beams[w].state);
        for (std::size_t v = 0; v < v_n; ++v)
          candidates[w * v_n + v] = beams[w].score + step_log_probs[w][v];
      }
      std::vector<std::size_t> order(candidates.size());
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t c) { return candidates[a] > candidates[c]; });
      for (std::size_t j = 0; j < w_n && j + 1 < order.size(); ++j) {
        out.min_gap = std::min(out.min_gap, candidates[order[j]] - candidates[order[j + 1]]);
      }
      std::vector<beam> next(w_n);
      for (std::size_t j = 0; j < w_n; ++j) {
        const std::size_t source = order[j] / v_n;
        next[j] = beams[source];
        next[j].tokens.push_back(static_cast<std::int32_t>(order[j] % v_n));
        next[j].log_probs.push_back(step_log_probs[source]);
        next[j].score = candidates[order[j]];
      }
      beams = std::move(next);
    }
    for (std::size_t w = 0; w < w_n; ++w) {
      out.scores[b * w_n + w] = beams[w].score;
      for (std::size_t l = 0; l < l_n; ++l) out.beams[(b * w_n + w) * l_n + l] = beams[w].tokens[l];
      for (std::size_t k = 0; k + 1 < l_n; ++k)
        for (std::size_t v = 0; v < v_n; ++v)
          out.log_probs[((b * w_n + w) * (l_n - 1) + k) * v_n + v] = beams[w].log_probs[k][v];
    }
  }
  return out;
}

}  // namespace redraft::testing
