// redraft/loop/hybrid_drafter.hpp: one tree from two drafters, e.g. the draft head's beams plus
// prompt-lookup candidates (a Drafter itself, loop/drafter.hpp).
//
// Each step asks the first source for `first_beams` beams of `first_length` tokens and the second
// for `second_beams` of `second_length` (their per-step budgets; W = first_beams + second_beams,
// each length at most L, 0 meaning L: e.g. a draft head trained for L <= 6 drafts 5 tokens while
// lookup candidates run to L - 1 = 9), then lists the candidates of each
// request in packed order (the first source's beams, best first, then the second's, or the other
// way round with second_first) and inserts them into one trie. Shared prefixes are verified once:
// a lookup candidate that agrees with a head beam for k tokens adds only its remaining tokens.
// With a node cap (options.max_nodes or in.max_nodes, the smaller when both are set), candidates
// are inserted in order and cut where they would create node cap + 1, so the earlier source has
// priority; candidates that add no node (duplicates, prefixes of earlier ones) are dropped. The
// output is beams [R, W, L] with beam_lengths, so build_tree gives exactly that trie.
//
// Acceptance budget (options.first_min_acceptance / second_min_acceptance > 0): per slot and
// source, a_s[d] estimates the
// probability that the source's first d drafted tokens match what the target then emitted, an
// exponential moving average over the request's earlier steps. A step reads the tokens emitted
// since the previous step from draft_input::history and compares them with the source's
// previous candidates (as proposed, before any cut): with m the longest match, depths 1..m count
// as accepted, and depths after m as rejected unless every emitted token matched (then deeper
// depths were not observed and keep their estimate). Candidates are then cut after the deepest
// depth d with a_s[1..d] >= the source's threshold, possibly d = 0: the source is still asked
// and measured (the first emitted token always shows whether its depth 1 was right), so it comes
// back when the text starts to repeat. Estimates start at the threshold: a new request drafts
// in full until the source first misses. This
// spends the node budget where a source has been right: prompt lookup on text that repeats, and
// not on sampled text that does not. It looks only at earlier steps.
//
// Step shapes from a speculation policy (options.follow_step_width): the step's W
// (draft_input::beam_width, which an adaptive policy changes from step to step) is the total beam
// budget, split in the ratio first_beams : second_beams (hybrid_split(); the first source keeps
// at least one beam, the second gets one as soon as W >= 2), and each source's length is its
// configured length capped at the step's L (0: L). A plain step (L = 1) does not call the
// drafter. Without it, W must equal first_beams + second_beams (a fixed shape).
//
// Verification is unchanged: greedy stays exact and verifier::lossless stays lossless, because
// both treat every child of a node as a deterministic (one-hot) proposal whatever produced it.
// verifier::redrafter is refused: the merged beams have no single draft distribution.
// Cost per step: the two sources' costs, plus one host copy of their beams and an O(W^2 L) merge
// per request.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/loop/draft_candidates.hpp"
#include "redraft/loop/drafter.hpp"

namespace redraft {

struct hybrid_options {
  std::int32_t first_beams = 4;    // beams asked of the first source per step
  std::int32_t second_beams = 2;   // beams asked of the second source per step
  std::int32_t max_nodes = 0;      // node cap per request tree, root included; 0: none
  bool second_first = false;       // the second source's candidates come first in packed order
  std::int32_t first_length = 0;   // beam length (root included) asked of the first source; 0: L
  std::int32_t second_length = 0;  // the same for the second source; 0: L
  // Acceptance budget, per source (0: off): the source's candidates are cut after the deepest
  // depth d whose observed acceptance rates (see the file comment) at depths 1..d are all >= the
  // threshold; d may be 0 (the source adds nothing this step but is still measured). Needs
  // draft_input::history.
  float first_min_acceptance = 0.0f;
  float second_min_acceptance = 0.0f;
  float acceptance_decay = 0.8f;  // weight of the past in the exponential moving average, in [0, 1)
  // true: the step's beam_width (chosen by the decoder's speculation policy) is the total beam
  // budget, split between the sources by hybrid_split(); source lengths are capped at the step's
  // L. false: beam_width must be first_beams + second_beams.
  bool follow_step_width = false;
};

// The beams each source drafts when a step of `width` beams is split in the ratio
// first_beams : second_beams (hybrid_options::follow_step_width): second = round(width * share)
// within [1 if the second source has beams and width >= 2, width - 1 if the first has beams];
// first = width - second. E.g. 4 : 2 gives W 1 -> 1 + 0, 2 -> 1 + 1, 4 -> 3 + 1, 8 -> 5 + 3.
struct hybrid_beams {
  std::int32_t first = 0, second = 0;
};
inline hybrid_beams hybrid_split(const hybrid_options& options, std::int32_t width) {
  REDRAFT_REQUIRE(width >= 1, "hybrid_split: width ", width, " must be at least 1");
  const std::int32_t f = options.first_beams, s = options.second_beams;
  REDRAFT_REQUIRE(f >= 0 && s >= 0 && f + s >= 1, "hybrid_split: first_beams ", f,
                  " and second_beams ", s, " must be >= 0 with at least one beam in all");
  std::int32_t second =
      static_cast<std::int32_t>(std::lround(static_cast<double>(width) * s / (f + s)));
  if (s > 0 && width >= 2) second = std::max(second, 1);
  if (f > 0) second = std::min(second, width - 1);
  return {width - second, second};
}

namespace detail {

// The candidates of a drafter's output: beams [R, W, L] (+ beam_lengths [R, W]) in B's memory ->
// per request, the drafted tokens of each beam (length - 1 of them), beams of length 1 skipped.
template <Backend B>
std::vector<std::vector<draft_candidate>> unpack_candidates(const B& backend,
                                                            const draft_output<B>& out,
                                                            index_t rows, index_t width,
                                                            index_t length, const char* fn) {
  REDRAFT_REQUIRE(out.beams.size() == rows * width * length, fn, ": a source returned ",
                  out.beams.size(), " beam tokens, expected ", rows * width * length, " ([", rows,
                  ", ", width, ", ", length, "])");
  REDRAFT_REQUIRE(out.beam_lengths.size() == 0 || out.beam_lengths.size() == rows * width, fn,
                  ": a source returned ", out.beam_lengths.size(), " beam lengths, expected ",
                  rows * width, " or none");
  std::vector<std::int32_t> beams(static_cast<std::size_t>(rows * width * length));
  std::vector<std::int32_t> lengths(static_cast<std::size_t>(rows * width),
                                    static_cast<std::int32_t>(length));
  if (!beams.empty()) backend.copy_to_host(out.beams.data(), rows * width * length, beams.data());
  if (out.beam_lengths.size() > 0)
    backend.copy_to_host(out.beam_lengths.data(), rows * width, lengths.data());
  std::vector<std::vector<draft_candidate>> result(static_cast<std::size_t>(rows));
  for (index_t r = 0; r < rows; ++r)
    for (index_t w = 0; w < width; ++w) {
      const std::int32_t n = lengths[static_cast<std::size_t>(r * width + w)];
      REDRAFT_REQUIRE(n >= 1 && n <= length, fn, ": a source's beam_lengths[", r, ", ", w,
                      "] = ", n, " is outside [1, ", length, "]");
      const std::int32_t* beam = beams.data() + (r * width + w) * length;
      if (n > 1) result[static_cast<std::size_t>(r)].emplace_back(beam + 1, beam + n);
    }
  return result;
}

}  // namespace detail

template <Backend B, class First, class Second>
requires Drafter<First, B> && Drafter<Second, B>
class hybrid_drafter {
 public:
  // Both sources must outlive the drafter.
  hybrid_drafter(B backend, First& first, Second& second, hybrid_options options = {})
      : backend_(backend), first_(first), second_(second), options_(options) {
    REDRAFT_REQUIRE(options.first_beams >= 0 && options.second_beams >= 0 &&
                        options.first_beams + options.second_beams >= 1,
                    "hybrid_drafter: first_beams ", options.first_beams, " and second_beams ",
                    options.second_beams, " must be >= 0 with at least one beam in all");
    REDRAFT_REQUIRE(options.max_nodes >= 0, "hybrid_drafter: max_nodes ", options.max_nodes,
                    " must be >= 0 (0: no cap)");
    REDRAFT_REQUIRE(
        options.first_min_acceptance >= 0.0f && options.first_min_acceptance <= 1.0f &&
            options.second_min_acceptance >= 0.0f && options.second_min_acceptance <= 1.0f &&
            options.acceptance_decay >= 0.0f && options.acceptance_decay < 1.0f,
        "hybrid_drafter: first_min_acceptance ", options.first_min_acceptance,
        " and second_min_acceptance ", options.second_min_acceptance,
        " must be in [0, 1] and acceptance_decay ", options.acceptance_decay, " in [0, 1)");
    REDRAFT_REQUIRE((options.first_length == 0 || options.first_length >= 2) &&
                        (options.second_length == 0 || options.second_length >= 2),
                    "hybrid_drafter: first_length ", options.first_length, " and second_length ",
                    options.second_length, " must be 0 (L) or >= 2");
  }

  const hybrid_options& options() const { return options_; }

  draft_output<B> draft(const draft_input& in) {
    constexpr const char* fn = "hybrid_drafter";
    REDRAFT_REQUIRE(!in.want_log_probs, fn,
                    ": verifier::redrafter needs one draft distribution per beam, which merged "
                    "candidates do not "
                    "have; use verifier::greedy or verifier::lossless");
    REDRAFT_REQUIRE(
        options_.follow_step_width || in.beam_width == options_.first_beams + options_.second_beams,
        fn, ": beam_width ", in.beam_width, " must equal first_beams ", options_.first_beams,
        " + second_beams ", options_.second_beams,
        " (set decode_options::beam_width to the sum, or follow_step_width)");
    REDRAFT_REQUIRE(in.beam_width >= 1, fn, ": beam_width ", in.beam_width, " must be >= 1");
    REDRAFT_REQUIRE(in.beam_length >= 2, fn, ": beam_length ", in.beam_length, " must be >= 2");
    REDRAFT_REQUIRE(in.max_nodes >= 0, fn, ": max_nodes ", in.max_nodes,
                    " must be >= 0 (0: no cap)");
    const index_t rows = in.roots.extent(0);
    const hybrid_beams beams = options_.follow_step_width
                                   ? hybrid_split(options_, in.beam_width)
                                   : hybrid_beams{options_.first_beams, options_.second_beams};
    const auto length_of = [&](std::int32_t configured) {
      return options_.follow_step_width && configured > in.beam_length ? in.beam_length
                                                                       : configured;
    };
    std::vector<std::vector<draft_candidate>> a, b;
    if (beams.first > 0) a = ask(first_, in, beams.first, length_of(options_.first_length));
    if (beams.second > 0) b = ask(second_, in, beams.second, length_of(options_.second_length));
    if (options_.first_min_acceptance > 0.0f || options_.second_min_acceptance > 0.0f)
      apply_acceptance_budget(in, a, b);
    std::int32_t cap = options_.max_nodes;
    if (in.max_nodes > 0 && (cap == 0 || in.max_nodes < cap)) cap = in.max_nodes;
    std::vector<std::vector<draft_candidate>> merged(static_cast<std::size_t>(rows));
    for (index_t r = 0; r < rows; ++r) {
      auto& m = merged[static_cast<std::size_t>(r)];
      auto take = [&](std::vector<std::vector<draft_candidate>>& from) {
        if (from.empty()) return;
        for (auto& c : from[static_cast<std::size_t>(r)]) m.push_back(std::move(c));
      };
      if (options_.second_first) {
        take(b);
        take(a);
      } else {
        take(a);
        take(b);
      }
      detail::cap_candidates(m, cap);
    }
    return detail::pack_candidates(backend_, in, merged);
  }

 private:
  template <class D>
  std::vector<std::vector<draft_candidate>> ask(D& source, const draft_input& in,
                                                std::int32_t beams, std::int32_t length) {
    REDRAFT_REQUIRE(length <= in.beam_length, "hybrid_drafter: a source's beam length ", length,
                    " exceeds the step's beam_length ", in.beam_length);
    draft_input sub = in;
    sub.beam_width = beams;
    sub.beam_length = length == 0 ? in.beam_length : length;
    sub.max_nodes = 0;  // the cap applies to the merged tree
    const draft_output<B> out = source.draft(sub);
    return detail::unpack_candidates(backend_, out, in.roots.extent(0), beams, sub.beam_length,
                                     "hybrid_drafter");
  }

  // Per slot: the sources' previous candidates, the history length then, the estimates a_s[d].
  struct slot_state {
    std::int64_t seen = -1;  // -1: no previous step
    std::vector<draft_candidate> previous[2];
    std::vector<float> rate[2];  // [d - 1] for depth d
  };

  // Updates each request's estimates from what it emitted since its previous step, records the
  // new candidates, and cuts them (per source) after the last trusted depth.
  void apply_acceptance_budget(const draft_input& in, std::vector<std::vector<draft_candidate>>& a,
                               std::vector<std::vector<draft_candidate>>& b) {
    constexpr const char* fn = "hybrid_drafter";
    const index_t rows = in.roots.extent(0);
    REDRAFT_REQUIRE(in.history.extent(0) == rows && in.history_fresh.extent(0) == rows, fn,
                    ": the acceptance budget needs draft_input::history and history_fresh (", rows,
                    " rows); got ", in.history.extent(0), " and ", in.history_fresh.extent(0));
    const float keep = options_.acceptance_decay, take = 1.0f - keep;
    const float threshold[2] = {options_.first_min_acceptance, options_.second_min_acceptance};
    for (index_t r = 0; r < rows; ++r) {
      REDRAFT_REQUIRE(in.slots[r] >= 0, fn, ": slot ", in.slots[r], " of request ", r,
                      " is negative");
      if (static_cast<std::size_t>(in.slots[r]) >= slots_.size())
        slots_.resize(static_cast<std::size_t>(in.slots[r]) + 1);
      slot_state& st = slots_[static_cast<std::size_t>(in.slots[r])];
      const std::span<const std::int32_t> h = in.history[r];
      if (in.history_fresh[r] != 0) st = slot_state{};
      for (int s = 0; s < 2; ++s) {
        auto& rate = st.rate[s];
        // Start at the threshold: trusted (drafted in full) until the source's first miss.
        if (rate.size() < static_cast<std::size_t>(in.beam_length - 1))
          rate.resize(static_cast<std::size_t>(in.beam_length - 1), threshold[s]);
        if (st.seen < 0 || st.previous[s].empty() || static_cast<std::int64_t>(h.size()) <= st.seen)
          continue;
        const std::span<const std::int32_t> emitted = h.subspan(static_cast<std::size_t>(st.seen));
        std::size_t match = 0;
        for (const draft_candidate& c : st.previous[s]) {
          std::size_t m = 0;
          while (m < c.size() && m < emitted.size() && c[m] == emitted[m]) ++m;
          match = std::max(match, m);
        }
        const std::size_t observed =
            match < emitted.size() ? rate.size() : std::min(match, rate.size());
        for (std::size_t d = 0; d < observed; ++d)
          rate[d] = keep * rate[d] + take * (d < match ? 1.0f : 0.0f);
      }
      st.seen = static_cast<std::int64_t>(h.size());
      std::vector<std::vector<draft_candidate>>* lists[2] = {&a, &b};
      for (int s = 0; s < 2; ++s) {
        if (lists[s]->empty()) {
          st.previous[s].clear();
          continue;
        }
        auto& mine = (*lists[s])[static_cast<std::size_t>(r)];
        st.previous[s] = mine;
        if (threshold[s] <= 0.0f) continue;
        std::size_t depth = 0;  // tokens kept
        while (depth < st.rate[s].size() && st.rate[s][depth] >= threshold[s]) ++depth;
        std::vector<draft_candidate> kept;
        for (draft_candidate& c : mine) {
          if (c.size() > depth) c.resize(depth);
          if (!c.empty()) kept.push_back(std::move(c));
        }
        mine = std::move(kept);
      }
    }
  }

  B backend_;
  First& first_;
  Second& second_;
  hybrid_options options_;
  std::vector<slot_state> slots_;  // [slot], only with min_acceptance > 0
};

}  // namespace redraft
