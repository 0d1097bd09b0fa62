// redraft/train/drafter_loss.hpp: the draft head's multi-step cross-entropy (Apple's loss).
//
// The draft head is trained to predict several future tokens from one position: step i of the
// head, run at sequence position t, predicts token t + i + 2 (token t + 1 is the target's own next
// token, the root the drafter starts from). With logits [next_n, B, T, V] and labels [B, T]:
//
//   loss = sum_{i < next_n} w_i * mean_{(b, t) : t + i + 2 < T, labels[b, t+i+2] != ignore}
//                                   -log softmax(logits[i, b, t])[labels[b, t + i + 2]]
//
// with w_i = 1 by default. A step with no counted label contributes 0. Host (CPU) code: training
// runs on the CPU backend.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

struct drafter_loss_result {
  double loss = 0.0;                  // the weighted sum over steps
  std::vector<double> step_loss;      // [next_n] mean cross-entropy of each step (0 if no label)
  std::vector<std::int64_t> counted;  // [next_n] labels counted per step
  std::vector<std::int64_t> correct;  // [next_n] counted labels that were the step's argmax (top-1)
};

// logits      [next_n, B, T, V]  the draft head's logits (any offset; softmax is shift-invariant)
// labels      [B, T]             target tokens; ignore_index marks tokens that do not count
// step_weight [next_n] or empty  per-step weights w_i (default all 1)
// grad_logits [next_n, B, T, V] or empty: if given, receives d loss / d logits (zero where not
//             counted). Complexity O(next_n * B * T * V).
inline drafter_loss_result drafter_cross_entropy(view<const float, 4> logits,
                                                 view<const std::int32_t, 2> labels,
                                                 std::int32_t ignore_index = -100,
                                                 vector_view<const float> step_weight = {},
                                                 view<float, 4> grad_logits = {}) {
  const index_t next_n = logits.extent(0), batch = logits.extent(1), seq = logits.extent(2),
                vocab = logits.extent(3);
  REDRAFT_REQUIRE(labels.extent(0) == batch && labels.extent(1) == seq,
                  "drafter_cross_entropy: labels are [", labels.extent(0), ", ", labels.extent(1),
                  "] but logits imply [", batch, ", ", seq, "]");
  REDRAFT_REQUIRE(step_weight.empty() || step_weight.extent(0) == next_n,
                  "drafter_cross_entropy: step_weight has ", step_weight.extent(0),
                  " entries but next_n is ", next_n);
  const bool want_grad = grad_logits.data() != nullptr;
  if (want_grad) {
    for (int d = 0; d < 4; ++d)
      REDRAFT_REQUIRE(grad_logits.extent(d) == logits.extent(d),
                      "drafter_cross_entropy: grad_logits extent ", d, " is ",
                      grad_logits.extent(d), " but logits' is ", logits.extent(d));
  }
  for (index_t i = 0; i < labels.size(); ++i) {
    const std::int32_t y = labels[i];
    REDRAFT_REQUIRE(y == ignore_index || (y >= 0 && y < vocab), "drafter_cross_entropy: labels[",
                    i / seq, ", ", i % seq, "] = ", y, " is outside [0, ", vocab,
                    ") and is not ignore_index ", ignore_index);
  }

  drafter_loss_result out;
  out.step_loss.assign(static_cast<std::size_t>(next_n), 0.0);
  out.counted.assign(static_cast<std::size_t>(next_n), 0);
  out.correct.assign(static_cast<std::size_t>(next_n), 0);
  if (want_grad) {
    for (index_t i = 0; i < grad_logits.size(); ++i) grad_logits[i] = 0.0f;
  }
  std::vector<double> prob(static_cast<std::size_t>(vocab));
  for (index_t i = 0; i < next_n; ++i) {
    const double w = step_weight.empty() ? 1.0 : static_cast<double>(step_weight[i]);
    // First pass: count labels so the gradient can be scaled by 1 / count in the same sweep.
    std::int64_t count = 0;
    for (index_t b = 0; b < batch; ++b)
      for (index_t t = 0; t + i + 2 < seq; ++t) count += labels(b, t + i + 2) != ignore_index;
    out.counted[static_cast<std::size_t>(i)] = count;
    if (count == 0) continue;
    double sum = 0.0;
    for (index_t b = 0; b < batch; ++b) {
      for (index_t t = 0; t + i + 2 < seq; ++t) {
        const std::int32_t y = labels(b, t + i + 2);
        if (y == ignore_index) continue;
        const float* row = &logits(i, b, t, 0);
        index_t argmax = 0;
        for (index_t v = 1; v < vocab; ++v)
          if (row[v] > row[argmax]) argmax = v;
        // NOTE: log-sum-exp in double around the row max: exact to ~1e-15 for any logit scale.
        const double max = row[argmax];
        double z = 0.0;
        for (index_t v = 0; v < vocab; ++v) {
          prob[static_cast<std::size_t>(v)] = std::exp(static_cast<double>(row[v]) - max);
          z += prob[static_cast<std::size_t>(v)];
        }
        sum += std::log(z) - (static_cast<double>(row[y]) - max);
        out.correct[static_cast<std::size_t>(i)] += argmax == y;
        if (want_grad) {
          float* g = &grad_logits(i, b, t, 0);
          const double scale = w / static_cast<double>(count);
          for (index_t v = 0; v < vocab; ++v)
            g[v] = static_cast<float>(
                scale * (prob[static_cast<std::size_t>(v)] / z - (v == y ? 1.0 : 0.0)));
        }
      }
    }
    out.step_loss[static_cast<std::size_t>(i)] = sum / static_cast<double>(count);
    out.loss += w * out.step_loss[static_cast<std::size_t>(i)];
  }
  return out;
}

}  // namespace redraft
