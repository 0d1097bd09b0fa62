// redraft/cuda/tuning.hpp: launch parameters of every redraft kernel, in one place.
//
// The block helpers (cuda/block/) are written for any block size; the kernels (cuda/kernels/)
// instantiate them with these constants, and the host-run twins simulate blocks of the same size
// so the host tests walk the same per-thread strides as the GPU. Compiles with any C++ compiler.
#pragma once

namespace redraft {

struct kernel_tuning {
  // Row primitives (max, sum, log_softmax, argmax, top-k): one block per row.
  static constexpr int row_threads = 256;
  // Largest k the shared-memory top-k kernel handles; larger k fall back to a Thrust sort.
  static constexpr int max_block_top_k = 1024;
  // Greedy verification: one block per request, a block-wide argmax per node on the path.
  static constexpr int verify_threads = 256;
  // Fused tree mask kernel: one block per request, one thread per node (strided).
  static constexpr int mask_threads = 128;
  // Largest tree the fused mask kernel keeps in shared memory (parents); larger ones use the
  // generic functor path.
  static constexpr int mask_max_nodes = 4096;
};

}  // namespace redraft
