// cuda_backend against the CPU backend where the typed tests (the other .cu files here) do not
// reach: the row primitives at engine vocabularies (exact for max / argmax / top-k, to rounding
// for sums), the cuBLAS matmul, the block-per-request verifiers on float / half / bfloat16 logits
// at large V (bit-identical decisions for the same Philox uniforms), and beam search.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "draft_test_util.hpp"
#include "redraft/cuda.cuh"
#include "redraft/draft/draft_init.hpp"
#include "verify_test_util.hpp"

using namespace redraft;
using redraft_test::upload;

namespace {

template <class B, class Buffer>
auto download(const B& backend, const Buffer& buffer) {
  using T = std::remove_const_t<std::remove_pointer_t<decltype(buffer.data())>>;
  std::vector<T> host(static_cast<std::size_t>(buffer.size()));
  if (!host.empty()) backend.copy_to_host(buffer.data(), buffer.size(), host.data());
  return host;
}

void check_close(const std::vector<float>& a, const std::vector<float>& b, double tol) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).margin(tol));
}

std::vector<float> random_matrix(std::mt19937_64& rng, index_t rows, index_t cols, bool ties) {
  return redraft_test::random_logits(rng, rows, cols, ties);
}

}  // namespace

TEST_CASE("cuda_backend row primitives equal the CPU backend's", "[cuda]") {
  const cpu_backend cpu;
  const cuda_backend gpu;
  const index_t cols = GENERATE(1, 7, 256, 1000, 32000, 128256);
  const bool ties = GENERATE(true, false);
  std::mt19937_64 rng(static_cast<std::uint64_t>(cols) * 3 + (ties ? 1 : 0));
  const index_t rows = 1 + static_cast<index_t>(rng() % 6);
  CAPTURE(rows, cols, ties);
  const auto host = random_matrix(rng, rows, cols, ties);
  auto xc = upload(cpu, host);
  auto xg = upload(gpu, host);
  const matrix_view<const float> vc(xc.data(), rows, cols), vg(xg.data(), rows, cols);
  auto mc = cpu.allocate<float>(rows);
  auto mg = gpu.allocate<float>(rows);
  cpu.row_max(vc, {mc.data(), rows});
  gpu.row_max(vg, {mg.data(), rows});
  CHECK(download(gpu, mg) == download(cpu, mc));
  auto ac = cpu.allocate<std::int32_t>(rows);
  auto ag = gpu.allocate<std::int32_t>(rows);
  cpu.row_argmax(vc, {ac.data(), rows});
  gpu.row_argmax(vg, {ag.data(), rows});
  CHECK(download(gpu, ag) == download(cpu, ac));
  for (const index_t k : {index_t{1}, std::min<index_t>(50, cols), std::min<index_t>(1500, cols)}) {
    CAPTURE(k);
    auto kc = cpu.allocate<float>(rows * k);
    auto kg = gpu.allocate<float>(rows * k);
    auto ic = cpu.allocate<std::int32_t>(rows * k);
    auto ig = gpu.allocate<std::int32_t>(rows * k);
    cpu.row_top_k(vc, static_cast<int>(k), {kc.data(), rows, k}, {ic.data(), rows, k});
    gpu.row_top_k(vg, static_cast<int>(k), {kg.data(), rows, k}, {ig.data(), rows, k});
    CHECK(download(gpu, ig) == download(cpu, ic));
    CHECK(download(gpu, kg) == download(cpu, kc));
  }
  auto sc = cpu.allocate<float>(rows);
  auto sg = gpu.allocate<float>(rows);
  cpu.row_sum(vc, {sc.data(), rows});
  gpu.row_sum(vg, {sg.data(), rows});
  check_close(download(gpu, sg), download(cpu, sc), 1e-2);
  auto lc = cpu.allocate<float>(rows * cols);
  auto lg = gpu.allocate<float>(rows * cols);
  cpu.log_softmax(vc, {lc.data(), rows, cols});
  gpu.log_softmax(vg, {lg.data(), rows, cols});
  check_close(download(gpu, lg), download(cpu, lc), 1e-5);
  auto y = upload(gpu, std::vector<std::int32_t>{3, 0, 2});
  gpu.inclusive_scan({y.data(), 3}, {y.data(), 3});
  CHECK(download(gpu, y) == std::vector<std::int32_t>{3, 3, 5});
}

TEST_CASE("cuda_backend matmul (cuBLAS) equals the CPU's", "[cuda]") {
  const cpu_backend cpu;
  const cuda_backend gpu;
  std::mt19937_64 rng(9);
  const index_t m = 37, k = 129, n = 65;
  const auto x = random_matrix(rng, m, k, false), w = random_matrix(rng, n, k, false),
             bias = random_matrix(rng, 1, n, false);
  for (const activation act : {activation::none, activation::silu}) {
    auto xc = upload(cpu, x), wc = upload(cpu, w), bc = upload(cpu, bias);
    auto xg = upload(gpu, x), wg = upload(gpu, w), bg = upload(gpu, bias);
    auto yc = cpu.allocate<float>(m * n);
    auto yg = gpu.allocate<float>(m * n);
    cpu.matmul({xc.data(), m, k}, {wc.data(), n, k}, bc.data(), act, {yc.data(), m, n});
    gpu.matmul({xg.data(), m, k}, {wg.data(), n, k}, bg.data(), act, {yg.data(), m, n});
    check_close(download(gpu, yg), download(cpu, yc), 1e-3);
  }
}

// The block-per-request sampling kernels and the greedy kernel on float, half and bfloat16 logits
// at engine vocabularies: every decision equals the CPU's for the same Philox uniforms (the
// blocked summation order makes the row sums identical, not merely close).
TEST_CASE("cuda_backend verifiers on float / half / bfloat16 logits at large V equal the CPU's",
          "[cuda][half]") {
  const cpu_backend cpu;
  const cuda_backend gpu;
  const std::int32_t vocab = GENERATE(1000, 32000, 128256);
  std::mt19937_64 rng(static_cast<std::uint64_t>(vocab));
  const std::int32_t batch = 4, width = 8, length = 5;
  CAPTURE(vocab);
  const auto beams = redraft_test::random_beams(rng, batch, width, length, 2);
  auto bc = upload(cpu, beams);
  auto bg = upload(gpu, beams);
  const auto tc = build_tree(cpu, view<const std::int32_t, 3>(bc.data(), batch, width, length));
  const auto tg = build_tree(gpu, view<const std::int32_t, 3>(bg.data(), batch, width, length));
  const std::int32_t n = tc.total_nodes();
  // Multiples of 1/8 below 32 (exact in all three types); tokens 0 and 1 favoured so paths are
  // accepted and residual draws happen deep in the tree.
  std::vector<float> logits(static_cast<std::size_t>(n) * static_cast<std::size_t>(vocab));
  for (std::size_t i = 0; i < logits.size(); ++i) {
    logits[i] = static_cast<float>(static_cast<int>(rng() % 33) - 16) / 8.0f;
    if (i % static_cast<std::size_t>(vocab) < 2) logits[i] = 16.0f + static_cast<float>(rng() % 8);
  }
  std::vector<float> draft(static_cast<std::size_t>(batch * width * (length - 1)) *
                           static_cast<std::size_t>(vocab));
  for (float& v : draft) v = -std::log(static_cast<float>(vocab));
  auto dc = upload(cpu, draft);
  auto dg = upload(gpu, draft);
  const auto same = [](const host_acceptance& a, const host_acceptance& b) {
    CHECK(a.accepted_len == b.accepted_len);
    CHECK(a.best_beam == b.best_beam);
    CHECK(a.accepted_nodes == b.accepted_nodes);
    CHECK(a.emitted_tokens == b.emitted_tokens);
    CHECK(a.next_token == b.next_token);
  };
  const auto run = [&](auto element) {
    using T = decltype(element);
    std::vector<T> converted;
    for (const float v : logits) converted.push_back(from_float<T>(v));
    auto lc = upload(cpu, converted);
    auto lg = upload(gpu, converted);
    const matrix_view<const T> vc(lc.data(), n, vocab), vg(lg.data(), n, vocab);
    same(to_host(gpu, verify_greedy(gpu, tg, vg)), to_host(cpu, verify_greedy(cpu, tc, vc)));
    for (std::uint32_t step = 0; step < 4; ++step) {
      const philox_uniforms u{99, step};
      sampling_params sp;
      sp.temperature = 1.3f;
      same(to_host(gpu, verify_lossless(gpu, tg, vg, sp, u)),
           to_host(cpu, verify_lossless(cpu, tc, vc, sp, u)));
      sp.top_k = 50;
      sp.top_p = 0.95f;
      same(to_host(gpu, verify_lossless(gpu, tg, vg, sp, u)),
           to_host(cpu, verify_lossless(cpu, tc, vc, sp, u)));
      typical_params tp;
      tp.temperature = 1.3f;
      tp.sample_next_token = step % 2 == 0;
      same(to_host(gpu, verify_typical(gpu, tg, vg, tp, u)),
           to_host(cpu, verify_typical(cpu, tc, vc, tp, u)));
      redrafter_params rp;
      rp.temperature = 1.3f;
      same(to_host(gpu,
                   verify_redrafter(
                       gpu, tg, vg,
                       view<const float, 4>(dg.data(), batch, width, length - 1, vocab), rp, u)),
           to_host(cpu,
                   verify_redrafter(
                       cpu, tc, vc,
                       view<const float, 4>(dc.data(), batch, width, length - 1, vocab), rp, u)));
    }
  };
  run(0.0f);
  run(redraft::half{});
  run(redraft::bfloat16{});
}

TEST_CASE("cuda_backend beam search equals the CPU's", "[cuda]") {
  const cpu_backend cpu;
  const cuda_backend gpu;
  const draft_config config = redraft_test::make_config(1000, 64, 64, 1, recurrence::silu);
  draft_head<cpu_backend> hc(cpu, config);
  draft_head<cuda_backend> hg(gpu, config);
  init_draft_head(hc, 7);
  for (const std::string& name : hc.parameter_names())
    hg.set_parameter(name, hc.get_parameter(name));
  std::mt19937_64 rng(3);
  const index_t batch = 4;
  const auto hidden = random_matrix(rng, batch, 64, false);
  const auto embedding = random_matrix(rng, 1000, 64, false);
  const std::vector<std::int32_t> roots{1, 5, 9, 999};
  auto h1 = upload(cpu, hidden), e1 = upload(cpu, embedding);
  auto r1 = upload(cpu, roots);
  auto h2 = upload(gpu, hidden), e2 = upload(gpu, embedding);
  auto r2 = upload(gpu, roots);
  const auto rc =
      beam_search(hc, {h1.data(), batch, 64}, {r1.data(), batch}, {e1.data(), 1000, 64}, 8, 5);
  const auto rg =
      beam_search(hg, {h2.data(), batch, 64}, {r2.data(), batch}, {e2.data(), 1000, 64}, 8, 5);
  CHECK(download(gpu, rg.beams) == download(cpu, rc.beams));
  check_close(download(gpu, rg.scores), download(cpu, rc.scores), 1e-3);
}
