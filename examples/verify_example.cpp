// verify-example: the four verification rules and a KV compaction plan on one small tree, with
// hand-picked target distributions, so every decision can be checked by hand (docs/verify.md
// walks through this output).
//
// Vocabulary: 0 "the", 1 "cat", 2 "sat", 3 "on", 4 "mat", 5 "dog". Root token "the".
// Beams (W = 3, L = 3):  the cat sat / the cat on / the dog sat
// Tree (packed order):   0 the, 1 cat (0), 2 sat (1), 3 on (1), 4 dog (0), 5 sat (4)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "redraft/redraft.hpp"

namespace {

const char* const words[] = {"the", "cat", "sat", "on", "mat", "dog"};
constexpr int vocab = 6;

std::string text(const std::vector<std::int32_t>& tokens) {
  std::string s;
  for (std::int32_t t : tokens) s += std::string(s.empty() ? "" : " ") + (t >= 0 ? words[t] : "-");
  return s;
}

// log p for a row given as {token, probability} pairs (other tokens: probability 0 -> -inf).
std::vector<float> log_row(std::initializer_list<std::pair<int, float>> probs) {
  std::vector<float> row(vocab, -INFINITY);
  for (const auto& [token, p] : probs) row[static_cast<std::size_t>(token)] = std::log(p);
  return row;
}

// "{cat 0.4, dog 0.4, mat 0.2}": the tokens of a log-probability row with p > 0, most probable
// first.
std::string distribution(const float* log_p) {
  std::vector<int> tokens;
  for (int v = 0; v < vocab; ++v)
    if (std::isfinite(log_p[v])) tokens.push_back(v);
  std::stable_sort(tokens.begin(), tokens.end(), [&](int a, int b) { return log_p[a] > log_p[b]; });
  std::string s = "{";
  for (int v : tokens) {
    char p[16];
    std::snprintf(p, sizeof p, "%.1f", static_cast<double>(std::exp(log_p[v])));
    s += std::string(s.size() > 1 ? ", " : "") + words[v] + " " + p;
  }
  return s + "}";
}

void print(const char* title, const redraft::host_acceptance& a) {
  std::printf("%s\n  accepted_len %d, best_beam %d, accepted_nodes [", title, a.accepted_len[0],
              a.best_beam[0]);
  for (std::int32_t i = 0; i < a.path_length; ++i)
    std::printf(i ? " %d" : "%d", a.accepted_node(0, i));
  std::printf("], emitted \"%s\", next token \"%s\", hidden_row %d\n", text(a.emitted(0)).c_str(),
              words[a.next_token[0]], a.hidden_row[0]);
}

}  // namespace

int main() {
  using namespace redraft;
  const cpu_backend cpu;

  const std::vector<std::int32_t> beams{0, 1, 2, /**/ 0, 1, 3, /**/ 0, 5, 2};  // [1, 3, 3]
  const tree<cpu_backend> t = build_tree(cpu, view<const std::int32_t, 3>(beams.data(), 1, 3, 3));

  // Target distributions at each node (the logits at a node predict the token after it).
  std::vector<float> logits;                                           // [6 nodes, V]
  for (const auto& row : {log_row({{1, 0.5f}, {5, 0.3f}, {4, 0.2f}}),  // after "the"
                          log_row({{2, 0.6f}, {3, 0.3f}, {0, 0.1f}}),  // after "the cat"
                          log_row({{3, 0.7f}, {0, 0.3f}}),             // after "the cat sat"
                          log_row({{0, 1.0f}}),                        // after "the cat on"
                          log_row({{2, 0.5f}, {3, 0.5f}}),             // after "the dog"
                          log_row({{3, 1.0f}})}) {                     // after "the dog sat"
    logits.insert(logits.end(), row.begin(), row.end());
  }
  const matrix_view<const float> lv(logits.data(), t.total_nodes(), vocab);
  std::printf("tree: %d nodes; beams: \"the cat sat\", \"the cat on\", \"the dog sat\"\n\n",
              t.total_nodes());

  print("verify_greedy", to_host(cpu, verify_greedy(cpu, t, lv)));

  // Lossless, caller uniforms [1, 2L]: draw 2d picks among the children at depth d, 2d+1 samples
  // the residual. (a) 0.3 < p(cat) = 0.5 -> cat; at "cat": 0.75 >= p(sat) = 0.6 but
  // < 0.6 + p(on) = 0.9 -> on; "on" is a leaf: sample p = {the: 1} -> the.
  const std::vector<float> ua{0.3f, 0.5f, 0.75f, 0.5f, 0.1f, 0.5f};
  print("\nverify_lossless, uniforms (0.3, -, 0.75, -, -, 0.5)",
        to_host(cpu, verify_lossless(cpu, t, lv, sampling_params{},
                                     matrix_view<const float>(ua.data(), 1, 6))));
  // (b) 0.9 >= p(cat) + p(dog) = 0.8: no child accepted; the residual is p without cat and dog,
  // renormalised: {mat: 1} -> mat, and the walk stops at the root.
  const std::vector<float> ub{0.9f, 0.4f, 0.0f, 0.0f, 0.0f, 0.0f};
  print("\nverify_lossless, uniforms (0.9, 0.4, ...)",
        to_host(cpu, verify_lossless(cpu, t, lv, sampling_params{},
                                     matrix_view<const float>(ub.data(), 1, 6))));
  print("\nverify_lossless, philox_uniforms{seed 2024, step 0}",
        to_host(cpu, verify_lossless(cpu, t, lv, sampling_params{}, philox_uniforms{2024, 0})));

  // ReDrafter: draft log-probs q [1, W, L-1, V] and uniforms u[w][k], then the sampling uniform.
  std::vector<float> q;
  for (int w = 0; w < 3; ++w) {
    const auto q0 = log_row({{1, 0.4f}, {5, 0.4f}, {4, 0.2f}});
    const auto q1 = w == 2 ? log_row({{2, 0.9f}, {3, 0.1f}}) : log_row({{2, 0.8f}, {3, 0.2f}});
    q.insert(q.end(), q0.begin(), q0.end());
    q.insert(q.end(), q1.begin(), q1.end());
  }
  // beam 0: cat p/q = 0.5/0.4 > 0.3 accept; sat 0.6/0.8 = 0.75 <= 0.9 reject -> run 1
  // beam 1: cat accept (0.3); on 0.3/0.2 = 1.5 > 0.2 accept -> run 2 (whole beam)
  // beam 2: dog 0.3/0.4 = 0.75 <= 0.8 reject -> run 0.   Best beam 1; sample p at "on" -> the.
  std::printf(
      "\ndraft distributions q of verify_redrafter (the draft head's, per beam and depth):\n");
  for (int w = 0; w < 3; ++w)
    for (int k = 0; k < 2; ++k)
      std::printf("  beam %d, depth %d: %s\n", w, k + 1,
                  distribution(q.data() + static_cast<std::size_t>((w * 2 + k) * vocab)).c_str());
  const std::vector<float> ur{0.3f, 0.9f, 0.3f, 0.2f, 0.8f, 0.5f, 0.5f};
  print("\nverify_redrafter, T = 1, u = [[0.3 0.9] [0.3 0.2] [0.8 0.5]], sample 0.5",
        to_host(cpu,
                verify_redrafter(cpu, t, lv, view<const float, 4>(q.data(), 1, 3, 2, vocab),
                                 redrafter_params{}, matrix_view<const float>(ur.data(), 1, 7))));

  // Typical: cut = min(0.09, 0.3 exp(-H)); every drafted child here has p >= 0.3 > cut, so all
  // are accepted; the longest path ending at the lowest node is "cat sat".
  print("\nverify_typical, epsilon 0.09, delta 0.3, argmax next token",
        to_host(cpu, verify_typical(cpu, t, lv, typical_params{})));

  // KV plan for lossless (a): the tree's 6 entries sit at positions 7..12 of slot 0; keep nodes
  // 0, 1, 3 at 7, 8, 9.
  const auto acc =
      verify_lossless(cpu, t, lv, sampling_params{}, matrix_view<const float>(ua.data(), 1, 6));
  const std::vector<std::int32_t> slots{0}, committed{7};
  const kv_plan plan = make_kv_plan(cpu, acc, slots, committed);
  std::printf("\nkv plan (committed length 7):");
  for (std::size_t i = 0; i < plan.source_node.size(); ++i)
    std::printf(" node %d: %d -> %d;", plan.source_node[i], committed[0] + plan.source_node[i],
                plan.destination[i]);
  std::printf("\n");
  return 0;
}
