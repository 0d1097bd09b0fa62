// tests/tree_test_util.hpp: shared helpers of the tree/ tests: random beam sets with shared
// prefixes, random parent-array trees, and host copies of a tree<B>.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "redraft/core/tree.hpp"

namespace redraft_test {

// Host copy of a tree<B>.
// NOTE: not named host_tree: verify_test_util.hpp has a different redraft_test::host_tree, and
// redraft_cuda_tests links sources of both into one program, where two classes of one name break
// the one-definition rule (the linker kept one destructor for both; the tree tests crashed in it).
struct host_tree_copy {
  std::int32_t batch = 0, beam_width = 0, beam_length = 0;
  std::vector<std::int32_t> node_offsets, token, parent, depth, beam_to_node;

  std::int32_t num_nodes(std::int32_t b) const {
    return node_offsets[static_cast<std::size_t>(b) + 1] -
           node_offsets[static_cast<std::size_t>(b)];
  }
  // Request b's slice of a per-node array.
  std::vector<std::int32_t> slice(const std::vector<std::int32_t>& a, std::int32_t b) const {
    return {a.begin() + node_offsets[static_cast<std::size_t>(b)],
            a.begin() + node_offsets[static_cast<std::size_t>(b) + 1]};
  }
};

template <class B, class Buffer>
std::vector<std::int32_t> to_host(const B& backend, const Buffer& buffer) {
  std::vector<std::int32_t> out(static_cast<std::size_t>(buffer.size()));
  backend.copy_to_host(buffer.data(), buffer.size(), out.data());
  return out;
}

template <class B>
host_tree_copy to_host(const B& backend, const redraft::tree<B>& t) {
  host_tree_copy h;
  h.batch = t.batch;
  h.beam_width = t.beam_width;
  h.beam_length = t.beam_length;
  h.node_offsets = to_host(backend, t.node_offsets);
  h.token = to_host(backend, t.token);
  h.parent = to_host(backend, t.parent);
  h.depth = to_host(backend, t.depth);
  h.beam_to_node = to_host(backend, t.beam_to_node);
  return h;
}

// Random beams [B, W, L] over a small alphabet. Each beam copies a random-length prefix of a random
// earlier beam (so prefixes are shared at every depth, including identical beams), then draws the
// rest from `alphabet` tokens; the root is drawn per request.
inline std::vector<std::int32_t> random_beams(std::mt19937& rng, int batch, int width, int length,
                                              int alphabet) {
  std::vector<std::int32_t> beams(static_cast<std::size_t>(batch) * width * length);
  std::uniform_int_distribution<int> token(0, alphabet - 1);
  for (int b = 0; b < batch; ++b) {
    std::int32_t* req = beams.data() + static_cast<std::size_t>(b) * width * length;
    const std::int32_t root = std::uniform_int_distribution<int>(0, 1000)(rng);
    for (int w = 0; w < width; ++w) {
      std::int32_t* beam = req + static_cast<std::size_t>(w) * length;
      beam[0] = root;
      int copied = 0;
      if (w > 0 && std::uniform_int_distribution<int>(0, 2)(rng) > 0) {
        const int source = std::uniform_int_distribution<int>(0, w - 1)(rng);
        copied = std::uniform_int_distribution<int>(0, length - 1)(rng);
        for (int l = 1; l <= copied; ++l)
          beam[l] = req[static_cast<std::size_t>(source) * length + l];
      }
      for (int l = copied + 1; l < length; ++l) beam[l] = token(rng);
    }
  }
  return beams;
}

// A random tree of n nodes as a parent array in packed order (parent[i] < i), shaped between a
// chain and a star depending on `locality` (parents drawn among the last `locality` nodes).
inline std::vector<std::int32_t> random_parents(std::mt19937& rng, int n, int locality) {
  std::vector<std::int32_t> parent(static_cast<std::size_t>(n));
  if (n > 0) parent[0] = -1;
  for (int i = 1; i < n; ++i) {
    const int lo = i - locality < 0 ? 0 : i - locality;
    parent[static_cast<std::size_t>(i)] = std::uniform_int_distribution<int>(lo, i - 1)(rng);
  }
  return parent;
}

}  // namespace redraft_test
