// redraft/loop/hybrid_drafter.hpp: one tree from two drafters, e.g. the draft head's beams plus
// prompt-lookup candidates (a Drafter itself, loop/drafter.hpp).
//
// Each step asks the first source for `first_beams` beams and the second for `second_beams`
// (their per-step budgets; W = first_beams + second_beams), then lists the candidates of each
// request in packed order (the first source's beams, best first, then the second's, or the other
// way round with second_first) and inserts them into one trie. Shared prefixes are verified once:
// a lookup candidate that agrees with a head beam for k tokens adds only its remaining tokens.
// With a node cap (options.max_nodes or in.max_nodes, the smaller when both are set), candidates
// are inserted in order and cut where they would create node cap + 1, so the earlier source has
// priority; candidates that add no node (duplicates, prefixes of earlier ones) are dropped. The
// output is beams [R, W, L] with beam_lengths, so build_tree gives exactly that trie.
//
// Verification is unchanged: greedy stays exact and verifier::lossless stays lossless, because
// both treat every child of a node as a deterministic (one-hot) proposal whatever produced it.
// verifier::redrafter is refused: the merged beams have no single draft distribution.
// Cost per step: the two sources' costs, plus one host copy of their beams and an O(W^2 L) merge
// per request.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/loop/draft_candidates.hpp"
#include "redraft/loop/drafter.hpp"

namespace redraft {

struct hybrid_options {
  std::int32_t first_beams = 4;   // beams asked of the first source per step
  std::int32_t second_beams = 2;  // beams asked of the second source per step
  std::int32_t max_nodes = 0;     // node cap per request tree, root included; 0: none
  bool second_first = false;      // the second source's candidates come first in packed order
};

namespace detail {

// The candidates of a drafter's output: beams [R, W, L] (+ beam_lengths [R, W]) in B's memory ->
// per request, the drafted tokens of each beam (length - 1 of them), beams of length 1 skipped.
template <Backend B>
std::vector<std::vector<draft_candidate>> unpack_candidates(const B& backend, const draft_output<B>& out, index_t rows,
                                                            index_t width, index_t length, const char* fn) {
  REDRAFT_REQUIRE(out.beams.size() == rows * width * length, fn, ": a source returned ", out.beams.size(),
                  " beam tokens, expected ", rows * width * length, " ([", rows, ", ", width, ", ", length, "])");
  REDRAFT_REQUIRE(out.beam_lengths.size() == 0 || out.beam_lengths.size() == rows * width, fn,
                  ": a source returned ", out.beam_lengths.size(), " beam lengths, expected ", rows * width, " or none");
  std::vector<std::int32_t> beams(static_cast<std::size_t>(rows * width * length));
  std::vector<std::int32_t> lengths(static_cast<std::size_t>(rows * width), static_cast<std::int32_t>(length));
  if (!beams.empty()) backend.copy_to_host(out.beams.data(), rows * width * length, beams.data());
  if (out.beam_lengths.size() > 0) backend.copy_to_host(out.beam_lengths.data(), rows * width, lengths.data());
  std::vector<std::vector<draft_candidate>> result(static_cast<std::size_t>(rows));
  for (index_t r = 0; r < rows; ++r)
    for (index_t w = 0; w < width; ++w) {
      const std::int32_t n = lengths[static_cast<std::size_t>(r * width + w)];
      REDRAFT_REQUIRE(n >= 1 && n <= length, fn, ": a source's beam_lengths[", r, ", ", w, "] = ", n,
                      " is outside [1, ", length, "]");
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
                    "hybrid_drafter: first_beams ", options.first_beams, " and second_beams ", options.second_beams,
                    " must be >= 0 with at least one beam in all");
    REDRAFT_REQUIRE(options.max_nodes >= 0, "hybrid_drafter: max_nodes ", options.max_nodes, " must be >= 0 (0: no cap)");
  }

  const hybrid_options& options() const { return options_; }

  draft_output<B> draft(const draft_input& in) {
    constexpr const char* fn = "hybrid_drafter";
    REDRAFT_REQUIRE(!in.want_log_probs, fn,
                    ": verifier::redrafter needs one draft distribution per beam, which merged candidates do not "
                    "have; use verifier::greedy or verifier::lossless");
    REDRAFT_REQUIRE(in.beam_width == options_.first_beams + options_.second_beams, fn, ": beam_width ",
                    in.beam_width, " must equal first_beams ", options_.first_beams, " + second_beams ",
                    options_.second_beams, " (set decode_options::beam_width to the sum)");
    REDRAFT_REQUIRE(in.beam_length >= 2, fn, ": beam_length ", in.beam_length, " must be >= 2");
    REDRAFT_REQUIRE(in.max_nodes >= 0, fn, ": max_nodes ", in.max_nodes, " must be >= 0 (0: no cap)");
    const index_t rows = in.roots.extent(0);
    std::vector<std::vector<draft_candidate>> a, b;
    if (options_.first_beams > 0) a = ask(first_, in, options_.first_beams);
    if (options_.second_beams > 0) b = ask(second_, in, options_.second_beams);
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
  std::vector<std::vector<draft_candidate>> ask(D& source, const draft_input& in, std::int32_t beams) {
    draft_input sub = in;
    sub.beam_width = beams;
    sub.max_nodes = 0;  // the cap applies to the merged tree
    const draft_output<B> out = source.draft(sub);
    return detail::unpack_candidates(backend_, out, in.roots.extent(0), beams, in.beam_length, "hybrid_drafter");
  }

  B backend_;
  First& first_;
  Second& second_;
  hybrid_options options_;
};

}  // namespace redraft
