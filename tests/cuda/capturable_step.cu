// GPU test of loop/capturable_step.hpp on cuda_backend (nvcc): build() and accept() recorded
// into a CUDA graph by stream capture (which fails on any synchronisation or host read), the
// graph replayed, and every result compared with the ordinary path on the CPU backend (tree,
// acceptance, emission, KV plan) for the four verifiers with the decoder's Philox uniforms.
// Part of redraft_cuda_tests (main.cu is the runner; without a device it skips).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "redraft/cuda.cuh"
#include "redraft/loop/capturable_step.hpp"
#include "verify_test_util.hpp"

using namespace redraft;
using redraft_test::upload;

TEST_CASE("a capturable step is captured in a CUDA graph and equals the CPU's ordinary path",
          "[cuda]") {
  const cpu_backend cpu;
  const cuda_backend gpu;
  const cudaStream_t stream = gpu.context()->stream();
  for (const verifier rule :
       {verifier::greedy, verifier::lossless, verifier::typical, verifier::redrafter}) {
    std::mt19937_64 rng(3 + static_cast<std::uint64_t>(rule));
    const std::int32_t a = 3, w = 4, l = 5, vocab = 1000;
    CAPTURE(static_cast<int>(rule));
    decode_options options;
    options.rule = rule;
    options.seed = 77;
    options.sampling.temperature = 0.8f;
    options.typical.sample_next_token = true;
    const std::vector<std::int32_t> hb = redraft_test::random_beams(rng, a, w, l, 3);
    std::vector<step_request> rs;
    for (std::int32_t i = 0; i < a; ++i)
      rs.push_back({2 * i + 1, i, 10 + i, hb[static_cast<std::size_t>(i * w * l)], -1, 100});
    const index_t capacity = static_cast<index_t>(a) * (1 + w * (l - 1));
    const std::vector<float> hx = redraft_test::random_logits(rng, capacity, vocab, false);
    std::vector<float> hq(static_cast<std::size_t>(a * w * (l - 1) * vocab),
                          -std::log(static_cast<float>(vocab)));
    auto beams = upload(gpu, hb);
    auto logits = upload(gpu, hx);
    auto q = upload(gpu, hq);

    capturable_step<cuda_backend> step(gpu, {a, w, l}, tree_mask_format::both);
    step.set_requests(rs);
    gpu.synchronize();
    // The capture: any synchronisation, host read or legacy-stream work inside is an error.
    cudaGraph_t graph = nullptr;
    REQUIRE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    step.build(view<const std::int32_t, 3>(beams.data(), a, w, l));
    step.accept(matrix_view<const float>(logits.data(), capacity, vocab), {}, {}, options,
                rule == verifier::redrafter ? view<const float, 4>(q.data(), a, w, l - 1, vocab)
                                            : view<const float, 4>(),
                1);
    REQUIRE(cudaStreamEndCapture(stream, &graph) == cudaSuccess);
    cudaGraphExec_t exec = nullptr;
    REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
    step.set_requests(rs);  // capture recorded the work without running it
    REQUIRE(cudaGraphLaunch(exec, stream) == cudaSuccess);
    const step_outcome o = step.read("graph");
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);

    auto bc = upload(cpu, hb);
    const tree<cpu_backend> t = build_tree(cpu, view<const std::int32_t, 3>(bc.data(), a, w, l));
    const std::int32_t n = t.total_nodes();
    auto lc = upload(cpu, std::vector<float>(hx.begin(), hx.begin() + n * vocab));
    auto qc = upload(cpu, hq);
    const index_t draws = std::max<index_t>(2 * l, static_cast<index_t>(w) * (l - 1) + 1);
    std::vector<std::int32_t> ids;
    for (const auto& r : rs) ids.push_back(r.request);
    const std::vector<float> hu = redraft_test::decoder_uniforms(ids, options.seed, 1, draws);
    auto uc = upload(cpu, hu);
    const matrix_view<const float> lv(lc.data(), n, vocab), uv(uc.data(), a, draws);
    const view<const float, 4> qv(qc.data(), a, w, l - 1, vocab);
    const host_acceptance acc = to_host(
        cpu, rule == verifier::greedy     ? verify_greedy(cpu, t, lv)
             : rule == verifier::lossless ? verify_lossless(cpu, t, lv, options.sampling, uv)
             : rule == verifier::typical  ? verify_typical(cpu, t, lv, options.typical, uv)
                                         : verify_redrafter(cpu, t, lv, qv, options.redrafter, uv));
    CHECK(o.node_offsets == t.host_node_offsets);
    CHECK(o.acceptance.accepted_len == acc.accepted_len);
    CHECK(o.acceptance.accepted_nodes == acc.accepted_nodes);
    CHECK(o.acceptance.emitted_tokens == acc.emitted_tokens);
    CHECK(o.acceptance.next_token == acc.next_token);
    CHECK(o.acceptance.hidden_row == acc.hidden_row);
    const kv_plan plan = make_kv_plan(acc, std::vector<std::int32_t>{0, 1, 2},
                                      std::vector<std::int32_t>{10, 11, 12});
    CHECK(o.plan.offsets == plan.offsets);
    CHECK(o.plan.slot == plan.slot);
    CHECK(o.plan.source_node == plan.source_node);
    CHECK(o.plan.destination == plan.destination);
  }
}
