// redraft/loop/verify_pass.hpp: everything one TargetModel::verify call reads, built from a tree.
//
// A verify call reads the tree (tokens, parents, depths), each node's position (the request's
// base position + depth) and the tree mask in the formats the model asks for (dense, bit-packed
// or both). verify_pass<B> owns those buffers in backend memory; input() returns the verify_input
// that points into them, valid while the pass lives. The plain decoder and distillation's chain
// pass build their passes here, from the one-node and chain trees of tree/chain_tree.hpp.
#pragma once

#include <cstdint>
#include <span>
#include <utility>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/transfer.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/target_model.hpp"
#include "redraft/tree/masks.hpp"

namespace redraft::detail {

template <Backend B>
struct verify_pass {
  tree<B> nodes;                                        // batch R, n_total nodes
  typename B::template buffer<std::int32_t> positions;  // [n_total] base position + depth
  dense_tree_mask<B> dense;                             // empty unless the format includes dense
  packed_tree_mask<B> packed;                           // empty unless the format includes packed
  tree_mask_format masks = tree_mask_format::both;

  // The verify_input for KV slots `slots` [R] (host memory, alive as long as the input is used).
  verify_input input(vector_view<const std::int32_t> slots) const {
    const index_t requests = nodes.batch;
    verify_input in{slots,
                    {nodes.host_node_offsets.data(), requests + 1},
                    view_of(nodes),
                    {positions.data(), nodes.total_nodes()}};
    if (masks != tree_mask_format::packed) {
      in.dense_mask = dense.bits.data();
      in.dense_offsets = dense.offsets.data();
    }
    if (masks != tree_mask_format::dense) {
      in.packed_mask = packed.words.data();
      in.packed_words_per_row = packed.words_per_row;
    }
    return in;
  }
};

// make_verify_pass(backend, t, base_positions [R] host, masks): positions base_positions[r] +
// depth for every node of request r, and the masks of the requested formats (packed rows of the
// least width, ceil(n_max / 32) words). Throws redraft::error as build_positions and the mask
// builders do (tree/masks.hpp).
template <Backend B>
verify_pass<B> make_verify_pass(const B& backend, tree<B> t,
                                std::span<const std::int32_t> base_positions,
                                tree_mask_format masks) {
  verify_pass<B> pass;
  pass.nodes = std::move(t);
  pass.masks = masks;
  const auto base = to_backend(backend, base_positions);  // [R]
  pass.positions = build_positions(
      backend, pass.nodes,
      vector_view<const std::int32_t>(base.data(), static_cast<index_t>(base_positions.size())));
  if (masks != tree_mask_format::packed) pass.dense = build_dense_tree_mask(backend, pass.nodes);
  if (masks != tree_mask_format::dense) pass.packed = build_packed_tree_mask(backend, pass.nodes);
  return pass;
}

}  // namespace redraft::detail
