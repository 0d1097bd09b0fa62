// Tests of cuda/thrust_backend.hpp on Thrust's host (CPP) system, and of the block helpers
// (cuda/block/) whose host-run twins it runs: every Backend primitive against the CPU backend on
// random matrices with many ties, edge sizes, the large-k fallback of row_top_k, the poisoned
// fresh allocations, and the Backend clause 8 trait. Built only when the CCCL headers are found.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "backends.hpp"
#include "redraft/redraft.hpp"
#include "verify_test_util.hpp"

#if defined(REDRAFT_TEST_THRUST_HOST)

using namespace redraft;
using redraft_test::upload;

static_assert(Backend<thrust_host_backend>);
static_assert(backend_memory_is_host_accessible_v<thrust_host_backend>);
static_assert(backend_memory_is_host_accessible_v<cpu_backend>);
static_assert(backend_memory_is_host_accessible_v<redraft_test::toy_backend>);

namespace {

// A host copy of a whole buffer of any backend.
template <class B, class Buffer>
auto download(const B& backend, const Buffer& buffer) {
  using T = std::remove_const_t<std::remove_pointer_t<decltype(buffer.data())>>;
  std::vector<T> host(static_cast<std::size_t>(buffer.size()));
  if (!host.empty()) backend.copy_to_host(buffer.data(), buffer.size(), host.data());
  return host;
}

// A backend without clause 8 counts as device memory.
struct no_clause_8 {};
static_assert(!backend_memory_is_host_accessible_v<no_clause_8>);

// Random [rows, cols]: small integers (many ties, -0 and +0 both), or normals with some -inf.
std::vector<float> random_matrix(std::mt19937_64& rng, index_t rows, index_t cols, int kind) {
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (float& v : x) {
    if (kind == 0) {
      const int i = static_cast<int>(rng() % 5) - 2;
      v = i == 0 && rng() % 2 ? -0.0f : static_cast<float>(i);
    } else {
      v = rng() % 17 == 0 ? -std::numeric_limits<float>::infinity() : normal(rng);
    }
  }
  return x;
}

}  // namespace

TEST_CASE("thrust_host_backend row primitives equal the CPU backend's", "[cuda][thrust_host]") {
  const cpu_backend cpu;
  const thrust_host_backend th;
  const std::uint64_t seed = GENERATE(1u, 2u, 3u);
  const index_t cols = GENERATE(1, 2, 7, 255, 256, 257, 1000, 4099);
  const int kind = GENERATE(0, 1);
  std::mt19937_64 rng(seed * 7919 + static_cast<std::uint64_t>(cols));
  const index_t rows = static_cast<index_t>(rng() % 5);
  CAPTURE(seed, rows, cols, kind);
  const std::vector<float> host = random_matrix(rng, rows, cols, kind);
  auto x_cpu = upload(cpu, host);
  auto x_th = upload(th, host);
  const matrix_view<const float> xc(x_cpu.data(), rows, cols), xt(x_th.data(), rows, cols);

  // row_max, row_argmax: exact.
  auto max_c = cpu.allocate<float>(rows);
  auto max_t = th.allocate<float>(rows);
  cpu.row_max(xc, {max_c.data(), rows});
  th.row_max(xt, {max_t.data(), rows});
  CHECK(download(th, max_t) == download(cpu, max_c));
  auto am_c = cpu.allocate<std::int32_t>(rows);
  auto am_t = th.allocate<std::int32_t>(rows);
  cpu.row_argmax(xc, {am_c.data(), rows});
  th.row_argmax(xt, {am_t.data(), rows});
  CHECK(download(th, am_t) == download(cpu, am_c));

  // row_top_k: exact (values and indices), for several k.
  for (const index_t k : {index_t{1}, std::min<index_t>(5, cols), cols}) {
    CAPTURE(k);
    auto vc = cpu.allocate<float>(rows * k);
    auto ic = cpu.allocate<std::int32_t>(rows * k);
    auto vt = th.allocate<float>(rows * k);
    auto it = th.allocate<std::int32_t>(rows * k);
    cpu.row_top_k(xc, static_cast<int>(k), {vc.data(), rows, k}, {ic.data(), rows, k});
    th.row_top_k(xt, static_cast<int>(k), {vt.data(), rows, k}, {it.data(), rows, k});
    CHECK(download(th, it) == download(cpu, ic));
    const auto hv_t = download(th, vt), hv_c = download(cpu, vc);
    for (std::size_t i = 0; i < hv_t.size(); ++i) CHECK(hv_t[i] == hv_c[i]);  // -0 == +0
  }

  // row_sum, log_softmax: to float rounding of differently ordered sums.
  if (kind == 0) {
    auto sum_c = cpu.allocate<float>(rows);
    auto sum_t = th.allocate<float>(rows);
    cpu.row_sum(xc, {sum_c.data(), rows});
    th.row_sum(xt, {sum_t.data(), rows});
    const auto sc = download(cpu, sum_c), st = download(th, sum_t);
    for (std::size_t r = 0; r < sc.size(); ++r) CHECK(st[r] == Approx(sc[r]).margin(1e-3));
    auto lc = cpu.allocate<float>(rows * cols);
    auto lt = th.allocate<float>(rows * cols);
    cpu.log_softmax(xc, {lc.data(), rows, cols});
    th.log_softmax(xt, {lt.data(), rows, cols});
    const auto hc = download(cpu, lc), ht = download(th, lt);
    for (std::size_t i = 0; i < hc.size(); ++i) CHECK(ht[i] == Approx(hc[i]).margin(1e-5));
  }
}

TEST_CASE("thrust_host_backend row_top_k beyond the block kernel's k sorts with Thrust",
          "[cuda][thrust_host]") {
  const cpu_backend cpu;
  const thrust_host_backend th;
  std::mt19937_64 rng(11);
  const index_t rows = 3, cols = kernel_tuning::max_block_top_k + 77;
  const int k = kernel_tuning::max_block_top_k + 5;
  const std::vector<float> host = random_matrix(rng, rows, cols, 0);
  auto x_cpu = upload(cpu, host);
  auto x_th = upload(th, host);
  auto vc = cpu.allocate<float>(rows * k);
  auto ic = cpu.allocate<std::int32_t>(rows * k);
  auto vt = th.allocate<float>(rows * k);
  auto it = th.allocate<std::int32_t>(rows * k);
  cpu.row_top_k({x_cpu.data(), rows, cols}, k, {vc.data(), rows, k}, {ic.data(), rows, k});
  th.row_top_k({x_th.data(), rows, cols}, k, {vt.data(), rows, k}, {it.data(), rows, k});
  CHECK(download(th, it) == download(cpu, ic));
}

TEST_CASE("thrust_host_backend memory, transfers, scan, gather and matmul", "[cuda][thrust_host]") {
  const thrust_host_backend th;
  const cpu_backend cpu;
  SECTION("fresh buffers are poisoned (NaN floats, -1 integers), not zeroed") {
    auto f = th.allocate<float>(4);
    auto i = th.allocate<std::int32_t>(4);
    for (const float v : download(th, f)) CHECK(std::isnan(v));
    for (const std::int32_t v : download(th, i)) CHECK(v == -1);
    CHECK(th.allocate<float>(0).data() == nullptr);
  }
  SECTION("buffers move, handles copy") {
    auto a = upload(th, std::vector<std::int32_t>{1, 2, 3});
    auto b = std::move(a);
    CHECK(a.size() == 0);
    CHECK(download(th, b) == std::vector<std::int32_t>{1, 2, 3});
    const thrust_host_backend copy = th;
    auto c = copy.allocate<std::int32_t>(3);
    copy.copy(b.data(), 3, c.data());
    copy.fill(b.data(), 3, std::int32_t{7});
    th.synchronize();
    CHECK(download(th, c) == std::vector<std::int32_t>{1, 2, 3});
    CHECK(download(th, b) == std::vector<std::int32_t>{7, 7, 7});
  }
  SECTION("inclusive_scan, in place too") {
    auto a = upload(th, std::vector<std::int32_t>{3, 0, -1, 5});
    th.inclusive_scan({a.data(), 4}, {a.data(), 4});
    CHECK(download(th, a) == std::vector<std::int32_t>{3, 3, 2, 7});
  }
  SECTION("gather_rows checks indices on host memory") {
    auto x = upload(th, std::vector<float>{1, 2, 3, 4, 5, 6});
    auto idx = upload(th, std::vector<std::int32_t>{2, 0, 2});
    auto y = th.allocate<float>(6);
    th.gather_rows({x.data(), 3, 2}, {idx.data(), 3}, {y.data(), 3, 2});
    CHECK(download(th, y) == std::vector<float>{5, 6, 1, 2, 5, 6});
    auto bad = upload(th, std::vector<std::int32_t>{3});
    CHECK_THROWS_WITH(th.gather_rows({x.data(), 3, 2}, {bad.data(), 1}, {y.data(), 1, 2}),
                      Catch::Contains("index[0] = 3"));
  }
  SECTION("matmul with bias and SiLU equals the CPU's") {
    std::mt19937_64 rng(5);
    const index_t m = 5, k = 33, n = 9;
    const auto x = redraft_test::random_logits(rng, m, k, false);
    const auto w = redraft_test::random_logits(rng, n, k, false);
    const auto bias = redraft_test::random_logits(rng, 1, n, false);
    for (const activation act : {activation::none, activation::silu}) {
      auto xt = upload(th, x), wt = upload(th, w), bt = upload(th, bias);
      auto xc = upload(cpu, x), wc = upload(cpu, w), bc = upload(cpu, bias);
      auto yt = th.allocate<float>(m * n);
      auto yc = cpu.allocate<float>(m * n);
      th.matmul({xt.data(), m, k}, {wt.data(), n, k}, bt.data(), act, {yt.data(), m, n});
      cpu.matmul({xc.data(), m, k}, {wc.data(), n, k}, bc.data(), act, {yc.data(), m, n});
      const auto ht = download(th, yt), hc = download(cpu, yc);
      for (std::size_t i = 0; i < ht.size(); ++i) CHECK(ht[i] == Approx(hc[i]).margin(1e-3));
    }
  }
}

TEST_CASE("block helpers: the host twins of the block argmax and top-k", "[cuda][block]") {
  std::mt19937_64 rng(3);
  const int threads = GENERATE(1, 3, 32, 256);
  const index_t cols = GENERATE(1, 31, 300);
  CAPTURE(threads, cols);
  const std::vector<float> row = random_matrix(rng, 1, cols, 0);
  // checked argmax == row_ops::argmax_checked
  const row_ops::row_argmax_result cb = row_ops::finish_argmax(block::host_block_reduce(
      threads, [&](int t) { return row_ops::thread_argmax(row.data(), cols, t, threads); },
      row_ops::argmax_combine{}));
  const row_ops::row_argmax_result ref = row_ops::argmax_checked(row.data(), cols);
  CHECK(cb.index == ref.index);
  CHECK(cb.bad_column == -1);
  // top-k with k = cols is a full stable sort descending
  std::vector<float> sv(static_cast<std::size_t>(cols)), ov(sv.size());
  std::vector<std::int32_t> si(sv.size()), oi(sv.size());
  block::host_top_k_row(row.data(), cols, static_cast<int>(cols), threads, sv.data(), si.data(),
                        ov.data(), oi.data());
  for (index_t j = 1; j < cols; ++j) {
    const auto a = static_cast<std::size_t>(j - 1), b = static_cast<std::size_t>(j);
    CHECK((ov[a] > ov[b] || (ov[a] == ov[b] && oi[a] < oi[b])));
  }
}

TEST_CASE("block helpers: the blocked row scan and sums equal the sequential row ops",
          "[cuda][block]") {
  std::mt19937_64 rng(11);
  const index_t cols = GENERATE(1, 255, 256, 257, 4099);
  CAPTURE(cols);
  std::vector<float> row = random_matrix(rng, 1, cols, 0);
  const row_ops::row_scan ref = row_ops::scan_row(row.data(), cols);
  const row_ops::row_scan got = block::host_scan(row.data(), cols);
  CHECK(got.max == ref.max);
  CHECK(got.bad_column == ref.bad_column);
  // A NaN and a +inf: the lowest of them is reported, as scan_row does.
  if (cols > 3) {
    row[static_cast<std::size_t>(cols - 1)] = std::numeric_limits<float>::quiet_NaN();
    row[static_cast<std::size_t>(cols / 2)] = std::numeric_limits<float>::infinity();
    CHECK(block::host_scan(row.data(), cols).bad_column ==
          row_ops::scan_row(row.data(), cols).bad_column);
  }
  // Chunks cover [0, V) exactly once, in order.
  index_t next = 0;
  for (int j = 0; j < row_ops::sum_chunks; ++j) {
    CHECK(row_ops::chunk_begin(cols, j) == next);
    next = row_ops::chunk_end(cols, j);
  }
  CHECK(next == cols);
}

namespace {

// Every sampling verifier's decisions on backend B over a large vocabulary (continuous logits,
// so the row sums depend on the summation order).
template <class B, class T>
std::vector<host_acceptance> sampling_decisions(const std::vector<std::int32_t>& beams_host,
                                                std::int32_t batch, std::int32_t width,
                                                std::int32_t length, std::int32_t vocab,
                                                const std::vector<float>& logits_host,
                                                const std::vector<float>& draft_host,
                                                std::uint64_t seed) {
  const B backend;
  const auto beams = upload(backend, beams_host);
  const tree<B> t =
      build_tree(backend, view<const std::int32_t, 3>(beams.data(), batch, width, length));
  const std::int32_t n = t.total_nodes();
  std::vector<T> lt;
  for (std::size_t i = 0; i < static_cast<std::size_t>(n) * static_cast<std::size_t>(vocab); ++i) {
    lt.push_back(from_float<T>(logits_host[i]));
  }
  const auto logits = upload(backend, lt);
  const auto draft = upload(backend, draft_host);
  const matrix_view<const T> lv(logits.data(), n, vocab);
  std::vector<host_acceptance> out;
  for (std::uint32_t step = 0; step < 6; ++step) {
    const philox_uniforms u{seed, step};
    sampling_params sp;
    sp.temperature = 1.5f;
    out.push_back(to_host(backend, verify_lossless(backend, t, lv, sp, u)));
    sp.top_k = 40;
    sp.top_p = 0.9f;
    out.push_back(to_host(backend, verify_lossless(backend, t, lv, sp, u)));
    typical_params tp;
    tp.temperature = 1.5f;
    tp.epsilon = 0.01f;
    tp.delta = 0.1f;
    tp.sample_next_token = true;
    out.push_back(to_host(backend, verify_typical(backend, t, lv, tp, u)));
    redrafter_params rp;
    rp.temperature = 1.5f;
    rp.logit_top_k = 0;
    out.push_back(to_host(
        backend, verify_redrafter(
                     backend, t, lv,
                     view<const float, 4>(draft.data(), batch, width, length - 1, vocab), rp, u)));
  }
  return out;
}

}  // namespace

TEST_CASE("sampling verifiers: the block-per-request twins decide as the CPU functors",
          "[cuda][block][verify]") {
  const std::int32_t vocab = GENERATE(300, 32000);
  const std::uint64_t seed = GENERATE(1, 2, 3);
  CAPTURE(vocab, seed);
  std::mt19937_64 rng(seed);
  const std::int32_t batch = 3, width = 4, length = 4;
  const auto beams = redraft_test::random_beams(rng, batch, width, length, 2);
  // Flat logits (high entropy: long accepted runs and residual draws deep in the row).
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<float> logits(static_cast<std::size_t>(batch * (1 + width * (length - 1)) * vocab));
  for (float& v : logits) v = normal(rng);
  // Tokens 0 and 1 (the drafted ones) carry a good part of the mass, so paths get accepted.
  for (std::size_t r = 0; r < logits.size() / static_cast<std::size_t>(vocab); ++r) {
    logits[r * static_cast<std::size_t>(vocab)] = 14.0f + normal(rng);
    logits[r * static_cast<std::size_t>(vocab) + 1] = 14.0f + normal(rng);
  }
  std::vector<float> draft(static_cast<std::size_t>(batch * width * (length - 1) * vocab));
  for (float& v : draft) v = std::log(1.0f / static_cast<float>(vocab)) + 0.1f * normal(rng);
  const auto cpu = sampling_decisions<cpu_backend, float>(beams, batch, width, length, vocab,
                                                          logits, draft, seed);
  const auto twin = sampling_decisions<thrust_host_backend, float>(beams, batch, width, length,
                                                                   vocab, logits, draft, seed);
  const auto cpu16 = sampling_decisions<cpu_backend, bfloat16>(beams, batch, width, length, vocab,
                                                               logits, draft, seed);
  const auto twin16 = sampling_decisions<thrust_host_backend, bfloat16>(beams, batch, width, length,
                                                                        vocab, logits, draft, seed);
  REQUIRE(cpu.size() == twin.size());
  std::int32_t accepted = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    CAPTURE(i);
    CHECK(twin[i].emitted_tokens == cpu[i].emitted_tokens);
    CHECK(twin[i].accepted_nodes == cpu[i].accepted_nodes);
    CHECK(twin[i].best_beam == cpu[i].best_beam);
    CHECK(twin16[i].emitted_tokens == cpu16[i].emitted_tokens);
    CHECK(twin16[i].accepted_nodes == cpu16[i].accepted_nodes);
    for (const std::int32_t a : cpu[i].accepted_len) accepted += a;
  }
  CHECK(accepted > 0);  // the walks went below the root, not only residual draws at the root
}

#endif  // REDRAFT_TEST_THRUST_HOST
