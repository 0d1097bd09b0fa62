// tools/conformance/kind_drafter_loss.hpp: the `drafter_loss` case kind (train/drafter_loss.hpp).
#pragma once

#include "golden_format.hpp"
#include "redraft/train/drafter_loss.hpp"

namespace redraft::conformance {

inline case_result run_drafter_loss(const json& c) {
  const json& in = c.at("inputs");
  const auto logits = read_tensor<float>(in, "logits");         // [next_n, B, T, V]
  const auto labels = read_tensor<std::int32_t>(in, "labels");  // [B, T]
  const auto next_n = read_scalar<std::int64_t>(in, "next_n");
  const auto ignore_index =
      in.contains("ignore_index") ? read_scalar<std::int32_t>(in, "ignore_index") : -100;
  REDRAFT_REQUIRE(logits.shape.size() == 4 && labels.shape.size() == 2,
                  "logits must be rank 4 and labels rank 2");
  REDRAFT_REQUIRE(logits.dim(0) == next_n, "logits has ", logits.dim(0), " steps but next_n is ",
                  next_n);
  const auto result = drafter_cross_entropy(
      view<const float, 4>(logits.data.data(), logits.dim(0), logits.dim(1), logits.dim(2),
                           logits.dim(3)),
      view<const std::int32_t, 2>(labels.data.data(), labels.dim(0), labels.dim(1)), ignore_index);
  const double expected = read_scalar<double>(c.at("expected"), "loss");
  if (!(std::abs(result.loss - expected) <= 1e-4 * std::max(1.0, std::abs(expected)))) {
    std::ostringstream os;
    os.precision(9);
    os << "loss: expected " << expected << ", got " << result.loss;
    return case_result::fail(os.str());
  }
  return case_result::pass();
}

}  // namespace redraft::conformance
