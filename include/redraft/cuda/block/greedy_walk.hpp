// redraft/cuda/block/greedy_walk.hpp: greedy verification of one request by one block.
//
// The rule, outputs and step logic are step::greedy_walk's (step/greedy.hpp); the block splits
// each step of the walk in two:
//   1. all threads: the checked argmax of the current node's logits row, block-wide
//      (row_ops::thread_argmax partials, combined by the exact, order-free
//      row_ops::argmax_combine);
//   2. one thread: greedy_walk::advance, which records a bad row, or descends into the child
//      holding the argmax token, or finishes the request.
// The children lists are built once per request by one thread (greedy_walk::begin).
//
// host_greedy_request is the host-run twin (a simulated block of `threads` threads); the kernel
// is cuda/kernels/verify_greedy.cuh. Both produce exactly the generic verify_greedy's output.
#pragma once

#include <cstdint>

#include "redraft/cuda/block/row_reduce.hpp"
#include "redraft/step/greedy.hpp"
#include "redraft/step/row_ops.hpp"

namespace redraft::block {

// The host-run twin of the kernel for request b.
template <class T>
void host_greedy_request(const step::greedy_walk<T>& f, std::int32_t b, int threads) {
  step::greedy_state s{};
  if (!f.begin(b, s)) return;
  const index_t vocab = f.logits.extent(1);
  while (!s.done) {
    const T* row = f.row(b, s);
    const row_ops::argmax_partial best = host_block_reduce(
        threads, [&](int t) { return row_ops::thread_argmax(row, vocab, t, threads); },
        row_ops::argmax_combine{});
    f.advance(b, row_ops::finish_argmax(best), s);
  }
}

}  // namespace redraft::block
