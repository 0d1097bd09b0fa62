// tests/draft_test_util.hpp: random draft heads and inputs for the draft tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/draft_config.hpp"
#include "redraft/draft/safetensors.hpp"

namespace redraft_test {

inline redraft::draft_config make_config(std::int64_t v, std::int64_t h, std::int64_t e,
                                         std::int64_t n, redraft::recurrence r,
                                         std::int64_t top_k = 50) {
  redraft::draft_config c;
  c.vocab_size = v;
  c.hidden_size = h;
  c.exit_dim = e;
  c.num_draft_layers = n;
  c.recurrence = r;
  c.logit_top_k = top_k;
  return c;
}

inline std::vector<float> random_values(std::size_t n, double scale, std::mt19937& rng) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<float> out(n);
  for (float& v : out) v = static_cast<float>(normal(rng));
  return out;
}

// Weights with std 1/sqrt(fan_in) (the vocabulary projection 3/sqrt(E), so the log-probs are
// spread out and beams are rarely near ties).
inline std::map<std::string, redraft::tensor_data> random_weights(const redraft::draft_config& c,
                                                                  std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::map<std::string, redraft::tensor_data> out;
  for (const auto& [name, shape] : redraft::draft_head_tensor_shapes(c)) {
    std::size_t count = 1;
    for (auto d : shape) count *= static_cast<std::size_t>(d);
    const double fan_in = static_cast<double>(shape.size() == 2 ? shape[1] : shape[0]);
    const bool vocab = name == "lm_head." + std::to_string(c.num_draft_layers) + ".weight";
    const double scale = (vocab ? 3.0 : 1.0) / std::sqrt(fan_in);
    out[name] = redraft::tensor_data{shape, random_values(count, scale, rng), "F32"};
  }
  return out;
}

}  // namespace redraft_test
