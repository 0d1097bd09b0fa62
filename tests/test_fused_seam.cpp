// Tests of the fused-step seam (clause 10 of core/backend.hpp, step/run_step.hpp) and of the
// one order rule for floats (step/row_ops.hpp).
//
// A user's backend offers fused steps with nothing but the public step/ headers: counting_backend
// wraps the CPU backend and implements run_fused for the greedy walk (a simulated block of 3
// threads reducing row_ops::thread_argmax partials, then greedy_walk::advance) and for the packed
// mask (parents staged per request, then step::packed_mask_row). It counts its fused calls and
// its for_each_index calls, so the tests see which path each entry point took; a twin without
// run_fused (generic_counting_backend) must take the generic path. Results must be identical.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "backends.hpp"
#include "redraft/redraft.hpp"
#include "verify_test_util.hpp"

using namespace redraft;

namespace {

struct call_counts {
  int fused = 0;
  int loops = 0;
};

// The CPU backend with every for_each_index counted (the generic path).
class generic_counting_backend : public cpu_backend {
 public:
  generic_counting_backend() = default;
  explicit generic_counting_backend(std::shared_ptr<call_counts> counts)
      : counts_(std::move(counts)) {}

  template <class F>
  void for_each_index(index_t n, F f) const {
    ++counts_->loops;
    cpu_backend::for_each_index(n, f);
  }
  const call_counts& counts() const { return *counts_; }

 protected:
  std::shared_ptr<call_counts> counts_ = std::make_shared<call_counts>();
};

// The same, plus fused greedy and packed-mask steps written only against step/.
class counting_backend : public generic_counting_backend {
 public:
  using generic_counting_backend::generic_counting_backend;

  template <class T>
  void run_fused(const step::greedy_walk<T>& walk) const {
    ++counts_->fused;
    constexpr int threads = 3;
    const index_t vocab = walk.logits.extent(1);
    for (std::int32_t b = 0; b < walk.tree.batch; ++b) {
      step::greedy_state s{};
      if (!walk.begin(b, s)) continue;
      while (!s.done) {
        row_ops::argmax_partial p =
            row_ops::thread_argmax(walk.row(b, s), vocab, threads - 1, threads);
        for (int t = threads - 2; t >= 0; --t) {  // combined in reverse: the order is free
          p = row_ops::argmax_combine{}(p,
                                        row_ops::thread_argmax(walk.row(b, s), vocab, t, threads));
        }
        walk.advance(b, row_ops::finish_argmax(p), s);
      }
    }
  }

  void run_fused(const step::packed_mask_rows& rows) const {
    ++counts_->fused;
    for (std::int32_t b = rows.t.batch - 1; b >= 0; --b) {  // requests in any order
      const std::int32_t first = rows.t.node_offsets[b], n = rows.t.num_nodes(b);
      const std::vector<std::int32_t> parents(rows.t.parent + first, rows.t.parent + first + n);
      for (std::int32_t i = n - 1; i >= 0; --i) {
        step::packed_mask_row(parents.data(), i,
                              rows.out + (static_cast<index_t>(first) + i) * rows.words_per_row,
                              rows.words_per_row);
      }
    }
  }
};

static_assert(Backend<counting_backend> && Backend<generic_counting_backend>);
static_assert(backend_has_fused_v<counting_backend, step::greedy_walk<float>>);
static_assert(backend_has_fused_v<counting_backend, step::packed_mask_rows>);
static_assert(!backend_has_fused_v<counting_backend, step::lossless_walk<float>>);
static_assert(!backend_has_fused_v<generic_counting_backend, step::greedy_walk<float>>);
static_assert(!backend_has_fused_v<cpu_backend, step::packed_mask_rows>);

// Greedy logits [rows, V] whose argmax often hits a child: ties (integers in [0, 4)), with -0
// and +0 both present among the zeros.
std::vector<float> tie_heavy_logits(std::mt19937_64& rng, std::int64_t rows, std::int64_t vocab) {
  std::vector<float> x = redraft_test::random_logits(rng, rows, vocab, true);
  for (float& v : x) {
    if (v == 0.0f && (rng() & 1u) != 0) v = -0.0f;
  }
  return x;
}

template <class B>
struct greedy_case {
  tree<B> t;
  std::vector<float> logits;
};

// A batch of random trees (tokens below min(V, 8), so children often hold the argmax of the
// tie-heavy rows) and their logits; the same seed gives the same case on every backend.
template <class B>
greedy_case<B> make_case(const B& backend, std::uint64_t seed, std::int32_t vocab) {
  std::mt19937_64 rng(seed);
  std::vector<redraft_test::host_tree> requests;
  const int batch = 1 + static_cast<int>(rng() % 4);
  for (int b = 0; b < batch; ++b) {
    requests.push_back(redraft_test::random_tree(rng, 1 + static_cast<std::int32_t>(rng() % 20),
                                                 std::min(vocab, 8), 5));
  }
  greedy_case<B> c;
  c.t = redraft_test::make_tree(backend, requests);
  c.logits = tie_heavy_logits(rng, c.t.total_nodes(), vocab);
  return c;
}

void require_same(const host_acceptance& a, const host_acceptance& b) {
  REQUIRE(a.accepted_len == b.accepted_len);
  REQUIRE(a.best_beam == b.best_beam);
  REQUIRE(a.accepted_nodes == b.accepted_nodes);
  REQUIRE(a.emitted_tokens == b.emitted_tokens);
  REQUIRE(a.next_token == b.next_token);
  REQUIRE(a.hidden_row == b.hidden_row);
}

}  // namespace

TEST_CASE("verify_greedy takes a backend's fused walk when offered, the generic loop otherwise",
          "[verify][greedy][fused]") {
  const std::uint64_t seed = GENERATE(1u, 2u, 3u, 4u, 5u);
  const std::int32_t vocab = GENERATE(3, 7, 1100);  // 1100: more than two argmax tiles
  CAPTURE(seed, vocab);
  const counting_backend fused;
  const generic_counting_backend generic;
  const auto fc = make_case(fused, seed, vocab);
  const auto gc = make_case(generic, seed, vocab);
  REQUIRE(fc.logits == gc.logits);
  const int fused_loops = fused.counts().loops, generic_loops = generic.counts().loops;

  const auto fa = verify_greedy(
      fused, fc.t, matrix_view<const float>(fc.logits.data(), fc.t.total_nodes(), vocab));
  CHECK(fused.counts().fused == 1);
  CHECK(fused.counts().loops == fused_loops);  // the walk did not also run generically
  const auto ga = verify_greedy(
      generic, gc.t, matrix_view<const float>(gc.logits.data(), gc.t.total_nodes(), vocab));
  CHECK(generic.counts().fused == 0);
  CHECK(generic.counts().loops == generic_loops + 1);
  require_same(to_host(fused, fa), to_host(generic, ga));

  // The deferred form goes through the same seam.
  verify_workspace<counting_backend> ws(fused, fc.t.batch, fc.t.total_nodes(), fa.path_length);
  verify_greedy_deferred(fused, fc.t,
                         matrix_view<const float>(fc.logits.data(), fc.t.total_nodes(), vocab), ws);
  CHECK(fused.counts().fused == 2);
  check_verify_status(fused, "deferred", ws, fc.t);
  require_same(to_host(fused, ws.result()), to_host(generic, ga));
}

TEST_CASE("a fused walk reports bad rows exactly as the generic one", "[verify][greedy][fused]") {
  const counting_backend fused;
  const generic_counting_backend generic;
  const std::int32_t vocab = 9;
  auto fc = make_case(fused, 11, vocab);
  auto gc = make_case(generic, 11, vocab);
  // Poison every row: the root's row is always read.
  const float bad =
      GENERATE(std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity());
  for (std::size_t r = 0; r < fc.logits.size(); r += vocab)
    fc.logits[r + 4] = gc.logits[r + 4] = bad;
  std::string fused_message, generic_message;
  try {
    verify_greedy(fused, fc.t,
                  matrix_view<const float>(fc.logits.data(), fc.t.total_nodes(), vocab));
  } catch (const error& e) {
    fused_message = e.what();
  }
  try {
    verify_greedy(generic, gc.t,
                  matrix_view<const float>(gc.logits.data(), gc.t.total_nodes(), vocab));
  } catch (const error& e) {
    generic_message = e.what();
  }
  CHECK(fused.counts().fused == 1);
  REQUIRE_FALSE(fused_message.empty());
  CHECK(fused_message == generic_message);
  CHECK(fused_message.find("logits[0, 4]") != std::string::npos);
}

TEST_CASE("build_packed_tree_mask takes a backend's fused rows when offered",
          "[tree][mask][fused]") {
  const std::uint64_t seed = GENERATE(1u, 2u, 3u);
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  std::vector<redraft_test::host_tree> requests;
  for (int b = 0; b < 3; ++b)
    requests.push_back(
        redraft_test::random_tree(rng, 1 + static_cast<std::int32_t>(rng() % 70), 50, 6));
  const counting_backend fused;
  const generic_counting_backend generic;
  const auto ft = redraft_test::make_tree(fused, requests);
  const auto gt = redraft_test::make_tree(generic, requests);
  const int fused_loops = fused.counts().loops, generic_loops = generic.counts().loops;
  const std::int32_t words = GENERATE(0, 4);
  const auto fm = build_packed_tree_mask(fused, ft, words);
  const auto gm = build_packed_tree_mask(generic, gt, words);
  CHECK(fused.counts().fused == 1);
  CHECK(fused.counts().loops == fused_loops);
  CHECK(generic.counts().loops == generic_loops + 1);
  REQUIRE(fm.words_per_row == gm.words_per_row);
  REQUIRE(redraft_test::download<counting_backend, std::uint32_t>(fused, fm.words) ==
          redraft_test::download<generic_counting_backend, std::uint32_t>(generic, gm.words));
}

// The -0 rule: -0 and +0 are equal, so they tie, and ties go to the lower column, in the one-pass
// CPU argmax (row_ops::argmax_checked), in any block reduction of row_ops::thread_argmax
// partials (the fused kernels' and their host twins'), in the top-k order key and in
// verify_greedy on every backend.
TEST_CASE("argmax ties between -0 and +0 go to the lower column everywhere", "[verify][order]") {
  const index_t vocab = GENERATE(as<index_t>{}, 2, 513, 1500, 2049, 4200);
  const index_t lo = GENERATE(as<index_t>{}, 0, 1, 600, 2100);
  if (lo + 1 >= vocab) return;
  const index_t hi = vocab - 1;
  const bool negative_first = GENERATE(true, false);
  CAPTURE(vocab, lo, hi, negative_first);
  std::vector<float> row(static_cast<std::size_t>(vocab), -1.0f);
  row[static_cast<std::size_t>(lo)] = negative_first ? -0.0f : 0.0f;
  row[static_cast<std::size_t>(hi)] = negative_first ? 0.0f : -0.0f;

  CHECK(row_ops::order_key(-0.0f) == row_ops::order_key(0.0f));
  const row_ops::row_argmax_result cpu = row_ops::argmax_checked(row.data(), vocab);
  CHECK(cpu.bad_column == -1);
  CHECK(cpu.index == lo);
  for (int threads : {1, 2, 3, 32, 256}) {
    CAPTURE(threads);
    const row_ops::argmax_partial p = block::host_block_reduce(
        threads, [&](int t) { return row_ops::thread_argmax(row.data(), vocab, t, threads); },
        row_ops::argmax_combine{});
    const row_ops::row_argmax_result twin = row_ops::finish_argmax(p);
    CHECK(twin.bad_column == -1);
    CHECK(twin.index == lo);
  }
  // The block top-k (k = 1) and the CPU backend's row_argmax agree too.
  float value = 1.0f;
  std::int32_t column = -1;
  std::vector<float> sv(1);
  std::vector<std::int32_t> si(1);
  block::host_top_k_row(row.data(), vocab, 1, 32, sv.data(), si.data(), &value, &column);
  CHECK(column == lo);
  std::int32_t cpu_column = -1;
  cpu_backend{}.row_argmax(matrix_view<const float>(row.data(), 1, vocab),
                           vector_view<std::int32_t>(&cpu_column, 1));
  CHECK(cpu_column == lo);
}

TEMPLATE_TEST_CASE("verify_greedy decides -0 / +0 ties identically on every backend",
                   "[verify][greedy][order]", REDRAFT_TEST_BACKENDS) {
  const TestType backend;
  const cpu_backend cpu;
  const std::uint64_t seed = GENERATE(21u, 22u, 23u);
  const std::int32_t vocab = GENERATE(5, 1030);
  CAPTURE(seed, vocab);
  const auto c = make_case(backend, seed, vocab);
  const auto r = make_case(cpu, seed, vocab);
  const index_t rows = c.t.total_nodes();
  const auto logits = redraft_test::upload(backend, c.logits);
  const host_acceptance got = to_host(
      backend, verify_greedy(backend, c.t, matrix_view<const float>(logits.data(), rows, vocab)));
  const host_acceptance want =
      to_host(cpu, verify_greedy(cpu, r.t, matrix_view<const float>(r.logits.data(), rows, vocab)));
  require_same(got, want);
  // And the next token is the first column holding the row max (-0 == +0 as floats).
  for (std::int32_t b = 0; b < want.batch; ++b) {
    const float* row =
        r.logits.data() +
        static_cast<std::size_t>(want.hidden_row[static_cast<std::size_t>(b)]) * vocab;
    std::int32_t first = 0;
    for (std::int32_t i = 1; i < vocab; ++i)
      if (row[i] > row[first]) first = i;
    CHECK(want.next_token[static_cast<std::size_t>(b)] == first);
  }
}

// The one-pass argmax's tile reductions (signed max / min and unsigned max of the raw bits) must
// find the same column, or the same lowest bad column, as the exact per-element partials.
TEST_CASE("the one-pass argmax agrees with the block partials on non-finite and -inf rows",
          "[verify][order]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // Sizes around the vector steps (16, 32, 64 floats) and the tiles (row_ops::argmax_tile).
  const index_t tile = row_ops::argmax_tile;
  const index_t vocab = GENERATE_COPY(as<index_t>{}, 1, 31, 32, 33, 511, 1700, tile - 1, tile,
                                      tile + 1, 2 * tile + 70);
  std::mt19937_64 rng(static_cast<std::uint64_t>(vocab));
  for (int trial = 0; trial < 240; ++trial) {
    std::vector<float> row(static_cast<std::size_t>(vocab));
    // 0 normal, 1 -inf heavy, 2 all -inf, 3 and 4: bad entries, 5: a larger max at a random
    // column and again at a later one (the tile holding it is not the first, and ties go low).
    const int kind = trial % 6;
    for (float& v : row) {
      const auto r = rng() % 8;
      v = kind == 2 || (kind == 1 && r < 6) ? -inf : static_cast<float>(static_cast<int>(r) - 4);
      if (v == 0.0f && (rng() & 1u) != 0) v = -0.0f;
    }
    if (kind == 5) {
      const auto at = static_cast<std::size_t>(rng() % static_cast<std::uint64_t>(vocab));
      row[at] = 7.5f;
      row[at + (static_cast<std::size_t>(vocab) - 1 - at) / 2] = 7.5f;
    }
    std::int64_t lowest_bad = -1;
    if (kind == 3 || kind == 4) {
      for (int k = 0; k < 2; ++k) {
        const auto at = static_cast<std::size_t>(rng() % static_cast<std::uint64_t>(vocab));
        const auto which = rng() % 3;
        row[at] = which == 0 ? nan : which == 1 ? -nan : inf;
        if (lowest_bad < 0 || static_cast<std::int64_t>(at) < lowest_bad) {
          lowest_bad = static_cast<std::int64_t>(at);
        }
      }
    }
    CAPTURE(vocab, trial, kind, lowest_bad);
    const row_ops::row_argmax_result cpu = row_ops::argmax_checked(row.data(), vocab);
    const row_ops::row_argmax_result twin = row_ops::finish_argmax(block::host_block_reduce(
        7, [&](int t) { return row_ops::thread_argmax(row.data(), vocab, t, 7); },
        row_ops::argmax_combine{}));
    REQUIRE(cpu.bad_column == twin.bad_column);
    if (kind == 3 || kind == 4) {
      REQUIRE(cpu.bad_column == lowest_bad);
    } else if (std::all_of(row.begin(), row.end(), [&](float v) { return v == -inf; })) {
      REQUIRE(cpu.bad_column == -2);
    } else {
      REQUIRE(cpu.bad_column == -1);
      REQUIRE(cpu.index == twin.index);
      const auto first_max = std::max_element(row.begin(), row.end()) - row.begin();
      REQUIRE(cpu.index == first_max);
    }
    // The same values in bfloat16 (every one is exact), through the element-generic tile loop.
    std::vector<bfloat16> narrow;
    for (const float v : row) narrow.push_back(from_float<bfloat16>(v));
    const row_ops::row_argmax_result b16 = row_ops::argmax_checked(narrow.data(), vocab);
    REQUIRE(b16.bad_column == cpu.bad_column);
    REQUIRE(b16.index == cpu.index);
  }
}
