// The model-free drafters (loop/lookup_drafter.hpp, loop/suffix_drafter.hpp) and the hybrid
// drafter (loop/hybrid_drafter.hpp): their candidates on hand-made histories, incremental
// updates against a fresh rebuild, the node cap, bad input; and the speculative decoder with them
// (greedy equals plain greedy; history given to the drafters).
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "backends.hpp"
#include "redraft/loop/hybrid_drafter.hpp"
#include "redraft/loop/lookup_drafter.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/loop/suffix_drafter.hpp"
#include "redraft/redraft.hpp"
#include "redraft/testing/drafters.hpp"
#include "redraft/testing/synthetic_target.hpp"

using namespace redraft;

namespace {

// One request's draft_input over `history` (its last token is the root).
struct one_request {
  std::vector<std::int32_t> history;
  std::int32_t root, slot = 0;
  std::span<const std::int32_t> span;
  std::uint8_t fresh = 1;
  draft_input in;

  one_request(std::vector<std::int32_t> h, std::int32_t width, std::int32_t length,
              bool first = true)
      : history(std::move(h)),
        root(history.empty() ? 0 : history.back()),
        span(history),
        fresh(first ? 1 : 0) {
    in.roots = {&root, 1};
    in.slots = {&slot, 1};
    in.history = {&span, 1};
    in.history_fresh = {&fresh, 1};
    in.beam_width = width;
    in.beam_length = length;
  }
};

using candidates = std::vector<draft_candidate>;

// beams [1, W, L] and lengths [1, W] of a draft_output, as candidate lists (drafted tokens only).
candidates unpack(const draft_output<cpu_backend>& out, std::int32_t width, std::int32_t length) {
  return detail::unpack_candidates(cpu_backend{}, out, 1, width, length, "test")[0];
}

}  // namespace

TEST_CASE("ngram_index proposes the continuations of the longest matching suffix, latest first",
          "[lookup]") {
  ngram_index index(3);
  //                      0  1  2  3  4  5  6  7  8  9
  const std::vector<std::int32_t> seq = {1, 2, 3, 4, 9, 2, 3, 5, 7, 2, 3};
  index.append(seq);
  // Suffix (2, 3) occurred at ends 2 and 6 (latest first): continuations 5 7 2 and 4 9 2; the
  // 3-gram (7, 2, 3) never occurred before.
  CHECK(index.propose(4, 3, 1, 3, 32) == candidates{{5, 7, 2}, {4, 9, 2}});
  CHECK(index.propose(1, 3, 1, 3, 32) == candidates{{5, 7, 2}});
  // Continuations stop at the history's end: L - 1 = 6 gives the rest of the sequence.
  CHECK(index.propose(1, 6, 1, 3, 32) == candidates{{5, 7, 2, 3}});
  // min_n 3: no 3-gram match, so nothing.
  CHECK(index.propose(4, 3, 3, 3, 32).empty());
  // max_matches 1 examines only the latest occurrence per n: n = 2 and n = 1 both find 5 7 2.
  CHECK(index.propose(4, 3, 1, 2, 1) == candidates{{5, 7, 2}});
}

TEST_CASE("ngram_index: duplicates are dropped and a longer candidate replaces its prefix",
          "[lookup]") {
  ngram_index index(2);
  // "7 7 7 7": the latest occurrence of (7) has one token after it, the older ones more; all are
  // prefixes of one another, so one candidate remains, the longest.
  index.append(std::vector<std::int32_t>{7, 7, 7, 7});
  CHECK(index.propose(4, 3, 1, 2, 32) == candidates{{7, 7, 7}});
  // Same continuation twice: one candidate.
  ngram_index twice(1);
  twice.append(std::vector<std::int32_t>{1, 5, 6, 1, 5, 6, 1});
  CHECK(twice.propose(4, 2, 1, 1, 32) == candidates{{5, 6}});
}

TEST_CASE("ngram_index: empty history and n larger than the history give no candidate",
          "[lookup]") {
  ngram_index index(4);
  CHECK(index.propose(4, 3, 1, 4, 32).empty());
  index.append(std::vector<std::int32_t>{3});
  CHECK(index.propose(4, 3, 1, 4, 32).empty());  // one token: nothing before it
  index.append(std::vector<std::int32_t>{3});
  CHECK(index.propose(4, 3, 1, 4, 32) ==
        candidates{{3}});  // n = 1 matches; n = 2..4 exceed the history
  CHECK(index.propose(4, 3, 2, 4, 32).empty());
}

TEST_CASE("ngram_index appended token by token equals one built at once", "[lookup]") {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<std::int32_t> seq(60);
    for (auto& t : seq) t = static_cast<std::int32_t>(rng() % 4);
    ngram_index step(3);
    for (std::size_t i = 0; i < seq.size(); ++i) {
      step.append(std::span<const std::int32_t>(seq.data() + i, 1));
      ngram_index once(3);
      once.append(std::span<const std::int32_t>(seq.data(), i + 1));
      CAPTURE(trial, i);
      REQUIRE(step.propose(3, 4, 1, 3, 8) == once.propose(3, 4, 1, 3, 8));
    }
  }
}

TEST_CASE("lookup_drafter fills beams with per-beam lengths and keeps its index across steps",
          "[lookup]") {
  lookup_drafter<cpu_backend> drafter(cpu_backend{}, lookup_options{2, 1, 32});
  one_request q({1, 2, 3, 4, 1, 2}, 3, 4);
  draft_output<cpu_backend> out = drafter.draft(q.in);
  REQUIRE(out.beams.size() == 12);
  REQUIRE(out.beam_lengths.size() == 3);
  // (1, 2) occurred at end 1: continuation 3 4 1 (L - 1 = 3). Beams 1 and 2: the root alone.
  CHECK(std::vector<std::int32_t>(out.beams.begin(), out.beams.end()) ==
        std::vector<std::int32_t>{2, 3, 4, 1, 2, -1, -1, -1, 2, -1, -1, -1});
  CHECK(std::vector<std::int32_t>(out.beam_lengths.begin(), out.beam_lengths.end()) ==
        std::vector<std::int32_t>{4, 1, 1});
  // The next step: the history grew by 3, 9; the drafter appends only those (history_fresh 0).
  one_request next({1, 2, 3, 4, 1, 2, 3, 9}, 3, 4, false);
  CHECK(unpack(drafter.draft(next.in), 3, 4).empty());  // (3, 9) and (9) never occurred before
  one_request again({1, 2, 3, 4, 1, 2, 3, 9, 3}, 3, 4, false);
  CHECK(unpack(drafter.draft(again.in), 3, 4) == candidates{{9, 3}, {4, 1, 2}});
  // A fresh request on the same slot forgets the old history.
  one_request fresh({9, 3}, 3, 4, true);
  CHECK(unpack(drafter.draft(fresh.in), 3, 4).empty());
}

TEST_CASE("lookup and suffix drafters reject bad input with redraft::error", "[lookup][errors]") {
  lookup_drafter<cpu_backend> lookup(cpu_backend{});
  suffix_drafter<cpu_backend> suffix(cpu_backend{});
  one_request q({1, 2, 1}, 2, 3);
  SECTION("no history") {
    q.in.history = {};
    q.in.history_fresh = {};
    CHECK_THROWS_WITH(lookup.draft(q.in),
                      Catch::Contains("lookup_drafter: draft_input::history has 0 rows"));
    CHECK_THROWS_WITH(suffix.draft(q.in),
                      Catch::Contains("suffix_drafter: draft_input::history has 0 rows"));
  }
  SECTION("empty history") {
    one_request empty({}, 2, 3);
    CHECK_THROWS_WITH(lookup.draft(empty.in),
                      Catch::Contains("must end with its root token 0 but it is empty"));
  }
  SECTION("history not ending with the root") {
    q.root = 7;
    CHECK_THROWS_WITH(suffix.draft(q.in), Catch::Contains("must end with its root token 7"));
  }
  SECTION("log-probs asked (verifier::redrafter)") {
    q.in.want_log_probs = true;
    CHECK_THROWS_WITH(lookup.draft(q.in),
                      Catch::Contains("verifier::redrafter needs the drafter's log-probs"));
  }
  SECTION("a history that shrank without history_fresh") {
    lookup.draft(q.in);
    one_request shorter({1}, 2, 3, false);
    CHECK_THROWS_WITH(lookup.draft(shorter.in),
                      Catch::Contains("has 1 tokens, fewer than the 3 already seen"));
  }
  SECTION("bad options") {
    CHECK_THROWS_WITH(lookup_drafter<cpu_backend>(cpu_backend{}, lookup_options{1, 2, 4}),
                      Catch::Contains("min_ngram 2 and max_ngram 1"));
    CHECK_THROWS_WITH(lookup_drafter<cpu_backend>(cpu_backend{}, lookup_options{2, 1, 0}),
                      Catch::Contains("max_matches 0"));
    CHECK_THROWS_WITH(suffix_drafter<cpu_backend>(cpu_backend{}, suffix_options{1, 0.0f}),
                      Catch::Contains("max_depth 1 must be >= 2"));
    suffix_corpus corpus(8);
    CHECK_THROWS_WITH(suffix_drafter<cpu_backend>(cpu_backend{}, suffix_options{24, 0.0f}, &corpus),
                      Catch::Contains("the corpus has max_depth 8"));
  }
}

TEST_CASE("suffix_drafter ranks continuations by frequency", "[suffix]") {
  suffix_drafter<cpu_backend> drafter(cpu_backend{}, suffix_options{8, 0.0f});
  // Root 5; the longest suffix seen before is (5): followed by 6 6 twice and 7 8 once.
  const std::vector<std::int32_t> h = {2, 5, 6, 6, 3, 5, 7, 8, 4, 5, 6, 6, 9, 5};
  one_request q(h, 3, 3);
  CHECK(unpack(drafter.draft(q.in), 3, 3) == candidates{{6, 6}, {7, 8}});
  // The longest match wins over frequency: after (6, 6, 1, 5) only 7 8 followed.
  suffix_drafter<cpu_backend> longest(cpu_backend{}, suffix_options{8, 0.0f});
  one_request ql({5, 6, 6, 1, 5, 7, 8, 0, 5, 6, 6, 0, 5, 6, 6, 1, 5}, 3, 3);
  CHECK(unpack(longest.draft(ql.in), 3, 3) == candidates{{7, 8}});
  // One beam: the most frequent.
  suffix_drafter<cpu_backend> one(cpu_backend{}, suffix_options{8, 0.0f});
  one_request q1(h, 1, 3);
  CHECK(unpack(one.draft(q1.in), 1, 3) == candidates{{6, 6}});
  // min_token_probability 0.5 drops the 1-in-3 branch.
  suffix_drafter<cpu_backend> strict(cpu_backend{}, suffix_options{8, 0.5f});
  one_request q2(h, 3, 3);
  CHECK(unpack(strict.draft(q2.in), 3, 3) == candidates{{6, 6}});
  // Nothing recurs: no candidate.
  suffix_drafter<cpu_backend> none(cpu_backend{});
  one_request q3({1, 2, 3}, 3, 3);
  CHECK(unpack(none.draft(q3.in), 3, 3).empty());
}

TEST_CASE("suffix_trie counts every substring up to max_depth, incrementally", "[suffix]") {
  std::mt19937 rng(9);
  std::vector<std::int32_t> seq(80);
  for (auto& t : seq) t = static_cast<std::int32_t>(rng() % 3);
  const std::int32_t depth = 5;
  suffix_trie trie(depth);
  std::vector<std::int32_t> active;
  for (std::size_t i = 0; i < seq.size(); ++i) {
    trie.extend(active, seq[i]);
    // The active nodes are the current suffixes of lengths 1..min(i + 1, D - 1).
    REQUIRE(active.size() == std::min<std::size_t>(i + 1, depth - 1));
  }
  // Every substring of length <= D is a path; the count of a length-2 substring is its frequency.
  for (std::int32_t a = 0; a < 3; ++a)
    for (std::int32_t b = 0; b < 3; ++b) {
      std::int32_t expected = 0;
      for (std::size_t i = 0; i + 1 < seq.size(); ++i) expected += seq[i] == a && seq[i + 1] == b;
      const std::int32_t u = trie.child(0, a), v = u < 0 ? -1 : trie.child(u, b);
      CAPTURE(a, b);
      if (expected == 0) {
        CHECK(v == -1);
      } else {
        REQUIRE(v >= 0);
        const auto c = trie.continuations(u, 3, 1, 0.0f);
        bool found = false;
        for (const auto& s : c) found = found || s.tokens == draft_candidate{b};
        CHECK(found);
      }
    }
}

TEST_CASE(
    "suffix_drafter with a shared corpus proposes from the corpus when the history has no match",
    "[suffix]") {
  suffix_corpus corpus(8);
  corpus.add(std::vector<std::int32_t>{10, 11, 12, 13, 14});
  corpus.add(std::vector<std::int32_t>{20, 11, 12, 15});
  CHECK_THROWS_WITH(corpus.add(std::vector<std::int32_t>{1, -1}), Catch::Contains("token -1"));
  suffix_drafter<cpu_backend> drafter(cpu_backend{}, suffix_options{8, 0.0f}, &corpus);
  one_request q({3, 11, 12}, 2, 3);
  // Context (11, 12) in the corpus: followed by 13 14 and 15 (once each).
  CHECK(unpack(drafter.draft(q.in), 2, 3) == candidates{{13, 14}, {15}});
  // The corpus match moves incrementally with the history.
  one_request next({3, 11, 12, 13}, 2, 3, false);
  CHECK(unpack(drafter.draft(next.in), 2, 3) == candidates{{14}});
}

TEST_CASE("cap_candidates and pack_candidates: node cap, duplicates, candidates longer than L",
          "[lookup]") {
  candidates c = {{1, 2, 3}, {1, 2}, {1, 2, 3}, {1, 4, 5}, {6}};
  detail::cap_candidates(c, 0);  // duplicates and prefixes dropped
  CHECK(c == candidates{{1, 2, 3}, {1, 4, 5}, {6}});
  candidates capped = {{1, 2, 3}, {1, 4, 5}, {6}};
  detail::cap_candidates(capped, 6);  // root + 1 2 3 + 4 5 = 6 nodes; 6 does not fit
  CHECK(capped == candidates{{1, 2, 3}, {1, 4, 5}});
  candidates tight = {{1, 2, 3}, {1, 4, 5}};
  detail::cap_candidates(tight, 5);  // root + 1 2 3 + 4: the second cut after one new node
  CHECK(tight == candidates{{1, 2, 3}, {1, 4}});
  one_request q({1}, 2, 3);
  CHECK_THROWS_WITH(detail::pack_candidates(cpu_backend{}, q.in, {candidates{{1, 2, 3}}}),
                    Catch::Contains("has 3 tokens, more than L - 1 = 2"));
  CHECK_THROWS_WITH(detail::pack_candidates(cpu_backend{}, q.in, {candidates{{1}, {2}, {3}}}),
                    Catch::Contains("has 3 candidates for 2 beams"));
}

namespace {

// A drafter that returns fixed beams (full length), for the hybrid tests.
struct fixed_drafter {
  std::vector<std::int32_t> drafted;  // [W, L - 1] for one request
  std::int32_t width;
  draft_output<cpu_backend> draft(const draft_input& in) {
    REQUIRE(in.beam_width == width);
    draft_output<cpu_backend> out;
    const std::int32_t l = in.beam_length;
    out.beams = host_buffer<std::int32_t>(static_cast<index_t>(width) * l);
    for (std::int32_t w = 0; w < width; ++w) {
      out.beams[w * l] = in.roots[0];
      for (std::int32_t k = 1; k < l; ++k)
        out.beams[w * l + k] = drafted[static_cast<std::size_t>(w * (l - 1) + k - 1)];
    }
    return out;
  }
};

// A drafter of any shape: beam w's token at position k >= 1 is 10 k + w. Records the shapes asked.
struct ranked_drafter {
  std::vector<std::pair<std::int32_t, std::int32_t>> asked;  // (W, L) per call
  draft_output<cpu_backend> draft(const draft_input& in) {
    asked.emplace_back(in.beam_width, in.beam_length);
    draft_output<cpu_backend> out;
    const std::int32_t w_count = in.beam_width, l = in.beam_length;
    out.beams = host_buffer<std::int32_t>(static_cast<index_t>(w_count) * l);
    for (std::int32_t w = 0; w < w_count; ++w) {
      out.beams[w * l] = in.roots[0];
      for (std::int32_t k = 1; k < l; ++k) out.beams[w * l + k] = 10 * k + w;
    }
    return out;
  }
};

}  // namespace

TEST_CASE("hybrid_split and follow_step_width: a policy's W is the hybrid's beam budget",
          "[hybrid]") {
  hybrid_options o{4, 2, 0, false, 0, 0};
  const auto split = [&](std::int32_t w) {
    const hybrid_beams b = hybrid_split(o, w);
    return std::pair<std::int32_t, std::int32_t>{b.first, b.second};
  };
  using P = std::pair<std::int32_t, std::int32_t>;
  CHECK(split(1) == P{1, 0});
  CHECK(split(2) == P{1, 1});
  CHECK(split(3) == P{2, 1});
  CHECK(split(4) == P{3, 1});
  CHECK(split(6) == P{4, 2});
  CHECK(split(8) == P{5, 3});
  CHECK(split(16) == P{11, 5});
  CHECK_THROWS_WITH(split(0), Catch::Contains("hybrid_split: width 0 must be at least 1"));
  o = hybrid_options{0, 3, 0, false, 0, 0};
  CHECK(split(1) == P{0, 1});
  CHECK(split(2) == P{0, 2});
  o = hybrid_options{1, 1, 0, false, 0, 0};
  CHECK(split(5) == P{2, 3});  // round(2.5) = 3: ties go to the second source

  ranked_drafter head;
  lookup_drafter<cpu_backend> lookup(cpu_backend{});
  hybrid_options follow{4, 2, 0, false, 5, 0};  // the head drafts up to 5 tokens (root included)
  follow.follow_step_width = true;
  hybrid_drafter<cpu_backend, ranked_drafter, lookup_drafter<cpu_backend>> hybrid(
      cpu_backend{}, head, lookup, follow);
  // History "9 1 2 7 9": the lookup proposes 1 2 7 after the root 9.
  one_request w1({9, 1, 2, 7, 9}, 1, 4);
  CHECK(unpack(hybrid.draft(w1.in), 1, 4) == candidates{{10, 20, 30}});  // 1 + 0
  one_request w3({9, 1, 2, 7, 9}, 3, 4);  // the lookup's first call on the slot
  CHECK(unpack(hybrid.draft(w3.in), 3, 4) == candidates{{10, 20, 30}, {11, 21, 31}, {1, 2, 7}});
  one_request short_step({9, 1, 2, 7, 9}, 2, 3, false);  // L 3 caps the head's length 5
  CHECK(unpack(hybrid.draft(short_step.in), 2, 3) == candidates{{10, 20}, {1, 2}});
  CHECK(head.asked == std::vector<std::pair<std::int32_t, std::int32_t>>{{1, 4}, {2, 4}, {1, 3}});
  // Without follow_step_width the head's length 5 exceeds that step's L: an error, as before.
  follow.follow_step_width = false;
  follow.first_beams = 1;
  follow.second_beams = 1;
  hybrid_drafter<cpu_backend, ranked_drafter, lookup_drafter<cpu_backend>> fixed(
      cpu_backend{}, head, lookup, follow);
  CHECK_THROWS_WITH(fixed.draft(short_step.in),
                    Catch::Contains("a source's beam length 5 exceeds the step's beam_length 3"));
}

TEST_CASE("hybrid_drafter merges two sources into one trie under a node cap", "[hybrid]") {
  fixed_drafter head{{1, 2, 3, 1, 2, 4}, 2};  // two beams sharing "1 2"
  lookup_drafter<cpu_backend> lookup(cpu_backend{});
  // History "... 1 2 7 8 | 9 1 2 7" then root 9: lookup proposes 1 2 7 (from the earlier "9").
  one_request q({9, 1, 2, 7, 9}, 3, 4);
  SECTION("head first") {
    hybrid_drafter<cpu_backend, fixed_drafter, lookup_drafter<cpu_backend>> hybrid(
        cpu_backend{}, head, lookup, hybrid_options{2, 1, 0, false, 0, 0});
    const auto out = hybrid.draft(q.in);
    CHECK(unpack(out, 3, 4) == candidates{{1, 2, 3}, {1, 2, 4}, {1, 2, 7}});
    // The trie shares "1 2": 1 + 3 + 1 + 1 = 6 nodes.
    const tree<cpu_backend> t =
        build_tree(cpu_backend{}, view<const std::int32_t, 3>(out.beams.data(), 1, 3, 4),
                   matrix_view<const std::int32_t>(out.beam_lengths.data(), 1, 3));
    CHECK(t.total_nodes() == 6);
  }
  SECTION("lookup first, node cap 5") {
    hybrid_drafter<cpu_backend, fixed_drafter, lookup_drafter<cpu_backend>> hybrid(
        cpu_backend{}, head, lookup, hybrid_options{2, 1, 5, true, 0, 0});
    CHECK(unpack(hybrid.draft(q.in), 3, 4) == candidates{{1, 2, 7}, {1, 2, 3}});
  }
  SECTION("per-source lengths: the head drafts 2 tokens, the lookup 3") {
    fixed_drafter short_head{{1, 2, 1, 5}, 2};  // [W, 2] for beam_length 3
    hybrid_drafter<cpu_backend, fixed_drafter, lookup_drafter<cpu_backend>> hybrid(
        cpu_backend{}, short_head, lookup, hybrid_options{2, 1, 0, false, 3, 0});
    CHECK(unpack(hybrid.draft(q.in), 3, 4) == candidates{{1, 2}, {1, 5}, {1, 2, 7}});
    using H = hybrid_drafter<cpu_backend, fixed_drafter, lookup_drafter<cpu_backend>>;
    CHECK_THROWS_WITH(H(cpu_backend{}, short_head, lookup, hybrid_options{2, 1, 0, false, 1, 0}),
                      Catch::Contains("first_length 1 and second_length 0"));
    H too_long(cpu_backend{}, short_head, lookup, hybrid_options{2, 1, 0, false, 5, 0});
    CHECK_THROWS_WITH(too_long.draft(q.in),
                      Catch::Contains("a source's beam length 5 exceeds the step's beam_length 4"));
  }
  SECTION("acceptance budget: a source is cut after the depths it has been right at") {
    fixed_drafter one{{1, 2, 3}, 1};
    hybrid_options budget{1, 1, 0, false, 0, 0};
    budget.first_min_acceptance = 0.9f;
    budget.second_min_acceptance = 0.9f;
    budget.acceptance_decay = 0.5f;
    hybrid_drafter<cpu_backend, fixed_drafter, lookup_drafter<cpu_backend>> hybrid(
        cpu_backend{}, one, lookup, budget);
    one_request first({9, 1, 2, 7, 9}, 2, 4);
    CHECK(unpack(hybrid.draft(first.in), 2, 4) ==
          candidates{{1, 2, 3}, {1, 2, 7}});  // estimates start at the threshold
    // The target emitted 1 2 7 5: the head matched 2 tokens (depth 3 now 0.45 < 0.9: cut), the
    // lookup all 3. The lookup has no match for the new root 5.
    one_request second({9, 1, 2, 7, 9, 1, 2, 7, 5}, 2, 4, false);
    CHECK(unpack(hybrid.draft(second.in), 2, 4) == candidates{{1, 2}});
    // The target emitted 4: the head missed at depth 1 (0.475 < 0.9): it adds nothing now, but it
    // is still asked and measured.
    one_request third({9, 1, 2, 7, 9, 1, 2, 7, 5, 4}, 2, 4, false);
    CHECK(unpack(hybrid.draft(third.in), 2, 4).empty());
    // Emitted 1: the head's depth 1 climbs back to 0.74, still cut; the lookup (untouched so far)
    // proposes 2 7 5 in full.
    one_request fourth({9, 1, 2, 7, 9, 1, 2, 7, 5, 4, 1}, 2, 4, false);
    CHECK(unpack(hybrid.draft(fourth.in), 2, 4) == candidates{{2, 7, 5}});
    // Emitted 1: head 0.87, still cut; the lookup missed at depth 1 (0.475): cut to nothing.
    one_request fifth({9, 1, 2, 7, 9, 1, 2, 7, 5, 4, 1, 1}, 2, 4, false);
    CHECK(unpack(hybrid.draft(fifth.in), 2, 4).empty());
    // Emitted 1: head 0.93 >= 0.9 at depth 1 (0.475 at depth 2): one token again.
    one_request sixth({9, 1, 2, 7, 9, 1, 2, 7, 5, 4, 1, 1, 1}, 2, 4, false);
    CHECK(unpack(hybrid.draft(sixth.in), 2, 4) == candidates{{1}});
    // A fresh request on the slot starts from the threshold again: full candidates.
    one_request fresh({9, 1, 2, 7, 9}, 2, 4, true);
    CHECK(unpack(hybrid.draft(fresh.in), 2, 4) == candidates{{1, 2, 3}, {1, 2, 7}});
    hybrid_options bad = budget;
    bad.acceptance_decay = 1.0f;
    using H = hybrid_drafter<cpu_backend, fixed_drafter, lookup_drafter<cpu_backend>>;
    CHECK_THROWS_WITH(H(cpu_backend{}, one, lookup, bad),
                      Catch::Contains("acceptance_decay 1 in [0, 1)"));
  }
  SECTION("the caller's cap wins when smaller") {
    hybrid_drafter<cpu_backend, fixed_drafter, lookup_drafter<cpu_backend>> hybrid(
        cpu_backend{}, head, lookup, hybrid_options{2, 1, 5, false, 0, 0});
    q.in.max_nodes = 3;
    CHECK(unpack(hybrid.draft(q.in), 3, 4) == candidates{{1, 2}});
  }
  SECTION("bad input") {
    hybrid_drafter<cpu_backend, fixed_drafter, lookup_drafter<cpu_backend>> hybrid(
        cpu_backend{}, head, lookup, hybrid_options{2, 1, 0, false, 0, 0});
    q.in.beam_width = 4;
    CHECK_THROWS_WITH(hybrid.draft(q.in),
                      Catch::Contains("beam_width 4 must equal first_beams 2 + second_beams 1"));
    q.in.beam_width = 3;
    q.in.want_log_probs = true;
    CHECK_THROWS_WITH(hybrid.draft(q.in), Catch::Contains("hybrid_drafter: verifier::redrafter"));
    using H = hybrid_drafter<cpu_backend, fixed_drafter, lookup_drafter<cpu_backend>>;
    CHECK_THROWS_WITH(H(cpu_backend{}, head, lookup, hybrid_options{0, 0, 0, false, 0, 0}),
                      Catch::Contains("at least one beam"));
    CHECK_THROWS_WITH(H(cpu_backend{}, head, lookup, hybrid_options{1, 1, -1, false, 0, 0}),
                      Catch::Contains("max_nodes -1"));
  }
}

namespace {

// Records the history the decoder gives, and proposes what a lookup drafter would.
template <class B>
struct history_probe {
  std::vector<std::vector<std::int32_t>> seen;
  std::vector<std::uint8_t> fresh;
  lookup_drafter<B> inner;
  draft_output<B> draft(const draft_input& in) {
    for (index_t r = 0; r < in.roots.extent(0); ++r) {
      seen.emplace_back(in.history[r].begin(), in.history[r].end());
      fresh.push_back(in.history_fresh[r]);
    }
    return inner.draft(in);
  }
};

}  // namespace

TEMPLATE_TEST_CASE("the speculative decoder gives drafters each request's history",
                   "[loop][lookup]", REDRAFT_TEST_BACKENDS) {
  redraft::testing::synthetic_target_config config;
  config.vocab_size = 16;
  using target = redraft::testing::basic_synthetic_target<TestType>;
  target model(TestType{}, config);
  history_probe<TestType> probe{{}, {}, lookup_drafter<TestType>(model.backend())};
  speculative_decoder<TestType, target, history_probe<TestType>> decoder(model.backend(), model,
                                                                         probe);
  decode_options options;
  options.beam_width = 2;
  options.beam_length = 3;
  const generation_request q{{3, 4, 5}, 6, -1, -1};
  const auto result = decoder.generate({q}, options);
  REQUIRE(!probe.seen.empty());
  for (std::size_t i = 0; i < probe.seen.size(); ++i) {
    CAPTURE(i);
    std::vector<std::int32_t> expected = q.prompt;
    // The history at step i: the prompt plus the tokens emitted before the step.
    const auto& h = probe.seen[i];
    REQUIRE(h.size() > q.prompt.size());
    expected.insert(
        expected.end(), result.tokens[0].begin(),
        result.tokens[0].begin() + static_cast<std::ptrdiff_t>(h.size() - q.prompt.size()));
    CHECK(h == expected);
    CHECK(probe.fresh[i] == (i == 0 ? 1 : 0));
  }
  options.rule = verifier::redrafter;
  CHECK_THROWS_WITH(decoder.generate({q}, options), Catch::Contains("verifier::redrafter"));
}
