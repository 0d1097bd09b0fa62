// redraft/train/adamw.hpp: AdamW with linear warmup, cosine decay and global-norm gradient
// clipping, over the flat parameter array of head_parameters.
//
//   lr(k)  = lr_max (k + 1) / warmup                                   k < warmup
//          = lr_min + (lr_max - lr_min) (1 + cos(pi (k - warmup) / (total - warmup))) / 2
//   g     <- g * min(1, clip_norm / ||g||)           (||g|| over all parameters, in double)
//   m     <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
//   p     <- p - lr (m / (1 - b1^(k+1))) / (sqrt(v / (1 - b2^(k+1))) + eps) - lr wd p
// Weight decay applies to weights (2-D tensors) only, not to biases (common practice).
// Deterministic: the update is a fixed elementwise loop in a fixed order; the state (m, v, k) is
// all there is, so saving it and the parameters resumes bit-identically. Host code.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/train/head_parameters.hpp"

namespace redraft {

struct adamw_options {
  double learning_rate = 1e-3;           // lr_max
  double min_learning_rate_ratio = 0.1;  // lr_min = ratio * lr_max at the end of the cosine
  std::int64_t warmup_steps = 100;
  std::int64_t total_steps = 1000;
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  double weight_decay = 0.01;
  double clip_norm = 1.0;  // <= 0 disables clipping

  void validate(const char* where) const {
    REDRAFT_REQUIRE(std::isfinite(learning_rate) && learning_rate > 0, where, ": learning rate ",
                    learning_rate, " must be positive");
    REDRAFT_REQUIRE(min_learning_rate_ratio >= 0 && min_learning_rate_ratio <= 1, where,
                    ": min_learning_rate_ratio ", min_learning_rate_ratio, " must be in [0, 1]");
    REDRAFT_REQUIRE(total_steps >= 1, where, ": total steps ", total_steps, " must be at least 1");
    REDRAFT_REQUIRE(warmup_steps >= 0, where, ": warmup steps ", warmup_steps, " is negative");
    REDRAFT_REQUIRE(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, where, ": betas (", beta1,
                    ", ", beta2, ") must be in [0, 1)");
    REDRAFT_REQUIRE(epsilon > 0 && weight_decay >= 0, where, ": epsilon ", epsilon,
                    " must be > 0 and weight decay ", weight_decay, " >= 0");
  }
};

// The learning rate of step k (0-based); see the file comment.
inline double learning_rate_at(const adamw_options& o, std::int64_t k) {
  if (k < o.warmup_steps)
    return o.learning_rate * static_cast<double>(k + 1) / static_cast<double>(o.warmup_steps);
  const double lr_min = o.learning_rate * o.min_learning_rate_ratio;
  const std::int64_t span = o.total_steps - o.warmup_steps;
  if (span <= 0) return o.learning_rate;
  const double progress =
      std::min(1.0, static_cast<double>(k - o.warmup_steps) / static_cast<double>(span));
  return lr_min +
         (o.learning_rate - lr_min) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
}

struct adamw_state {
  std::int64_t step = 0;  // updates done
  std::vector<float> m;   // [parameters] first moment
  std::vector<float> v;   // [parameters] second moment
};

struct adamw_update_info {
  double learning_rate = 0.0;
  double grad_norm = 0.0;  // before clipping
};

// One AdamW update of `params` with gradient `grad` (clipped in place). Throws redraft::error when
// the sizes disagree (state is sized on first use). O(parameters).
inline adamw_update_info adamw_update(head_parameters<float>& params, head_parameters<float>& grad,
                                      adamw_state& state, const adamw_options& o) {
  const std::size_t n = params.values().size();
  REDRAFT_REQUIRE(grad.values().size() == n, "adamw_update: gradient has ", grad.values().size(),
                  " values, parameters ", n);
  if (state.m.empty() && state.v.empty()) {
    state.m.assign(n, 0.0f);
    state.v.assign(n, 0.0f);
  }
  REDRAFT_REQUIRE(state.m.size() == n && state.v.size() == n, "adamw_update: optimizer state has ",
                  state.m.size(), " / ", state.v.size(), " moments for ", n, " parameters");
  adamw_update_info info;
  info.learning_rate = learning_rate_at(o, state.step);
  double sq = 0.0;
  for (const float g : grad.values()) sq += static_cast<double>(g) * static_cast<double>(g);
  info.grad_norm = std::sqrt(sq);
  const float clip = o.clip_norm > 0 && info.grad_norm > o.clip_norm
                         ? static_cast<float>(o.clip_norm / info.grad_norm)
                         : 1.0f;
  const double t = static_cast<double>(state.step + 1);
  const float b1 = static_cast<float>(o.beta1), b2 = static_cast<float>(o.beta2);
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(o.beta1, t)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(o.beta2, t)));
  const float lr = static_cast<float>(info.learning_rate), eps = static_cast<float>(o.epsilon);
  for (const head_tensor& tensor : params.tensors()) {
    const float decay =
        tensor.is_weight() ? static_cast<float>(info.learning_rate * o.weight_decay) : 0.0f;
    float* p = params.values().data() + tensor.offset;
    float* g = grad.values().data() + tensor.offset;
    float* m = state.m.data() + tensor.offset;
    float* v = state.v.data() + tensor.offset;
    for (std::int64_t i = 0; i < tensor.count; ++i) {
      const float gi = g[i] * clip;
      g[i] = gi;
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      p[i] -= lr * (m[i] * c1) / (std::sqrt(v[i] * c2) + eps) + decay * p[i];
    }
  }
  ++state.step;
  return info;
}

}  // namespace redraft
