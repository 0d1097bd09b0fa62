// The deferred verifiers (verify/deferred.hpp): on a backend wrapper that counts allocations,
// transfers, fills and synchronisations, a deferred call makes none of the first three kinds and
// no synchronisation, its decisions equal the ordinary verifiers', and device-side errors wait in
// the status record until check_verify_status throws them with the ordinary messages.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "backends.hpp"
#include "counting_backend.hpp"
#include "redraft/redraft.hpp"
#include "redraft/verify/deferred.hpp"
#include "verify_test_util.hpp"

using namespace redraft;
using redraft_test::counters;
using redraft_test::counting_backend;
using redraft_test::upload;

namespace {

void check_same(const host_acceptance& a, const host_acceptance& b, std::int32_t batch) {
  const auto rows = [&](const std::vector<std::int32_t>& v, std::size_t per) {
    return std::vector<std::int32_t>(v.begin(),
                                     v.begin() + static_cast<std::ptrdiff_t>(batch * per));
  };
  const std::size_t l = static_cast<std::size_t>(b.path_length);
  CHECK(rows(a.accepted_len, 1) == b.accepted_len);
  CHECK(rows(a.best_beam, 1) == b.best_beam);
  CHECK(rows(a.accepted_nodes, l) == b.accepted_nodes);
  CHECK(rows(a.emitted_tokens, l) == b.emitted_tokens);
  CHECK(rows(a.next_token, 1) == b.next_token);
  CHECK(rows(a.hidden_row, 1) == b.hidden_row);
}

}  // namespace

TEMPLATE_TEST_CASE("deferred verifiers make no allocation, transfer or synchronisation",
                   "[verify][deferred]", REDRAFT_TEST_BACKENDS) {
  using B = counting_backend<TestType>;
  const B backend;
  const std::uint64_t seed = GENERATE(1, 2, 3, 4);
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::int32_t max_batch = 4, width = 4, length = 4, vocab = 300;
  const std::int32_t max_nodes = max_batch * (1 + width * (length - 1));
  verify_workspace<B> ws(backend, max_batch, max_nodes, length);

  // Several steps through one workspace, batches of different sizes (fixed capacity).
  for (std::uint32_t step = 0; step < 3; ++step) {
    const std::int32_t batch = 1 + static_cast<std::int32_t>(rng() % max_batch);
    const auto beams = upload(backend, redraft_test::random_beams(rng, batch, width, length, 3));
    const tree<B> t =
        build_tree(backend, view<const std::int32_t, 3>(beams.data(), batch, width, length));
    const std::int32_t n = t.total_nodes();
    const auto logits = upload(backend, redraft_test::random_logits(rng, n, vocab, step % 2 == 0));
    std::vector<float> dh(static_cast<std::size_t>(batch * width * (length - 1) * vocab),
                          -std::log(static_cast<float>(vocab)));
    const auto draft = upload(backend, dh);
    const matrix_view<const float> lv(logits.data(), n, vocab);
    const view<const float, 4> dv(draft.data(), batch, width, length - 1, vocab);
    const philox_uniforms u{seed, step};
    sampling_params sp;
    sp.temperature = 0.9f;
    typical_params tp;
    tp.sample_next_token = true;
    const redrafter_params rp{};

    const auto deferred = [&](auto&& call) {
      *backend.count = counters{};
      call();
      CHECK(backend.count->total() == 0);
      const host_acceptance a = to_host(backend, ws.result());
      check_verify_status(backend, "step", ws, t);
      return a;
    };
    check_same(deferred([&] { verify_greedy_deferred(backend, t, lv, ws); }),
               to_host(backend, verify_greedy(backend, t, lv)), batch);
    check_same(deferred([&] { verify_lossless_deferred(backend, t, lv, sp, u, ws); }),
               to_host(backend, verify_lossless(backend, t, lv, sp, u)), batch);
    check_same(deferred([&] { verify_typical_deferred(backend, t, lv, tp, u, ws); }),
               to_host(backend, verify_typical(backend, t, lv, tp, u)), batch);
    check_same(deferred([&] { verify_redrafter_deferred(backend, t, lv, dv, rp, u, ws); }),
               to_host(backend, verify_redrafter(backend, t, lv, dv, rp, u)), batch);
  }
}

TEMPLATE_TEST_CASE("deferred verifiers keep device errors until check_verify_status",
                   "[verify][deferred]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::int32_t vocab = 6;
  const auto beams = upload(backend, std::vector<std::int32_t>{1, 2, 3, 1, 4, 5});
  const tree<TestType> t = build_tree(backend, view<const std::int32_t, 3>(beams.data(), 1, 2, 3));
  std::vector<float> x(static_cast<std::size_t>(t.total_nodes() * vocab), 0.5f);
  x[3] = std::nanf("");  // row 0 (the root), column 3
  const auto logits = upload(backend, x);
  const matrix_view<const float> lv(logits.data(), t.total_nodes(), vocab);
  verify_workspace<TestType> ws(backend, 2, 16, 3);

  std::string ordinary;
  try {
    verify_lossless(backend, t, lv, sampling_params{}, philox_uniforms{});
  } catch (const error& e) {
    ordinary = e.what();
  }
  REQUIRE_THAT(ordinary, Catch::Contains("logits[0, 3]"));
  CHECK_NOTHROW(verify_lossless_deferred(backend, t, lv, sampling_params{}, philox_uniforms{}, ws));
  CHECK_NOTHROW(verify_greedy_deferred(backend, t, lv, ws));  // still pending: nothing checked
  CHECK_THROWS_WITH(check_verify_status(backend, "verify_lossless", ws, t), ordinary);
  CHECK_NOTHROW(check_verify_status(backend, "verify_lossless", ws, t));  // cleared

  // What the host sees without a transfer still throws at once.
  verify_workspace<TestType> small(backend, 1, 2, 3);
  CHECK_THROWS_WITH(verify_greedy_deferred(backend, t, lv, small),
                    Catch::Contains("but the workspace holds 1 and 2"));
  verify_workspace<TestType> wrong_length(backend, 2, 16, 4);
  CHECK_THROWS_WITH(verify_greedy_deferred(backend, t, lv, wrong_length),
                    Catch::Contains("differs from the workspace's path_length 4"));
  CHECK_THROWS_WITH(verify_workspace<TestType>(backend, 4, 2, 3), Catch::Contains("max_nodes 2"));

  // The deferred forms validate their arguments exactly as the ordinary verifiers do (they share
  // the checks): typical's epsilon and delta, and ReDrafter's need for full beams.
  CHECK_THROWS_WITH(
      verify_typical_deferred(backend, t, lv, typical_params{1.0f, -0.1f, 0.3f, false},
                              philox_uniforms{}, ws),
      Catch::Contains("verify_typical_deferred: epsilon -0.1"));
  const auto lengths = upload(backend, std::vector<std::int32_t>{3, 2});
  const tree<TestType> short_tree =
      build_tree(backend, view<const std::int32_t, 3>(beams.data(), 1, 2, 3),
                 matrix_view<const std::int32_t>(lengths.data(), 1, 2));
  const std::vector<float> q(static_cast<std::size_t>(2 * 2 * vocab), -1.0f);  // [1, 2, 2, V]
  CHECK_THROWS_WITH(
      verify_redrafter_deferred(
          backend, short_tree,
          matrix_view<const float>(logits.data(), short_tree.total_nodes(), vocab),
          view<const float, 4>(q.data(), 1, 2, 2, vocab), redrafter_params{}, philox_uniforms{},
          ws),
      Catch::Contains("verify_redrafter_deferred: the tree was built with beam_lengths"));
}
