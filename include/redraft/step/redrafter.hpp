// redraft/step/redrafter.hpp: the per-request walk of verify_redrafter's rule
// (verify/redrafter.hpp), as steps over a small state, written once for the one-thread-per-request
// functor (operator()) and the block-per-request kernels (cuda/block/sampling_walk.hpp), which
// split each step's row passes over the block in the same blocked summation order
// (row_ops::blocked_sum) and so make the same decisions. The structs are the public arguments of a
// fused backend's run_fused (clause 10 of core/backend.hpp); the rule, its proof and the entry
// point are in the verify/ header.
#pragma once

#include <cmath>
#include <cstdint>

#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/core/warp.hpp"
#include "redraft/step/row_ops.hpp"
#include "redraft/step/uniforms.hpp"
#include "redraft/step/walk.hpp"

namespace redraft {

struct redrafter_params {
  float temperature = 1.0f;            // > 0
  std::int32_t logit_top_k = 50;       // warp: logits strictly below the k-th largest are masked
                                       // (0 or >= V: no warp)
  float logit_mask_value = -50000.0f;  // the value masked logits get
};

namespace step {

// warp(x) / T: the masked-or-kept logit over the temperature.
REDRAFT_HOST_DEVICE inline float warped(float x, float threshold, const redrafter_params& params) {
  return warp_logit(x, threshold, params.logit_mask_value) / params.temperature;
}

// Column i's exp(warp(x) / T - max), the log-sum's term (blocked order).
template <logit_element T>
struct redrafter_exp_term {
  const T* row;
  redrafter_params params;
  float threshold;
  float max;
  REDRAFT_HOST_DEVICE double operator()(index_t i) const {
    return static_cast<double>(std::exp(warped(to_float(row[i]), threshold, params) - max));
  }
};

// The next token's weight of column t: exp(p(t)) when q is null (the whole beam was accepted),
// else relu(exp(p(t)) - exp(q(t))) (the residual at the first rejected position).
template <logit_element T>
struct redrafter_weight {
  const T* row;    // [V] the target logits of the node
  const float* q;  // [V] draft log-probs, or null
  redrafter_params params;
  float threshold;
  float max;
  float log_sum;
  REDRAFT_HOST_DEVICE double operator()(index_t t) const {
    const float p = std::exp((warped(to_float(row[t]), threshold, params) - max) - log_sum);
    if (q == nullptr) return static_cast<double>(p);
    const float d = p - std::exp(q[t]);
    return d > 0.0f ? static_cast<double>(d) : 0.0;
  }
};

// Inverse CDF on the chunk sums: the first column whose running sum exceeds u * total, V - 1 when
// every weight is 0 (Apple's clamp).
template <class Weight>
REDRAFT_HOST_DEVICE std::int32_t redrafter_next_token(const Weight& w, index_t vocab,
                                                      const double* chunk_sums, double total,
                                                      float u) {
  const std::int32_t t =
      row_ops::blocked_inverse_cdf(w, vocab, chunk_sums, static_cast<double>(u) * total);
  return t < 0 ? static_cast<std::int32_t>(vocab - 1) : t;
}

// Per node: the warp threshold and the log-softmax constants of warp(x) / T, so that
// p(x) = (y - max) - log_sum with y = (x < threshold ? mask : x) / T, as torch computes it.
template <logit_element T>
struct redrafter_rows {
  matrix_view<const T> logits;  // [n_total, V]
  redrafter_params params;
  float* threshold;          // [n_total]
  float* max;                // [n_total]
  float* log_sum;            // [n_total]
  std::int32_t* bad_column;  // [n_total] -1 ok, >= 0 NaN/+inf column, -2 no finite value,
                             // -3 a logit / temperature overflows float

  REDRAFT_HOST_DEVICE index_t count() const { return logits.extent(0); }

  // The row as steps, shared with the block-per-node kernel (cuda/block/sampling_walk.hpp):
  // after the scan, whether the row is usable (else its bad_column is recorded).
  REDRAFT_HOST_DEVICE bool accept_scan(index_t node, const row_ops::row_scan& s) const {
    if (s.bad_column >= 0 || !s.any_finite) {
      bad_column[node] = s.bad_column >= 0 ? static_cast<std::int32_t>(s.bad_column) : -2;
      return false;
    }
    bad_column[node] = -1;
    return true;
  }
  REDRAFT_HOST_DEVICE bool needs_kth(index_t vocab) const {
    return params.logit_top_k > 0 && params.logit_top_k < vocab;
  }
  // After the max m of warp(x) / T: false (and -3 recorded) when it overflowed.
  // NOTE: x / T overflows to +inf for |x| > FLT_MAX * T (huge logits at T < 1), and then
  // y - max = inf - inf = NaN: the row is refused (-3) instead of producing NaN probabilities.
  REDRAFT_HOST_DEVICE bool accept_max(index_t node, float m) const {
    if (m == HUGE_VALF) {
      bad_column[node] = -3;
      return false;
    }
    return true;
  }
  REDRAFT_HOST_DEVICE void record(index_t node, float thr, float m, double sum) const {
    threshold[node] = thr;
    max[node] = m;
    log_sum[node] = std::log(static_cast<float>(sum));
  }

  REDRAFT_HOST_DEVICE void operator()(index_t node) const {
    const T* row = &logits(node, 0);
    const index_t vocab = logits.extent(1);
    if (!accept_scan(node, row_ops::scan_row(row, vocab))) return;
    const float thr =
        needs_kth(vocab) ? row_ops::kth_largest(row, vocab, params.logit_top_k) : -HUGE_VALF;
    float m = -HUGE_VALF;
    for (index_t i = 0; i < vocab; ++i) {
      const float y = warped(to_float(row[i]), thr, params);
      m = y > m ? y : m;
    }
    if (!accept_max(node, m)) return;
    record(node, thr, m, row_ops::blocked_sum(redrafter_exp_term<T>{row, params, thr, m}, vocab));
  }
};

template <logit_element T>
struct redrafter_walk {
  using element_type = T;
  tree_view tree;
  matrix_view<const T> logits;           // [n_total, V]
  view<const float, 4> draft_log_probs;  // [B, W, L-1, V]
  redrafter_params params;
  uniform_source uniforms;
  const float* threshold;          // [n_total]
  const float* max;                // [n_total]
  const float* log_sum;            // [n_total]
  const std::int32_t* bad_column;  // [n_total]
  acceptance_view out;
  status_view status;

  REDRAFT_HOST_DEVICE index_t count() const { return tree.batch; }

  REDRAFT_HOST_DEVICE float log_p(std::int32_t global_node, float x) const {
    const float y = warped(x, threshold[global_node], params);
    return (y - max[global_node]) - log_sum[global_node];
  }

  REDRAFT_HOST_DEVICE bool row_ok(std::int32_t b, std::int32_t off, std::int32_t node) const {
    if (bad_column[off + node] == -1) return true;
    if (bad_column[off + node] == -3) {
      status.set(b, status_scaled_logit_overflow, node, 0);
      return false;
    }
    status.set_row(b, node, bad_column[off + node]);
    return false;
  }

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const std::int32_t b = static_cast<std::int32_t>(i);
    std::int32_t best = 0, best_run = -1;
    if (!choose_beam(b, best, best_run)) return;
    const redrafter_weight<T> w = next_token_weight(b, best, best_run);
    double chunk_sums[row_ops::sum_chunks];
    const index_t vocab = logits.extent(1);
    for (int j = 0; j < row_ops::sum_chunks; ++j) chunk_sums[j] = row_ops::chunk_sum(w, vocab, j);
    finish_request(b, best, best_run,
                   redrafter_next_token(w, vocab, chunk_sums, row_ops::fold_chunks(chunk_sums),
                                        next_token_uniform(b)));
  }

  REDRAFT_HOST_DEVICE float next_token_uniform(std::int32_t b) const {
    return uniforms.draw(b, static_cast<index_t>(tree.beam_width) * (tree.beam_length - 1));
  }

  // The accept tests of every beam: the best beam and its run; false (status set) on a bad row
  // or draft value, including the row the next token is sampled from.
  REDRAFT_HOST_DEVICE bool choose_beam(std::int32_t b, std::int32_t& best,
                                       std::int32_t& best_run) const {
    const std::int32_t off = tree.first_node(b);
    const std::int32_t width = tree.beam_width, length = tree.beam_length;
    const index_t vocab = logits.extent(1);
    const std::int32_t* b2n = tree.beam_to_node + static_cast<index_t>(b) * width * length;
    for (std::int32_t n = 0; n < tree.num_nodes(b); ++n) {
      const std::int32_t tok = tree.token[off + n];
      if (tok < 0 || tok >= vocab) {
        status.set(b, status_token_out_of_range, n, tok);
        return false;
      }
    }
    best = 0;
    best_run = -1;
    for (std::int32_t w = 0; w < width; ++w) {
      std::int32_t run = 0;
      for (std::int32_t k = 0; k + 1 < length; ++k) {
        const std::int32_t node = b2n[w * length + k];
        if (!row_ok(b, off, node)) return false;
        const std::int32_t x = tree.token[off + b2n[w * length + k + 1]];
        const float q = draft_log_probs(b, w, k, x);
        if (q != q || q == HUGE_VALF) {
          status.set(b, status_non_finite_draft, w * length + k + 1, x);
          return false;
        }
        const float p = log_p(off + node, to_float(logits(off + node, x)));
        const float u = uniforms.draw(b, static_cast<index_t>(w) * (length - 1) + k);
        if (!(u < std::exp(p - q))) break;
        ++run;
      }
      if (run > best_run) {
        best_run = run;
        best = w;
      }
    }
    // The next token is sampled by inverse CDF from the best beam's node at best_run.
    return row_ok(b, off, b2n[best * length + best_run]);
  }

  // The next token's weights: exp(p) at the last position, relu(exp(p) - exp(q)) at the first
  // rejected one, of the best beam.
  REDRAFT_HOST_DEVICE redrafter_weight<T> next_token_weight(std::int32_t b, std::int32_t best,
                                                            std::int32_t best_run) const {
    const std::int32_t off = tree.first_node(b), length = tree.beam_length;
    const std::int32_t* b2n =
        tree.beam_to_node + static_cast<index_t>(b) * tree.beam_width * length;
    const std::int32_t node = off + b2n[best * length + best_run];
    const bool whole_beam = best_run == length - 1;
    return redrafter_weight<T>{
        &logits(node, 0), whole_beam ? nullptr : &draft_log_probs(b, best, best_run, 0),
        params,           threshold[node],
        max[node],        log_sum[node]};
  }

  REDRAFT_HOST_DEVICE void finish_request(std::int32_t b, std::int32_t best, std::int32_t best_run,
                                          std::int32_t next) const {
    const std::int32_t length = tree.beam_length;
    const std::int32_t* b2n =
        tree.beam_to_node + static_cast<index_t>(b) * tree.beam_width * length;
    std::int32_t* nodes = out.nodes_row(b);
    for (std::int32_t k = 0; k <= best_run; ++k) nodes[k] = b2n[best * length + k];
    out.finish(tree, b, best_run, next);
    out.best_beam[b] = best;  // Apple's choice: the first beam with the longest run
  }
};

}  // namespace step
}  // namespace redraft
