// redraft/verify/greedy.hpp: greedy verification of a token tree.
//
// Rule: start at the root; at node u take the target's argmax x* of logits row u (ties to the
// lower token id); if u has a child holding x*, accept it and continue from it; otherwise x* is
// the next token and the walk stops. This equals ReDrafter's "longest matching beam, lowest
// index on ties" (the argmax walk is unique, and nodes identify prefixes, so the longest beam
// prefix matching the argmax sequence is exactly the walked path; best_beam is the lowest-index
// beam through its last node). Exact: speculative greedy decoding with this rule emits the same
// tokens as plain greedy decoding of the target.
#pragma once

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

namespace redraft {

namespace detail {

// One invocation per request: children lists, then the argmax walk. Reads only the logits rows
// of the walked path (at most L rows of V elements); everything else is O(n_b).
// T: the logits' element type (float, half, bfloat16).
template <logit_element T>
struct greedy_functor {
  using element_type = T;
  tree_view tree;
  matrix_view<const T> logits;      // [n_total, V]
  std::int32_t* first_child;        // [n_total] scratch
  std::int32_t* next_sibling;       // [n_total] scratch
  acceptance_view out;
  status_view status;

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const std::int32_t b = static_cast<std::int32_t>(i);
    const std::int32_t off = tree.first_node(b);
    const index_t vocab = logits.extent(1);
    if (!build_children(tree, b, vocab, first_child, next_sibling, status)) return;
    std::int32_t* nodes = out.nodes_row(b);
    std::int32_t u = 0, len = 0;
    nodes[0] = 0;
    for (;;) {
      const row_ops::row_argmax_result am = row_ops::argmax_checked(&logits(off + u, 0), vocab);
      if (am.bad_column != -1) {
        status.set_row(b, u, am.bad_column);
        return;
      }
      const std::int32_t c = find_child(tree, off, first_child, next_sibling, u, am.index);
      if (c < 0 || len + 1 >= out.path_length) {
        out.finish(tree, b, len, am.index);
        return;
      }
      u = c;
      nodes[++len] = c;
    }
  }
};

}  // namespace detail

// verify_greedy(backend, tree, logits [n_total, V]) -> acceptance (see acceptance.hpp).
//   tree: any tree (from build_tree or not); logits row i belongs to packed node i (global
//   index, node_offsets[b] + local) and predicts the token after that node. Elements: float,
//   half or bfloat16 (core/half.hpp), read in place; the same decisions for the same values.
// Outputs: accepted_len, best_beam (-1 if the tree has no beams), accepted_nodes, emitted_tokens,
//   next_token, hidden_row per request.
// Errors (redraft::error, nothing returned): logits rows != tree nodes, empty vocabulary, a
//   request without nodes, tree tokens outside [0, V), a malformed parent array, duplicate
//   sibling tokens, and NaN / +inf (or all -inf) in a logits row the walk reads.
// Determinism: no randomness; identical on every backend.
// Complexity: per request O(depth * V) reads of logits (only the rows on the accepted path)
//   plus O(n_b + sum of squared fan-outs) for the children lists; one functor call per request.
template <Backend B, class T = const float>  // the default serves braced {data, rows, V}
requires logit_element<std::remove_const_t<T>> acceptance<B> verify_greedy(
    const B& backend, const tree<B>& tree, matrix_view<T> logits_in) {
  using E = std::remove_const_t<T>;
  const matrix_view<const E> logits(logits_in);
  detail::check_tree_and_logits("verify_greedy", tree, logits);
  const std::int32_t path_length = detail::path_length_of(backend, tree);

  auto v = detail::allocate_verify_buffers(backend, tree, path_length);
  const detail::greedy_functor<E> walk{view_of(tree),         logits,  v.first_child.data(),
                                       v.next_sibling.data(), v.out(), v.status_out()};
  // A backend may run the same walk fused (e.g. CUDA: one block per request, block-wide argmax).
  if constexpr (requires { backend.verify_greedy_fused(walk); }) {
    backend.verify_greedy_fused(walk);
  } else {
    backend.for_each_index(tree.batch, walk);
  }
  detail::throw_on_status(backend, "verify_greedy", v, tree);
  return std::move(v.result);
}

}  // namespace redraft
