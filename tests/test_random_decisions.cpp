// Random decisions are bit-identical across backends for the same seeds (core/philox.hpp): the
// sampling verifiers (lossless, ReDrafter-compatible, typical with a sampled next token) draw
// their uniforms from Philox keyed by (seed, request, step), and every backend in
// tests/backends.hpp (CPU, toy, and the Thrust host system when built) must make exactly the same
// accept / reject / sample decisions on random beam trees and logits as the CPU backend. The GPU
// tests (tests/cuda/random_decisions.cu) run the same body on cuda_backend.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

#include "backends.hpp"
#include "redraft/redraft.hpp"
#include "verify_test_util.hpp"

using namespace redraft;
using redraft_test::upload;

namespace {

struct decision_inputs {
  std::int32_t batch, width, length, vocab;
  std::vector<std::int32_t> beams;  // [B, W, L]
  std::vector<float> logits;        // [B * n_max rows used as n_total, V] (sliced per tree)
  std::vector<float> draft;         // [B, W, L-1, V] log-probs
  std::uint64_t seed;
  std::uint32_t step;
};

decision_inputs make_inputs(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  decision_inputs in;
  in.batch = 1 + static_cast<std::int32_t>(rng() % 4);
  in.width = 1 + static_cast<std::int32_t>(rng() % 5);
  in.length = 2 + static_cast<std::int32_t>(rng() % 4);
  in.vocab = 3 + static_cast<std::int32_t>(rng() % 12);
  in.beams = redraft_test::random_beams(rng, in.batch, in.width, in.length, 3);
  const std::int64_t max_rows =
      static_cast<std::int64_t>(in.batch) * (1 + in.width * (in.length - 1));
  in.logits = redraft_test::random_logits(rng, max_rows, in.vocab, rng() % 2 == 0);
  // Draft log-probs: a log_softmax of random logits per (b, w, k).
  const std::int64_t rows = static_cast<std::int64_t>(in.batch) * in.width * (in.length - 1);
  in.draft = redraft_test::random_logits(rng, rows, in.vocab, false);
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = in.draft.data() + r * in.vocab;
    double sum = 0.0;
    for (std::int32_t v = 0; v < in.vocab; ++v) sum += std::exp(static_cast<double>(row[v]));
    for (std::int32_t v = 0; v < in.vocab; ++v) row[v] -= static_cast<float>(std::log(sum));
  }
  in.seed = rng();
  in.step = static_cast<std::uint32_t>(rng() % 1000);
  return in;
}

// Every sampling verifier's decisions on backend B, on the host.
template <class B>
std::vector<host_acceptance> decisions(const decision_inputs& in) {
  const B backend;
  const auto beams = upload(backend, in.beams);
  const tree<B> t =
      build_tree(backend, view<const std::int32_t, 3>(beams.data(), in.batch, in.width, in.length));
  const std::int32_t n = t.total_nodes();
  const auto logits = upload(
      backend, std::vector<float>(in.logits.begin(),
                                  in.logits.begin() + static_cast<std::ptrdiff_t>(n) * in.vocab));
  const auto draft = upload(backend, in.draft);
  const matrix_view<const float> lv(logits.data(), n, in.vocab);
  const philox_uniforms u{in.seed, in.step};

  std::vector<host_acceptance> out;
  for (const float temperature : {0.7f, 1.0f, 1.6f}) {
    sampling_params sp;
    sp.temperature = temperature;
    out.push_back(to_host(backend, verify_lossless(backend, t, lv, sp, u)));
    sp.top_k = 2;
    sp.top_p = 0.8f;
    out.push_back(to_host(backend, verify_lossless(backend, t, lv, sp, u)));
    redrafter_params rp;
    rp.temperature = temperature;
    rp.logit_top_k = 3;
    out.push_back(
        to_host(backend, verify_redrafter(backend, t, lv,
                                          view<const float, 4>(draft.data(), in.batch, in.width,
                                                               in.length - 1, in.vocab),
                                          rp, u)));
    typical_params tp;
    tp.temperature = temperature;
    tp.sample_next_token = true;
    out.push_back(to_host(backend, verify_typical(backend, t, lv, tp, u)));
  }
  return out;
}

void check_equal(const std::vector<host_acceptance>& a, const std::vector<host_acceptance>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(a[i].accepted_len == b[i].accepted_len);
    CHECK(a[i].best_beam == b[i].best_beam);
    CHECK(a[i].accepted_nodes == b[i].accepted_nodes);
    CHECK(a[i].emitted_tokens == b[i].emitted_tokens);
    CHECK(a[i].next_token == b[i].next_token);
    CHECK(a[i].hidden_row == b[i].hidden_row);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("sampling verifiers make bit-identical decisions on every backend for a seed",
                   "[verify][random][backends]", REDRAFT_TEST_NON_CPU_BACKENDS) {
  const std::uint64_t seed = GENERATE(range(1, 41));
  const decision_inputs in = make_inputs(static_cast<std::uint64_t>(seed));
  CAPTURE(seed, in.batch, in.width, in.length, in.vocab, in.seed, in.step);
  check_equal(decisions<TestType>(in), decisions<cpu_backend>(in));
}

TEST_CASE("Philox uniforms differ across seeds and steps (the decisions above are not constant)",
          "[verify][random]") {
  const auto a = decisions<cpu_backend>(make_inputs(1));
  decision_inputs other = make_inputs(1);
  bool differs = false;
  for (std::uint64_t s = 2; s < 12 && !differs; ++s) {
    other.seed = s;
    const auto b = decisions<cpu_backend>(other);
    for (std::size_t i = 0; i < a.size(); ++i)
      differs = differs || a[i].next_token != b[i].next_token;
  }
  CHECK(differs);
}
