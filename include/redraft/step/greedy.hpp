// redraft/step/greedy.hpp: the greedy verification walk of one request (verify_greedy's rule,
// verify/greedy.hpp), written once for every way of running it.
//
// The walk is a loop of two parts: the checked argmax of the current node's logits row (a row
// reduction: row_ops::argmax_checked on one thread, or a block-wide reduction of
// row_ops::argmax_partial in a fused kernel), then `advance`, which records a bad row, descends
// into the child holding the argmax token, or finishes the request. operator() runs the whole
// loop on one thread; a fused backend runs `begin` and `advance` on one thread and the argmax
// with many (cuda/block/greedy_walk.hpp). Both give the same outputs, bit for bit.
#pragma once

#include <cstdint>

#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/step/row_ops.hpp"
#include "redraft/step/walk.hpp"

namespace redraft::step {

// Walk state of one request, kept by the deciding thread (in shared memory on a GPU).
struct greedy_state {
  std::int32_t node;  // current node u (request-local)
  std::int32_t len;   // accepted drafted tokens so far
  bool done;
};

// The arguments of the walk, one invocation per request (count() = batch). Reads only the logits
// rows of the walked path (at most L rows of V elements); everything else is O(n_b).
// T: the logits' element type (float, half, bfloat16).
template <logit_element T>
struct greedy_walk {
  using element_type = T;
  tree_view tree;
  matrix_view<const T> logits;  // [n_total, V]
  std::int32_t* first_child;    // [n_total] scratch
  std::int32_t* next_sibling;   // [n_total] scratch
  acceptance_view out;
  status_view status;

  REDRAFT_HOST_DEVICE index_t count() const { return tree.batch; }

  // The logits row [V] of the state's node.
  REDRAFT_HOST_DEVICE const T* row(std::int32_t b, const greedy_state& s) const {
    return &logits(tree.first_node(b) + s.node, 0);
  }

  // Children lists and the root; false (done, status set) if the tree is malformed.
  REDRAFT_HOST_DEVICE bool begin(std::int32_t b, greedy_state& s) const {
    s = greedy_state{0, 0, false};
    if (!build_children(tree, b, logits.extent(1), first_child, next_sibling, status)) {
      s.done = true;
      return false;
    }
    out.nodes_row(b)[0] = 0;
    return true;
  }

  // Given the checked argmax of row(b, s): records a bad row, finishes, or descends.
  REDRAFT_HOST_DEVICE void advance(std::int32_t b, const row_ops::row_argmax_result& am,
                                   greedy_state& s) const {
    if (am.bad_column != -1) {
      status.set_row(b, s.node, am.bad_column);
      s.done = true;
      return;
    }
    const std::int32_t c =
        find_child(tree, tree.first_node(b), first_child, next_sibling, s.node, am.index);
    if (c < 0 || s.len + 1 >= out.path_length) {
      out.finish(tree, b, s.len, am.index);
      s.done = true;
      return;
    }
    s.node = c;
    out.nodes_row(b)[++s.len] = c;
  }

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const std::int32_t b = static_cast<std::int32_t>(i);
    greedy_state s{};
    if (!begin(b, s)) return;
    while (!s.done) advance(b, row_ops::argmax_checked(row(b, s), logits.extent(1)), s);
  }
};

}  // namespace redraft::step
