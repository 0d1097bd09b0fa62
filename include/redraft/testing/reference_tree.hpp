// redraft/testing/reference_tree.hpp: naive host references for tree/ (for tests, and for users
// checking their own backends or engines). Deliberately the slowest obvious algorithms:
//
//   reference_pack          prefix dedup by comparing every beam prefix with every earlier one,
//                           O(W^2 L^2) per request, no trie, no scan
//   reference_ancestor_mask the ancestor-or-self mask of a parent array by walking up from
//                           every node to the root, O(n^2 depth)
//
// Host code only (std::vector in, std::vector out).
#pragma once

#include <cstdint>
#include <vector>

namespace redraft::testing {

// One request's tree, request-local indices.
struct reference_tree {
  std::vector<std::int32_t> token;         // [n]
  std::vector<std::int32_t> parent;        // [n]  -1 at the root
  std::vector<std::int32_t> depth;         // [n]
  std::vector<std::int32_t> beam_to_node;  // [W, L]
};

// reference_pack(beams, W, L): one request's beams [W, L] (row-major) -> its packed tree.
// Position (w, l) creates a node iff no beam w' < w has the same first l + 1 tokens; nodes are
// numbered in the order (w, l) is visited, w outer, l inner (the packed order: docs/glossary.md).
inline reference_tree reference_pack(const std::int32_t* beams, int width, int length) {
  const auto same_prefix = [&](int a, int b, int l) {
    for (int k = 0; k <= l; ++k) {
      if (beams[a * length + k] != beams[b * length + k]) return false;
    }
    return true;
  };
  reference_tree t;
  t.beam_to_node.assign(static_cast<std::size_t>(width) * length, -1);
  t.token.push_back(beams[0]);
  t.parent.push_back(-1);
  t.depth.push_back(0);
  for (int w = 0; w < width; ++w) {
    t.beam_to_node[static_cast<std::size_t>(w) * length] = 0;
    for (int l = 1; l < length; ++l) {
      int first = w;
      for (int other = 0; other < w; ++other) {
        if (same_prefix(other, w, l)) {
          first = other;
          break;
        }
      }
      std::int32_t node;
      if (first < w) {
        node = t.beam_to_node[static_cast<std::size_t>(first) * length + l];
      } else {
        node = static_cast<std::int32_t>(t.token.size());
        t.token.push_back(beams[w * length + l]);
        t.parent.push_back(t.beam_to_node[static_cast<std::size_t>(w) * length + l - 1]);
        t.depth.push_back(l);
      }
      t.beam_to_node[static_cast<std::size_t>(w) * length + l] = node;
    }
  }
  return t;
}

// reference_ancestor_mask(parent): [n, n] 0/1, entry (i, j) = 1 iff j is i or one of its
// ancestors, found by following parent links from i up to the root.
inline std::vector<std::uint8_t> reference_ancestor_mask(const std::vector<std::int32_t>& parent) {
  const std::size_t n = parent.size();
  std::vector<std::uint8_t> mask(n * n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    std::int32_t j = static_cast<std::int32_t>(i);
    std::size_t steps = 0;
    while (j >= 0 && steps <= n) {  // steps bound: a malformed parent array cannot loop forever
      mask[i * n + static_cast<std::size_t>(j)] = 1;
      j = parent[static_cast<std::size_t>(j)];
      ++steps;
    }
  }
  return mask;
}

}  // namespace redraft::testing
