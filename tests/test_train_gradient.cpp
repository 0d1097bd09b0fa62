// Tests of the draft head's training forward and hand-written backward (train/head_gradient.hpp):
// central finite differences in double for every parameter tensor of every variant, and the
// training forward against draft_head<cpu_backend>.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/draft_head.hpp"
#include "redraft/train/head_gradient.hpp"
#include "redraft/train/head_parameters.hpp"

namespace {

using namespace redraft;

struct problem {
  draft_config config;
  std::vector<float> embedding;  // [V, H]
  distill_batch batch;
};

// A random head problem: M rows, next_n steps, about a fifth of the labels ignored, target
// log-probabilities from a random softmax.
problem make_problem(const draft_config& c, index_t m, index_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<std::int32_t> token(0, static_cast<std::int32_t>(c.vocab_size - 1));
  problem p;
  p.config = c;
  p.embedding.resize(static_cast<std::size_t>(c.vocab_size * c.hidden_size));
  for (float& x : p.embedding) x = static_cast<float>(normal(rng));
  p.batch.rows = m;
  p.batch.next_n = n;
  p.batch.hidden.resize(static_cast<std::size_t>(m * c.hidden_size));
  for (float& x : p.batch.hidden) x = static_cast<float>(normal(rng));
  for (index_t i = 0; i < m * n; ++i) {
    p.batch.inputs.push_back(token(rng));
    p.batch.labels.push_back(rng() % 5 == 0 ? -100 : token(rng));
  }
  p.batch.target_log_probs.resize(static_cast<std::size_t>(m * n * c.vocab_size));
  for (index_t r = 0; r < m * n; ++r) {
    float* row = p.batch.target_log_probs.data() + r * c.vocab_size;
    double max = -1e300, sum = 0.0;
    std::vector<double> z(static_cast<std::size_t>(c.vocab_size));
    for (double& x : z) max = std::max(max, x = 2.0 * normal(rng));
    for (double x : z) sum += std::exp(x - max);
    for (index_t v = 0; v < c.vocab_size; ++v)
      row[v] = static_cast<float>(z[static_cast<std::size_t>(v)] - max - std::log(sum));
  }
  return p;
}

head_parameters<double> random_parameters(const draft_config& c, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  head_parameters<double> p(c);
  for (const head_tensor& t : p.tensors()) {
    const double fan_in = static_cast<double>(t.shape.size() == 2 ? t.shape[1] : t.shape[0]);
    for (std::int64_t i = 0; i < t.count; ++i)
      p.values()[static_cast<std::size_t>(t.offset + i)] = normal(rng) * 1.5 / std::sqrt(fan_in);
  }
  return p;
}

double loss_of(const head_parameters<double>& params, const problem& p,
               const distill_loss_options& options) {
  head_workspace<double> ws;
  return draft_head_loss(params,
                         matrix_view<const float>(p.embedding.data(), p.config.vocab_size,
                                                  p.config.hidden_size),
                         p.batch, options, static_cast<head_parameters<double>*>(nullptr), ws)
      .loss;
}

}  // namespace

TEST_CASE(
    "draft_head_loss: gradient equals central finite differences for every tensor and variant",
    "[train][gradient]") {
  const recurrence rec = GENERATE(recurrence::silu, recurrence::linear, recurrence::running_sum);
  const bool input_proj = GENERATE(false, true);
  const std::int64_t layers = GENERATE(0, 2);
  const distill_loss_kind kind = GENERATE(distill_loss_kind::cross_entropy, distill_loss_kind::kl);
  const bool warp = GENERATE(false, true);
  const std::uint32_t seed = 17;
  CAPTURE(recurrence_name(rec), input_proj, layers, distill_loss_name(kind), warp, seed);

  draft_config c;
  c.vocab_size = 13;
  c.hidden_size = 4;
  c.exit_dim = input_proj ? 6 : 8;
  c.num_draft_layers = layers;
  c.recurrence = rec;
  c.logit_top_k = 5;
  // NOTE: a small mask value keeps the warped loss O(10), so the finite differences keep ~1e-10
  // absolute accuracy; the mask value is a constant of the loss and does not enter the gradient.
  c.logit_mask_value = -7.0f;
  const problem p = make_problem(c, 5, 3, seed);
  distill_loss_options options;
  options.kind = kind;
  options.top_k_warp = warp;
  options.step_weight = {1.0, 0.7, 0.4};
  const head_parameters<double> params = random_parameters(c, seed + 1);

  head_parameters<double> grad(c);
  head_workspace<double> ws;
  const distill_loss_stats stats = draft_head_loss(
      params, matrix_view<const float>(p.embedding.data(), c.vocab_size, c.hidden_size), p.batch,
      options, &grad, ws);
  REQUIRE(std::isfinite(stats.loss));
  REQUIRE(stats.loss > 0.0);

  const double eps = 1e-5;
  for (const head_tensor& t : params.tensors()) {
    CAPTURE(t.name);
    double diff2 = 0.0, norm2 = 0.0;
    for (std::int64_t i = 0; i < t.count; ++i) {
      head_parameters<double> plus = params, minus = params;
      plus.values()[static_cast<std::size_t>(t.offset + i)] += eps;
      minus.values()[static_cast<std::size_t>(t.offset + i)] -= eps;
      const double fd = (loss_of(plus, p, options) - loss_of(minus, p, options)) / (2 * eps);
      const double an = grad.values()[static_cast<std::size_t>(t.offset + i)];
      diff2 += (fd - an) * (fd - an);
      norm2 += an * an;
    }
    const double rel = std::sqrt(diff2) / std::max(std::sqrt(norm2), 1e-12);
    CAPTURE(rel, std::sqrt(norm2));
    CHECK(norm2 > 0.0);
    CHECK(rel < 1e-6);
  }
}

TEST_CASE("draft_head_loss: the gradient check can fail (a wrong gradient is caught)",
          "[train][gradient]") {
  // Perturbing the analytic gradient of one tensor by 1e-4 of its norm must exceed the tolerance.
  draft_config c;
  c.vocab_size = 13;
  c.hidden_size = 4;
  c.exit_dim = 8;
  c.num_draft_layers = 1;
  const problem p = make_problem(c, 4, 2, 3);
  const head_parameters<double> params = random_parameters(c, 4);
  head_parameters<double> grad(c);
  head_workspace<double> ws;
  distill_loss_options options;
  draft_head_loss(params, matrix_view<const float>(p.embedding.data(), c.vocab_size, c.hidden_size),
                  p.batch, options, &grad, ws);
  const head_tensor& t = params.tensor("rnn_u.weight");
  grad.values()[static_cast<std::size_t>(t.offset)] += 1e-4;
  double diff2 = 0.0, norm2 = 0.0;
  for (std::int64_t i = 0; i < t.count; ++i) {
    head_parameters<double> plus = params, minus = params;
    plus.values()[static_cast<std::size_t>(t.offset + i)] += 1e-5;
    minus.values()[static_cast<std::size_t>(t.offset + i)] -= 1e-5;
    const double fd = (loss_of(plus, p, options) - loss_of(minus, p, options)) / 2e-5;
    const double an = grad.values()[static_cast<std::size_t>(t.offset + i)];
    diff2 += (fd - an) * (fd - an);
    norm2 += an * an;
  }
  CHECK(std::sqrt(diff2) / std::sqrt(norm2) > 1e-6);
}

TEST_CASE(
    "draft_head_loss: the training forward reproduces draft_head<cpu_backend> after a round trip",
    "[train][forward]") {
  const recurrence rec = GENERATE(recurrence::silu, recurrence::linear, recurrence::running_sum);
  const bool input_proj = GENERATE(false, true);
  const std::int64_t top_k = GENERATE(5, 100);
  CAPTURE(recurrence_name(rec), input_proj, top_k);
  draft_config c;
  c.vocab_size = 29;
  c.hidden_size = 6;
  c.exit_dim = input_proj ? 10 : 12;
  c.num_draft_layers = 2;
  c.recurrence = rec;
  c.logit_top_k = top_k;
  const index_t m = 4, n = 3;
  const problem p = make_problem(c, m, n, 9);
  head_parameters<float> params(c);
  {
    const head_parameters<double> d = random_parameters(c, 10);
    for (std::size_t i = 0; i < d.values().size(); ++i)
      params.values()[i] = static_cast<float>(d.values()[i]);
  }
  const cpu_backend cpu;
  const draft_head<cpu_backend> head = head_from_parameters(cpu, params);
  // Round trip through the head.
  REQUIRE(parameters_from_head<float>(head).values() == params.values());

  head_workspace<float> ws;
  distill_loss_options options;
  options.top_k_warp = true;  // so the loss's log q is the head's warped log_probs
  const matrix_view<const float> embedding(p.embedding.data(), c.vocab_size, c.hidden_size);
  draft_head_loss(params, embedding, p.batch, options,
                  static_cast<head_parameters<float>*>(nullptr), ws);

  // The inference head, step by step, with the same teacher-forced tokens.
  draft_head_workspace<cpu_backend> hws;
  std::vector<float> state(static_cast<std::size_t>(m * c.hidden_size), 0.0f),
      embedded(state.size()), log_probs(static_cast<std::size_t>(m * c.vocab_size));
  for (index_t i = 0; i < n; ++i) {
    for (index_t r = 0; r < m; ++r)
      for (index_t k = 0; k < c.hidden_size; ++k)
        embedded[static_cast<std::size_t>(r * c.hidden_size + k)] =
            p.embedding[static_cast<std::size_t>(
                p.batch.inputs[static_cast<std::size_t>(r * n + i)] * c.hidden_size + k)];
    head.advance_state(matrix_view<const float>(embedded.data(), m, c.hidden_size),
                       matrix_view<const float>(state.data(), m, c.hidden_size),
                       matrix_view<float>(state.data(), m, c.hidden_size), hws);
    head.log_probs(matrix_view<const float>(p.batch.hidden.data(), m, c.hidden_size),
                   matrix_view<const float>(state.data(), m, c.hidden_size),
                   matrix_view<float>(log_probs.data(), m, c.vocab_size), hws);
    for (index_t r = 0; r < m; ++r) {
      // log q of the training forward with the warp (distill_loss.hpp's formula).
      const float* z = ws.logits.data() + (i * m + r) * c.vocab_size;
      std::vector<double> sorted(z, z + c.vocab_size);
      std::sort(sorted.begin(), sorted.end(), std::greater<double>());
      const double kth =
          top_k < c.vocab_size ? sorted[static_cast<std::size_t>(top_k - 1)] : -INFINITY;
      double sum = 0.0;
      for (index_t v = 0; v < c.vocab_size; ++v)
        if (z[v] >= kth) sum += std::exp(z[v] - sorted[0]);
      for (index_t v = 0; v < c.vocab_size; ++v) {
        const double expect =
            z[v] >= kth ? z[v] - sorted[0] - std::log(sum) : c.logit_mask_value - std::log(sum);
        CAPTURE(i, r, v);
        CHECK(log_probs[static_cast<std::size_t>(r * c.vocab_size + v)] ==
              Approx(expect).margin(1e-4));
      }
    }
  }
}
