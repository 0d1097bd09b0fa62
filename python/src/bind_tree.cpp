// python/src/bind_tree.cpp: token trees (from beams, parent arrays or static choice lists), their
// attention masks and position ids.
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "arrays.hpp"
#include "bindings.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/masks.hpp"
#include "redraft/tree/static_tree.hpp"

namespace redraft::python {

using tree_t = tree<backend>;

void bind_tree(nb::module_& m) {
  nb::class_<tree_t>(
      m, "Tree",
      "A batch of token trees in packed order, CSR over requests (B requests, n_total "
      "nodes).\n\n"
      "Array properties are read-only views of the tree's own memory:\n"
      "  node_offsets [B + 1] int32  request b's nodes are rows node_offsets[b] .. "
      "node_offsets[b + 1]\n"
      "  token        [n_total] int32\n"
      "  parent       [n_total] int32  request-local parent index, -1 at each root\n"
      "  depth        [n_total] int32  distance from the root\n"
      "  beam_to_node [B, W, L] int32  request-local node of each beam position "
      "(trees from beams only; [B, 0, 0] otherwise)")
      .def_ro("batch", &tree_t::batch, "B")
      .def_ro("beam_width", &tree_t::beam_width, "W (0 when not built from beams)")
      .def_ro("beam_length", &tree_t::beam_length, "L (0 when not built from beams)")
      .def_prop_ro("total_nodes", &tree_t::total_nodes, "n_total")
      .def("num_nodes", &tree_t::num_nodes, nb::arg("request"), "n_b of request b")
      .def_prop_ro("node_offsets",
                   [](const tree_t& t) {
                     return borrowed(t.node_offsets.data(), {t.host_node_offsets.size()},
                                     nb::find(&t));
                   })
      .def_prop_ro("token",
                   [](const tree_t& t) {
                     return borrowed(t.token.data(), {std::size_t(t.total_nodes())}, nb::find(&t));
                   })
      .def_prop_ro("parent",
                   [](const tree_t& t) {
                     return borrowed(t.parent.data(), {std::size_t(t.total_nodes())}, nb::find(&t));
                   })
      .def_prop_ro("depth",
                   [](const tree_t& t) {
                     return borrowed(t.depth.data(), {std::size_t(t.total_nodes())}, nb::find(&t));
                   })
      .def_prop_ro("beam_to_node", [](const tree_t& t) {
        return borrowed(
            t.beam_to_node.data(),
            {std::size_t(t.batch), std::size_t(t.beam_width), std::size_t(t.beam_length)},
            nb::find(&t));
      });

  m.def(
      "build_tree",
      [](const in_array& beams) {
        return build_tree(backend{},
                          in_view<std::int32_t, 3>(beams, "build_tree", "beams", "[B, W, L]"));
      },
      nb::arg("beams"),
      "build_tree(beams [B, W, L] int32) -> Tree\n\n"
      "Merges each request's W beams (column 0 the root token, shared by all beams of a request) "
      "into a trie; nodes are numbered in creation order while inserting beams 0..W-1 (packed "
      "order), so n_b <= 1 + W (L - 1). Fills beam_to_node.");

  m.def(
      "build_tree_from_parents",
      [](const in_array& node_offsets, const in_array& parent, const in_array& token) {
        const char* fn = "build_tree_from_parents";
        return build_tree_from_parents(
            backend{}, in_view<std::int32_t, 1>(node_offsets, fn, "node_offsets", "[B + 1]"),
            in_view<std::int32_t, 1>(parent, fn, "parent", "[n_total]"),
            in_view<std::int32_t, 1>(token, fn, "token", "[n_total]"));
      },
      nb::arg("node_offsets"), nb::arg("parent"), nb::arg("token"),
      "build_tree_from_parents(node_offsets [B + 1], parent [n_total], token [n_total]) -> Tree\n\n"
      "Any tree in packed order (every parent before its children): parent is request-local, -1 "
      "for each request's node 0. All int32.");

  m.def(
      "build_tree_from_choices",
      [](const std::vector<std::vector<std::int32_t>>& choices, const in_array& root_tokens,
         const in_array& candidates) {
        const char* fn = "build_tree_from_choices";
        return build_tree_from_choices(
            backend{}, choices, in_view<std::int32_t, 1>(root_tokens, fn, "root_tokens", "[B]"),
            in_view<std::int32_t, 3>(candidates, fn, "candidates", "[B, D, K]"));
      },
      nb::arg("choices"), nb::arg("root_tokens"), nb::arg("candidates"),
      "build_tree_from_choices(choices, root_tokens [B], candidates [B, D, K]) -> Tree\n\n"
      "A static (Medusa-style) tree: choices is a list of C rank paths, e.g. [[0], [1], [0, 0]]; "
      "path [r1, ..., rd] becomes node c + 1 with token candidates[b, d - 1, rd]. Every path's "
      "parent path must come earlier in the list. n_b = 1 + C.");

  m.def(
      "build_dense_tree_mask",
      [](const tree_t& t) {
        dense_tree_mask<backend> d = build_dense_tree_mask(backend{}, t);
        const std::size_t n = static_cast<std::size_t>(d.bits.size());
        const std::size_t b = static_cast<std::size_t>(d.offsets.size());
        return nb::make_tuple(own(std::move(d.bits), {n}), own(std::move(d.offsets), {b}));
      },
      nb::arg("tree"),
      "build_dense_tree_mask(tree) -> (bits [sum_b n_b^2] uint8, offsets [B + 1] int64)\n\n"
      "Request b's ancestor-or-self mask is bits[offsets[b]:offsets[b + 1]].reshape(n_b, n_b): "
      "entry (i, j) = 1 iff node j is node i or one of its ancestors.");

  m.def(
      "build_packed_tree_mask",
      [](const tree_t& t, std::int32_t words_per_row) {
        packed_tree_mask<backend> p = build_packed_tree_mask(backend{}, t, words_per_row);
        const std::size_t w = static_cast<std::size_t>(p.words_per_row);
        return own(std::move(p.words), {std::size_t(t.total_nodes()), w});
      },
      nb::arg("tree"), nb::arg("words_per_row") = 0,
      "build_packed_tree_mask(tree, words_per_row=0) -> words [n_total, words_per_row] uint32\n\n"
      "TensorRT-LLM's packed layout: bit (j % 32) of word (j / 32) of node i's row is set iff "
      "request-local node j is an ancestor-or-self of i. words_per_row 0 means ceil(n_max / 32).");

  m.def(
      "build_attention_mask",
      [](const tree_t& t, const in_array& padding_mask) {
        context_tree_mask<backend> c =
            build_attention_mask(backend{}, t,
                                 in_view<std::int32_t, 2>(padding_mask, "build_attention_mask",
                                                          "padding_mask", "[B, P]"));
        const std::size_t n = static_cast<std::size_t>(c.bits.size());
        const std::size_t b = static_cast<std::size_t>(c.offsets.size());
        return nb::make_tuple(own(std::move(c.bits), {n}), own(std::move(c.offsets), {b}));
      },
      nb::arg("tree"), nb::arg("padding_mask"),
      "build_attention_mask(tree, padding_mask [B, P] int32 0/1) -> (bits uint8, offsets [B + 1] "
      "int64)\n\n"
      "The mask with context (Apple's layout): request b's block is bits[offsets[b]:offsets[b + "
      "1]].reshape(n_b, P + n_b); columns < P copy padding_mask[b], column P + j is the tree "
      "mask.");

  m.def(
      "build_padded_attention_mask",
      [](const tree_t& t, const in_array& padding_mask) {
        padded_attention_mask<backend> p = build_padded_attention_mask(
            backend{}, t,
            in_view<std::int32_t, 2>(padding_mask, "build_padded_attention_mask", "padding_mask",
                                     "[B, P]"));
        return own(std::move(p.bits),
                   {std::size_t(p.batch), std::size_t(p.rows), std::size_t(p.cols)});
      },
      nb::arg("tree"), nb::arg("padding_mask"),
      "build_padded_attention_mask(tree, padding_mask [B, P] int32) -> [B, n_max, P + n_max] "
      "uint8\n\nThe mask with context padded to a rectangle (rows and columns past n_b are 0).");

  m.def(
      "build_positions",
      [](const tree_t& t, const in_array& base_positions) {
        auto p = build_positions(
            backend{}, t,
            in_view<std::int32_t, 1>(base_positions, "build_positions", "base_positions", "[B]"));
        return own(std::move(p), {std::size_t(t.total_nodes())});
      },
      nb::arg("tree"), nb::arg("base_positions"),
      "build_positions(tree, base_positions [B] int32) -> [n_total] int32\n\n"
      "Position id of every packed node: base_positions[b] + depth.");
}

}  // namespace redraft::python
