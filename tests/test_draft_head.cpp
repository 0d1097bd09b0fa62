// Tests of the draft head's forward against the naive double reference
// (testing/reference_draft.hpp) for every recurrence, with and without the input projection, on
// every backend.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <random>
#include <type_traits>
#include <vector>

#include "backends.hpp"
#include "draft_test_util.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/draft_head.hpp"
#include "redraft/testing/reference_draft.hpp"
#include "toy_backend.hpp"

namespace {

template <class B, class T>
typename B::template buffer<T> upload(const B& b, const std::vector<T>& host) {
  auto buf = b.template allocate<T>(static_cast<redraft::index_t>(host.size()));
  b.copy_from_host(host.data(), static_cast<redraft::index_t>(host.size()), buf.data());
  return buf;
}

template <class B, class Buffer>
std::vector<float> download(const B& b, const Buffer& buf) {
  std::vector<float> host(static_cast<std::size_t>(buf.size()));
  b.copy_to_host(buf.data(), buf.size(), host.data());
  return host;
}

// |a - e| <= rel * max(1, |e|)
void check_close(const std::vector<float>& actual, const std::vector<double>& expected, double rel,
                 const char* what) {
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    CAPTURE(what, i, actual[i], expected[i]);
    REQUIRE(std::abs(actual[i] - expected[i]) <= rel * std::max(1.0, std::abs(expected[i])));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("draft_head: forward matches the double reference", "[draft]",
                   REDRAFT_TEST_BACKENDS) {
  using redraft::index_t;
  const auto rec = GENERATE(redraft::recurrence::silu, redraft::recurrence::linear,
                            redraft::recurrence::running_sum);
  const bool input_proj = GENERATE(true, false);
  const std::int64_t layers = GENERATE(0, 2);
  const std::int64_t top_k = GENERATE(7, 50, 1000);  // 1000 > V: no warp
  const std::uint32_t seed = GENERATE(1u, 2u);
  const std::int64_t v = 97, h = 6, e = input_proj ? 20 : 2 * h;
  CAPTURE(redraft::recurrence_name(rec), input_proj, layers, top_k, seed);

  const redraft::draft_config config = redraft_test::make_config(v, h, e, layers, rec, top_k);
  const auto weights = redraft_test::random_weights(config, seed);
  TestType backend;
  const auto head = redraft::make_draft_head(backend, config, weights);
  REQUIRE(head.config().has_input_proj() == input_proj);

  const index_t rows = 6, hidden_rows = 2;  // every hidden row serves 3 consecutive rows
  std::mt19937 rng(seed + 100);
  const auto hidden = redraft_test::random_values(hidden_rows * h, 1.0, rng);
  auto hidden_buf = upload(backend, hidden);
  auto state_buf = backend.template allocate<float>(rows * h);
  backend.fill(state_buf.data(), rows * h, 0.0f);
  auto embedded_buf = backend.template allocate<float>(rows * h);
  auto log_probs_buf = backend.template allocate<float>(rows * v);
  redraft::draft_head_workspace<TestType> ws;

  std::vector<std::vector<double>> ref_state(rows, std::vector<double>(h, 0.0));
  for (int step = 0; step < 3; ++step) {
    CAPTURE(step);
    const auto embedded = redraft_test::random_values(rows * h, 1.0, rng);
    backend.copy_from_host(embedded.data(), rows * h, embedded_buf.data());
    redraft::matrix_view<float> state(state_buf.data(), rows, h);
    head.advance_state(redraft::matrix_view<const float>(embedded_buf.data(), rows, h), state,
                       state, ws);
    head.log_probs(redraft::matrix_view<const float>(hidden_buf.data(), hidden_rows, h), state,
                   redraft::matrix_view<float>(log_probs_buf.data(), rows, v), ws);

    std::vector<double> expected_state, expected_log_probs;
    for (index_t r = 0; r < rows; ++r) {
      const std::vector<double> e_row(embedded.begin() + r * h, embedded.begin() + (r + 1) * h);
      ref_state[r] = redraft::testing::reference_draft_state(config, weights, e_row, ref_state[r]);
      expected_state.insert(expected_state.end(), ref_state[r].begin(), ref_state[r].end());
      const index_t hr = r / (rows / hidden_rows);
      const std::vector<double> h_row(hidden.begin() + hr * h, hidden.begin() + (hr + 1) * h);
      const auto lp =
          redraft::testing::reference_draft_log_probs(config, weights, h_row, ref_state[r]);
      expected_log_probs.insert(expected_log_probs.end(), lp.begin(), lp.end());
    }
    check_close(download(backend, state_buf), expected_state, 1e-5, "state");
    const auto log_probs = download(backend, log_probs_buf);
    check_close(log_probs, expected_log_probs, 1e-4, "log_probs");
    // Exactly min(k, V) entries per row survive the warp (random logits have no ties).
    for (index_t r = 0; r < rows; ++r) {
      index_t alive = 0;
      for (index_t c = 0; c < v; ++c) alive += log_probs[r * v + c] > -1000.0f;
      CHECK(alive == std::min<index_t>(top_k, v));
    }
  }
}

TEMPLATE_TEST_CASE("draft_head: the top-k warp keeps ties with the k-th largest", "[draft]",
                   REDRAFT_TEST_BACKENDS) {
  // V = 6, E = 2H = 2, N = 0, running sum: logits = lm_head * concat(h, s). With lm_head rows
  // (a, 0) and h = 1 the logits are the first column: 3, 1, 2, 2, 0, 2 -> with k = 3 the third
  // largest is 2, so the three 2s all survive and 1, 0 are masked.
  const auto config = redraft_test::make_config(6, 1, 2, 0, redraft::recurrence::running_sum, 3);
  TestType backend;
  redraft::draft_head<TestType> head(backend, config);
  head.set_parameter("lm_head.0.weight", {3, 0, 1, 0, 2, 0, 2, 0, 0, 0, 2, 0});
  std::vector<float> one = {1.0f}, zero = {0.0f};
  auto h = upload(backend, one);
  auto s = upload(backend, zero);
  auto out = backend.template allocate<float>(6);
  redraft::draft_head_workspace<TestType> ws;
  head.log_probs(redraft::matrix_view<const float>(h.data(), 1, 1),
                 redraft::matrix_view<const float>(s.data(), 1, 1),
                 redraft::matrix_view<float>(out.data(), 1, 6), ws);
  const auto lp = download(backend, out);
  const double lse = std::log(std::exp(0.0) + 3 * std::exp(-1.0));  // after subtracting max 3
  CHECK(lp[0] == Approx(-lse));
  CHECK(lp[2] == Approx(-1.0 - lse));
  CHECK(lp[3] == Approx(-1.0 - lse));
  CHECK(lp[5] == Approx(-1.0 - lse));
  CHECK(lp[1] == Approx(-50000.0 - lse));
  CHECK(lp[4] == Approx(-50000.0 - lse));
}

TEMPLATE_TEST_CASE("draft_head: the warp's normaliser counts ties past the k-th in every slice",
                   "[draft]", REDRAFT_TEST_BACKENDS) {
  // V = 700 columns (three slices of the normaliser's first pass), logits = the first column of
  // lm_head as in the test above. Ties with the k-th largest lie in every slice, most of them past
  // the top-k list; with kth = 0 half of them are -0, which ties with +0.
  const bool zero_kth = GENERATE(false, true);
  CAPTURE(zero_kth);
  const redraft::index_t v = 700, k = 5;
  const float tie = zero_kth ? 0.0f : 2.0f;
  std::vector<float> logits(static_cast<std::size_t>(v), -3.0f);
  logits[0] = 4.0f;
  logits[1] = logits[300] = logits[650] = 3.0f;
  redraft::index_t ties = 0;
  for (redraft::index_t c = 10; c < v; c += 7) {
    if (logits[static_cast<std::size_t>(c)] != -3.0f) continue;
    logits[static_cast<std::size_t>(c)] = zero_kth && ties % 2 == 1 ? -0.0f : tie;
    ++ties;
  }
  std::vector<float> lm_head(static_cast<std::size_t>(2 * v), 0.0f);
  for (redraft::index_t c = 0; c < v; ++c) lm_head[static_cast<std::size_t>(2 * c)] = logits[c];
  const auto config = redraft_test::make_config(v, 1, 2, 0, redraft::recurrence::running_sum, k);
  const auto run = [&](auto backend) {
    using B = decltype(backend);
    redraft::draft_head<B> head(backend, config);
    head.set_parameter("lm_head.0.weight", lm_head);
    std::vector<float> one = {1.0f}, zero = {0.0f};
    auto h = upload(backend, one);
    auto s = upload(backend, zero);
    auto out = backend.template allocate<float>(v);
    redraft::draft_head_workspace<B> ws;
    head.log_probs(redraft::matrix_view<const float>(h.data(), 1, 1),
                   redraft::matrix_view<const float>(s.data(), 1, 1),
                   redraft::matrix_view<float>(out.data(), 1, v), ws);
    return download(backend, out);
  };
  const auto lp = run(TestType{});
  // After subtracting the max 4: one 0, three -1, `ties` entries at tie - 4.
  const double lse = std::log(1.0 + 3 * std::exp(-1.0) + ties * std::exp(tie - 4.0));
  for (redraft::index_t c = 0; c < v; ++c) {
    const float x = logits[static_cast<std::size_t>(c)];
    CAPTURE(c, x);
    const double expected = x < tie ? -50000.0 - lse : (x - 4.0) - lse;
    CHECK(lp[static_cast<std::size_t>(c)] == Approx(expected).epsilon(1e-6));
  }
  // The same bits as the CPU backend: the normaliser's sum has one order on every backend (for
  // the CPU backend itself, a second run: determinism).
  CHECK(lp == run(redraft::cpu_backend{}));
}

TEST_CASE("draft_head: a NaN among the warp's survivors makes the normaliser NaN", "[draft]") {
  // One row of 600 columns, top-2 list {1, 0}: a NaN past the list survives (!(NaN < 0)), as in a
  // sum over the survivors; NaNs only in the list are counted once.
  const redraft::index_t v = 600;
  std::vector<float> z(static_cast<std::size_t>(v), -1.0f);
  z[5] = 0.0f;
  z[7] = 1.0f;
  const std::vector<float> top = {1.0f, 0.0f};
  const auto log_sum = [&](const std::vector<float>& row) {
    const redraft::index_t slices = redraft::detail::warp_slices(v);
    std::vector<std::int32_t> counts(static_cast<std::size_t>(2 * slices));
    const redraft::matrix_view<const float> zv(row.data(), 1, v), tv(top.data(), 1, 2);
    const redraft::matrix_view<std::int32_t> cv(counts.data(), 1, 2 * slices);
    for (redraft::index_t c = 0; c < slices; ++c)
      redraft::detail::warp_survivor_counts{zv, tv, cv}(c);
    float out = 0.0f;
    redraft::detail::warp_log_sum{tv, cv, &out}(0);
    return out;
  };
  CHECK(log_sum(z) == Approx(std::log(1.0 + std::exp(-1.0))));
  z[555] = std::nanf("");
  CHECK(std::isnan(log_sum(z)));
}

TEST_CASE("draft_head: bad configs and parameters throw", "[draft]") {
  redraft::cpu_backend backend;
  using redraft::recurrence;
  CHECK_THROWS_WITH(redraft::draft_head<redraft::cpu_backend>(
                        backend, redraft_test::make_config(0, 4, 8, 1, recurrence::silu)),
                    Catch::Contains("vocab_size 0"));
  CHECK_THROWS_WITH(redraft::draft_head<redraft::cpu_backend>(
                        backend, redraft_test::make_config(10, 4, 8, -1, recurrence::silu)),
                    Catch::Contains("num_draft_layers -1"));
  CHECK_THROWS_WITH(redraft::draft_head<redraft::cpu_backend>(
                        backend, redraft_test::make_config(10, 4, 8, 1, recurrence::silu, 0)),
                    Catch::Contains("logit_top_k 0"));
  auto bad_mask = redraft_test::make_config(10, 4, 8, 1, recurrence::silu);
  bad_mask.logit_mask_value = 1.0f;
  CHECK_THROWS_WITH(redraft::draft_head<redraft::cpu_backend>(backend, bad_mask),
                    Catch::Contains("logit_mask_value"));

  redraft::draft_head<redraft::cpu_backend> head(
      backend, redraft_test::make_config(10, 4, 8, 1, recurrence::running_sum));
  CHECK_FALSE(head.has_parameter("rnn_u.weight"));
  CHECK_FALSE(head.has_parameter("input_proj.weight"));  // E == 2H
  CHECK(head.parameter_names() == std::vector<std::string>{"lm_head.0.linear.weight",
                                                           "lm_head.0.linear.bias",
                                                           "lm_head.1.weight"});
  CHECK_THROWS_WITH(head.set_parameter("lm_head.0.linear.bias", std::vector<float>(7)),
                    Catch::Contains("'lm_head.0.linear.bias' has 8 elements but 7 values"));
  CHECK_THROWS_WITH(head.get_parameter("rnn_u.weight"),
                    Catch::Contains("no parameter 'rnn_u.weight'"));

  // Forward shape checks.
  redraft::draft_head_workspace<redraft::cpu_backend> ws;
  std::vector<float> x(64), y(64);
  CHECK_THROWS_WITH(head.log_probs(redraft::matrix_view<const float>(x.data(), 2, 4),
                                   redraft::matrix_view<const float>(x.data(), 3, 4),
                                   redraft::matrix_view<float>(y.data(), 3, 10), ws),
                    Catch::Contains("hidden has 2 rows, which must divide the 3 rows"));
  CHECK_THROWS_WITH(head.log_probs(redraft::matrix_view<const float>(x.data(), 1, 4),
                                   redraft::matrix_view<const float>(x.data(), 2, 4),
                                   redraft::matrix_view<float>(y.data(), 2, 9), ws),
                    Catch::Contains("must be [2, 10]"));
  CHECK_THROWS_WITH(head.advance_state(redraft::matrix_view<const float>(x.data(), 2, 3),
                                       redraft::matrix_view<const float>(x.data(), 2, 4),
                                       redraft::matrix_view<float>(y.data(), 2, 4), ws),
                    Catch::Contains("4 columns (hidden_size)"));
}

TEMPLATE_TEST_CASE("draft_head: F16 and BF16 weights give the F32 head's output on the same values",
                   "[draft][half]", REDRAFT_TEST_BACKENDS) {
  // A head in format F has weight matrices of F values. Stored 16-bit (CPU) or as floats (a
  // backend without half products), the products see the same values and accumulate in float,
  // so the output equals an F32 head loaded with the rounded values: bit for bit on the CPU,
  // where both go through packed_matmul; within float rounding elsewhere. The double reference on
  // the rounded values bounds both.
  using redraft::index_t;
  const redraft::weight_format format =
      GENERATE(redraft::weight_format::f16, redraft::weight_format::bf16);
  CAPTURE(redraft::weight_format_name(format));
  const index_t v = 131, h = 12, e = 40, rows = 5;
  const auto config = redraft_test::make_config(v, h, e, 1, redraft::recurrence::silu, 20);
  auto weights = redraft_test::random_weights(config, 9);
  for (auto& [name, t] : weights) {
    if (t.shape.size() != 2) continue;
    for (float& x : t.values)
      x = format == redraft::weight_format::f16 ? redraft::to_float(redraft::to_float16(x))
                                                : redraft::to_float(redraft::to_bfloat16(x));
  }
  TestType backend;
  const auto half_head = redraft::make_draft_head(backend, config, weights, "tensors", format);
  const auto float_head =
      redraft::make_draft_head(backend, config, weights, "tensors", redraft::weight_format::f32);
  REQUIRE(half_head.format() == format);
  const bool keeps_half =
      format == redraft::weight_format::f16
          ? redraft::backend_prefers_half_weights_v<TestType, redraft::float16>
          : redraft::backend_prefers_half_weights_v<TestType, redraft::bfloat16>;
  if (keeps_half) {
    REQUIRE(half_head.stored_format() == format);
    REQUIRE_THROWS_WITH(half_head.parameter_view("lm_head.1.weight"),
                        Catch::Contains("use get_parameter"));
  } else {
    REQUIRE(half_head.stored_format() == redraft::weight_format::f32);
  }
  // get_parameter returns the stored values exactly.
  for (const auto& [name, t] : weights) {
    CAPTURE(name);
    REQUIRE(half_head.get_parameter(name) == t.values);
  }

  std::mt19937 rng(3);
  const auto hidden = redraft_test::random_values(rows * h, 1.0, rng);
  const auto embedded = redraft_test::random_values(rows * h, 1.0, rng);
  const auto run = [&](const redraft::draft_head<TestType>& head) {
    auto hidden_buf = upload(backend, hidden);
    auto embedded_buf = upload(backend, embedded);
    auto state_buf = backend.template allocate<float>(rows * h);
    backend.fill(state_buf.data(), rows * h, 0.0f);
    auto log_probs_buf = backend.template allocate<float>(rows * v);
    redraft::draft_head_workspace<TestType> ws;
    redraft::matrix_view<float> state(state_buf.data(), rows, h);
    head.advance_state(redraft::matrix_view<const float>(embedded_buf.data(), rows, h), state,
                       state, ws);
    head.log_probs(redraft::matrix_view<const float>(hidden_buf.data(), rows, h), state,
                   redraft::matrix_view<float>(log_probs_buf.data(), rows, v), ws);
    return download(backend, log_probs_buf);
  };
  const auto half_out = run(half_head);
  const auto float_out = run(float_head);
  if constexpr (std::is_same_v<TestType, redraft::cpu_backend>) {
    REQUIRE(half_out == float_out);
  }
  std::vector<double> expected;
  for (index_t r = 0; r < rows; ++r) {
    const std::vector<double> e_row(embedded.begin() + r * h, embedded.begin() + (r + 1) * h);
    const std::vector<double> h_row(hidden.begin() + r * h, hidden.begin() + (r + 1) * h);
    const auto s = redraft::testing::reference_draft_state(
        config, weights, e_row, std::vector<double>(static_cast<std::size_t>(h), 0.0));
    const auto lp = redraft::testing::reference_draft_log_probs(config, weights, h_row, s);
    expected.insert(expected.end(), lp.begin(), lp.end());
  }
  check_close(half_out, expected, 1e-4, "log_probs (half)");
  check_close(float_out, expected, 1e-4, "log_probs (float)");

  SECTION("set_parameter rounds to the format") {
    auto head = redraft::make_draft_head(backend, config, weights, "tensors", format);
    std::vector<float> values(static_cast<std::size_t>(h * h),
                              1.0f + 1.0f / 4096.0f);  // not a half value
    head.set_parameter("rnn_u.weight", values);
    const float rounded = format == redraft::weight_format::f16
                              ? redraft::to_float(redraft::to_float16(values[0]))
                              : redraft::to_float(redraft::to_bfloat16(values[0]));
    REQUIRE(rounded != values[0]);
    for (float x : head.get_parameter("rnn_u.weight")) REQUIRE(x == rounded);
  }
}

namespace {
// The CPU backend as built without a hardware F16 conversion sees it: F16 products offered
// (clause 9), F16 weights declined.
struct cpu_backend_declining_f16 : redraft::cpu_backend {
  template <class W>
  static constexpr bool prefers_half_weights = !std::is_same_v<W, redraft::float16>;
};
// ... and as built with one (AVX-512F or F16C), whatever this build's target.
struct cpu_backend_keeping_f16 : redraft::cpu_backend {
  template <class W>
  static constexpr bool prefers_half_weights = true;
};
}  // namespace

TEST_CASE("draft_head keeps F16 weights as floats where the backend declines them, same output",
          "[draft][half]") {
  using redraft::float16;
  using redraft::index_t;
  STATIC_REQUIRE(redraft::backend_has_half_matmul_v<cpu_backend_declining_f16, float16>);
  STATIC_REQUIRE_FALSE(redraft::backend_prefers_half_weights_v<cpu_backend_declining_f16, float16>);
  STATIC_REQUIRE(
      redraft::backend_prefers_half_weights_v<cpu_backend_declining_f16, redraft::bfloat16>);
  // The CPU backend declines F16 exactly where simd_isa has no hardware F16 conversion.
  STATIC_REQUIRE(redraft::backend_prefers_half_weights_v<redraft::cpu_backend, float16> ==
                 redraft::detail::simd_isa::fast_f16);
  STATIC_REQUIRE(redraft::backend_prefers_half_weights_v<redraft::cpu_backend, redraft::bfloat16>);

  const index_t v = 131, h = 12, e = 40, rows = 5;
  const auto config = redraft_test::make_config(v, h, e, 1, redraft::recurrence::silu, 20);
  auto weights = redraft_test::random_weights(config, 11);
  for (auto& [name, t] : weights)
    if (t.shape.size() == 2)
      for (float& x : t.values) x = redraft::to_float(redraft::to_float16(x));
  const auto declined = redraft::make_draft_head(cpu_backend_declining_f16{}, config, weights,
                                                 "tensors", redraft::weight_format::f16);
  REQUIRE(declined.format() == redraft::weight_format::f16);
  REQUIRE(declined.stored_format() == redraft::weight_format::f32);
  for (const auto& [name, t] : weights) REQUIRE(declined.get_parameter(name) == t.values);

  // F16 weights held as F16 (a one-instruction conversion in every product) and as floats give
  // the same bits: each product widens the same values and accumulates in the same order.
  const auto kept = redraft::make_draft_head(cpu_backend_keeping_f16{}, config, weights, "tensors",
                                             redraft::weight_format::f16);
  REQUIRE(kept.stored_format() == redraft::weight_format::f16);
  std::mt19937 rng(5);
  const auto hidden = redraft_test::random_values(rows * h, 1.0, rng);
  const auto embedded = redraft_test::random_values(rows * h, 1.0, rng);
  const auto run = [&](const auto& head) {
    std::vector<float> state(static_cast<std::size_t>(rows * h), 0.0f);
    std::vector<float> log_probs(static_cast<std::size_t>(rows * v));
    redraft::draft_head_workspace<std::remove_cvref_t<decltype(head.backend())>> ws;
    redraft::matrix_view<float> state_view(state.data(), rows, h);
    head.advance_state(redraft::matrix_view<const float>(embedded.data(), rows, h), state_view,
                       state_view, ws);
    head.log_probs(redraft::matrix_view<const float>(hidden.data(), rows, h), state_view,
                   redraft::matrix_view<float>(log_probs.data(), rows, v), ws);
    return log_probs;
  };
  REQUIRE(run(declined) == run(kept));
}

TEST_CASE("load_draft_head keeps the checkpoint's stored format", "[draft][half][io]") {
  const auto config = redraft_test::make_config(50, 8, 16, 1, redraft::recurrence::silu, 10);
  const auto head = redraft::make_draft_head(redraft::cpu_backend{}, config,
                                             redraft_test::random_weights(config, 2));
  REQUIRE(head.format() == redraft::weight_format::f32);  // F32 tensors
  const auto dir = std::filesystem::temp_directory_path() / "redraft_test_draft_head_f16";
  for (const auto dtype : {redraft::safetensors_dtype::f16, redraft::safetensors_dtype::bf16}) {
    redraft::save_draft_head(head, dir, dtype);
    const auto loaded = redraft::load_draft_head(redraft::cpu_backend{}, dir);
    const auto expected = dtype == redraft::safetensors_dtype::f16 ? redraft::weight_format::f16
                                                                   : redraft::weight_format::bf16;
    REQUIRE(loaded.format() == expected);
    const bool keeps_half =
        dtype == redraft::safetensors_dtype::f16
            ? redraft::backend_prefers_half_weights_v<redraft::cpu_backend, redraft::float16>
            : redraft::backend_prefers_half_weights_v<redraft::cpu_backend, redraft::bfloat16>;
    REQUIRE(loaded.stored_format() == (keeps_half ? expected : redraft::weight_format::f32));
    REQUIRE(redraft::load_draft_head(redraft::cpu_backend{}, dir, redraft::weight_format::f32)
                .format() == redraft::weight_format::f32);
  }
  std::filesystem::remove_all(dir);
}

TEMPLATE_TEST_CASE("draft_head: a backend with packed weights holds the matrices packed only",
                   "[draft][packed]", REDRAFT_TEST_BACKENDS) {
  // On the CPU (Backend clause 11) every weight matrix lives in packed_matmul's panels: no
  // float view of it remains, get_parameter unpacks the exact values, and each row of the
  // forward is the same function of its inputs whatever the number of rows, also above 64 rows
  // (where an unpacked float product would switch to Eigen's GEMM and its summation order).
  using redraft::index_t;
  const redraft::weight_format format =
      GENERATE(redraft::weight_format::f32, redraft::weight_format::f16);
  CAPTURE(redraft::weight_format_name(format));
  const index_t v = 131, h = 12, e = 40, rows = 70;
  const auto config = redraft_test::make_config(v, h, e, 1, redraft::recurrence::silu, 20);
  auto weights = redraft_test::random_weights(config, 11);
  for (auto& [name, t] : weights) {
    if (t.shape.size() != 2 || format != redraft::weight_format::f16) continue;
    for (float& x : t.values) x = redraft::to_float(redraft::to_float16(x));
  }
  TestType backend;
  const auto head = redraft::make_draft_head(backend, config, weights, "tensors", format);
  constexpr bool packs = redraft::backend_has_packed_matmul_v<TestType, float>;
  if constexpr (packs) {
    REQUIRE_THROWS_WITH(head.parameter_view("lm_head.1.weight"), Catch::Contains("stored packed"));
    REQUIRE(head.parameter_view("rnn_u.bias").extent(1) == h);  // biases stay float buffers
  }
  for (const auto& [name, t] : weights) {
    CAPTURE(name);
    REQUIRE(head.get_parameter(name) == t.values);
  }

  std::mt19937 rng(5);
  const auto hidden = redraft_test::random_values(rows * h, 1.0, rng);
  const auto state = redraft_test::random_values(rows * h, 1.0, rng);
  redraft::draft_head_workspace<TestType> ws;
  // log_probs of rows [first, first + count) alone.
  const auto run = [&](index_t first, index_t count) {
    auto hidden_buf = upload(backend, std::vector<float>(hidden.begin() + first * h,
                                                         hidden.begin() + (first + count) * h));
    auto state_buf = upload(backend, std::vector<float>(state.begin() + first * h,
                                                        state.begin() + (first + count) * h));
    auto log_probs_buf = backend.template allocate<float>(count * v);
    head.log_probs(redraft::matrix_view<const float>(hidden_buf.data(), count, h),
                   redraft::matrix_view<const float>(state_buf.data(), count, h),
                   redraft::matrix_view<float>(log_probs_buf.data(), count, v), ws);
    return download(backend, log_probs_buf);
  };
  const std::vector<float> all = run(0, rows);
  std::vector<double> expected;
  for (index_t r = 0; r < rows; ++r) {
    const std::vector<double> h_row(hidden.begin() + r * h, hidden.begin() + (r + 1) * h);
    const std::vector<double> s_row(state.begin() + r * h, state.begin() + (r + 1) * h);
    const auto lp = redraft::testing::reference_draft_log_probs(config, weights, h_row, s_row);
    expected.insert(expected.end(), lp.begin(), lp.end());
  }
  check_close(all, expected, 1e-4, "log_probs");
  if constexpr (packs) {
    for (const index_t r : {index_t{0}, index_t{33}, rows - 1}) {
      CAPTURE(r);
      const std::vector<float> alone = run(r, 1);
      REQUIRE(std::equal(alone.begin(), alone.end(), all.begin() + r * v));
    }
  }
}
