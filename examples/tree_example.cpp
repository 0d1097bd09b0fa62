// tree-example: dynamic tree attention on sample beams, step by step.
//
// Three draft beams of length 4 (the root token plus 3 drafted tokens) share prefixes; build_tree
// merges them into one token tree, and the masks and positions an attention kernel needs to verify
// every beam in a single forward pass are built from it. Prints each piece (docs/tree.md shows this
// output).
#include <cstdint>
#include <cstdio>
#include <vector>

#include "redraft/redraft.hpp"

namespace {

using redraft::cpu_backend;

void print_row(const char* label, const std::int32_t* values, int n) {
  std::printf("%s", label);
  for (int i = 0; i < n; ++i) std::printf("%4d", values[i]);
  std::printf("\n");
}

}  // namespace

int main() {
  const cpu_backend backend;
  const int batch = 1, width = 3, length = 4;
  // beams [B = 1, W = 3, L = 4]: column 0 is the root token (the target's last token).
  const std::vector<std::int32_t> beams = {
      10, 21, 33, 47,  // beam 0
      10, 21, 35, 47,  // beam 1: shares "10 21" with beam 0
      10, 22, 33, 41,  // beam 2: shares only the root
  };
  std::printf("== beams [B=1, W=3, L=4] (column 0 = root token)\n");
  for (int w = 0; w < width; ++w) {
    char label[32];
    std::snprintf(label, sizeof label, "beam %d:", w);
    print_row(label, beams.data() + w * length, length);
  }

  const redraft::tree<cpu_backend> tree = redraft::build_tree(
      backend, redraft::view<const std::int32_t, 3>(beams.data(), batch, width, length));
  const int n = tree.num_nodes(0);
  std::printf("\n== packed tree: %d unique nodes instead of %d beam positions\n", n,
              width * length);
  std::printf("node:   ");
  for (int i = 0; i < n; ++i) std::printf("%4d", i);
  std::printf("\n");
  print_row("token:  ", tree.token.data(), n);
  print_row("parent: ", tree.parent.data(), n);
  print_row("depth:  ", tree.depth.data(), n);

  std::printf("\n== beam_to_node [W, L] (Apple's unpacker, TensorRT-LLM's draft_indices)\n");
  for (int w = 0; w < width; ++w) {
    char label[32];
    std::snprintf(label, sizeof label, "beam %d:", w);
    print_row(label, tree.beam_to_node.data() + w * length, length);
  }

  // Context: P = 6 key columns, left padded by 2; the 4 real tokens put the root at position 4.
  const int context = 6;
  const std::vector<std::int32_t> padding_mask = {0, 0, 1, 1, 1, 1};  // [B, P]
  const std::vector<std::int32_t> base_positions = {4};               // [B]
  const auto positions = redraft::build_positions(
      backend, tree, redraft::vector_view<const std::int32_t>(base_positions.data(), batch));
  std::printf("\n== positions = base position (4 real context tokens) + depth\n");
  print_row("position:", positions.data(), n);

  const auto dense = redraft::build_dense_tree_mask(backend, tree);
  std::printf(
      "\n== dense tree mask [n, n]: row i attends to column j (x) iff j is i or an ancestor\n");
  std::printf("        ");
  for (int j = 0; j < n; ++j) std::printf("%2d", j);
  std::printf("\n");
  for (int i = 0; i < n; ++i) {
    std::printf("node %d: ", i);
    for (int j = 0; j < n; ++j) std::printf("%2s", dense.bits[i * n + j] ? "x" : ".");
    std::printf("   token %d\n", tree.token[i]);
  }

  const auto packed = redraft::build_packed_tree_mask(backend, tree);
  std::printf("\n== packed tree mask [n, ceil(n/32) = %d] uint32, bit j of word j/32 (LSB first)\n",
              packed.words_per_row);
  for (int i = 0; i < n; ++i) {
    const std::uint32_t word = packed.words[i * packed.words_per_row];
    std::printf("node %d: 0x%08x  bits ", i, word);
    for (int j = 0; j < n; ++j) std::printf("%d", (word >> j) & 1u);
    std::printf(" (j = 0..%d)\n", n - 1);
  }

  const auto with_context = redraft::build_attention_mask(
      backend, tree, redraft::view<const std::int32_t, 2>(padding_mask.data(), batch, context));
  std::printf(
      "\n== attention mask with context [n, P + n] (Apple ReDrafter layout), P = %d, "
      "padding_mask = 0 0 1 1 1 1\n",
      context);
  std::printf("         context     | tree\n");
  for (int i = 0; i < n; ++i) {
    std::printf("node %d: ", i);
    for (int c = 0; c < context + n; ++c) {
      if (c == context) std::printf(" |");
      std::printf("%2s", with_context.bits[i * (context + n) + c] ? "x" : ".");
    }
    std::printf("\n");
  }
  return 0;
}
