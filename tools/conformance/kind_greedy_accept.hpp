// tools/conformance/kind_greedy_accept.hpp: the `greedy_accept` case kind.
//   inputs: beams [B, W, L], node_logits [B, n_max, V] (packed order, rows past n_b are padding)
//   expected: accepted_len [B], best_beam [B], next_token [B], accepted_nodes [B, L],
//             accepted_tokens [B, L-1]
// Builds the tree with build_tree, packs each request's first n_b logits rows into
// [n_total, V], runs verify_greedy on the CPU backend and compares exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "backend_io.hpp"
#include "golden_format.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/verify/greedy.hpp"

namespace redraft::conformance {

// Packs node_logits [B, n_max, V] into [n_total, V] using the tree's node counts.
template <class B>
std::vector<float> pack_node_logits(const tree<B>& t, const tensor<float>& node_logits) {
  const std::int64_t n_max = node_logits.dim(1), vocab = node_logits.dim(2);
  REDRAFT_REQUIRE(node_logits.dim(0) == t.batch, "node_logits has ", node_logits.dim(0),
                  " requests but beams have ", t.batch);
  std::vector<float> packed;
  packed.reserve(static_cast<std::size_t>(t.total_nodes() * vocab));
  for (std::int32_t b = 0; b < t.batch; ++b) {
    REDRAFT_REQUIRE(t.num_nodes(b) <= n_max, "request ", b, " has ", t.num_nodes(b),
                    " tree nodes but node_logits holds only ", n_max, " rows");
    const auto first = node_logits.data.begin() + static_cast<std::ptrdiff_t>(b * n_max * vocab);
    packed.insert(packed.end(), first, first + static_cast<std::ptrdiff_t>(t.num_nodes(b) * vocab));
  }
  return packed;
}

template <class B>
case_result run_greedy_accept(const json& c) {
  const json& in = c.at("inputs");
  const json& ex = c.at("expected");
  const tensor<std::int32_t> beams = read_tensor<std::int32_t>(in, "beams");
  const tensor<float> node_logits = read_tensor<float>(in, "node_logits");
  REDRAFT_REQUIRE(beams.shape.size() == 3 && node_logits.shape.size() == 3,
                  "beams and node_logits must be rank 3");
  const B cpu;
  const auto beam_buffer = upload(cpu, beams.data);
  const auto t = build_tree(cpu, view<const std::int32_t, 3>(beam_buffer.data(), beams.dim(0),
                                                             beams.dim(1), beams.dim(2)));
  const auto packed = upload(cpu, pack_node_logits(t, node_logits));
  const auto result = to_host(
      cpu,
      verify_greedy(cpu, t,
                    matrix_view<const float>(packed.data(), t.total_nodes(), node_logits.dim(2))));
  const std::int64_t batch = beams.dim(0), length = beams.dim(2);
  std::vector<std::int32_t> accepted_tokens(static_cast<std::size_t>(batch * (length - 1)), -1);
  for (std::int32_t b = 0; b < batch; ++b) {
    for (std::int32_t i = 0; i < result.accepted_len[static_cast<std::size_t>(b)]; ++i) {
      accepted_tokens[static_cast<std::size_t>(b * (length - 1) + i)] = result.emitted_token(b, i);
    }
  }
  for (const auto& mismatch :
       {compare_exact("accepted_len", read_tensor<std::int32_t>(ex, "accepted_len"),
                      result.accepted_len),
        compare_exact("best_beam", read_tensor<std::int32_t>(ex, "best_beam"), result.best_beam),
        compare_exact("next_token", read_tensor<std::int32_t>(ex, "next_token"), result.next_token),
        compare_exact("accepted_nodes", read_tensor<std::int32_t>(ex, "accepted_nodes"),
                      result.accepted_nodes),
        compare_exact("accepted_tokens", read_tensor<std::int32_t>(ex, "accepted_tokens"),
                      accepted_tokens)}) {
    if (mismatch) return case_result::fail(*mismatch);
  }
  return case_result::pass();
}

}  // namespace redraft::conformance
