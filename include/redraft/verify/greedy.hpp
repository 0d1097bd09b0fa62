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
#include "redraft/step/greedy.hpp"
#include "redraft/step/run_step.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/logits_processing.hpp"
#include "redraft/verify/tree_walk.hpp"

namespace redraft {

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
  // A backend may run the same walk fused (clause 10; e.g. CUDA: one block per request,
  // block-wide argmax).
  step::run_step(backend, detail::make_walk<step::greedy_walk<E>>(v, tree, logits));
  detail::throw_on_status(backend, "verify_greedy", v, tree);
  return std::move(v.result);
}

}  // namespace redraft
