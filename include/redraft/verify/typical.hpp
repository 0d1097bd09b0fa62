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
#include <type_traits>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
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

// Column t's term w z of the entropy sum (w the weight, z = (x - max) / T), in the blocked order.
template <logit_element T>
struct entropy_term {
  const T* row;
  row_ops::processed_row p;
  REDRAFT_HOST_DEVICE double operator()(index_t t) const {
    const float x = to_float(row[t]);
    const double w = p.weight(x);
    return w > 0.0 ? w * static_cast<double>((x - p.max) * p.inv_temperature) : 0.0;
  }
};

// min(epsilon, delta exp(-H)) from the normaliser and the entropy sum.
REDRAFT_HOST_DEVICE inline double typical_cut(const typical_params& params, double norm,
                                              double wz) {
  const double entropy = std::log(norm) - wz / norm;
  const double eps = static_cast<double>(params.epsilon);
  const double scaled = static_cast<double>(params.delta) * std::exp(-entropy);
  return eps < scaled ? eps : scaled;
}

// The walk of one request, kept by the deciding thread (in shared memory on a GPU).
struct typical_state {
  std::int32_t node;  // the next node to examine (request-local, packed order)
  std::int32_t best;  // the deepest accepted node so far (lowest index on ties)
  bool done;
};

// The rule as steps over a state, shared by the one-thread-per-request functor (operator()) and
// the block-per-request kernels (cuda/block/sampling_walk.cuh), which compute the row sums with
// the whole block in the same blocked order.
template <logit_element T>
struct typical_functor {
  using element_type = T;
  tree_view tree;
  matrix_view<const T> logits;  // [n_total, V]
  typical_params params;
  uniform_source uniforms;
  std::int32_t* first_child;   // [n_total] scratch
  std::int32_t* next_sibling;  // [n_total] scratch
  std::int32_t* accepted;      // [n_total] scratch: 1 iff the node is on an accepted path
  acceptance_view out;
  status_view status;

  REDRAFT_HOST_DEVICE sampling_params sampling() const {
    sampling_params sp;
    sp.temperature = params.temperature;
    return sp;
  }

  REDRAFT_HOST_DEVICE bool begin(std::int32_t b, typical_state& s) const {
    s = typical_state{0, 0, false};
    const std::int32_t off = tree.first_node(b), n = tree.num_nodes(b);
    if (!build_children(tree, b, logits.extent(1), first_child, next_sibling, status)) {
      s.done = true;
      return false;
    }
    for (std::int32_t u = 0; u < n; ++u) accepted[off + u] = u == 0 ? 1 : 0;
    return true;
  }

  // Moves to the next accepted node with children (packed order: parents before children),
  // updating the deepest accepted node on the way. False when every node has been examined.
  REDRAFT_HOST_DEVICE bool next_parent(std::int32_t b, typical_state& s) const {
    const std::int32_t off = tree.first_node(b), n = tree.num_nodes(b);
    for (; s.node < n; ++s.node) {
      if (!accepted[off + s.node]) continue;
      if (tree.depth[off + s.node] > tree.depth[off + s.best]) s.best = s.node;
      if (first_child[off + s.node] >= 0) return true;
    }
    return false;
  }

  REDRAFT_HOST_DEVICE const T* row(std::int32_t b, std::int32_t node) const {
    return &logits(tree.first_node(b) + node, 0);
  }

  // After the row of s.node is processed (p with its norm; wz the entropy sum): the children's
  // accept flags, then on to the next node.
  REDRAFT_HOST_DEVICE void decide_children(std::int32_t b, const row_ops::processed_row& p,
                                           double wz, typical_state& s) const {
    if (!p.ok()) {
      status.set_row(b, s.node, p.bad_column);
      s.done = true;
      return;
    }
    const std::int32_t off = tree.first_node(b);
    const T* r = row(b, s.node);
    const double cut = typical_cut(params, p.norm, wz);
    for (std::int32_t c = first_child[off + s.node]; c >= 0; c = next_sibling[off + c]) {
      accepted[off + c] = p.prob(to_float(r[tree.token[off + c]])) > cut ? 1 : 0;
    }
    ++s.node;
  }

  // The path to s.best, root first, and the next token; finish_bad: a bad row at s.best.
  REDRAFT_HOST_DEVICE void finish(std::int32_t b, std::int32_t next, typical_state& s) const {
    const std::int32_t off = tree.first_node(b);
    const std::int32_t len = tree.depth[off + s.best];
    std::int32_t* nodes = out.nodes_row(b);
    for (std::int32_t u = s.best, d = len; d >= 0; u = tree.parent[off + u], --d) nodes[d] = u;
    out.finish(tree, b, len, next);
    s.done = true;
  }
  REDRAFT_HOST_DEVICE void finish_bad(std::int32_t b, std::int64_t bad_column,
                                      typical_state& s) const {
    status.set_row(b, s.best, bad_column);
    s.done = true;
  }

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const std::int32_t b = static_cast<std::int32_t>(i);
    const index_t vocab = logits.extent(1);
    typical_state s{};
    if (!begin(b, s)) return;
    while (next_parent(b, s)) {
      const T* r = row(b, s.node);
      const row_ops::processed_row p = row_ops::process_row(r, vocab, sampling());
      // H = log(norm) - sum(w z) / norm with z = (x - max) / T and w = exp(z).
      const double wz = p.ok() ? row_ops::blocked_sum(entropy_term<T>{r, p}, vocab) : 0.0;
      decide_children(b, p, wz, s);
      if (s.done) return;
    }
    const T* r = row(b, s.best);
    if (params.sample_next_token) {
      const row_ops::processed_row p = row_ops::process_row(r, vocab, sampling());
      if (!p.ok()) return finish_bad(b, p.bad_column, s);
      double residual = 0.0;
      finish(b, row_ops::sample_excluding(r, vocab, p, nullptr, 0, uniforms.draw(b, 0), &residual),
             s);
    } else {
      const row_ops::row_argmax_result am = row_ops::argmax_checked(r, vocab);
      if (am.bad_column != -1) return finish_bad(b, am.bad_column, s);
      finish(b, am.index, s);
    }
  }
};

}  // namespace detail

namespace detail {

// The parameter checks verify_typical and verify_typical_deferred share (fn prefixes the messages).
inline void check_typical_params(const char* fn, const typical_params& params) {
  REDRAFT_REQUIRE(temperature_is_usable(params.temperature), fn, ": temperature ", params.temperature,
                  " must be finite and > 0 with a finite 1 / T");
  REDRAFT_REQUIRE(std::isfinite(params.epsilon) && params.epsilon >= 0.0f, fn, ": epsilon ", params.epsilon,
                  " must be finite and >= 0");
  REDRAFT_REQUIRE(std::isfinite(params.delta) && params.delta >= 0.0f, fn, ": delta ", params.delta,
                  " must be finite and >= 0");
}

}  // namespace detail

// verify_typical(backend, tree, logits [n_total, V], params, uniforms) -> acceptance.
//   tree: any tree; logits row i = packed node i. uniforms are only used when
//   params.sample_next_token (draw 0 of request b; caller uniforms [B, >= 1], or
//   philox_uniforms{seed, step}). Without uniforms (the overload below) the next token must be the
//   argmax: a default Philox stream would draw the same numbers on every call.
// Outputs: see acceptance.hpp. Errors: as verify_greedy, plus temperature <= 0, epsilon or delta
//   not finite or negative, caller uniforms of the wrong shape or outside [0, 1).
// Determinism: a pure function of its inputs; identical on every backend.
// Complexity: per request one pass over the row of every accepted node that has children (2
//   passes: process + entropy), one more row for the next token, O(n_b) for the tree.
template <Backend B, class T = const float>  // the default serves braced {data, rows, V}
requires logit_element<std::remove_const_t<T>> acceptance<B> verify_typical(
    const B& backend, const tree<B>& tree, matrix_view<T> logits_in, const typical_params& params,
    const uniform_source& uniforms) {
  using E = std::remove_const_t<T>;
  const matrix_view<const E> logits(logits_in);
  detail::check_tree_and_logits("verify_typical", tree, logits);
  detail::check_typical_params("verify_typical", params);
  const std::int32_t path_length = detail::path_length_of(backend, tree);
  if (params.sample_next_token) {
    detail::check_uniforms(backend, "verify_typical", uniforms, tree.batch, 1);
  }

  auto v = detail::allocate_verify_buffers(backend, tree, path_length);
  const detail::typical_functor<E> walk{
      view_of(tree),         logits,           params,  uniforms,      v.first_child.data(),
      v.next_sibling.data(), v.scratch.data(), v.out(), v.status_out()};
  // A backend may run the same walk with one block per request (cuda/block/sampling_walk.cuh).
  if constexpr (requires { backend.verify_typical_fused(walk); }) {
    backend.verify_typical_fused(walk);
  } else {
    backend.for_each_index(tree.batch, walk);
  }
  detail::throw_on_status(backend, "verify_typical", v, tree);
  return std::move(v.result);
}

// verify_typical(backend, tree, logits [n_total, V], params) -> acceptance: the argmax next token
// (params.sample_next_token must be false; a sampled next token needs the caller's uniforms).
template <Backend B, class T = const float>
requires logit_element<std::remove_const_t<T>> acceptance<B> verify_typical(const B& backend, const tree<B>& tree,
                                                                            matrix_view<T> logits,
                                                                            const typical_params& params) {
  REDRAFT_REQUIRE(!params.sample_next_token,
                  "verify_typical: params.sample_next_token is true but no uniforms were given; pass "
                  "philox_uniforms{seed, step} or caller uniforms [B, >= 1]");
  return verify_typical(backend, tree, logits, params, philox_uniforms{});
}

}  // namespace redraft
