// The capturable step (loop/capturable_step.hpp): on a backend wrapper that counts allocations,
// transfers, copies, fills and synchronisations, build() and accept() make none; the tree, masks,
// positions, acceptance, emission, KV plan and next state equal the ordinary path's (build_tree,
// the mask builders, the ordinary verifiers with the decoder's Philox uniforms); errors found on
// the backend wait in the status records until read() throws them. Then the whole decoding loop
// with decode_options::capturable: the same tokens, statistics and committed plans as the
// ordinary loop, greedy and sampling, with one transfer per step after the target.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backends.hpp"
#include "counting_backend.hpp"
#include "redraft/kv/compaction.hpp"
#include "redraft/loop/capturable_step.hpp"
#include "redraft/loop/lookup_drafter.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/redraft.hpp"
#include "redraft/testing/drafters.hpp"
#include "redraft/testing/synthetic_target.hpp"
#include "verify_test_util.hpp"

using namespace redraft;
using redraft_test::counters;
using redraft_test::counting_backend;
using redraft_test::upload;

namespace {

template <class B, class T>
std::vector<T> download(const B& backend, const T* data, index_t n) {
  std::vector<T> host(static_cast<std::size_t>(n));
  if (n > 0) backend.copy_to_host(data, n, host.data());
  return host;
}

template <class T>
std::vector<T> head(const std::vector<T>& v, std::size_t n) {
  return std::vector<T>(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n));
}

// Draft log-probs [A, W, L-1, V]: a log-softmax of random normals per row.
std::vector<float> random_log_probs(std::mt19937_64& rng, index_t rows, index_t vocab) {
  std::vector<float> q = redraft_test::random_logits(rng, rows, vocab, false);
  for (index_t r = 0; r < rows; ++r) {
    float* x = q.data() + r * vocab;
    const float m = *std::max_element(x, x + vocab);
    double sum = 0.0;
    for (index_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(x[v] - m));
    for (index_t v = 0; v < vocab; ++v) x[v] = x[v] - m - static_cast<float>(std::log(sum));
  }
  return q;
}

}  // namespace

TEMPLATE_TEST_CASE(
    "a capturable step makes no allocation, transfer or synchronisation and "
    "equals the ordinary path",
    "[loop][capturable]", REDRAFT_TEST_BACKENDS) {
  using B = counting_backend<TestType>;
  const B backend;
  const verifier rule =
      GENERATE(verifier::greedy, verifier::lossless, verifier::typical, verifier::redrafter);
  const bool short_beams = GENERATE(false, true);
  const tree_mask_format masks = GENERATE(tree_mask_format::both, tree_mask_format::packed);
  if (short_beams && rule == verifier::redrafter) return;  // redrafter reads every position
  CAPTURE(static_cast<int>(rule), short_beams, static_cast<int>(masks));
  std::mt19937_64 rng(17 + static_cast<std::uint64_t>(rule) * 2 + (short_beams ? 1 : 0));
  const step_capacity cap{4, 4, 5};
  const std::int32_t vocab = 40, hidden = 3, num_requests = 7;
  capturable_step<B> step(backend, cap, masks);
  decode_options options;
  options.rule = rule;
  options.seed = 23;
  options.sampling.temperature = 0.9f;
  options.typical.sample_next_token = true;
  std::vector<float> expected_h(static_cast<std::size_t>(num_requests * hidden), 0.5f);
  auto hidden_state = upload(backend, expected_h);  // [R, H]

  for (std::uint32_t s = 1; s <= 6; ++s) {
    CAPTURE(s);
    const std::int32_t a = 1 + static_cast<std::int32_t>(rng() % 4);
    const std::int32_t w = 1 + static_cast<std::int32_t>(rng() % 4);
    const std::int32_t l = 2 + static_cast<std::int32_t>(rng() % 4);
    std::vector<std::int32_t> ids(static_cast<std::size_t>(num_requests));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    ids.resize(static_cast<std::size_t>(a));  // the step's requests, by their index in the list
    const std::vector<std::int32_t> hb = redraft_test::random_beams(rng, a, w, l, 3);
    std::vector<std::int32_t> hl(static_cast<std::size_t>(a * w));
    for (auto& x : hl) x = 1 + static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(l));
    std::vector<step_request> rs;
    for (std::int32_t i = 0; i < a; ++i) {
      const std::int32_t eos = rng() % 2 == 0 ? static_cast<std::int32_t>(rng() % 3) : -1;
      rs.push_back({ids[static_cast<std::size_t>(i)], 10 + ids[static_cast<std::size_t>(i)],
                    5 + static_cast<std::int32_t>(rng() % 20),
                    hb[static_cast<std::size_t>(i * w * l)], eos,
                    1 + static_cast<std::int32_t>(rng() % 6)});
    }
    const auto beams = upload(backend, hb);
    const auto lengths = upload(backend, hl);
    const view<const std::int32_t, 3> bv(beams.data(), a, w, l);
    const matrix_view<const std::int32_t> lv =
        short_beams ? matrix_view<const std::int32_t>(lengths.data(), a, w)
                    : matrix_view<const std::int32_t>();
    step.set_requests(rs);

    *backend.count = counters{};
    const verify_input& in = step.build(bv, lv);
    CHECK(backend.count->total() == 0);

    // The ordinary path on the same beams.
    const tree<B> t = build_tree(backend, bv, lv);
    const std::int32_t n = t.total_nodes();
    const index_t capacity = in.node_capacity;
    REQUIRE(capacity == static_cast<index_t>(a) * (1 + w * (l - 1)));
    CHECK(download(backend, in.tree.node_offsets, a + 1) == t.host_node_offsets);
    CHECK(download(backend, in.tree.token, n) == download(backend, t.token.data(), n));
    CHECK(download(backend, in.tree.parent, n) == download(backend, t.parent.data(), n));
    CHECK(download(backend, in.tree.depth, n) == download(backend, t.depth.data(), n));
    CHECK(download(backend, in.tree.beam_to_node, a * w * l) ==
          download(backend, t.beam_to_node.data(), a * w * l));
    std::vector<std::int32_t> committed;
    for (const auto& q : rs) committed.push_back(q.committed);
    const auto base = upload(backend, committed);
    const auto positions =
        build_positions(backend, t, vector_view<const std::int32_t>(base.data(), a));
    CHECK(download(backend, in.positions.data(), n) == download(backend, positions.data(), n));
    if (masks == tree_mask_format::both) {
      const dense_tree_mask<B> dense = build_dense_tree_mask(backend, t);
      CHECK(download(backend, in.dense_offsets, a + 1) == dense.host_offsets);
      CHECK(download(backend, in.dense_mask, dense.host_offsets.back()) ==
            download(backend, dense.bits.data(), dense.host_offsets.back()));
    } else {
      CHECK(in.dense_mask == nullptr);
    }
    const packed_tree_mask<B> packed = build_packed_tree_mask(backend, t, step.words_per_row());
    CHECK(in.packed_words_per_row == step.words_per_row());
    CHECK(download(backend, in.packed_mask, n * packed.words_per_row) ==
          download(backend, packed.words.data(), n * packed.words_per_row));

    // The target's rows: n real ones, then padding (NaN: read by nothing but the row statistics).
    std::vector<float> hx = redraft_test::random_logits(rng, capacity, vocab, s % 2 == 0);
    std::fill(hx.begin() + static_cast<std::ptrdiff_t>(n) * vocab, hx.end(), std::nanf(""));
    const auto logits = upload(backend, hx);
    std::vector<float> hh = redraft_test::random_logits(rng, capacity, hidden, false);
    const auto hidden_rows = upload(backend, hh);
    const auto q =
        upload(backend, random_log_probs(rng, static_cast<index_t>(a) * w * (l - 1), vocab));
    const view<const float, 4> qv = rule == verifier::redrafter
                                        ? view<const float, 4>(q.data(), a, w, l - 1, vocab)
                                        : view<const float, 4>();

    *backend.count = counters{};
    step.accept(matrix_view<const float>(logits.data(), capacity, vocab),
                matrix_view<const float>(hidden_rows.data(), capacity, hidden),
                matrix_view<float>(hidden_state.data(), num_requests, hidden), options, qv, s);
    CHECK(backend.count->total() == 0);

    const step_outcome o = step.read("step");
    const index_t draws = std::max<index_t>(2 * l, static_cast<index_t>(w) * (l - 1) + 1);
    const auto u = upload(backend, redraft_test::decoder_uniforms(ids, options.seed, s, draws));
    const matrix_view<const float> uv(u.data(), a, draws);
    const matrix_view<const float> real(logits.data(), n, vocab);
    const host_acceptance acc =
        to_host(backend, rule == verifier::greedy ? verify_greedy(backend, t, real)
                         : rule == verifier::lossless
                             ? verify_lossless(backend, t, real, options.sampling, uv)
                         : rule == verifier::typical
                             ? verify_typical(backend, t, real, options.typical, uv)
                             : verify_redrafter(backend, t, real, qv, options.redrafter, uv));
    CHECK(o.node_offsets == t.host_node_offsets);
    CHECK(o.acceptance.path_length == acc.path_length);
    CHECK(o.acceptance.accepted_len == acc.accepted_len);
    CHECK(o.acceptance.best_beam == acc.best_beam);
    CHECK(o.acceptance.accepted_nodes == acc.accepted_nodes);
    CHECK(o.acceptance.emitted_tokens == acc.emitted_tokens);
    CHECK(o.acceptance.next_token == acc.next_token);
    CHECK(o.acceptance.hidden_row == acc.hidden_row);

    // Emission and the plan, as the decoder decides them on the host (make_kv_plan's entries for
    // the requests that go on).
    std::vector<std::int32_t> emit, done, going_slots, going_committed;
    host_acceptance going = acc;
    going.batch = 0;
    going.accepted_len.clear();
    going.accepted_nodes.clear();
    for (std::int32_t i = 0; i < a; ++i) {
      const step_request& r = rs[static_cast<std::size_t>(i)];
      std::int32_t count = 0;
      bool stop = false;
      for (std::int32_t j = 0; j <= acc.accepted_len[static_cast<std::size_t>(i)] && !stop; ++j) {
        ++count;
        stop = acc.emitted_token(i, j) == r.eos_token || count >= r.remaining;
      }
      emit.push_back(count);
      done.push_back(stop ? 1 : 0);
      if (stop) continue;
      ++going.batch;
      going.accepted_len.push_back(acc.accepted_len[static_cast<std::size_t>(i)]);
      for (std::int32_t j = 0; j < acc.path_length; ++j)
        going.accepted_nodes.push_back(acc.accepted_node(i, j));
      going_slots.push_back(r.slot);
      going_committed.push_back(r.committed);
      const std::int32_t row = acc.hidden_row[static_cast<std::size_t>(i)];
      for (std::int32_t c = 0; c < hidden; ++c)
        expected_h[static_cast<std::size_t>(r.request * hidden + c)] =
            hh[static_cast<std::size_t>(row * hidden + c)];
    }
    CHECK(o.emit_count == emit);
    CHECK(o.done == done);
    const kv_plan plan = make_kv_plan(going, going_slots, going_committed);
    CHECK(o.plan.offsets == plan.offsets);
    CHECK(o.plan.slot == plan.slot);
    CHECK(o.plan.source_node == plan.source_node);
    CHECK(o.plan.destination == plan.destination);
    CHECK(download(backend, hidden_state.data(), num_requests * hidden) == expected_h);
    // The plan on the backend is the one read back.
    CHECK(download(backend, step.plan_header(), 2) ==
          std::vector<std::int32_t>{plan.num_requests(),
                                    static_cast<std::int32_t>(plan.source_node.size())});

    // The next step's state, advanced on the backend.
    const auto state = download(backend, step.backend_state(), 6 * cap.max_batch);
    for (std::int32_t i = 0; i < a; ++i) {
      const step_request& r = rs[static_cast<std::size_t>(i)];
      const auto at = [&](index_t row) {
        return state[static_cast<std::size_t>(row * cap.max_batch + i)];
      };
      CHECK(at(5) == r.remaining - emit[static_cast<std::size_t>(i)]);
      if (done[static_cast<std::size_t>(i)] != 0) continue;
      CHECK(at(2) == r.committed + acc.accepted_len[static_cast<std::size_t>(i)] + 1);
      CHECK(at(3) == acc.next_token[static_cast<std::size_t>(i)]);
    }
  }
}

TEMPLATE_TEST_CASE("a capturable step keeps backend errors until read", "[loop][capturable]",
                   REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const std::int32_t vocab = 6, l = 3;
  capturable_step<TestType> step(backend, {2, 2, 3});
  decode_options options;
  const auto run = [&](const std::vector<std::int32_t>& hb, std::int32_t root,
                       const std::vector<std::int32_t>& hl, bool nan) {
    step.set_requests(std::vector<step_request>{{4, 0, 3, root, -1, 10}});
    const auto beams = upload(backend, hb);
    const auto lengths = upload(backend, hl);
    const verify_input& in =
        step.build(view<const std::int32_t, 3>(beams.data(), 1, 2, l),
                   hl.empty() ? matrix_view<const std::int32_t>()
                              : matrix_view<const std::int32_t>(lengths.data(), 1, 2));
    std::vector<float> x(static_cast<std::size_t>(in.node_capacity * vocab), 0.5f);
    if (nan) x[3] = std::nanf("");  // node 0 (the root), column 3
    const auto logits = upload(backend, x);
    step.accept(matrix_view<const float>(logits.data(), in.node_capacity, vocab), {}, {}, options,
                {}, 1);
  };
  const std::vector<std::int32_t> good{1, 2, 3, 1, 4, 5};
  run(good, 1, {}, false);
  CHECK_NOTHROW(step.read("step"));

  // Each error with the ordinary path's message; read() clears it.
  run(good, 2, {}, false);
  CHECK_THROWS_WITH(
      step.read("step"),
      "step: the drafter's beams for request 4 start with token 1 instead of the root 2");
  CHECK_NOTHROW(step.read("step"));
  run({1, 2, 3, 2, 4, 5}, 1, {}, false);
  CHECK_THROWS_WITH(step.read("step"),
                    Catch::Contains("beams[0, 1, 0] = 2 differs from beams[0, 0, 0] = 1"));
  run({1, 2, 3, 1, -4, 5}, 1, {}, false);
  CHECK_THROWS_WITH(step.read("step"),
                    Catch::Contains("beams[0, 1, 1] = -4 is not a valid token id"));
  run(good, 1, {3, 4}, false);
  CHECK_THROWS_WITH(step.read("step"), Catch::Contains("beam_lengths[0, 1] = 4 is outside [1, 3]"));
  run({1, 2, 9, 1, 4, 5}, 1, {}, false);
  CHECK_THROWS_WITH(step.read("step"),
                    Catch::Contains("tree token 9 at request 0, node 2 is outside"));

  // A verifier error stays until read, across later good steps (the first error is kept).
  run(good, 1, {}, true);
  run(good, 1, {}, false);
  CHECK_THROWS_WITH(step.read("step"), "step: logits[0, 3] (request 0, node 0) is NaN or +inf");
  CHECK_NOTHROW(step.read("step"));

  // What the host sees without a transfer throws at once.
  CHECK_THROWS_WITH((capturable_step<TestType>(backend, {1, 1, 1})),
                    Catch::Contains("max_length 1"));
  const auto beams = upload(backend, std::vector<std::int32_t>(2 * 3 * 3, 1));
  CHECK_THROWS_WITH(step.build(view<const std::int32_t, 3>(beams.data(), 1, 3, 3)),
                    Catch::Contains("need 1 <= W <= 2"));
  CHECK_THROWS_WITH(step.build(view<const std::int32_t, 3>(beams.data(), 2, 2, 3)),
                    Catch::Contains("beams have 2 requests but set_requests gave 1"));
  CHECK_THROWS_WITH(step.set_requests(std::vector<step_request>(3)), Catch::Contains("3 requests"));
  step.set_requests(std::vector<step_request>{{4, 0, 3, 1, -1, 10}});
  const auto logits = upload(backend, std::vector<float>(5 * vocab, 0.5f));
  const matrix_view<const float> lv(logits.data(), 5, vocab);
  CHECK_THROWS_WITH(step.accept(lv, {}, {}, options, {}, 1),
                    Catch::Contains("build() has not run since set_requests()"));
  const auto good_beams = upload(backend, good);
  step.build(view<const std::int32_t, 3>(good_beams.data(), 1, 2, l));
  auto h = upload(backend, std::vector<float>(4 * 2, 0.0f));
  CHECK_THROWS_WITH(step.accept(lv, lv, matrix_view<float>(h.data(), 4, 2), options, {}, 1),
                    Catch::Contains("hidden is [5, 6] and hidden_state [4, 2]"));
  CHECK_THROWS_WITH(
      step.accept(lv, matrix_view<const float>(logits.data(), 5, 2),
                  matrix_view<float>(h.data(), 4, 2), options, {}, 1),
      "capturable_step::accept: hidden_state has 4 rows but request 4 is in the step");
}

namespace {

using counted_cpu = counting_backend<cpu_backend>;

// The synthetic target behind a capturable step (the node offsets read from the tree, which is
// host memory on the CPU; outputs padded to node_capacity rows), on the counting backend. It
// checks the decoder's calls around it: from the drafter's return to verify() at most the
// state's upload, and from verify() to commit() exactly one transfer (the step's read).
class capacity_target {
 public:
  using backend_type = counted_cpu;

  capacity_target(testing::synthetic_target_config config, counted_cpu backend)
      : inner_(config), backend_(std::move(backend)) {}

  const counted_cpu& backend() const { return backend_; }
  std::int32_t vocab_size() const { return inner_.vocab_size(); }
  std::int32_t hidden_size() const { return inner_.hidden_size(); }
  std::int32_t max_context() const { return inner_.max_context(); }
  matrix_view<const float> embedding() const { return inner_.embedding(); }
  model_output prefill(const prefill_input& in) { return inner_.prefill(in); }

  model_output verify(const verify_input& in) {
    captured_ = in.node_capacity > 0;
    if (!captured_) return inner_.verify(in);
    const counters& c = *backend_.count;
    CHECK(c.total() == c.from_host);
    CHECK(c.from_host <= 1);
    const index_t a = in.slots.extent(0), rows = in.node_capacity;
    offsets_.assign(in.tree.node_offsets, in.tree.node_offsets + a + 1);
    verify_input v = in;
    v.host_node_offsets = {offsets_.data(), a + 1};
    v.node_capacity = 0;
    const model_output o = inner_.verify(v);
    const index_t n = o.logits.extent(0), vocab = vocab_size(), h = hidden_size();
    logits_.assign(static_cast<std::size_t>(rows * vocab), 0.0f);
    hidden_.assign(static_cast<std::size_t>(rows * h), 0.0f);
    std::copy(o.logits.data(), o.logits.data() + n * vocab, logits_.begin());
    std::copy(o.hidden.data(), o.hidden.data() + n * h, hidden_.begin());
    *backend_.count = counters{};
    return {{logits_.data(), rows, vocab}, {hidden_.data(), rows, h}};
  }

  void commit(const kv_plan& plan) {
    if (captured_) {
      CHECK(backend_.count->to_host == 1);
      CHECK(backend_.count->total() == 1);
    }
    plans.push_back(plan);
    inner_.commit(plan);
  }

  std::vector<kv_plan> plans;

 private:
  testing::synthetic_target inner_;
  counted_cpu backend_;
  bool captured_ = false;
  std::vector<std::int32_t> offsets_;
  std::vector<float> logits_, hidden_;
};

// A CPU drafter (testing::random_drafter, or lookup_drafter: short beams) on the counting
// backend; resets the counters as it returns.
template <class D>
class counted_drafter {
 public:
  counted_drafter(D inner, counted_cpu backend)
      : inner_(std::move(inner)), backend_(std::move(backend)) {}
  draft_output<counted_cpu> draft(const draft_input& in) {
    draft_output<cpu_backend> d = inner_.draft(in);
    *backend_.count = counters{};
    return {std::move(d.beams), std::move(d.log_probs), std::move(d.beam_lengths)};
  }

 private:
  D inner_;
  counted_cpu backend_;
};

}  // namespace

TEST_CASE("decode_options::capturable decodes exactly as the ordinary loop", "[loop][capturable]") {
  const verifier rule =
      GENERATE(verifier::greedy, verifier::lossless, verifier::redrafter, verifier::typical);
  const std::int32_t width = GENERATE(1, 3);
  const bool lookup = GENERATE(false, true);  // model-free: short beams (not for redrafter)
  if (lookup && rule == verifier::redrafter) return;
  CAPTURE(static_cast<int>(rule), width, lookup);
  testing::synthetic_target_config config;
  config.vocab_size = 12;  // small: drafted tokens are often right
  config.window = 1;
  config.num_slots = 8;
  std::vector<generation_request> requests;
  for (std::int32_t r = 0; r < 5; ++r) {
    generation_request q;
    q.prompt = {r % 12, (3 * r + 1) % 12};
    q.max_new_tokens = 6 + 5 * r;
    q.eos_token = r == 2 ? 7 : -1;
    q.slot = 7 - r;
    requests.push_back(q);
  }
  decode_options options;
  options.rule = rule;
  options.beam_width = width;
  options.beam_length = 4;
  options.seed = 5;
  options.sampling.temperature = 0.8f;
  options.typical.sample_next_token = true;

  const auto run = [&](bool capturable) {
    const counted_cpu backend;
    capacity_target model(config, backend);
    decode_options o = options;
    o.capturable = capturable;
    const auto decode = [&](auto inner) {
      counted_drafter<decltype(inner)> drafter(std::move(inner), backend);
      speculative_decoder<counted_cpu, capacity_target, decltype(drafter)> decoder(backend, model,
                                                                                   drafter);
      return decoder.generate(requests, o);
    };
    generation_result result = lookup ? decode(lookup_drafter<cpu_backend>(cpu_backend{}))
                                      : decode(testing::random_drafter(config.vocab_size, 9));
    return std::make_pair(std::move(result), std::move(model.plans));
  };
  const auto [ordinary, ordinary_plans] = run(false);
  const auto [captured, captured_plans] = run(true);
  CHECK(captured.tokens == ordinary.tokens);
  REQUIRE(captured.requests.size() == ordinary.requests.size());
  for (std::size_t r = 0; r < ordinary.requests.size(); ++r) {
    CHECK(captured.requests[r].steps == ordinary.requests[r].steps);
    CHECK(captured.requests[r].accepted == ordinary.requests[r].accepted);
    CHECK(captured.requests[r].accepted_at_depth == ordinary.requests[r].accepted_at_depth);
    CHECK(captured.requests[r].stop_reason == ordinary.requests[r].stop_reason);
  }
  REQUIRE(captured.steps.size() == ordinary.steps.size());
  for (std::size_t s = 0; s < ordinary.steps.size(); ++s) {
    CHECK(captured.steps[s].nodes == ordinary.steps[s].nodes);
    CHECK(captured.steps[s].emitted == ordinary.steps[s].emitted);
  }
  REQUIRE(captured_plans.size() == ordinary_plans.size());
  for (std::size_t s = 0; s < ordinary_plans.size(); ++s) {
    CHECK(captured_plans[s].offsets == ordinary_plans[s].offsets);
    CHECK(captured_plans[s].slot == ordinary_plans[s].slot);
    CHECK(captured_plans[s].source_node == ordinary_plans[s].source_node);
    CHECK(captured_plans[s].destination == ordinary_plans[s].destination);
  }
  CHECK(ordinary.steps.size() > 3);
}

TEST_CASE("decode_options::capturable refuses what it cannot serve", "[loop][capturable]") {
  testing::synthetic_target_config config;
  const counted_cpu backend;
  capacity_target model(config, backend);
  counted_drafter<testing::random_drafter> drafter(testing::random_drafter(config.vocab_size, 9),
                                                   backend);
  speculative_decoder<counted_cpu, capacity_target, decltype(drafter), adaptive_policy> decoder(
      backend, model, drafter, adaptive_policy{});
  decode_options o;
  o.capturable = true;
  std::vector<generation_request> requests{{{1, 2}, 4, -1, -1}};
  CHECK_THROWS_WITH(decoder.generate(requests, o),
                    Catch::Contains("capturable needs a speculation policy without step reports"));
}
