// redraft/draft/draft_init.hpp: deterministic random initialisation of a draft head.
//
// Every parameter gets uniform values in [-a, a) with a = gain / sqrt(fan_in) (fan_in = the
// weight's `in` dimension; for a bias, its layer's), the scale of PyTorch's default Linear init.
// Values come from Philox keyed by (seed, parameter index, 0), so a head is a pure function of
// (config, seed) on every machine: the starting point of distillation and the "untrained head"
// of benchmarks and tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/draft/draft_head.hpp"

namespace redraft {

template <Backend B>
void init_draft_head(draft_head<B>& head, std::uint64_t seed, float gain = 1.0f) {
  REDRAFT_REQUIRE(std::isfinite(gain) && gain >= 0.0f, "init_draft_head: gain ", gain,
                  " must be finite and >= 0");
  const std::vector<std::string> names = head.parameter_names();
  std::int64_t fan_in = 1;
  for (std::size_t p = 0; p < names.size(); ++p) {
    const std::vector<std::int64_t>& shape = head.parameter_shape(names[p]);
    // A weight [out, in] sets fan_in for itself and the bias [out] that follows it.
    if (shape.size() == 2) fan_in = shape[1];
    std::int64_t count = 1;
    for (std::int64_t d : shape) count *= d;
    const float bound = gain / std::sqrt(static_cast<float>(fan_in));
    const philox_stream stream{seed, static_cast<std::uint32_t>(p), 0};
    std::vector<float> values(static_cast<std::size_t>(count));
    for (std::int64_t i = 0; i < count; ++i)
      values[static_cast<std::size_t>(i)] =
          bound * (2.0f * stream.uniform(static_cast<std::uint64_t>(i)) - 1.0f);
    head.set_parameter(names[p], values);
  }
}

}  // namespace redraft
