// fuzz/fuzz_tree.hpp: the tree builders (beams, choice lists, parent arrays) and everything
// computed from a tree (dense / packed / context / padded masks, positions).
//
// Input: a mode byte (0 beams, 1 choices, 2 parents), the mode's arguments (small sizes, token
// ids mostly in a tiny range so that beams share prefixes, sometimes negative), then the mask
// arguments. When a builder returns, the tree is checked against its definition (packed order,
// depths, beam_to_node, build_tree == build_tree_parallel) and every mask against the ancestor
// relation computed naively; positions against base + depth.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "fuzz_input.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/build_tree_parallel.hpp"
#include "redraft/tree/masks.hpp"
#include "redraft/tree/static_tree.hpp"

namespace redraft_fuzz {

namespace detail {

using redraft::cpu_backend;
using redraft::index_t;

inline std::int32_t fuzz_token(byte_reader& in) {
  const std::uint8_t b = in.byte();
  if (b < 240) return b % 4;  // tiny vocabulary: lots of shared prefixes and siblings
  if (b < 250) return static_cast<std::int32_t>(in.u32() & 0x7fffffff);
  return b == 250 ? -1 : static_cast<std::int32_t>(in.u32());  // possibly negative
}

// Checks the tree's structure against the definition in core/tree.hpp.
inline void check_tree_structure(const redraft::tree<cpu_backend>& t) {
  FUZZ_CHECK(t.host_node_offsets.size() == static_cast<std::size_t>(t.batch) + 1);
  FUZZ_CHECK(t.host_node_offsets[0] == 0);
  for (std::int32_t b = 0; b < t.batch; ++b) {
    const std::int32_t first = t.host_node_offsets[b], n = t.num_nodes(b);
    FUZZ_CHECK(n >= 1);
    FUZZ_CHECK(t.node_offsets[b] == first);
    FUZZ_CHECK(t.parent[first] == -1 && t.depth[first] == 0);
    for (std::int32_t i = 1; i < n; ++i) {
      const std::int32_t p = t.parent[first + i];
      FUZZ_CHECK(p >= 0 && p < i);
      FUZZ_CHECK(t.depth[first + i] == t.depth[first + p] + 1);
      FUZZ_CHECK(t.token[first + i] >= 0);
    }
  }
  FUZZ_CHECK(t.node_offsets[t.batch] == t.total_nodes());
}

inline bool is_ancestor_or_self(const redraft::tree<cpu_backend>& t, std::int32_t first,
                                std::int32_t i, std::int32_t j) {
  for (std::int32_t k = i; k >= 0; k = t.parent[first + k]) {
    if (k == j) return true;
  }
  return false;
}

inline void check_masks(byte_reader& in, const redraft::tree<cpu_backend>& t, outcome& out) {
  const cpu_backend backend;
  {
    const auto dense = redraft::build_dense_tree_mask(backend, t);
    for (std::int32_t b = 0; b < t.batch; ++b) {
      const std::int32_t first = t.host_node_offsets[b], n = t.num_nodes(b);
      for (std::int32_t i = 0; i < n; ++i) {
        for (std::int32_t j = 0; j < n; ++j) {
          FUZZ_CHECK(dense.bits[dense.host_offsets[b] + static_cast<index_t>(i) * n + j] ==
                     (is_ancestor_or_self(t, first, i, j) ? 1 : 0));
        }
      }
    }
    out.ok("dense_mask");
  }
  const std::int32_t words = static_cast<std::int32_t>(in.range(-1, 4));
  try {
    const auto packed = redraft::build_packed_tree_mask(backend, t, words);
    for (std::int32_t b = 0; b < t.batch; ++b) {
      const std::int32_t first = t.host_node_offsets[b], n = t.num_nodes(b);
      for (std::int32_t i = 0; i < n; ++i) {
        for (std::int32_t j = 0; j < packed.words_per_row * 32; ++j) {
          const std::uint32_t word =
              packed.words[static_cast<index_t>(first + i) * packed.words_per_row + j / 32];
          const bool bit = ((word >> (j % 32)) & 1u) != 0;
          FUZZ_CHECK(bit == (j < n && is_ancestor_or_self(t, first, i, j)));
        }
      }
    }
    out.ok("packed_mask");
  } catch (const redraft::error& e) {
    FUZZ_CHECK(words != 0);  // only a too-narrow (or negative) explicit width may be refused
    out.refused("packed_mask", e);
  }
  // Context masks: P columns of 0/1 (sometimes another value, which must be refused).
  const std::int32_t context = static_cast<std::int32_t>(in.range(0, 40));
  std::vector<std::int32_t> padding(static_cast<std::size_t>(t.batch) * context);
  bool padding_valid = true;
  for (auto& v : padding) {
    const std::uint8_t b = in.byte();
    v = b < 250 ? (b & 1) : static_cast<std::int32_t>(b) - 252;
    padding_valid = padding_valid && (v == 0 || v == 1);
  }
  const redraft::view<const std::int32_t, 2> padding_view(padding.data(), t.batch, context);
  try {
    const auto mask = redraft::build_attention_mask(backend, t, padding_view);
    FUZZ_CHECK(padding_valid);
    for (std::int32_t b = 0; b < t.batch; ++b) {
      const std::int32_t first = t.host_node_offsets[b], n = t.num_nodes(b);
      const index_t cols = context + n;
      for (std::int32_t i = 0; i < n; ++i) {
        const std::uint8_t* row = mask.bits.data() + mask.host_offsets[b] + i * cols;
        for (std::int32_t c = 0; c < context; ++c) {
          FUZZ_CHECK(row[c] == padding[static_cast<std::size_t>(b) * context + c]);
        }
        for (std::int32_t j = 0; j < n; ++j) {
          FUZZ_CHECK(row[context + j] == (is_ancestor_or_self(t, first, i, j) ? 1 : 0));
        }
      }
    }
    const auto padded = redraft::build_padded_attention_mask(backend, t, padding_view);
    FUZZ_CHECK(padded.rows == t.max_nodes() && padded.cols == context + padded.rows);
    for (std::int32_t b = 0; b < t.batch; ++b) {
      const std::int32_t first = t.host_node_offsets[b], n = t.num_nodes(b);
      for (std::int32_t i = 0; i < padded.rows; ++i) {
        const std::uint8_t* row =
            padded.bits.data() + (static_cast<index_t>(b) * padded.rows + i) * padded.cols;
        for (std::int32_t j = 0; j < padded.rows; ++j) {
          const bool expected = i < n && j < n && is_ancestor_or_self(t, first, i, j);
          FUZZ_CHECK(row[context + j] == (expected ? 1 : 0));
        }
      }
    }
    out.ok("attention_mask");
  } catch (const redraft::error& e) {
    FUZZ_CHECK(!padding_valid);
    out.refused("attention_mask", e);
  }
  // Positions: bases anywhere in int32, near INT32_MAX included; never wrap.
  std::vector<std::int32_t> base(static_cast<std::size_t>(t.batch));
  for (auto& v : base) {
    const std::uint8_t b = in.byte();
    v = b < 200   ? b
        : b < 240 ? std::numeric_limits<std::int32_t>::max() - (b - 200)
                  : static_cast<std::int32_t>(in.u32());
  }
  try {
    const auto positions = redraft::build_positions(
        backend, t, redraft::view<const std::int32_t, 1>(base.data(), t.batch));
    for (std::int32_t b = 0; b < t.batch; ++b) {
      for (std::int32_t i = t.host_node_offsets[b]; i < t.host_node_offsets[b + 1]; ++i) {
        FUZZ_CHECK(positions[i] >= 0);
        FUZZ_CHECK(static_cast<std::int64_t>(positions[i]) ==
                   static_cast<std::int64_t>(base[b]) + t.depth[i]);
      }
    }
    out.ok("positions");
  } catch (const redraft::error& e) {
    out.refused("positions", e);
    bool refusable = false;
    for (std::int32_t b = 0; b < t.batch; ++b) {
      refusable = refusable || base[b] < 0 ||
                  static_cast<std::int64_t>(base[b]) + t.num_nodes(b) - 1 >
                      std::numeric_limits<std::int32_t>::max();
    }
    FUZZ_CHECK(refusable);
  }
}

inline void fuzz_beams(byte_reader& in, outcome& out) {
  const cpu_backend backend;
  const std::int32_t batch = static_cast<std::int32_t>(in.range(0, 4));
  const std::int32_t width = static_cast<std::int32_t>(in.range(0, 9));
  const std::int32_t length = static_cast<std::int32_t>(in.range(0, 9));
  const bool shared_root = in.flag() || in.flag();
  std::vector<std::int32_t> beams(static_cast<std::size_t>(batch) * width * length);
  for (std::int32_t b = 0; b < batch; ++b) {
    const std::int32_t root = fuzz_token(in);
    for (std::int32_t w = 0; w < width; ++w) {
      for (std::int32_t l = 0; l < length; ++l) {
        std::int32_t& x = beams[(static_cast<std::size_t>(b) * width + w) * length + l];
        x = (l == 0 && shared_root) ? root : fuzz_token(in);
      }
    }
  }
  const redraft::view<const std::int32_t, 3> view(beams.data(), batch, width, length);
  redraft::tree<cpu_backend> t;
  try {
    t = redraft::build_tree(backend, view);
  } catch (const redraft::error& e) {
    out.refused("build_tree", e);
    bool parallel_throws = false;
    try {
      (void)redraft::build_tree_parallel(backend, view);
    } catch (const redraft::error&) {
      parallel_throws = true;
    }
    FUZZ_CHECK(parallel_throws);
    return;
  }
  check_tree_structure(t);
  FUZZ_CHECK(t.beam_width == width && t.beam_length == length);
  for (std::int32_t b = 0; b < batch; ++b) {
    FUZZ_CHECK(t.num_nodes(b) <= 1 + width * (length - 1));
    const std::int32_t first = t.host_node_offsets[b];
    for (std::int32_t w = 0; w < width; ++w) {
      for (std::int32_t l = 0; l < length; ++l) {
        const std::size_t at = (static_cast<std::size_t>(b) * width + w) * length + l;
        const std::int32_t node = t.beam_to_node[static_cast<index_t>(at)];
        FUZZ_CHECK(node >= 0 && node < t.num_nodes(b));
        FUZZ_CHECK(t.token[first + node] == beams[at]);
        FUZZ_CHECK(t.depth[first + node] == l);
        if (l > 0)
          FUZZ_CHECK(t.parent[first + node] == t.beam_to_node[static_cast<index_t>(at) - 1]);
      }
    }
  }
  const auto p = redraft::build_tree_parallel(backend, view);
  FUZZ_CHECK(p.host_node_offsets == t.host_node_offsets);
  for (index_t i = 0; i < t.total_nodes(); ++i) {
    FUZZ_CHECK(p.token[i] == t.token[i] && p.parent[i] == t.parent[i] && p.depth[i] == t.depth[i]);
  }
  for (index_t i = 0; i < t.beam_to_node.size(); ++i)
    FUZZ_CHECK(p.beam_to_node[i] == t.beam_to_node[i]);
  out.ok("build_tree");
  check_masks(in, t, out);
}

inline void fuzz_choices(byte_reader& in, outcome& out) {
  const cpu_backend backend;
  const std::int32_t count = static_cast<std::int32_t>(in.range(0, 24));
  std::vector<std::vector<std::int32_t>> choices(static_cast<std::size_t>(count));
  for (auto& path : choices) {
    path.resize(static_cast<std::size_t>(in.range(0, 5)));
    for (auto& r : path) r = static_cast<std::int32_t>(in.range(-1, 4));
  }
  const std::int32_t batch = static_cast<std::int32_t>(in.range(0, 3));
  const std::int32_t depth = static_cast<std::int32_t>(in.range(0, 5));
  const std::int32_t top_k = static_cast<std::int32_t>(in.range(0, 5));
  std::vector<std::int32_t> roots(static_cast<std::size_t>(batch));
  for (auto& r : roots) r = fuzz_token(in);
  std::vector<std::int32_t> candidates(static_cast<std::size_t>(batch) * depth * top_k);
  for (auto& c : candidates) c = fuzz_token(in);
  redraft::tree<cpu_backend> t;
  try {
    t = redraft::build_tree_from_choices(
        backend, choices, redraft::view<const std::int32_t, 1>(roots.data(), batch),
        redraft::view<const std::int32_t, 3>(candidates.data(), batch, depth, top_k));
  } catch (const redraft::error& e) {
    out.refused("build_tree_from_choices", e);
    return;
  }
  check_tree_structure(t);
  for (std::int32_t b = 0; b < batch; ++b) {
    FUZZ_CHECK(t.num_nodes(b) == count + 1);
    const std::int32_t first = t.host_node_offsets[b];
    for (std::int32_t c = 0; c < count; ++c) {
      FUZZ_CHECK(t.depth[first + c + 1] == static_cast<std::int32_t>(choices[c].size()));
    }
  }
  out.ok("build_tree_from_choices");
  check_masks(in, t, out);
}

inline void fuzz_parents(byte_reader& in, outcome& out) {
  const cpu_backend backend;
  const std::int32_t batch = static_cast<std::int32_t>(in.range(0, 4));
  std::vector<std::int32_t> offsets(static_cast<std::size_t>(batch) + 1, 0);
  std::vector<std::int32_t> parent, token;
  const bool raw_offsets = in.byte() >= 240;
  for (std::int32_t b = 0; b < batch; ++b) {
    const std::int32_t n = static_cast<std::int32_t>(in.range(raw_offsets ? -2 : 1, 40));
    offsets[static_cast<std::size_t>(b) + 1] = offsets[static_cast<std::size_t>(b)] + n;
    for (std::int32_t i = 0; i < n; ++i) {
      const std::uint8_t kind = in.byte();
      // Mostly valid parents (a random earlier node), sometimes anything.
      parent.push_back(i == 0       ? (kind < 250 ? -1 : static_cast<std::int32_t>(kind) - 252)
                       : kind < 245 ? static_cast<std::int32_t>(in.range(0, i - 1))
                                    : static_cast<std::int32_t>(in.range(-3, i + 2)));
      token.push_back(fuzz_token(in));
    }
  }
  if (raw_offsets) offsets[0] = static_cast<std::int32_t>(in.range(-1, 1));
  // The node arrays may be longer than the offsets say (refused) or shorter.
  const std::int32_t extra = in.byte() >= 250 ? static_cast<std::int32_t>(in.range(-3, 3)) : 0;
  const std::size_t n_total = parent.size() + static_cast<std::size_t>(extra > 0 ? extra : 0) -
                              std::min<std::size_t>(parent.size(), extra < 0 ? -extra : 0);
  parent.resize(n_total, 0);
  token.resize(n_total, 0);
  redraft::tree<cpu_backend> t;
  try {
    t = redraft::build_tree_from_parents(
        backend, redraft::view<const std::int32_t, 1>(offsets.data(), batch + 1),
        redraft::view<const std::int32_t, 1>(parent.data(), static_cast<index_t>(parent.size())),
        redraft::view<const std::int32_t, 1>(token.data(), static_cast<index_t>(token.size())));
  } catch (const redraft::error& e) {
    out.refused("build_tree_from_parents", e);
    return;
  }
  check_tree_structure(t);
  for (std::size_t i = 0; i < parent.size(); ++i) {
    FUZZ_CHECK(t.parent[static_cast<index_t>(i)] == parent[i] &&
               t.token[static_cast<index_t>(i)] == token[i]);
  }
  out.ok("build_tree_from_parents");
  check_masks(in, t, out);
}

}  // namespace detail

inline outcome fuzz_tree(const std::uint8_t* data, std::size_t size) {
  byte_reader in(data, size);
  outcome out;
  switch (in.byte() % 3) {
    case 0:
      detail::fuzz_beams(in, out);
      break;
    case 1:
      detail::fuzz_choices(in, out);
      break;
    default:
      detail::fuzz_parents(in, out);
      break;
  }
  return out;
}

}  // namespace redraft_fuzz
