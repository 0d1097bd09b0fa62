// redraft/train/distill_loss.hpp: the distillation losses over the draft head's logits, with
// their gradient with respect to the logits.
//
// Rows are training positions; the head's logits of all next_n steps are stacked step-major:
// row i * M + m is step i of position m. Step i of position t predicts token t + i + 2 (the
// `drafter_loss` convention of golden/README.md; train/drafter_loss.hpp). Two kinds:
//
//   cross_entropy (Apple's loss):
//     loss = sum_i w_i * mean_{m counted at i} -log q_i,m[label(m, i)]
//   kl (soft targets):
//     loss = sum_i w_i * mean_{m counted at i} KL(p_i,m || q_i,m)
//          = sum_i w_i * mean sum_v p(v) (log p(v) - log q(v))
//
// where q_i,m = softmax(logits row) and p_i,m is the target model's distribution of the same
// token (target_log_probs). A (position, step) is counted when its label is not ignore_index; a
// step with no counted row contributes 0. With all w_i = 1 and no warp, the cross-entropy is
// exactly drafter_cross_entropy (tested on the golden cases).
//
// The top-k warp. At inference the head keeps the logits >= the k-th largest of the row (k =
// logit_top_k) and sets the others to logit_mask_value (-50000) before log_softmax. Training
// does NOT apply it by default (options.top_k_warp = false): q is the full softmax, as in Apple's
// training, because the warp cuts the gradient of every masked logit, so a label outside the
// head's current top-k could never be pulled up, and KL(p || warped q) is dominated by
// 50000 * (p's mass outside q's top-k). For tokens inside the top-k the warped distribution is the
// full one renormalised over the top-k, so the full softmax trains the same ranking. With
// top_k_warp = true the loss is computed on the warped log q exactly as the inference head
// computes it (row max subtracted, masked entries = mask_value - logsumexp of the kept ones), and
// the gradient flows only through the kept logits (masked entries are constants); see the
// derivation in docs/distill.md. Both are checked against finite differences.
//
// Host code (CPU training), templated on the scalar type (float to train, double to check
// gradients). NOTE: the per-row softmax and sums run in double whatever T is.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/draft/draft_config.hpp"

namespace redraft {

enum class distill_loss_kind {
  cross_entropy,  // Apple's multi-step CE on the target's tokens (hard labels)
  kl,             // KL(p_target || q_draft) on the target's full distributions
};

// "ce" / "kl".
inline const char* distill_loss_name(distill_loss_kind k) {
  return k == distill_loss_kind::kl ? "kl" : "ce";
}
inline distill_loss_kind parse_distill_loss(const std::string& name) {
  if (name == "ce" || name == "cross_entropy") return distill_loss_kind::cross_entropy;
  if (name == "kl") return distill_loss_kind::kl;
  detail::throw_error("distill loss '", name, "' is not one of ce, kl");
}

struct distill_loss_options {
  distill_loss_kind kind = distill_loss_kind::cross_entropy;
  std::vector<double> step_weight;   // [next_n] w_i, or empty for all 1
  bool top_k_warp = false;           // train on the warped q (see the file comment)
  std::int32_t ignore_index = -100;  // labels equal to it do not count
};

// What a loss evaluation reports.
struct distill_loss_stats {
  double loss = 0.0;                  // the weighted sum over steps
  std::vector<double> step_loss;      // [next_n] mean loss per step (0 when nothing counted)
  std::vector<std::int64_t> counted;  // [next_n] rows counted per step
  std::vector<std::int64_t> correct;  // [next_n] counted rows whose argmax logit is the label

  // Top-1 accuracy of step i (0 when nothing counted).
  double accuracy(std::size_t i) const {
    return counted[i] == 0 ? 0.0
                           : static_cast<double>(correct[i]) / static_cast<double>(counted[i]);
  }
  // Accumulates another evaluation's counts (losses weighted by counts) into this one.
  void merge(const distill_loss_stats& o) {
    if (step_loss.empty()) {
      *this = o;
      return;
    }
    loss = 0.0;
    for (std::size_t i = 0; i < step_loss.size(); ++i) {
      const std::int64_t n = counted[i] + o.counted[i];
      step_loss[i] = n == 0 ? 0.0
                            : (step_loss[i] * static_cast<double>(counted[i]) +
                               o.step_loss[i] * static_cast<double>(o.counted[i])) /
                                  static_cast<double>(n);
      counted[i] = n;
      correct[i] += o.correct[i];
    }
  }
};

namespace detail {

struct row_loss_value {
  double loss = 0.0;
  index_t argmax = 0;
};

// One row of logits z [V]: the loss of the row and, when grad != nullptr, scale * d loss / d z
// written into grad [V]. label in [0, V); target_log_probs [V] (kl only). scratch: reused.
// Complexity O(V) (+ an O(V) selection for the warp).
template <class T>
row_loss_value row_loss(const T* z, index_t vocab, std::int32_t label,
                        const float* target_log_probs, const draft_config& config,
                        const distill_loss_options& options, double scale, T* grad,
                        std::vector<double>& scratch) {
  row_loss_value out;
  double max = static_cast<double>(z[0]);
  for (index_t v = 1; v < vocab; ++v) {
    if (static_cast<double>(z[v]) > max) {
      max = static_cast<double>(z[v]);
      out.argmax = v;
    }
  }
  // The kept set: z >= kth (ties with the k-th survive, as in the inference head).
  const bool warp = options.top_k_warp && config.logit_top_k < vocab;
  double kth = -INFINITY;
  if (warp) {
    scratch.assign(z, z + vocab);
    const auto k = static_cast<std::ptrdiff_t>(config.logit_top_k);
    std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(),
                     std::greater<double>());
    kth = scratch[static_cast<std::size_t>(k - 1)];
  }
  // q over the kept set, in double around the row max: q[v] = exp(z - lse), 0 when masked.
  scratch.resize(static_cast<std::size_t>(vocab));
  double sum = 0.0;
  for (index_t v = 0; v < vocab; ++v) {
    const double zv = static_cast<double>(z[v]);
    const double e = zv >= kth ? std::exp(zv - max) : 0.0;
    scratch[static_cast<std::size_t>(v)] = e;
    sum += e;
  }
  const double lse = max + std::log(sum);
  const double mask = static_cast<double>(config.logit_mask_value);
  // log q[v] of the head: z - lse when kept; mask - (lse - max) when masked (draft_head.hpp).
  const auto log_q = [&](index_t v) {
    const double zv = static_cast<double>(z[v]);
    return zv >= kth ? zv - lse : mask - (lse - max);
  };
  if (options.kind == distill_loss_kind::cross_entropy) {
    out.loss = -log_q(label);
    if (grad != nullptr) {
      // d/dz_j: q_j - [j == label] when the label is kept; q_j - [j == argmax] when it is masked
      // (its log q is mask - lse + max, so only lse and the max depend on z).
      const bool kept = static_cast<double>(z[label]) >= kth;
      const index_t hot = kept ? label : out.argmax;
      for (index_t v = 0; v < vocab; ++v)
        grad[v] = static_cast<T>(
            scale * (scratch[static_cast<std::size_t>(v)] / sum - (v == hot ? 1.0 : 0.0)));
    }
    return out;
  }
  // KL(p || q) = sum_v p_v (log p_v - log q_v); p_v = 0 terms are 0.
  double p_total = 0.0, p_masked = 0.0;
  for (index_t v = 0; v < vocab; ++v) {
    const double lp = static_cast<double>(target_log_probs[v]);
    const double p = std::exp(lp);
    if (p == 0.0) continue;
    out.loss += p * (lp - log_q(v));
    p_total += p;
    if (!(static_cast<double>(z[v]) >= kth)) p_masked += p;
  }
  if (grad != nullptr) {
    // -sum p log q = -sum_kept p_v z_v + P lse - P_masked (mask + max), so
    // d/dz_j = P q_j - p_j - P_masked [j == argmax] for kept j, 0 for masked j.
    for (index_t v = 0; v < vocab; ++v) {
      const double q = scratch[static_cast<std::size_t>(v)] / sum;
      const bool kept = static_cast<double>(z[v]) >= kth;
      const double p = std::exp(static_cast<double>(target_log_probs[v]));
      const double g = kept ? p_total * q - p - (v == out.argmax ? p_masked : 0.0) : 0.0;
      grad[v] = static_cast<T>(scale * g);
    }
  }
  return out;
}

}  // namespace detail

// The multi-step loss of stacked logits, and its gradient.
//   logits           [next_n * M, V] row-major, step-major (row i * M + m: step i of position m)
//   labels           [M, next_n]  the token step i of position m must predict, or ignore_index
//   target_log_probs [M, next_n, V] log p of that token's target distribution (kl; else null)
//   config           the head's config (vocab_size V, logit_top_k, logit_mask_value)
//   grad_logits      null, or [next_n * M, V]: receives d loss / d logits (0 on rows not counted)
// Returns the loss, per-step mean losses, counts and top-1 hits. Throws redraft::error (before
// writing anything) for a label outside [0, V), step weights of the wrong length, or kl without
// target_log_probs. Deterministic. O(next_n M V).
template <class T>
distill_loss_stats multi_step_loss(const T* logits, index_t rows_per_step, index_t next_n,
                                   const std::int32_t* labels, const float* target_log_probs,
                                   const draft_config& config, const distill_loss_options& options,
                                   T* grad_logits = nullptr) {
  const index_t m_rows = rows_per_step, vocab = config.vocab_size;
  REDRAFT_REQUIRE(next_n >= 1, "multi_step_loss: next_n ", next_n, " must be at least 1");
  REDRAFT_REQUIRE(
      options.step_weight.empty() || static_cast<index_t>(options.step_weight.size()) == next_n,
      "multi_step_loss: step_weight has ", options.step_weight.size(), " entries but next_n is ",
      next_n);
  REDRAFT_REQUIRE(options.kind != distill_loss_kind::kl || target_log_probs != nullptr,
                  "multi_step_loss: the kl loss needs the target's log-probabilities (none given)");
  for (index_t i = 0; i < m_rows * next_n; ++i) {
    const std::int32_t y = labels[i];
    REDRAFT_REQUIRE(y == options.ignore_index || (y >= 0 && y < vocab), "multi_step_loss: labels[",
                    i / next_n, ", ", i % next_n, "] = ", y, " is outside [0, ", vocab,
                    ") and is not ignore_index ", options.ignore_index);
  }
  distill_loss_stats out;
  out.step_loss.assign(static_cast<std::size_t>(next_n), 0.0);
  out.counted.assign(static_cast<std::size_t>(next_n), 0);
  out.correct.assign(static_cast<std::size_t>(next_n), 0);
  std::vector<double> scratch;
  for (index_t i = 0; i < next_n; ++i) {
    const double w =
        options.step_weight.empty() ? 1.0 : options.step_weight[static_cast<std::size_t>(i)];
    std::int64_t count = 0;
    for (index_t m = 0; m < m_rows; ++m) count += labels[m * next_n + i] != options.ignore_index;
    out.counted[static_cast<std::size_t>(i)] = count;
    double sum = 0.0;
    for (index_t m = 0; m < m_rows; ++m) {
      const index_t row = i * m_rows + m;
      T* g = grad_logits == nullptr ? nullptr : grad_logits + row * vocab;
      const std::int32_t y = labels[m * next_n + i];
      if (y == options.ignore_index) {
        if (g != nullptr) std::fill(g, g + vocab, T(0));
        continue;
      }
      const float* p =
          target_log_probs == nullptr ? nullptr : target_log_probs + (m * next_n + i) * vocab;
      const detail::row_loss_value r =
          detail::row_loss(logits + row * vocab, vocab, y, p, config, options,
                           w / static_cast<double>(count), g, scratch);
      sum += r.loss;
      out.correct[static_cast<std::size_t>(i)] += r.argmax == y;
    }
    if (count == 0) continue;
    out.step_loss[static_cast<std::size_t>(i)] = sum / static_cast<double>(count);
    out.loss += w * out.step_loss[static_cast<std::size_t>(i)];
  }
  return out;
}

}  // namespace redraft
