// tools/conformance/kind_pack.hpp: the `pack` case kind (golden/README.md): trie dedup of beams
// and the masks built from it, padded to the golden's [B, n_max, ...] layouts (-1 / 0 padding).
//
// The tree is built twice, with build_tree (the trie) and build_tree_parallel (the prefix-owner
// form); both must match the expected outputs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backend_io.hpp"
#include "golden_format.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/build_tree_parallel.hpp"
#include "redraft/tree/masks.hpp"

namespace redraft::conformance {

namespace detail_pack {

// Checks every `pack` output of tree t against the expected fields; returns the first mismatch.
template <class B>
std::optional<std::string> check_pack_outputs(const B& backend, const tree<B>& t,
                                              const tensor<std::int32_t>& padding_mask,
                                              const json& expected, const std::string& form) {
  const std::int32_t batch = t.batch;
  const std::int32_t n_max = t.max_nodes();
  const std::vector<std::int32_t> t_token = download(backend, t.token);    // [n_total]
  const std::vector<std::int32_t> t_parent = download(backend, t.parent);  // [n_total]
  const std::vector<std::int32_t> t_depth = download(backend, t.depth);    // [n_total]
  const auto at = [](const auto& host, std::int64_t i) {
    return host[static_cast<std::size_t>(i)];
  };

  std::vector<std::int32_t> num_nodes(static_cast<std::size_t>(batch));           // [B]
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(batch) * n_max, -1);  // [B, n_max]
  std::vector<std::int32_t> parent(tokens.size(), -1);                            // [B, n_max]
  std::vector<std::int32_t> depth(tokens.size(), -1);                             // [B, n_max]
  for (std::int32_t b = 0; b < batch; ++b) {
    num_nodes[static_cast<std::size_t>(b)] = t.num_nodes(b);
    for (std::int32_t i = 0; i < t.num_nodes(b); ++i) {
      const std::int64_t node = t.host_node_offsets[static_cast<std::size_t>(b)] + i;
      const std::size_t out = static_cast<std::size_t>(b) * n_max + i;
      tokens[out] = at(t_token, node);
      parent[out] = at(t_parent, node);
      depth[out] = at(t_depth, node);
    }
  }
  const std::vector<std::int32_t> unpacker = download(backend, t.beam_to_node);  // [B, W, L]

  const auto pad_buffer = upload(backend, padding_mask.data);
  const view<const std::int32_t, 2> pad_view(pad_buffer.data(), padding_mask.dim(0),
                                             padding_mask.dim(1));  // [B, P]
  const view<const std::int32_t, 2> no_context(pad_buffer.data(), padding_mask.dim(0),
                                               0);  // [B, 0]
  const auto tree_mask_u8 =
      build_padded_attention_mask(backend, t, no_context);  // [B, n_max, n_max]
  const auto attention_u8 =
      build_padded_attention_mask(backend, t, pad_view);  // [B, n_max, P + n_max]
  const std::vector<std::uint8_t> tree_mask_host = download(backend, tree_mask_u8.bits);
  const std::vector<std::uint8_t> attention_host = download(backend, attention_u8.bits);
  const std::vector<std::int32_t> tree_mask(tree_mask_host.begin(), tree_mask_host.end());
  const std::vector<std::int32_t> attention(attention_host.begin(), attention_host.end());

  const auto packed = build_packed_tree_mask(backend, t);  // [n_total, words]
  const std::int32_t words = packed.words_per_row;
  const std::vector<std::uint32_t> packed_host =
      download(backend, packed.words);  // [n_total, words]
  std::vector<std::uint32_t> packed_padded(static_cast<std::size_t>(batch) * n_max * words,
                                           0u);  // [B, n_max, words]
  for (std::int32_t b = 0; b < batch; ++b) {
    for (std::int32_t i = 0; i < t.num_nodes(b); ++i) {
      const std::int64_t node = t.host_node_offsets[static_cast<std::size_t>(b)] + i;
      for (std::int32_t k = 0; k < words; ++k) {
        packed_padded[(static_cast<std::size_t>(b) * n_max + i) * words + k] =
            at(packed_host, node * words + k);
      }
    }
  }

  const auto check = [&](const char* field, const auto& actual) -> std::optional<std::string> {
    using T = typename std::decay_t<decltype(actual)>::value_type;
    const tensor<T> want = read_tensor<T>(expected, field);
    std::size_t count = 1;
    for (const auto d : want.shape) count *= static_cast<std::size_t>(d);
    if (count != actual.size()) {
      return form + " " + field + ": expected " + std::to_string(count) + " elements, got " +
             std::to_string(actual.size());
    }
    if (auto mismatch = compare_exact(field, want, actual)) return form + " " + *mismatch;
    return std::nullopt;
  };
  if (auto m = check("num_nodes", num_nodes)) return m;
  if (auto m = check("tokens", tokens)) return m;
  if (auto m = check("parent", parent)) return m;
  if (auto m = check("depth", depth)) return m;
  if (auto m = check("unpacker", unpacker)) return m;
  if (auto m = check("tree_mask", tree_mask)) return m;
  if (auto m = check("attention_mask", attention)) return m;
  if (auto m = check("packed_mask_u32", packed_padded)) return m;
  return std::nullopt;
}

}  // namespace detail_pack

template <class B>
case_result run_pack(const json& c) {
  const json& inputs = c.at("inputs");
  const json& expected = c.at("expected");
  const tensor<std::int32_t> beams = read_tensor<std::int32_t>(inputs, "beams");  // [B, W, L]
  const tensor<std::int32_t> padding_mask =
      read_tensor<std::int32_t>(inputs, "padding_mask");  // [B, P]
  REDRAFT_REQUIRE(beams.shape.size() == 3, "beams must be [B, W, L]");
  REDRAFT_REQUIRE(padding_mask.shape.size() == 2 && padding_mask.dim(0) == beams.dim(0),
                  "padding_mask must be [B, P] with the batch of beams");

  const B backend;
  const auto beam_buffer = upload(backend, beams.data);
  const view<const std::int32_t, 3> beam_view(beam_buffer.data(), beams.dim(0), beams.dim(1),
                                              beams.dim(2));
  const tree<B> trie = build_tree(backend, beam_view);
  if (auto m =
          detail_pack::check_pack_outputs(backend, trie, padding_mask, expected, "build_tree:")) {
    return case_result::fail(*m);
  }
  const tree<B> parallel = build_tree_parallel(backend, beam_view);
  if (auto m = detail_pack::check_pack_outputs(backend, parallel, padding_mask, expected,
                                               "build_tree_parallel:")) {
    return case_result::fail(*m);
  }
  return case_result::pass();
}

}  // namespace redraft::conformance
