// tools/conformance/kind_redrafter_accept.hpp: the `redrafter_accept` case kind.
//   inputs: beams [B, W, L], node_logits [B, n_max, V], temperature, logit_top_k,
//           logit_mask_value, draft_log_probs [B, W, L-1, V], uniforms_accept [B, W, L-1],
//           uniform_sample [B]
//   expected: accepted_len [B], best_beam [B], next_token [B]
// Runs verify_redrafter with caller uniforms [B, W (L-1) + 1] (the accept uniforms of request b
// in (beam, position) order, then its sampling uniform) and compares exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "golden_format.hpp"
#include "kind_greedy_accept.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/verify/redrafter.hpp"

namespace redraft::conformance {

template <class B>
case_result run_redrafter_accept(const json& c) {
  const json& in = c.at("inputs");
  const json& ex = c.at("expected");
  const tensor<std::int32_t> beams = read_tensor<std::int32_t>(in, "beams");
  const tensor<float> node_logits = read_tensor<float>(in, "node_logits");
  const tensor<float> draft = read_tensor<float>(in, "draft_log_probs");
  const tensor<float> u_accept = read_tensor<float>(in, "uniforms_accept");
  const tensor<float> u_sample = read_tensor<float>(in, "uniform_sample");
  REDRAFT_REQUIRE(
      beams.shape.size() == 3 && node_logits.shape.size() == 3 && draft.shape.size() == 4,
      "beams, node_logits, draft_log_probs must be rank 3, 3, 4");
  const std::int64_t batch = beams.dim(0), width = beams.dim(1), length = beams.dim(2);
  REDRAFT_REQUIRE(static_cast<std::int64_t>(u_accept.data.size()) == batch * width * (length - 1) &&
                      static_cast<std::int64_t>(u_sample.data.size()) == batch,
                  "uniforms_accept must be [B, W, L-1] and uniform_sample [B]");
  redrafter_params params;
  params.temperature = read_scalar<float>(in, "temperature");
  params.logit_top_k = read_scalar<std::int32_t>(in, "logit_top_k");
  params.logit_mask_value = read_scalar<float>(in, "logit_mask_value");

  const B cpu;
  const auto beam_buffer = upload(cpu, beams.data);
  const auto t =
      build_tree(cpu, view<const std::int32_t, 3>(beam_buffer.data(), batch, width, length));
  const auto packed = upload(cpu, pack_node_logits(t, node_logits));
  const auto draft_buffer = upload(cpu, draft.data);
  const std::int64_t draws = width * (length - 1) + 1;
  std::vector<float> uniforms(static_cast<std::size_t>(batch * draws));
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = 0; i + 1 < draws; ++i) {
      uniforms[static_cast<std::size_t>(b * draws + i)] =
          u_accept.data[static_cast<std::size_t>(b * (draws - 1) + i)];
    }
    uniforms[static_cast<std::size_t>(b * draws + draws - 1)] =
        u_sample.data[static_cast<std::size_t>(b)];
  }
  const auto uniform_buffer = upload(cpu, uniforms);
  const auto result = to_host(
      cpu, verify_redrafter(
               cpu, t, matrix_view<const float>(packed.data(), t.total_nodes(), node_logits.dim(2)),
               view<const float, 4>(draft_buffer.data(), draft.dim(0), draft.dim(1), draft.dim(2),
                                    draft.dim(3)),
               params, matrix_view<const float>(uniform_buffer.data(), batch, draws)));
  for (const auto& mismatch :
       {compare_exact("accepted_len", read_tensor<std::int32_t>(ex, "accepted_len"),
                      result.accepted_len),
        compare_exact("best_beam", read_tensor<std::int32_t>(ex, "best_beam"), result.best_beam),
        compare_exact("next_token", read_tensor<std::int32_t>(ex, "next_token"),
                      result.next_token)}) {
    if (mismatch) return case_result::fail(*mismatch);
  }
  return case_result::pass();
}

}  // namespace redraft::conformance
