// Tests of beam_search: against the naive double reference on every backend, with and without
// log-probs, with a reused workspace, against the golden cases through a saved checkpoint, and
// every bad input.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "backends.hpp"
#include "draft_test_util.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/beam_search.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/testing/reference_draft.hpp"
#include "toy_backend.hpp"

namespace {

using redraft::index_t;

template <class B, class T>
typename B::template buffer<T> upload(const B& b, const std::vector<T>& host) {
  auto buf = b.template allocate<T>(static_cast<index_t>(host.size()));
  b.copy_from_host(host.data(), static_cast<index_t>(host.size()), buf.data());
  return buf;
}

template <class T, class B, class Buffer>
std::vector<T> download(const B& b, const Buffer& buf) {
  std::vector<T> host(static_cast<std::size_t>(buf.size()));
  b.copy_to_host(buf.data(), buf.size(), host.data());
  return host;
}

// Everything a beam search call needs, in backend memory.
template <class B>
struct beam_inputs {
  std::vector<float> embedding, hidden;
  std::vector<std::int32_t> roots;
  typename B::template buffer<float> embedding_buf, hidden_buf;
  typename B::template buffer<std::int32_t> roots_buf;

  beam_inputs(const B& b, const redraft::draft_config& c, index_t batch, std::uint32_t seed) {
    std::mt19937 rng(seed);
    embedding = redraft_test::random_values(static_cast<std::size_t>(c.vocab_size * c.hidden_size),
                                            1.0, rng);
    hidden = redraft_test::random_values(static_cast<std::size_t>(batch * c.hidden_size), 1.0, rng);
    for (index_t i = 0; i < batch; ++i)
      roots.push_back(static_cast<std::int32_t>(rng() % static_cast<std::uint32_t>(c.vocab_size)));
    embedding_buf = upload(b, embedding);
    hidden_buf = upload(b, hidden);
    roots_buf = upload(b, roots);
  }
  redraft::matrix_view<const float> hidden_view(index_t h) const {
    return {hidden_buf.data(), static_cast<index_t>(roots.size()), h};
  }
  redraft::vector_view<const std::int32_t> roots_view() const {
    return {roots_buf.data(), static_cast<index_t>(roots.size())};
  }
  redraft::matrix_view<const float> embedding_view(index_t v, index_t h) const {
    return {embedding_buf.data(), v, h};
  }
};

void check_close(const std::vector<float>& actual, const std::vector<double>& expected, double rel,
                 const char* what) {
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    CAPTURE(what, i, actual[i], expected[i]);
    REQUIRE(std::abs(actual[i] - expected[i]) <= rel * std::max(1.0, std::abs(expected[i])));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("beam_search: matches the naive reference", "[draft][beam_search]",
                   REDRAFT_TEST_BACKENDS) {
  const auto rec = GENERATE(redraft::recurrence::silu, redraft::recurrence::linear,
                            redraft::recurrence::running_sum);
  const bool input_proj = GENERATE(true, false);
  const index_t width = GENERATE(1, 3, 8);
  const index_t length = GENERATE(2, 4);
  const index_t batch = GENERATE(1, 3);
  const std::uint32_t seed = GENERATE(11u, 12u);
  const index_t v = 61, h = 5, e = input_proj ? 12 : 2 * h, top_k = 10;
  CAPTURE(redraft::recurrence_name(rec), input_proj, width, length, batch, seed);

  const auto config = redraft_test::make_config(v, h, e, 1, rec, top_k);
  const auto weights = redraft_test::random_weights(config, seed);
  TestType backend;
  const auto head = redraft::make_draft_head(backend, config, weights);
  const beam_inputs<TestType> in(backend, config, batch, seed + 7);

  const auto ref = redraft::testing::reference_beam_search(config, weights, in.embedding, in.hidden,
                                                           in.roots, width, length);
  CAPTURE(ref.min_gap);
  const auto got =
      redraft::beam_search(head, in.hidden_view(h), in.roots_view(), in.embedding_view(v, h), width,
                           length, redraft::beam_search_options{.want_log_probs = true});
  REQUIRE(got.beams.size() == batch * width * length);
  const auto beams = download<std::int32_t>(backend, got.beams);
  // NOTE: float and double may order two candidates differently only when they are within
  // rounding of each other; random weights almost never do that, and the seeds here do not.
  REQUIRE(ref.min_gap > 1e-4);
  CHECK(beams == ref.beams);
  check_close(download<float>(backend, got.scores), ref.scores, 1e-4, "scores");
  check_close(download<float>(backend, got.log_probs), ref.log_probs, 1e-4, "log_probs");
  // Scores sorted descending within each request, and equal to the sum of the chosen log-probs.
  const auto scores = download<float>(backend, got.scores);
  const auto lp = download<float>(backend, got.log_probs);
  for (index_t b = 0; b < batch; ++b)
    for (index_t w = 0; w < width; ++w) {
      if (w > 0) CHECK(scores[b * width + w] <= scores[b * width + w - 1]);
      double sum = 0.0;
      for (index_t k = 0; k + 1 < length; ++k) {
        const auto token = beams[(b * width + w) * length + k + 1];
        sum += lp[((b * width + w) * (length - 1) + k) * v + token];
      }
      CHECK(scores[b * width + w] == Approx(sum).epsilon(1e-5));
    }

  // Without log-probs: same beams and scores, no log-probs; a reused workspace changes nothing.
  redraft::beam_search_workspace<TestType> ws;
  for (int call = 0; call < 2; ++call) {
    const auto lean = redraft::beam_search(head, in.hidden_view(h), in.roots_view(),
                                           in.embedding_view(v, h), width, length, {}, &ws);
    CHECK(lean.log_probs.size() == 0);
    CHECK(download<std::int32_t>(backend, lean.beams) == beams);
    CHECK(download<float>(backend, lean.scores) == scores);
  }
}

TEMPLATE_TEST_CASE("beam_search: each beam's top W, merged, is the top W of the request's row",
                   "[draft][beam_search]", REDRAFT_TEST_BACKENDS) {
  // Candidates drawn from five values (+0 and -0 among them), so ties cross beams and the W-th
  // place: the merge must give row_top_k over each request's whole W*V row, bit for bit.
  const index_t width = GENERATE(1, 2, 5);
  const index_t batch = 3, v = 13, rows = batch * width;
  const std::uint32_t seed = GENERATE(1u, 2u, 3u);
  CAPTURE(width, seed);
  const float pool[] = {1.5f, 0.0f, -0.0f, -2.0f, -50000.0f};
  std::mt19937 rng(seed);
  std::vector<float> candidates(static_cast<std::size_t>(rows * v));
  for (float& c : candidates) c = pool[rng() % 5];
  TestType backend;
  const auto x = upload(backend, candidates);
  auto beam_values = backend.template allocate<float>(rows * width);
  auto beam_tokens = backend.template allocate<std::int32_t>(rows * width);
  auto merged_values = backend.template allocate<float>(batch * width);
  auto merged_indices = backend.template allocate<std::int32_t>(batch * width);
  backend.row_top_k(redraft::matrix_view<const float>(x.data(), rows, v), static_cast<int>(width),
                    redraft::matrix_view<float>(beam_values.data(), rows, width),
                    redraft::matrix_view<std::int32_t>(beam_tokens.data(), rows, width));
  backend.for_each_index(
      rows * width,
      redraft::detail::merge_beam_tops{
          redraft::matrix_view<const float>(beam_values.data(), rows, width),
          redraft::matrix_view<const std::int32_t>(beam_tokens.data(), rows, width),
          redraft::matrix_view<float>(merged_values.data(), batch, width),
          redraft::matrix_view<std::int32_t>(merged_indices.data(), batch, width), v});
  auto whole_values = backend.template allocate<float>(batch * width);
  auto whole_indices = backend.template allocate<std::int32_t>(batch * width);
  backend.row_top_k(redraft::matrix_view<const float>(x.data(), batch, width * v),
                    static_cast<int>(width),
                    redraft::matrix_view<float>(whole_values.data(), batch, width),
                    redraft::matrix_view<std::int32_t>(whole_indices.data(), batch, width));
  CHECK(download<std::int32_t>(backend, merged_indices) ==
        download<std::int32_t>(backend, whole_indices));
  const auto merged = download<float>(backend, merged_values);
  const auto whole = download<float>(backend, whole_values);
  for (std::size_t i = 0; i < merged.size(); ++i) {
    CAPTURE(i, merged[i], whole[i]);
    CHECK(std::signbit(merged[i]) == std::signbit(whole[i]));
    CHECK(merged[i] == whole[i]);
  }
}

TEST_CASE("beam_search: a workspace serves calls of different shapes", "[draft][beam_search]") {
  const auto config = redraft_test::make_config(40, 4, 16, 1, redraft::recurrence::silu, 20);
  const auto weights = redraft_test::random_weights(config, 3);
  redraft::cpu_backend backend;
  const auto head = redraft::make_draft_head(backend, config, weights);
  redraft::beam_search_workspace<redraft::cpu_backend> ws;
  // The buffers only grow: after the largest call (the second) none is reallocated.
  const float *state_after_largest = nullptr, *gathered_after_largest = nullptr;
  const std::int32_t* history_after_largest = nullptr;
  int call = 0;
  for (const auto& [batch, width, length] : std::vector<std::tuple<index_t, index_t, index_t>>{
           {2, 4, 3}, {1, 8, 5}, {3, 2, 2}, {2, 4, 3}}) {
    CAPTURE(batch, width, length);
    const beam_inputs<redraft::cpu_backend> in(backend, config, batch, 5);
    const bool want = width % 4 == 0;
    const auto with_ws =
        redraft::beam_search(head, in.hidden_view(4), in.roots_view(), in.embedding_view(40, 4),
                             width, length, {.want_log_probs = want}, &ws);
    const auto fresh =
        redraft::beam_search(head, in.hidden_view(4), in.roots_view(), in.embedding_view(40, 4),
                             width, length, {.want_log_probs = want});
    CHECK(std::vector<int>(with_ws.beams.begin(), with_ws.beams.end()) ==
          std::vector<int>(fresh.beams.begin(), fresh.beams.end()));
    CHECK(std::vector<float>(with_ws.log_probs.begin(), with_ws.log_probs.end()) ==
          std::vector<float>(fresh.log_probs.begin(), fresh.log_probs.end()));
    // state and gathered_state trade places at every step but one; history never moves.
    const float *state = ws.state.data(), *gathered = ws.gathered_state.data();
    if (++call == 2) {
      state_after_largest = state;
      gathered_after_largest = gathered;
      history_after_largest = ws.history.data();
    } else if (call > 2) {
      CHECK(((state == state_after_largest && gathered == gathered_after_largest) ||
             (state == gathered_after_largest && gathered == state_after_largest)));
      CHECK(ws.history.data() == history_after_largest);
    }
  }
}

TEST_CASE("beam_search: the first step expands beam 0 only, and W = 1 is greedy",
          "[draft][beam_search]") {
  const auto config = redraft_test::make_config(30, 4, 8, 0, redraft::recurrence::silu, 30);
  const auto weights = redraft_test::random_weights(config, 9);
  redraft::cpu_backend backend;
  const auto head = redraft::make_draft_head(backend, config, weights);
  const beam_inputs<redraft::cpu_backend> in(backend, config, 1, 4);
  const auto wide = redraft::beam_search(head, in.hidden_view(4), in.roots_view(),
                                         in.embedding_view(30, 4), 5, 2, {.want_log_probs = true});
  // All five beams come from beam 0: the five best tokens of one distribution, in order.
  std::vector<std::pair<float, int>> first;
  for (int t = 0; t < 30; ++t) first.push_back({-wide.log_probs[t], t});
  std::sort(first.begin(), first.end());
  for (int w = 0; w < 5; ++w) {
    CHECK(wide.beams[w * 2] == in.roots[0]);
    CHECK(wide.beams[w * 2 + 1] == first[static_cast<std::size_t>(w)].second);
  }
  const auto greedy =
      redraft::beam_search(head, in.hidden_view(4), in.roots_view(), in.embedding_view(30, 4), 1, 4,
                           {.want_log_probs = true});
  for (int k = 0; k < 3; ++k) {
    const float* row = greedy.log_probs.data() + k * 30;
    CHECK(greedy.beams[k + 1] == std::max_element(row, row + 30) - row);
  }
}

TEST_CASE("beam_search: bad inputs throw before writing anything", "[draft][beam_search]") {
  const auto config = redraft_test::make_config(20, 4, 8, 1, redraft::recurrence::silu, 6);
  redraft::cpu_backend backend;
  const auto head =
      redraft::make_draft_head(backend, config, redraft_test::random_weights(config, 1));
  const beam_inputs<redraft::cpu_backend> in(backend, config, 2, 2);
  const auto run = [&](index_t width, index_t length) {
    return redraft::beam_search(head, in.hidden_view(4), in.roots_view(), in.embedding_view(20, 4),
                                width, length);
  };
  CHECK_THROWS_WITH(run(0, 3), Catch::Contains("beam_width 0 must be at least 1"));
  CHECK_THROWS_WITH(run(7, 3),
                    Catch::Contains("beam_width 7 exceeds the draft head's logit_top_k 6") &&
                        Catch::Contains("masked tokens"));
  CHECK_THROWS_WITH(run(2, 1), Catch::Contains("beam_length 1 must be at least 2"));
  CHECK_NOTHROW(run(6, 2));

  const auto wide_config = redraft_test::make_config(5, 4, 8, 1, redraft::recurrence::silu, 50);
  const auto small =
      redraft::make_draft_head(backend, wide_config, redraft_test::random_weights(wide_config, 1));
  const beam_inputs<redraft::cpu_backend> small_in(backend, wide_config, 1, 2);
  CHECK_THROWS_WITH(redraft::beam_search(small, small_in.hidden_view(4), small_in.roots_view(),
                                         small_in.embedding_view(5, 4), 6, 2),
                    Catch::Contains("beam_width 6 exceeds vocab_size 5"));

  std::vector<std::int32_t> bad_roots = {3, 20};
  CHECK_THROWS_WITH(
      redraft::beam_search(head, in.hidden_view(4),
                           redraft::vector_view<const std::int32_t>(bad_roots.data(), 2),
                           in.embedding_view(20, 4), 2, 3),
      Catch::Contains("root_tokens[1] = 20 is outside [0, 20)"));
  bad_roots = {-1, 0};
  CHECK_THROWS_WITH(
      redraft::beam_search(head, in.hidden_view(4),
                           redraft::vector_view<const std::int32_t>(bad_roots.data(), 2),
                           in.embedding_view(20, 4), 2, 3),
      Catch::Contains("root_tokens[0] = -1"));
  CHECK_THROWS_WITH(
      redraft::beam_search(head, in.hidden_view(4),
                           redraft::vector_view<const std::int32_t>(in.roots.data(), 1),
                           in.embedding_view(20, 4), 2, 3),
      Catch::Contains("root_tokens has 1 entries but hidden has 2 rows"));
  CHECK_THROWS_WITH(
      redraft::beam_search(head, redraft::matrix_view<const float>(in.hidden.data(), 2, 3),
                           in.roots_view(), in.embedding_view(20, 4), 2, 3),
      Catch::Contains("hidden has 3 columns but the draft head's hidden_size is 4"));
  CHECK_THROWS_WITH(
      redraft::beam_search(head, in.hidden_view(4), in.roots_view(),
                           redraft::matrix_view<const float>(in.embedding.data(), 19, 4), 2, 3),
      Catch::Contains("embedding has 19 rows but the draft head's vocab_size is 20"));
  CHECK_THROWS_WITH(
      redraft::beam_search(head, in.hidden_view(4), in.roots_view(),
                           redraft::matrix_view<const float>(in.embedding.data(), 20, 3), 2, 3),
      Catch::Contains("embedding has 3 columns"));
}

TEST_CASE("beam_search: golden cases reproduced through a saved checkpoint", "[draft][golden]") {
  namespace fs = std::filesystem;
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(REDRAFT_GOLDEN_DIR)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("beam_search", 0) != 0 || entry.path().extension() != ".json") continue;
    CAPTURE(name);
    ++cases;
    std::ifstream file(entry.path());
    const auto c = nlohmann::json::parse(file);
    const auto& in = c.at("inputs");
    const auto tensor = [](const nlohmann::json& t) {
      return redraft::tensor_data{t.at("shape").get<std::vector<std::int64_t>>(),
                                  t.at("data").get<std::vector<float>>(), "F32"};
    };
    std::map<std::string, redraft::tensor_data> weights;
    for (auto it = in.at("weights").begin(); it != in.at("weights").end(); ++it)
      weights[it.key()] = tensor(it.value());
    redraft::cpu_backend backend;
    const auto config = redraft::draft_config_from_json(in.at("config"));
    const fs::path dir = fs::temp_directory_path() / ("redraft_golden_" + name);
    redraft::save_draft_head(redraft::make_draft_head(backend, config, weights), dir);
    const auto head = redraft::load_draft_head(backend, dir);
    fs::remove_all(dir);
    CHECK(head.config() == config);

    const auto embedding = tensor(in.at("embedding"));
    const auto hidden = tensor(in.at("prompt_state"));
    const auto roots = in.at("init_token").at("data").get<std::vector<std::int32_t>>();
    const auto result = redraft::beam_search(
        head,
        redraft::matrix_view<const float>(hidden.values.data(), hidden.shape[0], hidden.shape[1]),
        redraft::vector_view<const std::int32_t>(roots.data(), static_cast<index_t>(roots.size())),
        redraft::matrix_view<const float>(embedding.values.data(), embedding.shape[0],
                                          embedding.shape[1]),
        in.at("beam_width").get<index_t>(), in.at("beam_length").get<index_t>());
    const auto expected = c.at("expected").at("beams").at("data").get<std::vector<std::int32_t>>();
    CHECK(std::vector<std::int32_t>(result.beams.begin(), result.beams.end()) == expected);
    const auto expected_scores =
        c.at("expected").at("beam_scores").at("data").get<std::vector<float>>();
    REQUIRE(expected_scores.size() == static_cast<std::size_t>(result.scores.size()));
    for (std::size_t i = 0; i < expected_scores.size(); ++i)
      CHECK(result.scores[static_cast<index_t>(i)] == Approx(expected_scores[i]).epsilon(1e-4));
  }
  CHECK(cases >= 5);
}
