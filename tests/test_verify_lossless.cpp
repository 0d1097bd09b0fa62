// Tests of verify/lossless.hpp: the deterministic-candidate rule preserves the target's law.
//  (a) exact enumeration in double precision on tiny vocabularies over many random trees and
//      distributions: the law of the first emitted token, and of the first two tokens across two
//      verification levels, equals the target's to 1e-9; and the float implementation makes the
//      enumerator's decisions for given uniforms;
//  (b) a seeded Monte Carlo G-test through the real float path, and the same statistic flags
//      verify_redrafter as biased on a case built to show it;
//  corner cases and bad input (identical decisions on every backend: test_random_decisions.cpp).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <random>

#include "backends.hpp"
#include "redraft/loop/draft_candidates.hpp"
#include "redraft/redraft.hpp"
#include "toy_backend.hpp"
#include "verify_test_util.hpp"

using namespace redraft;
using redraft_test::host_tree;
using redraft_test::upload;

namespace {

using dist = std::vector<double>;
using sequence_law = std::map<std::vector<std::int32_t>, double>;

// A random distribution over `vocab` tokens: exponential weights, some zeroed, sometimes one-hot.
dist random_dist(std::mt19937_64& rng, std::int32_t vocab) {
  dist p(static_cast<std::size_t>(vocab), 0.0);
  std::exponential_distribution<double> e(1.0);
  const auto kind = rng() % 6;
  if (kind == 0) {
    p[rng() % p.size()] = 1.0;
    return p;
  }
  double sum = 0.0;
  for (double& v : p) {
    v = (kind == 1 && rng() % 3 == 0) ? 0.0 : e(rng);
    sum += v;
  }
  if (sum == 0.0) {
    p[0] = 1.0;
    return p;
  }
  for (double& v : p) v /= sum;
  return p;
}

// The rule's law, enumerated in double from its mechanics (docs/verify.md): at node u with
// distribution p[u] and children c_1..c_m, r ~ U[0,1) accepts c_j on [S_{j-1}, S_j) (clipped to
// [0, 1)); the rest of [0, 1) goes to the residual p without the children's tokens, renormalised
// (or, if that residual is empty, to the last child with positive probability).
void enumerate(const host_tree& t, const std::vector<dist>& p, std::int32_t u, double mass,
               std::vector<std::int32_t> prefix, sequence_law& law) {
  const dist& pu = p[static_cast<std::size_t>(u)];
  const auto children = t.children(u);
  double s = 0.0;
  std::int32_t last_positive = -1;
  for (std::int32_t c : children) {
    const std::int32_t tok = t.token[static_cast<std::size_t>(c)];
    const double lo = std::min(s, 1.0);
    s += pu[static_cast<std::size_t>(tok)];
    const double width = std::min(s, 1.0) - lo;
    if (pu[static_cast<std::size_t>(tok)] > 0.0) last_positive = c;
    if (width > 0.0) {
      auto next = prefix;
      next.push_back(tok);
      enumerate(t, p, c, mass * width, next, law);
    }
  }
  const double rest = 1.0 - std::min(s, 1.0);
  if (rest <= 0.0) return;
  double residual = 0.0;
  std::vector<bool> is_child(pu.size(), false);
  for (std::int32_t c : children)
    is_child[static_cast<std::size_t>(t.token[static_cast<std::size_t>(c)])] = true;
  for (std::size_t y = 0; y < pu.size(); ++y)
    if (!is_child[y]) residual += pu[y];
  if (residual > 0.0) {
    for (std::size_t y = 0; y < pu.size(); ++y) {
      if (is_child[y] || pu[y] == 0.0) continue;
      auto next = prefix;
      next.push_back(static_cast<std::int32_t>(y));
      law[next] += mass * rest * pu[y] / residual;
    }
  } else {
    auto next = prefix;
    next.push_back(t.token[static_cast<std::size_t>(last_positive)]);
    enumerate(t, p, last_positive, mass * rest, next, law);
  }
}

// The rule's decisions for given uniforms, in double; `margin` is the smallest distance of a
// used uniform to a decision boundary (relative to the residual mass for the residual draw).
std::vector<std::int32_t> decide(const host_tree& t, const std::vector<dist>& p,
                                 const std::vector<float>& u, double& margin) {
  std::vector<std::int32_t> out;
  std::int32_t node = 0, depth = 0;
  margin = 1.0;
  for (;;) {
    const dist& pu = p[static_cast<std::size_t>(node)];
    const double r = u[static_cast<std::size_t>(2 * depth)];
    double s = 0.0;
    std::int32_t accepted = -1, last_positive = -1;
    const auto children = t.children(node);
    for (std::int32_t c : children) {
      const double q = pu[static_cast<std::size_t>(t.token[static_cast<std::size_t>(c)])];
      if (q > 0.0) last_positive = c;
      s += q;
      margin = std::min(margin, std::abs(r - s));
      if (r < s) {
        accepted = c;
        break;
      }
    }
    if (accepted < 0) {
      std::vector<bool> is_child(pu.size(), false);
      for (std::int32_t c : children)
        is_child[static_cast<std::size_t>(t.token[static_cast<std::size_t>(c)])] = true;
      double residual = 0.0;
      for (std::size_t y = 0; y < pu.size(); ++y)
        if (!is_child[y]) residual += pu[y];
      if (residual > 0.0) {
        const double target =
            static_cast<double>(u[static_cast<std::size_t>(2 * depth + 1)]) * residual;
        double running = 0.0;
        for (std::size_t y = 0; y < pu.size(); ++y) {
          if (is_child[y] || pu[y] == 0.0) continue;
          running += pu[y];
          margin = std::min(margin, std::abs(running - target) / residual);
          if (running > target) {
            out.push_back(static_cast<std::int32_t>(y));
            return out;
          }
        }
      }
      accepted = last_positive;
    }
    out.push_back(t.token[static_cast<std::size_t>(accepted)]);
    node = accepted;
    ++depth;
  }
}

// Float logits for a distribution: log p, -inf where p = 0.
std::vector<float> logits_of(const dist& p) {
  std::vector<float> x;
  for (double v : p)
    x.push_back(v > 0.0 ? static_cast<float>(std::log(v))
                        : -std::numeric_limits<float>::infinity());
  return x;
}

// The distribution the float path actually uses for logits x (params applied), in double:
// temperature, top-k (keep x >= k-th largest), top-p (keep M(>x) < p), renormalise.
dist processed(const std::vector<float>& x, const sampling_params& sp,
               double* top_p_margin = nullptr) {
  const std::size_t v = x.size();
  std::vector<float> sorted(x);
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  const float kth = (sp.top_k > 0 && static_cast<std::size_t>(sp.top_k) < v)
                        ? sorted[static_cast<std::size_t>(sp.top_k) - 1]
                        : -std::numeric_limits<float>::infinity();
  const double mx = sorted[0];
  dist w(v, 0.0);
  double total = 0.0;
  for (std::size_t i = 0; i < v; ++i) {
    if (x[i] >= kth && x[i] > -std::numeric_limits<float>::infinity()) {
      w[i] = std::exp((static_cast<double>(x[i]) - mx) / sp.temperature);
      total += w[i];
    }
  }
  if (sp.top_p < 1.0f) {
    dist keep(v, 0.0);
    for (std::size_t i = 0; i < v; ++i) {
      if (w[i] == 0.0) continue;
      double above = 0.0;
      for (std::size_t j = 0; j < v; ++j)
        if (x[j] > x[i]) above += w[j] / total;
      if (top_p_margin) *top_p_margin = std::min(*top_p_margin, std::abs(above - sp.top_p));
      if (above < sp.top_p) keep[i] = w[i];
    }
    w = keep;
  }
  double s = 0.0;
  for (double a : w) s += a;
  for (double& a : w) a /= s;
  return w;
}

}  // namespace

TEST_CASE("lossless rule, exact enumeration: the first token's law is the target's",
          "[verify][lossless][exact]") {
  const std::uint64_t seed = GENERATE(11u, 12u, 13u);
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 2000; ++trial) {
    const std::int32_t vocab = 1 + static_cast<std::int32_t>(rng() % 8);
    const host_tree t =
        redraft_test::random_tree(rng, 1 + static_cast<std::int32_t>(rng() % 14), vocab, 3);
    std::vector<dist> p;
    for (std::int32_t u = 0; u < t.size(); ++u) p.push_back(random_dist(rng, vocab));
    if (trial % 5 == 0) {
      // Children covering the root's whole support.
      dist& root = p[0];
      std::fill(root.begin(), root.end(), 0.0);
      const auto ch = t.children(0);
      for (std::int32_t c : ch)
        root[static_cast<std::size_t>(t.token[static_cast<std::size_t>(c)])] =
            1.0 + static_cast<double>(rng() % 3);
      if (ch.empty()) root[0] = 1.0;
      double s = 0.0;
      for (double v : root) s += v;
      for (double& v : root) v /= s;
    }
    CAPTURE(trial, vocab, t.size());
    sequence_law law;
    enumerate(t, p, 0, 1.0, {}, law);
    dist first(static_cast<std::size_t>(vocab), 0.0);
    double total = 0.0;
    for (const auto& [seq, m] : law) {
      first[static_cast<std::size_t>(seq[0])] += m;
      total += m;
    }
    REQUIRE(std::abs(total - 1.0) < 1e-9);
    for (std::int32_t y = 0; y < vocab; ++y) {
      CAPTURE(y);
      REQUIRE(std::abs(first[static_cast<std::size_t>(y)] - p[0][static_cast<std::size_t>(y)]) <
              1e-9);
    }
  }
}

TEST_CASE("lossless rule, exact enumeration: the first two tokens across two levels",
          "[verify][lossless][exact]") {
  const std::uint64_t seed = GENERATE(21u, 22u);
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 1000; ++trial) {
    const std::int32_t vocab = 1 + static_cast<std::int32_t>(rng() % 6);
    // The target: p1 for the first token, p2[t1] for the second.
    const dist p1 = random_dist(rng, vocab);
    std::vector<dist> p2;
    for (std::int32_t t1 = 0; t1 < vocab; ++t1) p2.push_back(random_dist(rng, vocab));
    // Level 1: a random tree; depth-1 nodes carry p2 of their token, deeper nodes anything.
    const host_tree t =
        redraft_test::random_tree(rng, 1 + static_cast<std::int32_t>(rng() % 12), vocab, 3);
    const auto depth = t.depth();
    std::vector<dist> p;
    for (std::int32_t u = 0; u < t.size(); ++u) {
      const auto du = depth[static_cast<std::size_t>(u)];
      p.push_back(du == 0   ? p1
                  : du == 1 ? p2[static_cast<std::size_t>(t.token[static_cast<std::size_t>(u)])]
                            : random_dist(rng, vocab));
    }
    CAPTURE(trial, vocab, t.size());
    sequence_law law1;
    enumerate(t, p, 0, 1.0, {}, law1);
    std::vector<double> joint(static_cast<std::size_t>(vocab * vocab), 0.0);
    for (const auto& [seq, m] : law1) {
      if (seq.size() >= 2) {
        joint[static_cast<std::size_t>(seq[0] * vocab + seq[1])] += m;
        continue;
      }
      // Level 2: a fresh random tree rooted at seq[0], root distribution p2[seq[0]].
      host_tree t2 =
          redraft_test::random_tree(rng, 1 + static_cast<std::int32_t>(rng() % 8), vocab, 2);
      t2.token[0] = seq[0];
      std::vector<dist> q{p2[static_cast<std::size_t>(seq[0])]};
      for (std::int32_t u = 1; u < t2.size(); ++u) q.push_back(random_dist(rng, vocab));
      sequence_law law2;
      enumerate(t2, q, 0, 1.0, {}, law2);
      for (const auto& [seq2, m2] : law2)
        joint[static_cast<std::size_t>(seq[0] * vocab + seq2[0])] += m * m2;
    }
    for (std::int32_t a = 0; a < vocab; ++a) {
      for (std::int32_t b = 0; b < vocab; ++b) {
        CAPTURE(a, b);
        REQUIRE(std::abs(joint[static_cast<std::size_t>(a * vocab + b)] -
                         p1[static_cast<std::size_t>(a)] *
                             p2[static_cast<std::size_t>(a)][static_cast<std::size_t>(b)]) < 1e-9);
      }
    }
  }
}

TEMPLATE_TEST_CASE("verify_lossless (float) makes the enumerator's decisions for given uniforms",
                   "[verify][lossless][exact]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::uint64_t seed = GENERATE(31u, 32u);
  const sampling_params sp =
      GENERATE(sampling_params{1.0f, 0, 1.0f}, sampling_params{0.7f, 0, 1.0f},
               sampling_params{1.3f, 3, 1.0f}, sampling_params{1.0f, 0, 0.8f},
               sampling_params{0.9f, 4, 0.6f});
  CAPTURE(seed, sp.temperature, sp.top_k, sp.top_p);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unif(0.0f, 1.0f);
  int compared = 0, skipped = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const std::int32_t vocab = 1 + static_cast<std::int32_t>(rng() % 8);
    const std::int32_t batch = 1 + static_cast<std::int32_t>(rng() % 4);
    std::vector<host_tree> trees;
    std::vector<float> logits;
    std::vector<std::vector<dist>> dists;
    bool near_top_p_boundary = false;
    for (std::int32_t b = 0; b < batch; ++b) {
      trees.push_back(
          redraft_test::random_tree(rng, 1 + static_cast<std::int32_t>(rng() % 10), vocab, 3));
      dists.emplace_back();
      for (std::int32_t u = 0; u < trees.back().size(); ++u) {
        const auto x = logits_of(random_dist(rng, vocab));
        logits.insert(logits.end(), x.begin(), x.end());
        double m = 1.0;
        dists.back().push_back(processed(x, sp, &m));
        near_top_p_boundary |= m < 1e-5;
      }
    }
    const auto t = redraft_test::make_tree(backend, trees);
    std::int32_t max_depth = 0;
    for (const auto& h : trees) {
      const auto d = h.depth();
      max_depth = std::max(max_depth, *std::max_element(d.begin(), d.end()));
    }
    const std::int32_t draws = 2 * (max_depth + 1);
    std::vector<float> u(static_cast<std::size_t>(batch * draws));
    for (float& v : u) v = unif(rng);
    const auto ld = upload(backend, logits);
    const auto ud = upload(backend, u);
    const auto r = to_host(
        backend,
        verify_lossless(backend, t, matrix_view<const float>(ld.data(), t.total_nodes(), vocab), sp,
                        matrix_view<const float>(ud.data(), batch, draws)));
    for (std::int32_t b = 0; b < batch; ++b) {
      CAPTURE(trial, b, vocab);
      double margin = 0.0;
      const std::vector<float> ub(u.begin() + b * draws, u.begin() + (b + 1) * draws);
      const auto expected = decide(trees[static_cast<std::size_t>(b)],
                                   dists[static_cast<std::size_t>(b)], ub, margin);
      if (margin < 1e-5 || near_top_p_boundary) {
        ++skipped;
        continue;
      }
      ++compared;
      REQUIRE(r.emitted(b) == expected);
    }
  }
  CAPTURE(compared, skipped);
  CHECK(skipped * 20 < compared);
}

namespace {

// Monte Carlo: runs `rounds` batches of `batch` identical requests through the float path and
// returns the counts of the first two emitted tokens over two verification levels.
template <class B>
std::vector<double> sample_two_tokens(const B& backend, const host_tree& t1,
                                      const std::vector<dist>& p1_nodes, const host_tree& t2_shape,
                                      const std::vector<dist>& p2, std::int32_t vocab,
                                      std::int32_t batch, int rounds) {
  std::vector<double> counts(static_cast<std::size_t>(vocab * vocab), 0.0);
  std::vector<float> row_logits;
  for (const dist& d : p1_nodes) {
    const auto x = logits_of(d);
    row_logits.insert(row_logits.end(), x.begin(), x.end());
  }
  const std::vector<host_tree> trees1(static_cast<std::size_t>(batch), t1);
  const auto tree1 = redraft_test::make_tree(backend, trees1);
  std::vector<float> logits1;
  for (std::int32_t b = 0; b < batch; ++b)
    logits1.insert(logits1.end(), row_logits.begin(), row_logits.end());
  const auto l1 = upload(backend, logits1);
  for (int round = 0; round < rounds; ++round) {
    const auto r1 =
        to_host(backend,
                verify_lossless(
                    backend, tree1, matrix_view<const float>(l1.data(), tree1.total_nodes(), vocab),
                    sampling_params{}, philox_uniforms{1234, static_cast<std::uint32_t>(round)}));
    // Level 2 for the requests that emitted one token.
    std::vector<host_tree> trees2;
    std::vector<float> logits2;
    std::vector<std::int32_t> first;
    for (std::int32_t b = 0; b < batch; ++b) {
      const auto e = r1.emitted(b);
      if (e.size() >= 2) {
        counts[static_cast<std::size_t>(e[0] * vocab + e[1])] += 1.0;
        continue;
      }
      host_tree t2 = t2_shape;
      t2.token[0] = e[0];
      trees2.push_back(t2);
      first.push_back(e[0]);
      for (std::int32_t u = 0; u < t2.size(); ++u) {
        const auto x = logits_of(u == 0 ? p2[static_cast<std::size_t>(e[0])]
                                        : p2[static_cast<std::size_t>(u % vocab)]);
        logits2.insert(logits2.end(), x.begin(), x.end());
      }
    }
    if (trees2.empty()) continue;
    const auto tree2 = redraft_test::make_tree(backend, trees2);
    const auto l2 = upload(backend, logits2);
    const auto r2 = to_host(
        backend,
        verify_lossless(
            backend, tree2, matrix_view<const float>(l2.data(), tree2.total_nodes(), vocab),
            sampling_params{}, philox_uniforms{1234, 100000u + static_cast<std::uint32_t>(round)}));
    for (std::size_t i = 0; i < first.size(); ++i)
      counts[static_cast<std::size_t>(first[i] * vocab +
                                      r2.emitted(static_cast<std::int32_t>(i))[0])] += 1.0;
  }
  return counts;
}

}  // namespace

TEST_CASE("verify_lossless Monte Carlo: G-test of the first two tokens against the target",
          "[verify][lossless][statistics]") {
  const cpu_backend backend;
  const std::int32_t vocab = 5;
  // Target: p1 and p2[t1]; some zero cells.
  const dist p1{0.35, 0.25, 0.2, 0.0, 0.2};
  const std::vector<dist> p2{{0.5, 0.5, 0.0, 0.0, 0.0},
                             {0.1, 0.2, 0.3, 0.2, 0.2},
                             {0.0, 0.0, 0.0, 0.0, 1.0},
                             {0.2, 0.2, 0.2, 0.2, 0.2},
                             {0.05, 0.15, 0.3, 0.3, 0.2}};
  // Level-1 tree: root with children 1, 2, 4 (tokens); node 1 -> child token 0; node 2 -> 4.
  const host_tree t1{{-1, 0, 0, 1, 2, 0}, {3, 1, 2, 0, 4, 4}};
  std::vector<dist> nodes{p1};
  for (std::int32_t u = 1; u < t1.size(); ++u) {
    const auto d = t1.depth()[static_cast<std::size_t>(u)];
    nodes.push_back(d == 1 ? p2[static_cast<std::size_t>(t1.token[static_cast<std::size_t>(u)])]
                           : p2[3]);
  }
  const host_tree t2{{-1, 0, 0}, {0, 1, 2}};
  const auto counts = sample_two_tokens(backend, t1, nodes, t2, p2, vocab, 4000, 50);
  double n = 0.0;
  for (double c : counts) n += c;
  std::vector<double> expected;
  int cells = 0;
  for (std::int32_t a = 0; a < vocab; ++a)
    for (std::int32_t b = 0; b < vocab; ++b) {
      const double e = n * p1[static_cast<std::size_t>(a)] *
                       p2[static_cast<std::size_t>(a)][static_cast<std::size_t>(b)];
      expected.push_back(e);
      cells += e > 0.0;
    }
  const double g = redraft_test::g_statistic(counts, expected);
  const double threshold = redraft_test::chi_square_quantile(cells - 1, 4.75);  // p ~ 1e-6
  CAPTURE(n, g, threshold, cells);
  CHECK(n == 200000.0);
  CHECK(g < threshold);
}

TEST_CASE("the same G-test flags verify_redrafter as biased", "[verify][redrafter][statistics]") {
  // Two beams [r, 0] and [r, 1]; target p = draft q = (0.5, 0.5, 0, 0) at the root. ReDrafter
  // accepts both (p/q = 1), picks beam 0 and emits token 0 every time; lossless emits 0 or 1.
  const cpu_backend backend;
  const std::int32_t batch = 4000, width = 2, length = 2, vocab = 4;
  std::vector<std::int32_t> beams;
  for (std::int32_t b = 0; b < batch; ++b) beams.insert(beams.end(), {3, 0, 3, 1});
  const auto t =
      build_tree(backend, view<const std::int32_t, 3>(beams.data(), batch, width, length));
  const float lh = std::log(0.5f), ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> logits, draft;
  for (std::int32_t b = 0; b < batch; ++b) {
    for (int node = 0; node < 3; ++node) logits.insert(logits.end(), {lh, lh, ninf, ninf});
    for (int w = 0; w < width; ++w) draft.insert(draft.end(), {lh, lh, -50000.0f, -50000.0f});
  }
  const matrix_view<const float> lv(logits.data(), t.total_nodes(), vocab);
  std::vector<double> apple(static_cast<std::size_t>(vocab), 0.0),
      lossless(static_cast<std::size_t>(vocab), 0.0);
  for (std::uint32_t step = 0; step < 10; ++step) {
    const auto a = to_host(
        backend,
        verify_redrafter(backend, t, lv, view<const float, 4>(draft.data(), batch, width, 1, vocab),
                         redrafter_params{1.0f, 50, -50000.0f}, philox_uniforms{99, step}));
    const auto l = to_host(
        backend, verify_lossless(backend, t, lv, sampling_params{}, philox_uniforms{99, step}));
    for (std::int32_t b = 0; b < batch; ++b) {
      apple[static_cast<std::size_t>(a.emitted(b)[0])] += 1.0;
      lossless[static_cast<std::size_t>(l.emitted(b)[0])] += 1.0;
    }
  }
  const std::vector<double> expected{20000.0, 20000.0, 0.0, 0.0};
  const double threshold = redraft_test::chi_square_quantile(1, 4.75);
  const double g_apple = redraft_test::g_statistic(apple, expected);
  const double g_lossless = redraft_test::g_statistic(lossless, expected);
  CAPTURE(g_apple, g_lossless, threshold, apple[0], apple[1]);
  CHECK(g_apple > threshold);
  CHECK(g_lossless < threshold);
}

TEMPLATE_TEST_CASE("verify_lossless corner cases", "[verify][lossless]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const float ninf = -std::numeric_limits<float>::infinity();
  const std::int32_t vocab = 4;
  // Root (token 3) with children tokens 1 and 2; node 1 has child token 0.
  const host_tree h{{-1, 0, 0, 1}, {3, 1, 2, 0}};
  const auto t = redraft_test::make_tree(backend, {h});
  const auto run = [&](const std::vector<float>& logits, std::vector<float> u,
                       sampling_params sp = {}) {
    const auto ld = upload(backend, logits);
    const auto ud = upload(backend, u);
    return to_host(
        backend,
        verify_lossless(backend, t, matrix_view<const float>(ld.data(), 4, vocab), sp,
                        matrix_view<const float>(ud.data(), 1, static_cast<index_t>(u.size()))));
  };
  const float almost_one = std::nextafter(1.0f, 0.0f);
  const std::vector<float> flat(16, 0.0f);

  SECTION("p one-hot on a child token: always accepted") {
    std::vector<float> x = flat;
    x[0] = ninf;
    x[1] = 0.0f;
    x[2] = ninf;
    x[3] = ninf;  // root: one-hot on token 1
    for (float r : {0.0f, 0.5f, almost_one}) {
      const auto a = run(x, {r, 0.3f, 0.1f, 0.2f, 0.4f, 0.5f});
      CHECK(a.accepted_len[0] >= 1);
      CHECK(a.accepted_node(0, 1) == 1);
    }
  }
  SECTION("p one-hot on a non-child token: the residual is that token") {
    std::vector<float> x = flat;
    x[0] = 5.0f;
    x[1] = ninf;
    x[2] = ninf;
    x[3] = ninf;
    for (float r : {0.0f, 0.5f, almost_one}) {
      const auto a = run(x, {r, almost_one, 0.1f, 0.2f, 0.4f, 0.5f});
      CHECK(a.accepted_len[0] == 0);
      CHECK(a.next_token[0] == 0);
    }
  }
  SECTION("children covering all of p's support: a child is always accepted") {
    std::vector<float> x = flat;
    x[0] = ninf;
    x[1] = std::log(0.3f);
    x[2] = std::log(0.7f);
    x[3] = ninf;
    for (float r : {0.0f, 0.29f, 0.31f, almost_one}) {
      CAPTURE(r);
      const auto a = run(x, {r, 0.5f, 0.9f, 0.9f, 0.9f, 0.9f});
      REQUIRE(a.accepted_len[0] >= 1);
      CHECK(a.accepted_node(0, 1) == (r < 0.3f ? 1 : 2));
    }
  }
  SECTION("zero-probability children are never accepted") {
    std::vector<float> x = flat;
    x[0] = 0.0f;
    x[1] = ninf;
    x[2] = ninf;
    x[3] = 0.0f;
    for (float r : {0.0f, 0.5f, almost_one}) {
      const auto a = run(x, {r, 0.6f, 0.1f, 0.2f, 0.4f, 0.5f});
      CHECK(a.accepted_len[0] == 0);
      CHECK(a.next_token[0] == 3);  // 0.6 * 2 > 1: the second of tokens {0, 3}
    }
  }
  SECTION("the walk stops at a leaf with a sample from p") {
    std::vector<float> x(16, ninf);
    x[1] = 0.0f;       // root -> token 1 (node 1)
    x[4 + 0] = 0.0f;   // node 1 -> token 0 (node 3, a leaf)
    x[12 + 2] = 0.0f;  // leaf's row: one-hot on token 2
    const auto a = run(x, {0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f});
    CHECK(a.accepted_len[0] == 2);
    CHECK(a.emitted(0) == std::vector<std::int32_t>{1, 0, 2});
    CHECK(a.hidden_row[0] == 3);
    CHECK(a.best_beam[0] == -1);
  }
  SECTION("bad input") {
    const std::vector<float> ok_u(6, 0.5f);
    CHECK_THROWS_WITH(run(flat, ok_u, sampling_params{0.0f, 0, 1.0f}),
                      Catch::Contains("temperature 0"));
    CHECK_THROWS_WITH(run(flat, ok_u, sampling_params{-1.0f, 0, 1.0f}),
                      Catch::Contains("temperature -1"));
    CHECK_THROWS_WITH(run(flat, ok_u, sampling_params{1.0f, -1, 1.0f}),
                      Catch::Contains("top_k -1"));
    CHECK_THROWS_WITH(run(flat, ok_u, sampling_params{1.0f, 0, 0.0f}), Catch::Contains("top_p 0"));
    CHECK_THROWS_WITH(run(flat, {0.5f, 1.0f, 0.5f, 0.5f, 0.5f, 0.5f}),
                      Catch::Contains("uniforms[0, 1] = 1 is outside [0, 1)"));
    CHECK_THROWS_WITH(run(flat, {0.5f, -0.1f, 0.5f, 0.5f, 0.5f, 0.5f}),
                      Catch::Contains("is outside [0, 1)"));
    CHECK_THROWS_WITH(run(flat, {0.5f, 0.5f}),
                      Catch::Contains("uniforms has 2 columns but this tree needs 6"));
    std::vector<float> nan = flat;
    nan[2] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH(run(nan, ok_u), Catch::Contains("logits[0, 2]"));
    const auto ld = upload(backend, flat);
    CHECK_THROWS_WITH(verify_lossless(backend, t, matrix_view<const float>(ld.data(), 3, vocab),
                                      sampling_params{}, philox_uniforms{}),
                      "verify_lossless: logits has 3 rows but the tree has 4 nodes");
    const auto dup = redraft_test::make_tree(backend, {{{-1, 0, 0, 0}, {3, 1, 2, 1}}});
    CHECK_THROWS_WITH(verify_lossless(backend, dup, matrix_view<const float>(ld.data(), 4, vocab),
                                      sampling_params{}, philox_uniforms{}),
                      Catch::Contains("duplicate sibling tokens"));
  }
}

// Trees as the model-free and hybrid drafters make them: up to W candidates of random lengths
// (some missing, some duplicated or prefixes of others, capped at a node budget), packed into
// beams with beam_lengths and merged by build_tree. The enumerated law of the first token is the
// target's, and verify_lossless on the built tree makes the enumerator's decisions.
TEMPLATE_TEST_CASE(
    "lossless rule on candidate trees with short and duplicate beams: exact law and decisions",
    "[verify][lossless][exact][lookup]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  std::mt19937_64 rng(41);
  std::uniform_real_distribution<float> unif(0.0f, 1.0f);
  int compared = 0;
  for (int trial = 0; trial < 600; ++trial) {
    const std::int32_t vocab = 1 + static_cast<std::int32_t>(rng() % 5);
    const std::int32_t width = 1 + static_cast<std::int32_t>(rng() % 5),
                       length = 2 + static_cast<std::int32_t>(rng() % 4);
    std::vector<draft_candidate> cands;
    const std::int32_t count =
        static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(width + 1));
    for (std::int32_t c = 0; c < count; ++c) {
      if (c > 0 && rng() % 3 == 0) {  // a duplicate or a prefix of an earlier candidate
        draft_candidate d = cands[rng() % cands.size()];
        d.resize(1 + rng() % d.size());
        cands.push_back(d);
        continue;
      }
      draft_candidate d(1 + rng() % static_cast<std::uint64_t>(length - 1));
      for (auto& t : d) t = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(vocab));
      cands.push_back(d);
    }
    const std::int32_t cap = rng() % 2 == 0 ? 0 : 2 + static_cast<std::int32_t>(rng() % 6);
    detail::cap_candidates(cands, cap);
    const std::int32_t root = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(vocab)),
                       slot = 0;
    draft_input in;
    in.roots = {&root, 1};
    in.slots = {&slot, 1};
    in.beam_width = width;
    in.beam_length = length;
    const draft_output<TestType> out = detail::pack_candidates(backend, in, {cands});
    const tree<TestType> t =
        build_tree(backend, view<const std::int32_t, 3>(out.beams.data(), 1, width, length),
                   matrix_view<const std::int32_t>(out.beam_lengths.data(), 1, width));
    CAPTURE(trial, vocab, width, length, cap, t.total_nodes());
    if (cap > 0) REQUIRE(t.total_nodes() <= cap);
    host_tree h;
    h.parent.resize(static_cast<std::size_t>(t.total_nodes()));
    h.token.resize(h.parent.size());
    backend.copy_to_host(t.parent.data(), t.total_nodes(), h.parent.data());
    backend.copy_to_host(t.token.data(), t.total_nodes(), h.token.data());
    std::vector<dist> p, used;  // used: the distributions the float path works with
    std::vector<float> logits;
    for (std::int32_t u = 0; u < h.size(); ++u) {
      p.push_back(random_dist(rng, vocab));
      const auto x = logits_of(p.back());
      logits.insert(logits.end(), x.begin(), x.end());
      used.push_back(processed(x, sampling_params{1.0f, 0, 1.0f}));
    }
    sequence_law law;
    enumerate(h, p, 0, 1.0, {}, law);
    dist first(static_cast<std::size_t>(vocab), 0.0);
    for (const auto& [seq, m] : law) first[static_cast<std::size_t>(seq[0])] += m;
    for (std::int32_t y = 0; y < vocab; ++y)
      REQUIRE(std::abs(first[static_cast<std::size_t>(y)] - p[0][static_cast<std::size_t>(y)]) <
              1e-9);
    const std::int32_t draws = 2 * length;
    std::vector<float> u(static_cast<std::size_t>(draws));
    for (float& v : u) v = unif(rng);
    const auto ld = upload(backend, logits);
    const auto ud = upload(backend, u);
    const auto r =
        to_host(backend,
                verify_lossless(
                    backend, t, matrix_view<const float>(ld.data(), t.total_nodes(), vocab),
                    sampling_params{1.0f, 0, 1.0f}, matrix_view<const float>(ud.data(), 1, draws)));
    double margin = 0.0;
    const auto expected = decide(h, used, u, margin);
    if (margin < 1e-5) continue;
    ++compared;
    REQUIRE(r.emitted(0) == expected);
  }
  CHECK(compared > 300);
}
