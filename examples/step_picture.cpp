// step-picture: draws two of the docs' pictures as SVG, computing every box, edge and arrow with
// the library's own functions, so the pictures change when the code does.
//
//   step-picture step      one speculative step on verify-example's 6-node tree (docs/step.svg):
//                          beams -> trie (build_tree) -> packed tokens, positions and tree mask
//                          (build_positions, build_dense_tree_mask) -> the target's logits rows ->
//                          the accepted path (verify_lossless) -> the KV moves (make_kv_plan)
//   step-picture distill   what distillation step i reads and predicts (distill_positions,
//                          assemble_distill_batch) beside what beam step k reads and predicts at
//                          inference (docs/distill_timeline.svg)
//
// The SVG goes to stdout. Its first line names the command, so tools/check_doc_outputs.py can
// check (CTest doc_example_outputs) and regenerate (--update) the committed files.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "redraft/redraft.hpp"
#include "redraft/train/distill_batch.hpp"

namespace {

// ---------------------------------------------------------------------------------------------
// A minimal SVG writer: integer coordinates, so the output is byte-stable across compilers.

class svg {
 public:
  svg(const char* command, int width, int height) {
    out_ += "<!-- generated-by: step-picture " + std::string(command) + " -->\n";
    out_ += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width) + "\" height=\"" +
            num(height) + "\" viewBox=\"0 0 " + num(width) + " " + num(height) +
            "\" font-family=\"DejaVu Sans, sans-serif\" "
            "font-size=\"13\">\n";
    out_ +=
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" "
        "markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" "
        "fill=\"#333\"/>"
        "</marker></defs>\n";
    out_ += "<rect x=\"0\" y=\"0\" width=\"" + num(width) + "\" height=\"" + num(height) +
            "\" fill=\"white\"/>\n";
  }

  void rect(int x, int y, int w, int h, const std::string& fill, const std::string& stroke = "#333",
            int stroke_width = 1, const std::string& extra = "") {
    out_ += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(w) + "\" height=\"" +
            num(h) + "\" fill=\"" + fill + "\" stroke=\"" + stroke + "\" stroke-width=\"" +
            num(stroke_width) + "\"" + extra + "/>\n";
  }
  void circle(int x, int y, int r, const std::string& fill, const std::string& stroke,
              int stroke_width, const std::string& extra = "") {
    out_ += "<circle cx=\"" + num(x) + "\" cy=\"" + num(y) + "\" r=\"" + num(r) + "\" fill=\"" +
            fill + "\" stroke=\"" + stroke + "\" stroke-width=\"" + num(stroke_width) + "\"" +
            extra + "/>\n";
  }
  void line(int x1, int y1, int x2, int y2, const std::string& stroke = "#333", int width = 1,
            bool arrow = false, const std::string& extra = "") {
    out_ += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" +
            num(y2) + "\" stroke=\"" + stroke + "\" stroke-width=\"" + num(width) + "\"" +
            (arrow ? " marker-end=\"url(#arrow)\"" : "") + extra + "/>\n";
  }
  // anchor: "start", "middle" or "end".
  void text(int x, int y, const std::string& s, const char* anchor = "start",
            const std::string& extra = "") {
    out_ += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" text-anchor=\"" + anchor + "\"" +
            extra + ">" + escape(s) + "</text>\n";
  }
  void title(int x, int y, const std::string& s) {
    text(x, y, s, "start", " font-size=\"15\" font-weight=\"bold\"");
  }
  void note(int x, int y, const std::string& s, const char* anchor = "start") {
    text(x, y, s, anchor, " font-size=\"11\" fill=\"#555\"");
  }

  std::string finish() { return out_ + "</svg>\n"; }

 private:
  static std::string num(int v) { return std::to_string(v); }
  static std::string escape(const std::string& s) {
    std::string r;
    for (char c : s) {
      if (c == '<')
        r += "&lt;";
      else if (c == '>')
        r += "&gt;";
      else if (c == '&')
        r += "&amp;";
      else
        r += c;
    }
    return r;
  }
  std::string out_;
};

// Concatenates strings and integers (std::string's operator+ on a literal trips GCC 12's
// -Wrestrict false positive when inlined).
inline void append_to(std::string& s, const std::string& a) { s += a; }
inline void append_to(std::string& s, const char* a) { s += a; }
inline void append_to(std::string& s, int a) { s += std::to_string(a); }
template <class... A>
std::string cat(const A&... a) {
  std::string s;
  (append_to(s, a), ...);
  return s;
}

std::string fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// One fill colour per node, so a node can be followed from panel to panel.
const char* const node_fill[] = {"#e0e0e0", "#a6cee3", "#b2df8a", "#fdbf6f",
                                 "#cab2d6", "#fb9a99", "#ffff99", "#8dd3c7"};
const char* fill_of(std::int32_t node) { return node_fill[static_cast<std::size_t>(node) % 8]; }

// ---------------------------------------------------------------------------------------------
// Picture (a): one speculative step on verify-example's tree.

const char* const words[] = {"the", "cat", "sat", "on", "mat", "dog"};
constexpr int vocab = 6;

std::vector<float> log_row(std::initializer_list<std::pair<int, float>> probs) {
  std::vector<float> row(vocab, -INFINITY);
  for (const auto& [token, p] : probs) row[static_cast<std::size_t>(token)] = std::log(p);
  return row;
}

// Vertical placement of a tree's nodes: leaves one slot apart in depth-first order (children in
// node order), every parent centred on its children. Returns slot * 2 (integers) per node.
std::vector<int> tree_rows(const std::vector<std::int32_t>& parent) {
  const auto n = static_cast<std::int32_t>(parent.size());
  std::vector<int> row(static_cast<std::size_t>(n), -1);
  int next_leaf = 0;
  auto place = [&](auto&& self, std::int32_t u) -> int {
    int lo = -1, hi = -1;
    for (std::int32_t c = u + 1; c < n; ++c) {
      if (parent[static_cast<std::size_t>(c)] != u) continue;
      const int r = self(self, c);
      if (lo < 0) lo = r;
      hi = r;
    }
    row[static_cast<std::size_t>(u)] = lo < 0 ? 2 * next_leaf++ : (lo + hi) / 2;
    return row[static_cast<std::size_t>(u)];
  };
  place(place, 0);
  return row;
}

std::string step_picture() {
  using namespace redraft;
  const cpu_backend cpu;

  // The inputs of verify-example: beams [1, W = 3, L = 3], the target's distribution at every node
  // (row i predicts the token after node i), caller uniforms for verify_lossless, committed
  // length 7.
  constexpr int width = 3, length = 3, committed = 7;
  const std::vector<std::int32_t> beams{0, 1, 2, /**/ 0, 1, 3, /**/ 0, 5, 2};  // [1, 3, 3]
  const std::vector<std::vector<float>> rows{log_row({{1, 0.5f}, {5, 0.3f}, {4, 0.2f}}),
                                             log_row({{2, 0.6f}, {3, 0.3f}, {0, 0.1f}}),
                                             log_row({{3, 0.7f}, {0, 0.3f}}),
                                             log_row({{0, 1.0f}}),
                                             log_row({{2, 0.5f}, {3, 0.5f}}),
                                             log_row({{3, 1.0f}})};
  const std::vector<float> uniforms{0.3f, 0.5f, 0.75f, 0.5f, 0.1f, 0.5f};  // [1, 2L]

  const tree<cpu_backend> t =
      build_tree(cpu, view<const std::int32_t, 3>(beams.data(), 1, width, length));
  const std::int32_t n = t.num_nodes(0);
  std::vector<float> logits;  // [n, V]
  for (const auto& r : rows) logits.insert(logits.end(), r.begin(), r.end());
  const matrix_view<const float> lv(logits.data(), n, vocab);
  const std::vector<std::int32_t> base{committed};
  const auto positions = build_positions(cpu, t, vector_view<const std::int32_t>(base.data(), 1));
  const auto mask = build_dense_tree_mask(cpu, t);
  const host_acceptance acc =
      to_host(cpu, verify_lossless(cpu, t, lv, sampling_params{},
                                   matrix_view<const float>(uniforms.data(), 1, 2 * length)));
  const host_acceptance greedy = to_host(cpu, verify_greedy(cpu, t, lv));
  const std::vector<std::int32_t> slots{0}, committed_lengths{committed};
  const kv_plan plan = make_kv_plan(acc, slots, committed_lengths);

  const std::vector<std::int32_t> parent(t.parent.data(), t.parent.data() + n);
  const std::vector<std::int32_t> depth(t.depth.data(), t.depth.data() + n);
  auto token_of = [&](std::int32_t node) {
    return std::string(words[t.token[static_cast<std::size_t>(node)]]);
  };
  std::vector<bool> accepted(static_cast<std::size_t>(n), false);
  for (std::int32_t i = 0; i <= acc.accepted_len[0]; ++i)
    accepted[static_cast<std::size_t>(acc.accepted_node(0, i))] = true;
  auto prefix_of = [&](std::int32_t node) {
    std::string s = token_of(node);
    for (std::int32_t p = parent[static_cast<std::size_t>(node)]; p >= 0;
         p = parent[static_cast<std::size_t>(p)])
      s = token_of(p) + " " + s;
    return s;
  };

  svg g("step", 1180, 960);
  g.text(20, 28,
         "One speculative step on verify-example's tree (W = 3, L = 3, committed length 7, "
         "lossless verifier)",
         "start", " font-size=\"17\" font-weight=\"bold\"");
  g.note(20, 46,
         "Generated by examples/step_picture.cpp with build_tree, build_positions, "
         "build_dense_tree_mask, "
         "verify_lossless and make_kv_plan. A node keeps its colour in every panel.");

  // Panel 1: the beams, each box coloured by the node beam_to_node gives it.
  const int p1x = 20, p1y = 80;
  g.title(p1x, p1y, "1. The draft head's beams [W = 3, L = 3]");
  g.note(p1x, p1y + 18,
         "column 0 is the root token; equal prefixes land on the same node (colour, n#)");
  for (int l = 0; l < length; ++l)
    g.note(p1x + 90 + 80 * l + 35, p1y + 42, l == 0 ? "l = 0 (root)" : cat("l = ", l), "middle");
  for (int w = 0; w < width; ++w) {
    const int y = p1y + 52 + 44 * w;
    g.text(p1x, y + 22, cat("beam ", w));
    for (int l = 0; l < length; ++l) {
      const std::int32_t node = t.beam_to_node[static_cast<std::size_t>(w * length + l)];
      const int x = p1x + 90 + 80 * l;
      g.rect(x, y, 70, 32, fill_of(node));
      g.text(x + 35, y + 21, words[beams[static_cast<std::size_t>(w * length + l)]], "middle");
      g.note(x + 67, y + 12, cat("n", node), "end");
    }
  }
  g.note(p1x, p1y + 202,
         std::to_string(width * length) + " beam positions, " + std::to_string(n) +
             " distinct prefixes: the target verifies " + std::to_string(n) + " rows, not " +
             std::to_string(width * length));

  // Panel 2: the trie (packed order = creation order).
  const int p2x = 600, p2y = 80;
  g.title(p2x, p2y, "2. The trie: one node per distinct prefix (build_tree)");
  g.note(p2x, p2y + 18, "node numbers are the packed order: a parent always precedes its children");
  const std::vector<int> trow = tree_rows(parent);
  auto trie_x = [&](std::int32_t u, int x0) {
    return x0 + 40 + 150 * depth[static_cast<std::size_t>(u)];
  };
  auto trie_y = [&](std::int32_t u, int y0) { return y0 + 24 * trow[static_cast<std::size_t>(u)]; };
  auto draw_trie = [&](int x0, int y0, const std::vector<bool>* highlight) {
    for (std::int32_t u = 1; u < n; ++u) {
      const std::int32_t p = parent[static_cast<std::size_t>(u)];
      const bool on = highlight && (*highlight)[static_cast<std::size_t>(u)];
      g.line(trie_x(p, x0) + 30, trie_y(p, y0), trie_x(u, x0) - 30, trie_y(u, y0),
             on ? "#1a7f37" : "#333", on ? 4 : 1);
    }
    for (std::int32_t u = 0; u < n; ++u) {
      const bool dim = highlight && !(*highlight)[static_cast<std::size_t>(u)];
      const bool on = highlight && (*highlight)[static_cast<std::size_t>(u)];
      g.rect(trie_x(u, x0) - 30, trie_y(u, y0) - 15, 60, 30, fill_of(u), on ? "#1a7f37" : "#333",
             on ? 4 : 1, dim ? " opacity=\"0.35\"" : "");
      g.text(trie_x(u, x0), trie_y(u, y0) + 5, token_of(u), "middle",
             dim ? " opacity=\"0.35\"" : "");
      g.note(trie_x(u, x0) - 30, trie_y(u, y0) - 19, cat("node ", u));
    }
  };
  draw_trie(p2x, p2y + 62, nullptr);
  for (std::int32_t d = 0; d < length; ++d)
    g.note(p2x + 40 + 150 * d, p2y + 205, cat("depth ", d), "middle");

  // Panel 3: packed tokens, positions, and the dense tree mask.
  const int p3x = 20, p3y = 330;
  g.title(p3x, p3y, "3. Packed tokens, positions and tree mask (one verify pass)");
  g.note(p3x, p3y + 18,
         "position = committed length 7 + depth; row i may attend to column j iff j is i or an "
         "ancestor");
  const int cell = 34, mx = p3x + 190, my = p3y + 88;
  g.note(p3x, my - 34, "token / position");
  for (std::int32_t j = 0; j < n; ++j) {
    g.rect(mx + cell * j, my - 62, cell - 2, 22, fill_of(j));
    g.text(mx + cell * j + cell / 2 - 1, my - 46, token_of(j), "middle", " font-size=\"11\"");
    g.note(mx + cell * j + cell / 2 - 1, my - 26,
           std::to_string(positions[static_cast<std::size_t>(j)]), "middle");
    g.note(mx + cell * j + cell / 2 - 1, my - 8, cat("n", j), "middle");
  }
  for (std::int32_t i = 0; i < n; ++i) {
    g.text(mx - 8, my + cell * i + 21,
           "row " + std::to_string(i) + ": " + token_of(i) + " @" +
               std::to_string(positions[static_cast<std::size_t>(i)]),
           "end", " font-size=\"12\"");
    for (std::int32_t j = 0; j < n; ++j) {
      const bool bit = mask.bits[static_cast<std::size_t>(i * n + j)] != 0;
      g.rect(mx + cell * j, my + cell * i, cell - 2, cell - 2, bit ? fill_of(j) : "white",
             bit ? "#333" : "#bbb");
      if (bit) g.text(mx + cell * j + cell / 2 - 1, my + cell * i + 21, "x", "middle");
    }
  }
  g.note(p3x, my + cell * n + 18,
         "plus every committed position 0..6 (the prompt and earlier tokens) in each row");

  // Panel 4: the target's logits rows as probabilities; proposals (the node's children) outlined.
  const int p4x = 600, p4y = 330;
  g.title(p4x, p4y, "4. The target's rows: p(next token | node's prefix)");
  g.note(p4x, p4y + 18,
         "row i predicts the token after node i; thick = a child drafted it; * = argmax (greedy's "
         "choice)");
  const int lx = p4x + 120, ly = p4y + 52, lw = 54;
  for (int v = 0; v < vocab; ++v)
    g.text(lx + lw * v + lw / 2, ly - 4, words[v], "middle", " font-size=\"12\"");
  std::vector<std::int32_t> uniform_at(static_cast<std::size_t>(n),
                                       -1);  // draw index used at a walked node
  for (std::int32_t i = 0; i <= acc.accepted_len[0]; ++i)
    uniform_at[static_cast<std::size_t>(acc.accepted_node(0, i))] = 2 * i;
  for (std::int32_t i = 0; i < n; ++i) {
    const int y = ly + 34 * i;
    const bool walked = uniform_at[static_cast<std::size_t>(i)] >= 0;
    g.text(lx - 8, y + 19, cat("row ", i, " (", prefix_of(i), ")"), "end",
           std::string(" font-size=\"11\"") + (walked ? " font-weight=\"bold\"" : ""));
    int arg = 0;
    for (int v = 1; v < vocab; ++v)
      if (logits[static_cast<std::size_t>(i * vocab + v)] >
          logits[static_cast<std::size_t>(i * vocab + arg)])
        arg = v;
    for (int v = 0; v < vocab; ++v) {
      const double p =
          std::exp(static_cast<double>(logits[static_cast<std::size_t>(i * vocab + v)]));
      bool proposed = false;
      for (std::int32_t c = i + 1; c < n; ++c)
        proposed = proposed || (parent[static_cast<std::size_t>(c)] == i &&
                                t.token[static_cast<std::size_t>(c)] == v);
      const int x = lx + lw * v;
      g.rect(x, y, lw - 4, 28, "white", proposed ? "#333" : "#ccc", proposed ? 3 : 1);
      const int bar = static_cast<int>(std::lround(p * (lw - 8)));
      if (bar > 0) g.rect(x + 2, y + 2, bar, 24, "#9ecae1", "none", 0);
      if (p > 0)
        g.text(x + (lw - 4) / 2, y + 19, fixed(p, 1) + (v == arg ? "*" : ""), "middle",
               " font-size=\"12\"");
    }
    if (walked) {  // what the walk did here, with the uniforms it drew (2d: choose, 2d + 1: sample)
      const int d = uniform_at[static_cast<std::size_t>(i)] / 2, ax = lx + lw * vocab + 2;
      const std::string r = fixed(uniforms[static_cast<std::size_t>(2 * d)], 2);
      const std::string u = fixed(uniforms[static_cast<std::size_t>(2 * d + 1)], 2);
      if (d < acc.accepted_len[0]) {
        g.note(ax, y + 12, cat("r ", r, ": accept"));
        g.note(ax, y + 25, cat("\"", token_of(acc.accepted_node(0, d + 1)), "\""));
      } else {
        bool leaf = true;
        for (std::int32_t c = i + 1; c < n; ++c)
          leaf = leaf && parent[static_cast<std::size_t>(c)] != i;
        g.note(ax, y + 12, leaf ? std::string("leaf: sample p") : cat("r ", r, ": no child;"));
        g.note(ax, y + 25,
               cat(leaf ? "" : "residual ", "u ", u, ": \"", words[acc.next_token[0]], "\""));
      }
    }
  }
  g.note(
      p4x, ly + 34 * n + 14,
      "bold rows: the lossless walk reads them (r = its uniform there); the others are never read");

  // Panel 5: the accepted path, and the next token the target adds after it.
  const int p5x = 20, p5y = 700;
  g.title(p5x, p5y, "5. The accepted path (verify_lossless) and the next token");
  draw_trie(p5x, p5y + 62, &accepted);
  const std::int32_t last = acc.accepted_node(0, acc.accepted_len[0]);
  const int nx = trie_x(last, p5x) + 150, ny = trie_y(last, p5y + 62);
  g.line(trie_x(last, p5x) + 30, ny, nx - 32, ny, "#1a7f37", 2, true, " stroke-dasharray=\"5,3\"");
  g.circle(nx, ny, 28, "white", "#1a7f37", 3, " stroke-dasharray=\"5,3\"");
  g.text(nx, ny + 5, words[acc.next_token[0]], "middle", " font-weight=\"bold\"");
  g.note(nx, ny + 44, "next token", "middle");
  std::string path, emitted;
  for (std::int32_t i = 0; i <= acc.accepted_len[0]; ++i) {
    if (i > 0) path += " -> ";
    path += std::to_string(acc.accepted_node(0, i));
  }
  for (std::int32_t tok : acc.emitted(0)) {
    if (!emitted.empty()) emitted += ' ';
    emitted += words[tok];
  }
  g.note(p5x, p5y + 196,
         "accepted path " + path + ", accepted_len " + std::to_string(acc.accepted_len[0]) +
             ", emitted \"" + emitted + "\" (" + std::to_string(acc.accepted_len[0] + 1) +
             " tokens for one target pass)");
  g.note(p5x, p5y + 212,
         cat("hidden_row ", acc.hidden_row[0],
             ": the target's hidden state there feeds the draft "
             "head next step;"));
  g.note(p5x, p5y + 228, cat("\"", words[acc.next_token[0]], "\" is the next step's root"));
  std::string greedy_path;
  for (std::int32_t i = 0; i <= greedy.accepted_len[0]; ++i) {
    if (i > 0) greedy_path += " -> ";
    greedy_path += std::to_string(greedy.accepted_node(0, i));
  }
  g.note(p5x, p5y + 244,
         "(greedy would follow the * argmaxes: " + greedy_path + ", next token \"" +
             words[greedy.next_token[0]] + "\")");

  // Panel 6: the KV cache before and after make_kv_plan's moves.
  const int p6x = 600, p6y = 700, kw = 38;
  g.title(p6x, p6y, "6. KV moves (make_kv_plan): keep the path, drop the rest");
  const int before_y = p6y + 44, after_y = p6y + 150;
  g.note(p6x, before_y - 8,
         "after verify: positions 7..12 hold the " + std::to_string(n) + " nodes' pending KV");
  g.note(p6x, after_y + 50,
         "after commit: committed length " + std::to_string(committed) + " + " +
             std::to_string(acc.accepted_len[0] + 1) + " = " +
             std::to_string(committed + acc.accepted_len[0] + 1) +
             "; the next token's KV is "
             "written by the next verify");
  for (int pos = 0; pos < committed + n; ++pos) {
    const int x = p6x + kw * pos - 8 * kw / 2 + 30;  // positions 4.. are drawn; 0..3 are elided
    if (pos < 4) continue;
    const bool pending = pos >= committed;
    g.rect(x, before_y, kw - 4, 30, pending ? fill_of(pos - committed) : "#f0f0f0");
    g.text(x + (kw - 4) / 2, before_y + 20, pending ? cat("n", pos - committed) : std::string("kv"),
           "middle", " font-size=\"11\"");
    g.note(x + (kw - 4) / 2, before_y + 44, std::to_string(pos), "middle");
  }
  g.note(p6x + 30 - 4, before_y + 20, "...", "end");
  std::vector<bool> kept(static_cast<std::size_t>(n), false);
  for (std::size_t i = 0; i < plan.source_node.size(); ++i) {
    const std::int32_t node = plan.source_node[i], to = plan.destination[i];
    kept[static_cast<std::size_t>(node)] = true;
    const int sx = p6x + kw * (committed + node) - 4 * kw + 30 + (kw - 4) / 2;
    const int dx = p6x + kw * to - 4 * kw + 30 + (kw - 4) / 2;
    g.line(sx, before_y + 50, dx, after_y - 4, "#1a7f37", 2, true);
    g.note((sx + dx) / 2 + 6, (before_y + after_y) / 2 + 18,
           committed + node == to ? "stays"
                                  : std::to_string(committed + node) + " -> " + std::to_string(to));
  }
  for (std::int32_t node = 0; node < n; ++node) {
    if (kept[static_cast<std::size_t>(node)]) continue;
    const int x = p6x + kw * (committed + node) - 4 * kw + 30;
    g.line(x + 4, before_y + 4, x + kw - 8, before_y + 26, "#c00", 2);
    g.line(x + kw - 8, before_y + 4, x + 4, before_y + 26, "#c00", 2);
  }
  const std::int32_t new_committed = committed + acc.accepted_len[0] + 1;
  for (int pos = 4; pos < new_committed; ++pos) {
    const int x = p6x + kw * pos - 4 * kw + 30;
    std::int32_t node = -1;
    for (std::size_t i = 0; i < plan.destination.size(); ++i)
      if (plan.destination[i] == pos) node = plan.source_node[i];
    g.rect(x, after_y, kw - 4, 30, node >= 0 ? fill_of(node) : "#f0f0f0");
    g.text(x + (kw - 4) / 2, after_y + 20, node >= 0 ? cat("n", node) : std::string("kv"), "middle",
           " font-size=\"11\"");
  }
  g.note(p6x + 30 - 4, after_y + 20, "...", "end");
  g.note(p6x, after_y + 66, "red X: the pending KV of rejected nodes is discarded");
  return g.finish();
}

// ---------------------------------------------------------------------------------------------
// Picture (b): distillation (teacher forcing) beside inference.

std::string distill_picture() {
  using namespace redraft;
  // One sequence of 11 tokens; token id == position, so the batch's token ids read back as
  // positions, and hidden state [T, H = 1] holds its own position, so the batch's h reads back t.
  const char* const text[] = {"In",     "the", "beginning", "God",   "created", "the",
                              "heaven", "and", "the",       "earth", "."};
  constexpr std::int32_t T = 11, prompt_length = 3, next_n = 4, t = 3;
  distill_dataset data;
  data.vocab_size = T;
  data.hidden_size = 1;
  data.embedding.assign(static_cast<std::size_t>(T), 0.0f);
  distill_sequence s;
  s.prompt_length = prompt_length;
  for (std::int32_t j = 0; j < T; ++j) {
    s.tokens.push_back(j);
    s.hidden.push_back(static_cast<float>(j));
  }
  data.sequences.push_back(s);
  const std::vector<distill_position> positions = distill_positions(data);
  std::int64_t which = -1;
  for (std::size_t k = 0; k < positions.size(); ++k)
    if (positions[k].t == t) which = static_cast<std::int64_t>(k);
  REDRAFT_REQUIRE(which >= 0, "step-picture distill: position t = ", t,
                  " is not a training position");
  distill_batch batch;
  assemble_distill_batch(data, positions, {which}, next_n, distill_loss_options{}, batch);
  const auto h_t = static_cast<std::int32_t>(batch.hidden[0]);

  svg g("distill", 1160, 680);
  g.text(20, 28, "What the draft head reads and predicts: training (distillation) beside inference",
         "start", " font-size=\"17\" font-weight=\"bold\"");
  g.note(
      20, 46,
      "Generated by examples/step_picture.cpp; the training rows come from distill_positions and "
      "assemble_distill_batch (next_n = 4, position t = 3).");
  const int x0 = 190, cw = 84;
  auto col = [&](std::int32_t pos) { return x0 + cw * pos; };
  auto token_row = [&](int y, bool inference) {
    for (std::int32_t j = 0; j < T; ++j) {
      const bool prompt = j < prompt_length;
      const bool future = inference && j > t + 1;
      g.rect(col(j), y, cw - 6, 30,
             prompt   ? "#f0f0f0"
             : future ? "white"
                      : "#deebf7",
             future ? "#bbb" : "#333", 1, future ? " stroke-dasharray=\"4,3\"" : "");
      g.text(col(j) + (cw - 6) / 2, y + 20, future ? "?" : text[j], "middle",
             future ? " fill=\"#999\"" : "");
      g.note(col(j) + (cw - 6) / 2, y - 6, cat("x", j), "middle");
    }
  };
  auto hidden_marker = [&](int y, std::int32_t pos, const std::string& label) {
    g.rect(col(pos) + 8, y, cw - 22, 24, "#fdd0a2");
    g.text(col(pos) + (cw - 6) / 2, y + 17, label, "middle", " font-size=\"12\"");
  };
  // h_t feeds every step: a dashed line from its box to the step's input box.
  auto feed_hidden = [&](int hidden_y, std::int32_t pos, int row_y, std::int32_t input_pos) {
    const int x = col(pos) + (cw - 6) / 2;
    g.line(x, hidden_y + 24, x, row_y + 11, "#e6550d", 1, false, " stroke-dasharray=\"3,3\"");
    g.line(x, row_y + 11, col(input_pos) + 6, row_y + 11, "#e6550d", 1, true,
           " stroke-dasharray=\"3,3\"");
  };

  // Training.
  int y = 90;
  g.title(20, y, "Training: teacher forcing on the target's own text");
  g.note(20, y + 18,
         "every position t of a sequence the target wrote is a training example; shown: t = " +
             std::to_string(h_t) + " (grey = prompt, never a label)");
  token_row(y + 50, false);
  hidden_marker(y + 88, h_t, cat("h_t (t=", h_t, ")"));
  g.text(x0 - 10, y + 70, "sequence", "end");
  g.text(x0 - 10, y + 105, "target hidden", "end");
  for (std::int32_t i = 0; i < batch.next_n; ++i) {
    const std::int32_t in = batch.inputs[static_cast<std::size_t>(i)];
    const std::int32_t label = batch.labels[static_cast<std::size_t>(i)];
    const int ry = y + 128 + 30 * i;
    g.text(x0 - 10, ry + 16, cat("step i = ", i), "end");
    feed_hidden(y + 88, h_t, ry, in);
    g.rect(col(in) + 8, ry, cw - 22, 22, "#deebf7");
    g.text(col(in) + (cw - 6) / 2, ry + 16, cat("reads x", in), "middle", " font-size=\"11\"");
    g.line(col(in) + cw - 14, ry + 11, col(label) + 6, ry + 11, "#333", 1, true);
    g.rect(col(label) + 8, ry, cw - 22, 22, "#c7e9c0");
    g.text(col(label) + (cw - 6) / 2, ry + 16, cat("predicts x", label), "middle",
           " font-size=\"11\"");
  }
  g.note(x0, y + 258,
         "step i reads the TRUE token x(t+1+i) and h_t, and is scored on x(t+2+i) (cross-entropy), "
         "or on "
         "the target's whole distribution there (KL)");

  // Inference.
  y = 380;
  g.title(20, y, "Inference: beam search from the last accepted position");
  g.note(20, y + 18,
         "x0..x" + std::to_string(t) + " are committed; the target's last pass chose the root x" +
             std::to_string(t + 1) + "; x" + std::to_string(t + 2) + ".. are not known yet");
  token_row(y + 50, true);
  hidden_marker(y + 88, t, cat("h_t (t=", t, ")"));
  g.text(x0 - 10, y + 70, "sequence", "end");
  g.text(x0 - 10, y + 105, "target hidden", "end");
  for (std::int32_t k = 1; k <= next_n; ++k) {
    const std::int32_t in = t + k, out = t + k + 1;
    const int ry = y + 128 + 30 * (k - 1);
    g.text(x0 - 10, ry + 16, cat("beam step k = ", k), "end");
    feed_hidden(y + 88, t, ry, in);
    g.rect(col(in) + 8, ry, cw - 22, 22, k == 1 ? "#deebf7" : "#fff7bc");
    g.text(col(in) + (cw - 6) / 2, ry + 16, k == 1 ? "reads root" : "reads draft", "middle",
           " font-size=\"11\"");
    g.line(col(in) + cw - 14, ry + 11, col(out) + 6, ry + 11, "#333", 1, true);
    g.rect(col(out) + 8, ry, cw - 22, 22, "#fff7bc");
    g.text(col(out) + (cw - 6) / 2, ry + 16, cat("drafts x", out), "middle", " font-size=\"11\"");
  }
  g.note(x0, y + 258,
         "step k reads the root (k = 1) or its OWN draft of the step before, and h_t; training "
         "step i = k - 1 "
         "predicts the same position");
  g.note(
      x0, y + 274,
      "after a wrong draft, later steps read a token training never fed them; the verifier rejects "
      "from that draft on anyway");
  return g.finish();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc == 2 ? argv[1] : "";
  if (what == "step") {
    std::fputs(step_picture().c_str(), stdout);
  } else if (what == "distill") {
    std::fputs(distill_picture().c_str(), stdout);
  } else {
    std::fprintf(stderr, "usage: step-picture step|distill   (writes an SVG to stdout)\n");
    return 2;
  }
  return 0;
}
