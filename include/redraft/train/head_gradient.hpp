// redraft/train/head_gradient.hpp: the draft head's training forward (teacher forcing over
// next_n steps) and its backward pass, written by hand with Eigen on the host.
//
// A batch holds M training positions. Position m is a sequence position t of the target's data:
// the head sees h_t (the target's post-final-norm hidden state at t) and runs next_n recurrence
// steps fed with the TRUE tokens (teacher forcing, as Apple trains): step i consumes x_{t+1+i}
// and predicts x_{t+2+i}, exactly as at inference step i+1 consumes the token drafted (or, for
// the first step, the root token x_{t+1}) before it:
//
//   s_0 = 0
//   a_i = e(x_{t+1+i}) rnn_w^T + s_i rnn_u^T + b_u                        [M, H]
//   s_{i+1} = SiLU(a_i) | a_i | e(x_{t+1+i}) + s_i  (silu | linear | running_sum)
//   u_i = concat(h_t, s_{i+1})                                             [M, 2H]
//   x^0_i = u_i W_p^T + b_p   (only when E != 2H; else u_i)                 [M, E]
//   x^{j+1}_i = x^j_i + SiLU(x^j_i W_j^T + b_j),  j < N                     [M, E]
//   z_i = x^N_i L^T                                                        [M, V]
//   loss = multi_step_loss(z, labels, p)                    (train/distill_loss.hpp)
//
// All next_n steps after the recurrence are stacked into one [next_n M, .] matmul chain.
// Backward (reverse of the above, with dz from the loss):
//   dL = dz^T x^N;  dx^N = dz L
//   per block j (reverse): dpre = dx^{j+1} * SiLU'(pre_j); dW_j = dpre^T x^j; db_j = sum dpre;
//                          dx^j = dx^{j+1} + dpre W_j
//   dW_p = dx^0^T u; db_p = sum dx^0; du = dx^0 W_p;  ds_{i+1} (from the head) = du[:, H:2H]
//   through time, i = next_n-1 .. 0, carrying g = d loss / d s_{i+1}:
//     silu/linear: da_i = g * act'(a_i); dW += da_i^T e_i; dU += da_i^T s_i; db_u += sum da_i;
//                  g_{i} = ds_i(head) + da_i U
//     running_sum: g_i = ds_i(head) + g_{i+1}   (no parameters)
// h_t and the embedding table are frozen (no gradient). Checked against central finite
// differences in double for every tensor and variant (tests/test_train_gradient.cpp).
//
// Host code (CPU training); T = float to train, double to check gradients.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>
#include "redraft/cpu/eigen.hpp"

#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/train/distill_loss.hpp"
#include "redraft/train/head_parameters.hpp"

namespace redraft {

// One batch of training positions, host memory.
struct distill_batch {
  index_t rows = 0;                  // M positions
  index_t next_n = 0;                // steps per position
  std::vector<float> hidden;         // [M, H]   h_t
  std::vector<std::int32_t> inputs;  // [M, next_n] token step i consumes (x_{t+1+i}); a valid
                                     //          token id even where the label is ignored
  std::vector<std::int32_t>
      labels;  // [M, next_n] token step i predicts (x_{t+2+i}) or ignore_index
  std::vector<float> target_log_probs;  // [M, next_n, V] log p of that token (kl), or empty
};

// Seconds spent per phase (accumulated by draft_head_loss when given).
struct head_gradient_timing {
  double forward_s = 0.0, loss_s = 0.0, backward_s = 0.0;
};

// Activations kept between forward and backward; reuse one across calls (no allocation once grown).
template <class T>
struct head_workspace {
  train_matrix<T> embedded;          // [next_n M, H]  e(x_{t+1+i})
  train_matrix<T> hidden;            // [M, H]
  train_matrix<T> pre_state;         // [next_n M, H]  a_i (silu / linear)
  train_matrix<T> state;             // [next_n M, H]  s_{i+1}
  train_matrix<T> input;             // [next_n M, 2H] u_i
  std::vector<train_matrix<T>> x;    // N + 1 of [next_n M, E]  x^j
  std::vector<train_matrix<T>> pre;  // N of [next_n M, E]      x^j W_j^T + b_j
  train_matrix<T> logits;            // [next_n M, V]
  train_matrix<T> grad_logits;       // [next_n M, V]
  train_matrix<T> dx, dpre, dinput;  // backward scratch
  train_matrix<T> dstate, carry, dpre_state;
};

namespace detail {

template <class T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// SiLU'(x) = sigmoid(x) (1 + x (1 - sigmoid(x))).
template <class T>
T silu_grad(T x) {
  const T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}

// Checks the embedding, batch and gradient against the head's config (see draft_head_loss).
template <class T>
void check_head_batch(const head_parameters<T>& params, matrix_view<const float> embedding,
                      const distill_batch& batch, const head_parameters<T>* gradient) {
  constexpr const char* fn = "draft_head_loss";
  const draft_config& c = params.config();
  const index_t m = batch.rows, n = batch.next_n, h = c.hidden_size, v = c.vocab_size, rows = m * n;
  REDRAFT_REQUIRE(embedding.extent(0) == v && embedding.extent(1) == h, fn, ": embedding is [",
                  embedding.extent(0), ", ", embedding.extent(1), "] but the head needs [", v, ", ",
                  h, "]");
  REDRAFT_REQUIRE(m >= 1 && n >= 1, fn, ": the batch has ", m, " rows and next_n ", n,
                  " (both must be >= 1)");
  REDRAFT_REQUIRE(static_cast<index_t>(batch.hidden.size()) == m * h, fn, ": batch.hidden has ",
                  batch.hidden.size(), " values, expected rows * hidden_size = ", m * h);
  REDRAFT_REQUIRE(static_cast<index_t>(batch.inputs.size()) == rows &&
                      static_cast<index_t>(batch.labels.size()) == rows,
                  fn, ": batch.inputs / labels have ", batch.inputs.size(), " / ",
                  batch.labels.size(), " entries, expected rows * next_n = ", rows);
  REDRAFT_REQUIRE(batch.target_log_probs.empty() ||
                      static_cast<index_t>(batch.target_log_probs.size()) == rows * v,
                  fn, ": batch.target_log_probs has ", batch.target_log_probs.size(),
                  " values, expected ", rows * v);
  REDRAFT_REQUIRE(gradient == nullptr || gradient->config() == c, fn,
                  ": the gradient's config differs from the parameters' config");
  for (index_t i = 0; i < rows; ++i) {
    REDRAFT_REQUIRE(batch.inputs[static_cast<std::size_t>(i)] >= 0 &&
                        batch.inputs[static_cast<std::size_t>(i)] < v,
                    fn, ": batch.inputs[", i / n, ", ", i % n,
                    "] = ", batch.inputs[static_cast<std::size_t>(i)], " is outside [0, ", v, ")");
  }
}

// Forward, phase 1: e(x_{t+1+i}) and h_t in T, then the recurrence step by step:
// ws.embedded, ws.hidden, ws.pre_state (a_i, recurrent variants) and ws.state (s_{i+1}),
// step i at rows [i M, (i + 1) M).
template <class T>
void head_forward_recurrence(const head_parameters<T>& params, matrix_view<const float> embedding,
                             const distill_batch& batch, head_workspace<T>& ws) {
  const draft_config& c = params.config();
  const index_t m = batch.rows, n = batch.next_n, h = c.hidden_size, rows = m * n;
  ws.embedded.resize(rows, h);  // [n M, H], row i M + r
  for (index_t i = 0; i < n; ++i)
    for (index_t r = 0; r < m; ++r) {
      const float* src =
          embedding.data() +
          static_cast<index_t>(batch.inputs[static_cast<std::size_t>(r * n + i)]) * h;
      T* dst = ws.embedded.data() + (i * m + r) * h;
      for (index_t k = 0; k < h; ++k) dst[k] = static_cast<T>(src[k]);
    }
  ws.hidden.resize(m, h);
  for (index_t k = 0; k < m * h; ++k)
    ws.hidden.data()[k] = static_cast<T>(batch.hidden[static_cast<std::size_t>(k)]);
  ws.state.resize(rows, h);
  if (c.recurrence == recurrence::running_sum) {
    for (index_t i = 0; i < n; ++i) {
      ws.state.middleRows(i * m, m) = ws.embedded.middleRows(i * m, m);
      if (i > 0) ws.state.middleRows(i * m, m) += ws.state.middleRows((i - 1) * m, m);
    }
    return;
  }
  ws.pre_state.resize(rows, h);
  // All steps' input terms at once: e W^T + b                           [n M, H]
  ws.pre_state.noalias() = ws.embedded * params.rnn_w().transpose();
  ws.pre_state.rowwise() += params.rnn_u_bias().transpose();
  for (index_t i = 0; i < n; ++i) {
    auto a = ws.pre_state.middleRows(i * m, m);  // [M, H]
    if (i > 0) a.noalias() += ws.state.middleRows((i - 1) * m, m) * params.rnn_u().transpose();
    auto s = ws.state.middleRows(i * m, m);
    if (c.recurrence == recurrence::silu)
      s = a.unaryExpr([](T x) { return x * sigmoid(x); });
    else
      s = a;
  }
}

// Forward, phase 2: the head over all steps at once, u = concat(h, s) -> x^0 .. x^N -> logits
// [n M, V] in ws.logits.
template <class T>
void head_forward_blocks(const head_parameters<T>& params, index_t m, index_t n,
                         head_workspace<T>& ws) {
  const draft_config& c = params.config();
  const index_t h = c.hidden_size, e = c.exit_dim, v = c.vocab_size, layers = c.num_draft_layers,
                rows = m * n;
  ws.input.resize(rows, 2 * h);  // [n M, 2H]
  for (index_t i = 0; i < n; ++i) ws.input.block(i * m, 0, m, h) = ws.hidden;
  ws.input.rightCols(h) = ws.state;
  ws.x.resize(static_cast<std::size_t>(layers + 1));
  ws.pre.resize(static_cast<std::size_t>(layers));
  if (c.has_input_proj()) {
    ws.x[0].resize(rows, e);
    ws.x[0].noalias() = ws.input * params.input_proj_weight().transpose();
    ws.x[0].rowwise() += params.input_proj_bias().transpose();
  } else {
    ws.x[0] = ws.input;
  }
  for (index_t j = 0; j < layers; ++j) {
    const std::size_t js = static_cast<std::size_t>(j);
    ws.pre[js].resize(rows, e);
    ws.pre[js].noalias() = ws.x[js] * params.block_weight(j).transpose();
    ws.pre[js].rowwise() += params.block_bias(j).transpose();
    ws.x[js + 1] = ws.x[js] + ws.pre[js].unaryExpr([](T x) { return x * sigmoid(x); });
  }
  ws.logits.resize(rows, v);
  ws.logits.noalias() = ws.x[static_cast<std::size_t>(layers)] * params.lm_head().transpose();
}

// Backward, phase 1: from ws.grad_logits through lm_head, the blocks and the input projection
// into g; returns d loss / d u [n M, 2H] (ws.dinput, or ws.dx without an input projection).
template <class T>
const train_matrix<T>& head_backward_blocks(const head_parameters<T>& params, index_t rows,
                                            head_workspace<T>& ws, head_parameters<T>& g) {
  const draft_config& c = params.config();
  const index_t h = c.hidden_size, e = c.exit_dim, layers = c.num_draft_layers;
  g.lm_head().noalias() =
      ws.grad_logits.transpose() * ws.x[static_cast<std::size_t>(layers)];  // [V, E]
  ws.dx.resize(rows, e);
  ws.dx.noalias() = ws.grad_logits * params.lm_head();  // [n M, E]
  for (index_t j = layers - 1; j >= 0; --j) {
    const std::size_t js = static_cast<std::size_t>(j);
    ws.dpre =
        ws.dx.cwiseProduct(ws.pre[js].unaryExpr([](T x) { return silu_grad(x); }));  // [n M, E]
    g.block_weight(j).noalias() = ws.dpre.transpose() * ws.x[js];                    // [E, E]
    g.block_bias(j) = ws.dpre.colwise().sum().transpose();                           // [E]
    ws.dx.noalias() += ws.dpre * params.block_weight(j);                             // dx^j
  }
  if (!c.has_input_proj()) return ws.dx;
  g.input_proj_weight().noalias() = ws.dx.transpose() * ws.input;  // [E, 2H]
  g.input_proj_bias() = ws.dx.colwise().sum().transpose();         // [E]
  ws.dinput.resize(rows, 2 * h);
  ws.dinput.noalias() = ws.dx * params.input_proj_weight();  // [n M, 2H]
  return ws.dinput;
}

// Backward, phase 2: back through time from d loss / d u into the recurrent parameters of g
// (none for running_sum; e and h are frozen).
template <class T>
void head_backward_recurrence(const head_parameters<T>& params, index_t m, index_t n,
                              const train_matrix<T>& dinput, head_workspace<T>& ws,
                              head_parameters<T>& g) {
  const draft_config& c = params.config();
  const index_t h = c.hidden_size, rows = m * n;
  // dstate row block i holds d loss / d s_{i+1} once the later steps are in.
  ws.dstate = dinput.rightCols(h);  // [n M, H] from the head only
  if (c.recurrence == recurrence::running_sum) return;
  ws.dpre_state.resize(rows, h);
  for (index_t i = n - 1; i >= 0; --i) {
    auto da = ws.dpre_state.middleRows(i * m, m);  // [M, H]
    if (c.recurrence == recurrence::silu)
      da = ws.dstate.middleRows(i * m, m).cwiseProduct(
          ws.pre_state.middleRows(i * m, m).unaryExpr([](T x) { return silu_grad(x); }));
    else
      da = ws.dstate.middleRows(i * m, m);
    if (i > 0) ws.dstate.middleRows((i - 1) * m, m).noalias() += da * params.rnn_u();
  }
  g.rnn_w().noalias() = ws.dpre_state.transpose() * ws.embedded;  // [H, H]
  if (n > 1)
    g.rnn_u().noalias() =
        ws.dpre_state.bottomRows((n - 1) * m).transpose() * ws.state.topRows((n - 1) * m);
  g.rnn_u_bias() = ws.dpre_state.colwise().sum().transpose();
}

}  // namespace detail

// The training forward (and, when `gradient` is not null, the backward) of a batch.
//   params     the head's parameters (config: V, H, E, N, recurrence, top-k)
//   embedding  [V, H] the target's input embedding table (frozen)
//   batch      M positions x next_n steps (see distill_batch)
//   gradient   null, or parameters of the same config: receives d loss / d params (overwritten)
// Returns the loss statistics of multi_step_loss. Throws redraft::error (before computing) when
// the embedding, batch or gradient shapes disagree with the config or a token is out of range.
// Deterministic (single-threaded Eigen). Cost O(next_n M (2 H^2 + 2 H E + N E^2 + E V)) forward,
// about twice that backward.
template <class T>
distill_loss_stats draft_head_loss(const head_parameters<T>& params,
                                   matrix_view<const float> embedding, const distill_batch& batch,
                                   const distill_loss_options& options,
                                   head_parameters<T>* gradient, head_workspace<T>& ws,
                                   head_gradient_timing* timing = nullptr) {
  detail::check_head_batch(params, embedding, batch, gradient);
  const index_t m = batch.rows, n = batch.next_n;
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  detail::head_forward_recurrence(params, embedding, batch, ws);
  detail::head_forward_blocks(params, m, n, ws);
  const auto t1 = clock::now();

  if (gradient != nullptr) ws.grad_logits.resize(m * n, params.config().vocab_size);
  const distill_loss_stats stats = multi_step_loss<T>(
      ws.logits.data(), m, n, batch.labels.data(),
      batch.target_log_probs.empty() ? nullptr : batch.target_log_probs.data(), params.config(),
      options, gradient != nullptr ? ws.grad_logits.data() : nullptr);
  const auto t2 = clock::now();
  if (timing != nullptr) {
    timing->forward_s += std::chrono::duration<double>(t1 - t0).count();
    timing->loss_s += std::chrono::duration<double>(t2 - t1).count();
  }
  if (gradient == nullptr) return stats;

  gradient->set_zero();
  const train_matrix<T>& dinput = detail::head_backward_blocks(params, m * n, ws, *gradient);
  detail::head_backward_recurrence(params, m, n, dinput, ws, *gradient);
  if (timing != nullptr)
    timing->backward_s += std::chrono::duration<double>(clock::now() - t2).count();
  return stats;
}

}  // namespace redraft
