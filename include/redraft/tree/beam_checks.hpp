// redraft/tree/beam_checks.hpp: validation of draft beams, shared by the two tree builders.
//
// build_tree (tree/build_tree.hpp) and build_tree_parallel (tree/build_tree_parallel.hpp) accept
// the same input and refuse the same bad input with the same messages; both check it here, on a
// host copy of the beams [B, W, L] and of the optional beam lengths [B, W].
#pragma once

#include <cstdint>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"

namespace redraft::detail {

// Validates beams on the host: shape, token ids, equal roots within a request, and the optional
// beam lengths [B, W] (nullptr: every beam has all L tokens).
inline void check_beams(const char* fn, const std::int32_t* beams, const std::int32_t* lengths,
                        index_t batch, index_t width, index_t length) {
  REDRAFT_REQUIRE(width >= 1, fn, ": beam_width ", width, " must be at least 1");
  REDRAFT_REQUIRE(length >= 2, fn, ": beam_length ", length,
                  " must be at least 2 (the root plus one drafted token)");
  REDRAFT_REQUIRE(batch >= 0, fn, ": batch ", batch, " is negative");
  for (index_t b = 0; b < batch; ++b) {
    const std::int32_t root = beams[b * width * length];
    for (index_t w = 0; w < width; ++w) {
      const std::int32_t* beam = beams + (b * width + w) * length;
      REDRAFT_REQUIRE(beam[0] == root, fn, ": beams[", b, ", ", w, ", 0] = ", beam[0],
                      " differs from beams[", b, ", 0, 0] = ", root,
                      " (all beams of a request start at the same root token)");
      const index_t valid = lengths == nullptr ? length : lengths[b * width + w];
      REDRAFT_REQUIRE(valid >= 1 && valid <= length, fn, ": beam_lengths[", b, ", ", w,
                      "] = ", valid, " is outside [1, ", length,
                      "] (the root counts; 1 = no drafted token)");
      for (index_t l = 0; l < valid; ++l) {
        REDRAFT_REQUIRE(beam[l] >= 0, fn, ": beams[", b, ", ", w, ", ", l, "] = ", beam[l],
                        " is not a valid token id (must be >= 0)");
      }
    }
  }
}

// A host copy of the optional beam lengths [B, W] (empty view: empty vector), shape-checked.
template <class B>
std::vector<std::int32_t> host_beam_lengths(const B& backend, const char* fn,
                                            matrix_view<const std::int32_t> lengths, index_t batch,
                                            index_t width) {
  if (lengths.empty() && lengths.data() == nullptr) return {};
  REDRAFT_REQUIRE(lengths.extent(0) == batch && lengths.extent(1) == width, fn,
                  ": beam_lengths is [", lengths.extent(0), ", ", lengths.extent(1),
                  "], expected [", batch, ", ", width, "] (one length per beam) or empty");
  std::vector<std::int32_t> host(static_cast<std::size_t>(lengths.size()));
  if (!host.empty()) backend.copy_to_host(lengths.data(), lengths.size(), host.data());
  return host;
}

}  // namespace redraft::detail
