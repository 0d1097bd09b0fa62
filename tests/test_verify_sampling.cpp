// Tests of verify/logits_processing.hpp, verify/redrafter.hpp and verify/typical.hpp against
// naive double-precision references.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>

#include "backends.hpp"
#include "redraft/redraft.hpp"
#include "toy_backend.hpp"
#include "verify_test_util.hpp"

using namespace redraft;
using redraft_test::upload;

namespace {

float naive_kth_largest(std::vector<float> row, int k) {
  std::sort(row.begin(), row.end(), std::greater<float>());
  return row[static_cast<std::size_t>(k - 1)];
}

}  // namespace

TEST_CASE("row_ops::kth_largest equals sorting, both the small-k and the radix path",
          "[verify][logits]") {
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int trial = 0; trial < 300; ++trial) {
    const std::int64_t vocab = 1 + static_cast<std::int64_t>(rng() % 400);
    std::vector<float> row(static_cast<std::size_t>(vocab));
    const auto kind = trial % 4;
    for (float& v : row) {
      v = kind == 0 ? static_cast<float>(rng() % 5) - 2.0f : normal(rng);
      if (kind == 2 && rng() % 7 == 0) v = -std::numeric_limits<float>::infinity();
      if (kind == 3 && rng() % 5 == 0) v = -0.0f;
    }
    for (int k : {1, 2, 50, 64, 65, 100, 399}) {
      if (k > vocab) continue;
      CAPTURE(trial, vocab, k);
      REQUIRE(row_ops::kth_largest(row.data(), vocab, k) == naive_kth_largest(row, k));
    }
  }
}

TEMPLATE_TEST_CASE("logits processing ops match naive references", "[verify][logits]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  std::mt19937_64 rng(4);
  const std::int64_t rows = 7, vocab = 90;
  const auto base = redraft_test::random_logits(rng, rows, vocab, false);

  SECTION("temperature") {
    auto dev = upload(backend, base);
    apply_temperature(backend, matrix_view<float>(dev.data(), rows, vocab), 0.5f);
    const auto out = redraft_test::download<TestType, float>(backend, dev);
    for (std::size_t i = 0; i < base.size(); ++i)
      REQUIRE(out[i] == Approx(base[i] / 0.5f).epsilon(1e-6));
    CHECK_THROWS_WITH(apply_temperature(backend, matrix_view<float>(dev.data(), rows, vocab), 0.0f),
                      Catch::Contains("temperature 0"));
  }
  SECTION("top-k and ReDrafter's warp keep exactly the logits >= the k-th largest") {
    for (int k : {1, 5, 50, 70, 90}) {
      CAPTURE(k);
      auto dev = upload(backend, base);
      warp_top_k(backend, matrix_view<float>(dev.data(), rows, vocab), k, -50000.0f);
      const auto out = redraft_test::download<TestType, float>(backend, dev);
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::vector<float> row(base.begin() + r * vocab, base.begin() + (r + 1) * vocab);
        const float kth = naive_kth_largest(row, k);
        for (std::int64_t i = 0; i < vocab; ++i) {
          const float x = row[static_cast<std::size_t>(i)];
          REQUIRE(out[static_cast<std::size_t>(r * vocab + i)] == (x < kth ? -50000.0f : x));
        }
      }
    }
    auto dev = upload(backend, base);
    CHECK_THROWS_WITH(apply_top_k(backend, matrix_view<float>(dev.data(), rows, vocab), 0),
                      Catch::Contains("k 0 must be at least 1"));
  }
  SECTION("top-k keeps ties at the k-th value") {
    std::vector<float> row{1.0f, 3.0f, 2.0f, 2.0f, 0.0f};
    auto dev = upload(backend, row);
    apply_top_k(backend, matrix_view<float>(dev.data(), 1, 5), 2);
    const auto out = redraft_test::download<TestType, float>(backend, dev);
    const float ninf = -std::numeric_limits<float>::infinity();
    CHECK(out == std::vector<float>{ninf, 3.0f, 2.0f, 2.0f, ninf});
  }
  SECTION("top-p keeps the smallest high-probability set reaching p") {
    for (float p : {0.1f, 0.5f, 0.9f, 0.999f}) {
      CAPTURE(p);
      auto dev = upload(backend, base);
      apply_top_p(backend, matrix_view<float>(dev.data(), rows, vocab), p);
      const auto out = redraft_test::download<TestType, float>(backend, dev);
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* row = base.data() + r * vocab;
        double total = 0.0, mx = *std::max_element(row, row + vocab);
        for (std::int64_t i = 0; i < vocab; ++i) total += std::exp(double(row[i]) - mx);
        for (std::int64_t i = 0; i < vocab; ++i) {
          double above = 0.0;
          for (std::int64_t j = 0; j < vocab; ++j)
            if (row[j] > row[i]) above += std::exp(double(row[j]) - mx) / total;
          if (std::abs(above - p) < 1e-5) continue;  // too close to call in float
          const bool kept = out[static_cast<std::size_t>(r * vocab + i)] == row[i];
          REQUIRE(kept == (above < p));
        }
      }
    }
  }
  SECTION("probabilities and log-probabilities") {
    auto dev = upload(backend, base);
    auto out = backend.template allocate<float>(rows * vocab);
    to_probs(backend, matrix_view<const float>(dev.data(), rows, vocab),
             matrix_view<float>(out.data(), rows, vocab));
    const auto probs = redraft_test::download<TestType, float>(backend, out);
    for (std::int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (std::int64_t i = 0; i < vocab; ++i) s += probs[static_cast<std::size_t>(r * vocab + i)];
      REQUIRE(s == Approx(1.0).epsilon(1e-5));
    }
  }
  SECTION("NaN is rejected") {
    auto bad = base;
    bad[5] = std::numeric_limits<float>::quiet_NaN();
    auto dev = upload(backend, bad);
    CHECK_THROWS_WITH(apply_top_k(backend, matrix_view<float>(dev.data(), rows, vocab), 3),
                      Catch::Contains("logits[0, 5]"));
  }
}

namespace {

// Apple's rule in double from its description, with the smallest distance of any decision to
// its boundary (so that cases too close to call in float can be skipped).
struct apple_result {
  std::int32_t accepted_len = 0, best_beam = 0, next_token = 0;
  double margin = 1.0;
};

std::vector<double> apple_log_probs(const float* row, std::int64_t vocab,
                                    const redrafter_params& p) {
  std::vector<float> r(row, row + vocab);
  const float kth = p.logit_top_k > 0 && p.logit_top_k < vocab
                        ? naive_kth_largest(r, p.logit_top_k)
                        : -std::numeric_limits<float>::infinity();
  std::vector<double> y(static_cast<std::size_t>(vocab));
  double mx = -INFINITY;
  for (std::int64_t i = 0; i < vocab; ++i) {
    y[static_cast<std::size_t>(i)] =
        double(row[i] < kth ? p.logit_mask_value : row[i]) / p.temperature;
    mx = std::max(mx, y[static_cast<std::size_t>(i)]);
  }
  double s = 0.0;
  for (double v : y) s += std::exp(v - mx);
  for (double& v : y) v = v - mx - std::log(s);
  return y;
}

apple_result naive_redrafter(const std::int32_t* beams, const std::int32_t* b2n,
                             const float* logits, const float* draft, const float* u,
                             std::int32_t width, std::int32_t length, std::int64_t vocab,
                             const redrafter_params& p) {
  apple_result res;
  std::int32_t best_run = -1;
  for (std::int32_t w = 0; w < width; ++w) {
    std::int32_t run = 0;
    for (std::int32_t k = 0; k + 1 < length; ++k) {
      const auto lp = apple_log_probs(logits + b2n[w * length + k] * vocab, vocab, p);
      const std::int32_t x = beams[w * length + k + 1];
      const double ratio =
          std::exp(lp[static_cast<std::size_t>(x)] - draft[((w * (length - 1)) + k) * vocab + x]);
      const double uu = u[w * (length - 1) + k];
      res.margin = std::min(res.margin, std::abs(uu - ratio));
      if (!(uu < ratio)) break;
      ++run;
    }
    if (run > best_run) {
      best_run = run;
      res.best_beam = w;
    }
  }
  res.accepted_len = best_run;
  const auto lp =
      apple_log_probs(logits + b2n[res.best_beam * length + best_run] * vocab, vocab, p);
  std::vector<double> wts(static_cast<std::size_t>(vocab));
  for (std::int64_t i = 0; i < vocab; ++i) {
    const double pi = std::exp(lp[static_cast<std::size_t>(i)]);
    wts[static_cast<std::size_t>(i)] =
        best_run == length - 1
            ? pi
            : std::max(0.0,
                       pi - std::exp(double(
                                draft[((res.best_beam * (length - 1)) + best_run) * vocab + i])));
  }
  double total = 0.0;
  for (double v : wts) total += v;
  const double target = u[width * (length - 1)] * total;
  double running = 0.0;
  res.next_token = static_cast<std::int32_t>(vocab - 1);
  for (std::int64_t i = 0; i < vocab; ++i) {
    running += wts[static_cast<std::size_t>(i)];
    if (wts[static_cast<std::size_t>(i)] > 0.0)
      res.margin = std::min(res.margin, std::abs(running - target) / total);
    if (running > target) {
      res.next_token = static_cast<std::int32_t>(i);
      break;
    }
  }
  return res;
}

}  // namespace

TEMPLATE_TEST_CASE("verify_redrafter equals Apple's rule computed naively in double",
                   "[verify][redrafter]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const float temperature = GENERATE(1.0f, 0.7f, 1.5f);
  const std::int32_t top_k = GENERATE(0, 5, 50);
  CAPTURE(temperature, top_k);
  const redrafter_params params{temperature, top_k, -50000.0f};
  std::mt19937_64 rng(static_cast<std::uint64_t>(top_k * 10 + temperature * 100));
  std::uniform_real_distribution<float> unif(0.0f, 1.0f);
  int compared = 0, skipped = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const std::int32_t batch = 1 + static_cast<std::int32_t>(rng() % 3);
    const std::int32_t width = 1 + static_cast<std::int32_t>(rng() % 5);
    const std::int32_t length = 2 + static_cast<std::int32_t>(rng() % 4);
    const std::int32_t vocab = 8 + static_cast<std::int32_t>(rng() % 60);
    CAPTURE(trial, batch, width, length, vocab);
    const auto beams = redraft_test::random_beams(rng, batch, width, length, 4);
    const auto bd = upload(backend, beams);
    const auto t =
        build_tree(backend, view<const std::int32_t, 3>(bd.data(), batch, width, length));
    auto logits = redraft_test::random_logits(rng, t.total_nodes(), vocab, false);
    for (std::size_t i = 0; i < logits.size(); ++i)
      if (static_cast<std::int64_t>(i) % vocab < 4) logits[i] += 2.0f;  // drafted tokens likely
    // Draft log-probs: log_softmax of noisy copies, so ratios straddle 1.
    std::vector<float> draft(static_cast<std::size_t>(batch * width * (length - 1) * vocab));
    std::normal_distribution<float> noise(0.0f, 1.0f);
    for (std::size_t row = 0; row < draft.size() / static_cast<std::size_t>(vocab); ++row) {
      double s = 0.0;
      std::vector<float> z(static_cast<std::size_t>(vocab));
      for (std::int32_t i = 0; i < vocab; ++i) {
        z[static_cast<std::size_t>(i)] = (i < 4 ? 2.0f : 0.0f) + noise(rng);
        s += std::exp(double(z[static_cast<std::size_t>(i)]));
      }
      for (std::int32_t i = 0; i < vocab; ++i)
        draft[row * static_cast<std::size_t>(vocab) + static_cast<std::size_t>(i)] =
            z[static_cast<std::size_t>(i)] - static_cast<float>(std::log(s));
    }
    const std::int32_t draws = width * (length - 1) + 1;
    std::vector<float> u(static_cast<std::size_t>(batch * draws));
    for (float& v : u) v = unif(rng);
    const auto ld = upload(backend, logits);
    const auto dd = upload(backend, draft);
    const auto ud = upload(backend, u);
    const auto r = to_host(
        backend,
        verify_redrafter(backend, t, matrix_view<const float>(ld.data(), t.total_nodes(), vocab),
                         view<const float, 4>(dd.data(), batch, width, length - 1, vocab), params,
                         matrix_view<const float>(ud.data(), batch, draws)));
    const auto b2n = redraft_test::download<TestType, std::int32_t>(backend, t.beam_to_node);
    for (std::int32_t b = 0; b < batch; ++b) {
      CAPTURE(b);
      const std::int32_t off = t.host_node_offsets[static_cast<std::size_t>(b)];
      const auto ref = naive_redrafter(
          beams.data() + b * width * length, b2n.data() + b * width * length,
          logits.data() + static_cast<std::ptrdiff_t>(off) * vocab,
          draft.data() + static_cast<std::ptrdiff_t>(b) * width * (length - 1) * vocab,
          u.data() + b * draws, width, length, vocab, params);
      if (ref.margin < 1e-5) {
        ++skipped;
        continue;
      }
      ++compared;
      REQUIRE(r.accepted_len[static_cast<std::size_t>(b)] == ref.accepted_len);
      REQUIRE(r.best_beam[static_cast<std::size_t>(b)] == ref.best_beam);
      REQUIRE(r.next_token[static_cast<std::size_t>(b)] == ref.next_token);
      REQUIRE(r.hidden_row[static_cast<std::size_t>(b)] ==
              off + b2n[static_cast<std::size_t>((b * width + ref.best_beam) * length +
                                                 ref.accepted_len)]);
      const auto e = r.emitted(b);
      for (std::int32_t i = 0; i < ref.accepted_len; ++i)
        REQUIRE(e[static_cast<std::size_t>(i)] ==
                beams[static_cast<std::size_t>((b * width + ref.best_beam) * length + i + 1)]);
    }
  }
  CAPTURE(compared, skipped);
  CHECK(skipped * 10 < compared);
}

TEMPLATE_TEST_CASE("verify_redrafter rejects bad input", "[verify][redrafter][errors]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::vector<std::int32_t> beams{0, 1, 2, 0, 1, 3};  // [1, 2, 3]
  const auto bd = upload(backend, beams);
  const auto t = build_tree(backend, view<const std::int32_t, 3>(bd.data(), 1, 2, 3));  // 4 nodes
  const std::int32_t vocab = 5;
  const auto ld = upload(backend, std::vector<float>(4 * vocab, 0.0f));
  const auto dd = upload(backend, std::vector<float>(2 * 2 * vocab, std::log(0.2f)));
  const matrix_view<const float> lv(ld.data(), 4, vocab);
  const view<const float, 4> dv(dd.data(), 1, 2, 2, vocab);
  CHECK_NOTHROW(verify_redrafter(backend, t, lv, dv, redrafter_params{}, philox_uniforms{1, 2}));
  CHECK_THROWS_WITH(verify_redrafter(backend, t, lv, dv, redrafter_params{0.0f, 50, -50000.0f},
                                     philox_uniforms{}),
                    Catch::Contains("temperature 0"));
  CHECK_THROWS_WITH(verify_redrafter(backend, t, matrix_view<const float>(ld.data(), 3, vocab), dv,
                                     redrafter_params{}, philox_uniforms{}),
                    "verify_redrafter: logits has 3 rows but the tree has 4 nodes");
  CHECK_THROWS_WITH(
      verify_redrafter(backend, t, lv, view<const float, 4>(dd.data(), 1, 2, 1, vocab),
                       redrafter_params{}, philox_uniforms{}),
      Catch::Contains("draft_log_probs is [1, 2, 1, 5] but expected [1, 2, 2, 5]"));
  const auto ud = upload(backend, std::vector<float>{0.1f, 0.2f, 0.3f, 1.5f, 0.5f});
  CHECK_THROWS_WITH(verify_redrafter(backend, t, lv, dv, redrafter_params{},
                                     matrix_view<const float>(ud.data(), 1, 5)),
                    Catch::Contains("uniforms[0, 3] = 1.5 is outside [0, 1)"));
  const auto no_beams = redraft_test::make_tree(backend, {{{-1, 0, 0, 1}, {0, 1, 3, 2}}});
  CHECK_THROWS_WITH(
      verify_redrafter(backend, no_beams, lv, dv, redrafter_params{}, philox_uniforms{}),
      Catch::Contains("must be built by build_tree from beams"));
  auto bad = std::vector<float>(4 * vocab, 0.0f);
  bad[7] = std::numeric_limits<float>::infinity();
  const auto bl = upload(backend, bad);
  CHECK_THROWS_WITH(verify_redrafter(backend, t, matrix_view<const float>(bl.data(), 4, vocab), dv,
                                     redrafter_params{}, philox_uniforms{}),
                    Catch::Contains("logits[1, 2]"));
}

namespace {

// Medusa's typical acceptance in double: accepted flags in packed order, longest path, lowest
// node index on ties; margin = smallest |p(x) - cut| among tested children.
std::vector<std::int32_t> naive_typical(const redraft_test::host_tree& t, const float* logits,
                                        std::int64_t vocab, const typical_params& tp,
                                        double& margin) {
  const auto depth = t.depth();
  std::vector<char> acc(static_cast<std::size_t>(t.size()), 0);
  acc[0] = 1;
  std::int32_t best = 0;
  for (std::int32_t u = 0; u < t.size(); ++u) {
    if (!acc[static_cast<std::size_t>(u)]) continue;
    if (depth[static_cast<std::size_t>(u)] > depth[static_cast<std::size_t>(best)]) best = u;
    const float* row = logits + u * vocab;
    double mx = *std::max_element(row, row + vocab), s = 0.0;
    std::vector<double> p(static_cast<std::size_t>(vocab));
    for (std::int64_t i = 0; i < vocab; ++i)
      s += p[static_cast<std::size_t>(i)] = std::exp((double(row[i]) - mx) / tp.temperature);
    double h = 0.0;
    for (double& v : p) {
      v /= s;
      if (v > 0.0) h -= v * std::log(v);
    }
    const double cut = std::min(double(tp.epsilon), double(tp.delta) * std::exp(-h));
    for (std::int32_t c : t.children(u)) {
      const double q = p[static_cast<std::size_t>(t.token[static_cast<std::size_t>(c)])];
      margin = std::min(margin, std::abs(q - cut));
      acc[static_cast<std::size_t>(c)] = q > cut;
    }
  }
  std::vector<std::int32_t> path;
  for (std::int32_t u = best; u >= 0; u = t.parent[static_cast<std::size_t>(u)])
    path.insert(path.begin(), u);
  return path;
}

}  // namespace

TEMPLATE_TEST_CASE("verify_typical equals Medusa's rule computed naively", "[verify][typical]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  std::mt19937_64 rng(9);
  const typical_params tp =
      GENERATE(typical_params{1.0f, 0.09f, 0.3f, false}, typical_params{0.7f, 0.2f, 0.5f, false});
  CAPTURE(tp.temperature, tp.epsilon, tp.delta);
  for (int trial = 0; trial < 300; ++trial) {
    const std::int32_t vocab = 2 + static_cast<std::int32_t>(rng() % 6);
    const auto h =
        redraft_test::random_tree(rng, 1 + static_cast<std::int32_t>(rng() % 12), vocab, 4);
    const auto t = redraft_test::make_tree(backend, {h});
    const auto logits = redraft_test::random_logits(rng, h.size(), vocab, false);
    double margin = 1.0;
    const auto path = naive_typical(h, logits.data(), vocab, tp, margin);
    if (margin < 1e-5) continue;
    const auto ld = upload(backend, logits);
    const auto r = to_host(
        backend,
        verify_typical(backend, t, matrix_view<const float>(ld.data(), h.size(), vocab), tp));
    CAPTURE(trial, vocab);
    REQUIRE(r.accepted_len[0] == static_cast<std::int32_t>(path.size()) - 1);
    for (std::size_t i = 0; i < path.size(); ++i)
      REQUIRE(r.accepted_node(0, static_cast<std::int32_t>(i)) == path[i]);
    const float* last = logits.data() + path.back() * vocab;
    REQUIRE(r.next_token[0] ==
            static_cast<std::int32_t>(std::max_element(last, last + vocab) - last));
  }
}

TEST_CASE("verify_typical is lossy: a typical-enough first child is always accepted",
          "[verify][typical]") {
  const cpu_backend cpu;
  // Root with children tokens 0 and 1; target p = (0.6, 0.4): both pass min(0.09, 0.3 e^-H).
  const auto t = redraft_test::make_tree(cpu, {{{-1, 0, 0}, {2, 0, 1}}});
  const std::vector<float> logits{std::log(0.6f), std::log(0.4f), -INFINITY, 0, 0, 0, 0, 0, 0};
  for (std::uint32_t step = 0; step < 20; ++step) {
    const auto r = to_host(
        cpu, verify_typical(cpu, t, matrix_view<const float>(logits.data(), 3, 3),
                            typical_params{1.0f, 0.09f, 0.3f, true}, philox_uniforms{5, step}));
    CHECK(r.emitted(0)[0] == 0);
  }
  CHECK_THROWS_WITH(verify_typical(cpu, t, matrix_view<const float>(logits.data(), 3, 3),
                                   typical_params{0.0f, 0.09f, 0.3f, false}),
                    Catch::Contains("temperature 0"));
  // A sampled next token needs the caller's stream: without uniforms it is refused, never drawn
  // from a default stream that would repeat the same numbers on every call.
  CHECK_THROWS_WITH(verify_typical(cpu, t, matrix_view<const float>(logits.data(), 3, 3),
                                   typical_params{1.0f, 0.09f, 0.3f, true}),
                    Catch::Contains("no uniforms were given"));
}
