// redraft/verify/typical.hpp: Medusa's typical acceptance over a token tree. Opt-in and LOSSY.
//
// Rule (Cai et al., "Medusa", 2024, §2.3.1): with p = softmax(logits / T) at node u and its
// entropy H(p) = -sum_x p(x) log p(x) (nats), a child holding token x is accepted iff
//     p(x) > min(epsilon, delta * exp(-H(p))).
// A node is on an accepted path iff it and all its ancestors are accepted. The chosen path is
// the longest accepted one; among equally long ones the one ending at the lowest node index (for
// beam trees: the lowest-index beam, since nodes of one depth are numbered in beam order).
// The next token at the path's last node is the target's argmax (sample_next_token = false,
// Medusa's default) or a sample from p (sample_next_token = true; one uniform, draw index 0).
//
// Lossy: a token is accepted whenever it is "typical enough", not with probability equal to its
// target mass, so the output law is not the target's (e.g. with p = (0.6, 0.4) and both tokens
// drafted as siblings, the first is always accepted: it is emitted with probability 1, not 0.6).
// It trades fidelity for longer accepted runs at high temperature. Differences from Medusa's
// code: the entropy is exact (Medusa adds 1e-5 inside the log), and ties between equally long
// paths go to the lowest node index (Medusa: the first candidate row).
// Parameters: epsilon (Medusa's posterior_threshold, 0.09), delta (posterior_alpha, 0.3 =
// sqrt(epsilon)), temperature (> 0).
#pragma once

#include <cmath>
#include <cstdint>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/logits_processing.hpp"
#include "redraft/verify/tree_walk.hpp"
#include "redraft/verify/uniforms.hpp"

namespace redraft {

struct typical_params {
  float temperature = 1.0f;        // > 0
  float epsilon = 0.09f;           // hard threshold (posterior_threshold)
  float delta = 0.3f;              // entropy-scaled threshold factor (posterior_alpha)
  bool sample_next_token = false;  // false: argmax; true: sample p with uniform draw 0
};

namespace detail {

struct typical_functor {
  tree_view tree;
  matrix_view<const float> logits;  // [n_total, V]
  typical_params params;
  uniform_source uniforms;
  std::int32_t* first_child;   // [n_total] scratch
  std::int32_t* next_sibling;  // [n_total] scratch
  std::int32_t* accepted;      // [n_total] scratch: 1 iff the node is on an accepted path
  acceptance_view out;
  status_view status;

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const std::int32_t b = static_cast<std::int32_t>(i);
    const std::int32_t off = tree.first_node(b), n = tree.num_nodes(b);
    const index_t vocab = logits.extent(1);
    if (!build_children(tree, b, vocab, first_child, next_sibling, status)) return;
    sampling_params sp;
    sp.temperature = params.temperature;
    for (std::int32_t u = 0; u < n; ++u) accepted[off + u] = u == 0 ? 1 : 0;
    std::int32_t best = 0;
    for (std::int32_t u = 0; u < n; ++u) {  // packed order: parents before children
      if (!accepted[off + u]) continue;
      if (tree.depth[off + u] > tree.depth[off + best]) best = u;
      if (first_child[off + u] < 0) continue;
      const float* row = &logits(off + u, 0);
      const row_ops::processed_row p = row_ops::process_row(row, vocab, sp);
      if (!p.ok()) {
        status.set_row(b, u, p.bad_column);
        return;
      }
      // H = log(norm) - sum(w z) / norm with z = (x - max) / T and w = exp(z).
      double wz = 0.0;
      for (index_t t = 0; t < vocab; ++t) {
        const double w = p.weight(row[t]);
        if (w > 0.0) wz += w * static_cast<double>((row[t] - p.max) * p.inv_temperature);
      }
      const double entropy = std::log(p.norm) - wz / p.norm;
      const double eps = static_cast<double>(params.epsilon);
      const double scaled = static_cast<double>(params.delta) * std::exp(-entropy);
      const double cut = eps < scaled ? eps : scaled;
      for (std::int32_t c = first_child[off + u]; c >= 0; c = next_sibling[off + c]) {
        accepted[off + c] = p.prob(row[tree.token[off + c]]) > cut ? 1 : 0;
      }
    }
    // The path to `best`, root first.
    const std::int32_t len = tree.depth[off + best];
    std::int32_t* nodes = out.nodes_row(b);
    for (std::int32_t u = best, d = len; d >= 0; u = tree.parent[off + u], --d) nodes[d] = u;
    const float* row = &logits(off + best, 0);
    std::int32_t next = 0;
    if (params.sample_next_token) {
      const row_ops::processed_row p = row_ops::process_row(row, vocab, sp);
      if (!p.ok()) {
        status.set_row(b, best, p.bad_column);
        return;
      }
      double residual = 0.0;
      next = row_ops::sample_excluding(row, vocab, p, nullptr, 0, uniforms.draw(b, 0), &residual);
    } else {
      const row_ops::row_argmax_result am = row_ops::argmax_checked(row, vocab);
      if (am.bad_column != -1) {
        status.set_row(b, best, am.bad_column);
        return;
      }
      next = am.index;
    }
    out.finish(tree, b, len, next);
  }
};

}  // namespace detail

// verify_typical(backend, tree, logits [n_total, V], params, uniforms = philox_uniforms{})
//   -> acceptance.
//   tree: any tree; logits row i = packed node i. uniforms are only used when
//   params.sample_next_token (draw 0 of request b; caller uniforms [B, >= 1]).
// Outputs: see acceptance.hpp. Errors: as verify_greedy, plus temperature <= 0, epsilon or delta
//   not finite or negative, caller uniforms of the wrong shape or outside [0, 1).
// Determinism: a pure function of its inputs; identical on every backend.
// Complexity: per request one pass over the row of every accepted node that has children (2
//   passes: process + entropy), one more row for the next token, O(n_b) for the tree.
template <Backend B>
acceptance<B> verify_typical(const B& backend, const tree<B>& tree,
                             matrix_view<const float> logits, const typical_params& params,
                             const uniform_source& uniforms = philox_uniforms{}) {
  detail::check_tree_and_logits("verify_typical", tree, logits);
  REDRAFT_REQUIRE(detail::temperature_is_usable(params.temperature), "verify_typical: temperature ",
                  params.temperature, " must be finite and > 0 with a finite 1 / T");
  REDRAFT_REQUIRE(std::isfinite(params.epsilon) && params.epsilon >= 0.0f, "verify_typical: epsilon ",
                  params.epsilon, " must be finite and >= 0");
  REDRAFT_REQUIRE(std::isfinite(params.delta) && params.delta >= 0.0f, "verify_typical: delta ",
                  params.delta, " must be finite and >= 0");
  const std::int32_t path_length = detail::path_length_of(backend, tree);
  if (params.sample_next_token) {
    detail::check_uniforms(backend, "verify_typical", uniforms, tree.batch, 1);
  }

  auto v = detail::allocate_verify_buffers(backend, tree, path_length);
  backend.for_each_index(
      tree.batch, detail::typical_functor{view_of(tree), logits, params, uniforms,
                                          v.first_child.data(), v.next_sibling.data(),
                                          v.scratch.data(), v.out(), v.status_out()});
  detail::throw_on_status(backend, "verify_typical", v, tree);
  return std::move(v.result);
}

}  // namespace redraft
