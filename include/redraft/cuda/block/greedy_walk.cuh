// redraft/cuda/block/greedy_walk.cuh: greedy verification of one request by one block.
//
// The rule and outputs are verify_greedy's (verify/greedy.hpp); the block version splits each
// step of the walk in two:
//   1. all threads: the checked argmax of the current node's logits row, block-wide
//      (block/row_reduce.cuh: strided partials + an exact, order-free combine);
//   2. one thread: greedy_step, which records a bad row, or descends into the child holding the
//      argmax token, or finishes the request (the same code as the generic functor's loop body).
// The children lists are built once per request by one thread (detail::build_children).
//
// host_greedy_request is the host-run twin (a simulated block of `threads` threads); the kernel
// is cuda/kernels/verify_greedy.cuh. Both produce exactly the generic verify_greedy's output.
#pragma once

#include <cstdint>
#include <limits>

#include "redraft/core/macros.hpp"
#include "redraft/cuda/block/row_reduce.cuh"
#include "redraft/verify/greedy.hpp"

namespace redraft::block {

// Walk state of one request, kept by the deciding thread (in shared memory on a GPU).
struct greedy_state {
  std::int32_t node;  // current node u (request-local)
  std::int32_t len;   // accepted drafted tokens so far
  bool done;
};

// Step 2: given the block's checked argmax of row u, records an error, finishes, or descends.
template <class T>
REDRAFT_HOST_DEVICE inline void greedy_step(const detail::greedy_functor<T>& f, std::int32_t b,
                                            const checked_best& best, greedy_state& s) {
  if (best.bad_column != std::numeric_limits<std::int64_t>::max() || !best.any_finite) {
    f.status.set_row(b, s.node,
                     best.bad_column != std::numeric_limits<std::int64_t>::max() ? best.bad_column : -2);
    s.done = true;
    return;
  }
  const std::int32_t off = f.tree.first_node(b);
  const std::int32_t token = best.best.index;
  const std::int32_t c =
      detail::find_child(f.tree, off, f.first_child, f.next_sibling, s.node, token);
  if (c < 0 || s.len + 1 >= f.out.path_length) {
    f.out.finish(f.tree, b, s.len, token);
    s.done = true;
    return;
  }
  s.node = c;
  f.out.nodes_row(b)[++s.len] = c;
}

// Step 0 (one thread): children lists and the root; false if the tree is malformed.
template <class T>
REDRAFT_HOST_DEVICE inline bool greedy_begin(const detail::greedy_functor<T>& f, std::int32_t b,
                                             greedy_state& s) {
  s = greedy_state{0, 0, false};
  if (!detail::build_children(f.tree, b, f.logits.extent(1), f.first_child, f.next_sibling,
                              f.status)) {
    s.done = true;
    return false;
  }
  f.out.nodes_row(b)[0] = 0;
  return true;
}

// The host-run twin of the kernel for request b.
template <class T>
void host_greedy_request(const detail::greedy_functor<T>& f, std::int32_t b, int threads) {
  greedy_state s{};
  if (!greedy_begin(f, b, s)) return;
  const index_t vocab = f.logits.extent(1);
  while (!s.done) {
    const T* row = &f.logits(f.tree.first_node(b) + s.node, 0);
    const checked_best best = host_block_reduce(
        threads, [&](int t) { return thread_checked_best(row, vocab, t, threads); },
        checked_best_of{});
    greedy_step(f, b, best, s);
  }
}

}  // namespace redraft::block
