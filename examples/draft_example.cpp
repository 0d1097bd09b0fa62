// draft-example: the draft head's beam search, step by step, on a tiny head.
//
// V = 8 tokens, H = 2, E = 4 (= 2H, so no input projection), N = 1 residual block, SiLU
// recurrence, logit_top_k = 4, random weights from a fixed seed; one request, root token 5,
// W = 3 beams of L = 3 tokens. The program first walks the steps by hand with the head's two
// forward pieces (advance_state, log_probs), printing every candidate table, then calls
// redraft::beam_search and checks that it returns the same beams. Output is deterministic.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "redraft/redraft.hpp"

int main() {
  using redraft::index_t;
  redraft::draft_config config;
  config.vocab_size = 8;
  config.hidden_size = 2;
  config.exit_dim = 4;
  config.num_draft_layers = 1;
  config.recurrence = redraft::recurrence::silu;
  config.logit_top_k = 4;
  const index_t v = 8, h = 2, width = 3, length = 3;

  redraft::cpu_backend backend;
  redraft::draft_head<redraft::cpu_backend> head(backend, config);
  std::mt19937 rng(2024);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto& name : head.parameter_names()) {
    std::size_t count = 1;
    for (const std::int64_t d : head.parameter_shape(name)) count *= static_cast<std::size_t>(d);
    std::vector<float> values(count);
    for (float& x : values) x = normal(rng) * (name == head.lm_head_name() ? 2.0f : 0.7f);
    head.set_parameter(name, values);
  }
  std::vector<float> embedding(static_cast<std::size_t>(v * h));
  for (float& x : embedding) x = normal(rng);
  const std::vector<float> hidden = {0.5f, -1.0f};  // [1, H]
  const std::vector<std::int32_t> root = {5};       // [1]

  std::printf(
      "draft head: V=%lld H=%lld E=%lld N=%lld recurrence=%s logit_top_k=%lld\n",
      static_cast<long long>(v), static_cast<long long>(h), static_cast<long long>(config.exit_dim),
      static_cast<long long>(config.num_draft_layers), redraft::recurrence_name(config.recurrence),
      static_cast<long long>(config.logit_top_k));
  std::printf("beam search: W=%lld L=%lld root token %d\n\n", static_cast<long long>(width),
              static_cast<long long>(length), root[0]);

  // ---- By hand: the same steps beam_search performs, one matmul chain over all W rows ----
  std::vector<std::vector<int>> beams(width, std::vector<int>{root[0]});
  std::vector<float> scores = {0.0f, config.logit_mask_value, config.logit_mask_value};
  std::vector<float> state(static_cast<std::size_t>(width * h), 0.0f), embedded(state.size());
  std::vector<float> log_probs(static_cast<std::size_t>(width * v));
  redraft::draft_head_workspace<redraft::cpu_backend> ws;
  for (index_t k = 1; k < length; ++k) {
    for (index_t w = 0; w < width; ++w)
      for (index_t i = 0; i < h; ++i)
        embedded[static_cast<std::size_t>(w * h + i)] =
            embedding[static_cast<std::size_t>(beams[w].back() * h + i)];
    redraft::matrix_view<float> s(state.data(), width, h);
    head.advance_state(redraft::matrix_view<const float>(embedded.data(), width, h), s, s, ws);
    head.log_probs(redraft::matrix_view<const float>(hidden.data(), 1, h), s,
                   redraft::matrix_view<float>(log_probs.data(), width, v), ws);
    std::printf("step %lld: log-probs of each beam (\"masked\" = below the top-%lld, ~-50000)\n",
                static_cast<long long>(k), static_cast<long long>(config.logit_top_k));
    for (index_t w = 0; w < width; ++w) {
      std::printf("  beam %lld score %9.3f  tokens [", static_cast<long long>(w),
                  scores[static_cast<std::size_t>(w)]);
      for (std::size_t i = 0; i < beams[w].size(); ++i)
        std::printf("%s%d", i ? " " : "", beams[w][i]);
      std::printf("]  log p:");
      for (index_t t = 0; t < v; ++t) {
        const float lp = log_probs[static_cast<std::size_t>(w * v + t)];
        if (lp < -1000.0f)
          std::printf("  masked");
        else
          std::printf(" %7.3f", lp);
      }
      std::printf("\n");
    }
    // Candidates score + log p over all W*V (beam, token) pairs; keep the top W, ties to the
    // lower flat index beam * V + token.
    std::vector<float> cand(static_cast<std::size_t>(width * v));
    for (index_t f = 0; f < width * v; ++f)
      cand[static_cast<std::size_t>(f)] =
          scores[static_cast<std::size_t>(f / v)] + log_probs[static_cast<std::size_t>(f)];
    std::vector<index_t> order(cand.size());
    std::iota(order.begin(), order.end(), index_t{0});
    std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) {
      return cand[static_cast<std::size_t>(a)] > cand[static_cast<std::size_t>(b)];
    });
    std::printf("  kept candidates (flat index = beam * V + token):\n");
    std::vector<std::vector<int>> next_beams;
    std::vector<float> next_scores, next_state;
    for (index_t j = 0; j < width; ++j) {
      const index_t f = order[static_cast<std::size_t>(j)], src = f / v, tok = f % v;
      std::printf("    #%lld: flat %2lld -> source beam %lld, token %lld, score %.3f\n",
                  static_cast<long long>(j), static_cast<long long>(f), static_cast<long long>(src),
                  static_cast<long long>(tok), cand[static_cast<std::size_t>(f)]);
      next_beams.push_back(beams[src]);
      next_beams.back().push_back(static_cast<int>(tok));
      next_scores.push_back(cand[static_cast<std::size_t>(f)]);
      next_state.insert(next_state.end(), state.begin() + src * h, state.begin() + (src + 1) * h);
    }
    beams = next_beams;
    scores = next_scores;
    state = next_state;
    std::printf("\n");
  }

  // ---- The library call ----
  const auto result = redraft::beam_search(
      head, redraft::matrix_view<const float>(hidden.data(), 1, h),
      redraft::vector_view<const std::int32_t>(root.data(), 1),
      redraft::matrix_view<const float>(embedding.data(), v, h), width, length);
  std::printf("redraft::beam_search -> beams [1, %lld, %lld], best first:\n",
              static_cast<long long>(width), static_cast<long long>(length));
  bool same = true;
  for (index_t w = 0; w < width; ++w) {
    std::printf("  beam %lld: [", static_cast<long long>(w));
    for (index_t l = 0; l < length; ++l) {
      const int t = result.beams[w * length + l];
      std::printf("%s%d", l ? " " : "", t);
      same = same && t == beams[static_cast<std::size_t>(w)][static_cast<std::size_t>(l)];
    }
    std::printf("]  score %.3f\n", result.scores[w]);
  }
  std::printf("%s\n",
              same ? "matches the step-by-step walk" : "MISMATCH with the step-by-step walk");
  return same ? 0 : 1;
}
