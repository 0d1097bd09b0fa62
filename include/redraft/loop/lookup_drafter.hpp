// redraft/loop/lookup_drafter.hpp: prompt lookup / n-gram drafting, a model-free Drafter
// (loop/drafter.hpp).
//
// For each request, match the last n tokens of its history (prompt + emitted, the root last), for
// n from max_ngram down to min_ngram, against earlier places in the same history, and propose the
// up to L - 1 tokens that followed each earlier occurrence. Candidates are ranked by n (longer
// matches first), then by recency (the latest occurrence first); up to W distinct candidates per
// request, the rest of the W beams empty (beam_lengths 1). A candidate that is a prefix of an
// earlier one is dropped, and one that extends an earlier one replaces it: each beam adds nodes.
//
// Index, per KV slot (incremental): for every n in [1, max_ngram], a hash chain from each n-gram
// to its occurrences, latest first. The n-gram ending at position p is indexed once token p + 1
// exists (an occurrence is only useful with a continuation). Cost per step, per request:
// appending m new tokens costs O(m max_ngram) hash insertions; proposing costs O(max_ngram)
// lookups plus O(max_matches (max_ngram + L + W L)) to read and dedup the continuations: nothing
// depends on the history's length. The first draft of a request indexes its prompt: O(P max_ngram).
// Memory: O(max_ngram) int32 per history token.
//
// Bad input: no history (the caller left draft_input::history empty), or a history that does not
// end with the root, throws redraft::error; a history of one token, or one where no n-gram
// recurs, gives no candidate (every beam length 1: the step verifies the root alone, a plain step).
// n larger than the history simply finds no match. verifier::redrafter is refused (no log-probs).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/loop/draft_candidates.hpp"
#include "redraft/loop/drafter.hpp"

namespace redraft {

struct lookup_options {
  std::int32_t max_ngram = 3;     // longest suffix matched
  std::int32_t min_ngram = 1;     // shortest suffix matched
  std::int32_t max_matches = 32;  // occurrences examined per n (bounds the cost per step)
};

// The n-gram index of one token sequence, appended to incrementally.
class ngram_index {
 public:
  explicit ngram_index(std::int32_t max_ngram = 3)
      : max_ngram_(max_ngram), previous_(static_cast<std::size_t>(max_ngram)) {
    REDRAFT_REQUIRE(max_ngram >= 1, "ngram_index: max_ngram ", max_ngram, " must be >= 1");
  }

  const std::vector<std::int32_t>& tokens() const { return tokens_; }

  void clear() {
    tokens_.clear();
    latest_.clear();
    for (auto& p : previous_) p.clear();
  }

  // Appends tokens; indexes every n-gram that now has a continuation. O(size max_ngram).
  void append(std::span<const std::int32_t> more) {
    for (const std::int32_t t : more) {
      tokens_.push_back(t);
      const std::int64_t end =
          static_cast<std::int64_t>(tokens_.size()) - 2;  // gains its continuation now
      if (end < 0) continue;
      for (std::int32_t n = 1; n <= max_ngram_ && end - n + 1 >= 0; ++n) {
        auto& prev = previous_[static_cast<std::size_t>(n - 1)];
        prev.resize(static_cast<std::size_t>(end) + 1, -1);
        const std::uint64_t key = hash(static_cast<std::int32_t>(end), n);
        auto [it, inserted] = latest_.try_emplace(key, static_cast<std::int32_t>(end));
        if (!inserted) {
          prev[static_cast<std::size_t>(end)] = it->second;
          it->second = static_cast<std::int32_t>(end);
        }
      }
    }
  }

  // Up to `count` distinct continuations (each at most `length` tokens) of the sequence's last n
  // tokens, for n from max_n down to min_n; see the file comment for the ranking.
  std::vector<draft_candidate> propose(std::int32_t count, std::int32_t length, std::int32_t min_n,
                                       std::int32_t max_n, std::int32_t max_matches) const {
    std::vector<draft_candidate> out;
    const std::int64_t size = static_cast<std::int64_t>(tokens_.size());
    const std::int32_t top = std::min<std::int32_t>(max_n, max_ngram_);
    for (std::int32_t n = top; n >= min_n && static_cast<std::int32_t>(out.size()) < count; --n) {
      if (n > size - 1) continue;  // needs an earlier occurrence plus a continuation
      const std::int32_t last = static_cast<std::int32_t>(size - 1);
      const auto it = latest_.find(hash(last, n));
      if (it == latest_.end()) continue;
      const auto& prev = previous_[static_cast<std::size_t>(n - 1)];
      std::int32_t examined = 0;
      for (std::int32_t p = it->second;
           p >= 0 && examined < max_matches && static_cast<std::int32_t>(out.size()) < count;
           p = prev[static_cast<std::size_t>(p)]) {
        ++examined;
        if (!std::equal(tokens_.begin() + (p - n + 1), tokens_.begin() + p + 1,
                        tokens_.begin() + (last - n + 1)))
          continue;  // a hash collision
        const std::int64_t stop = std::min<std::int64_t>(p + 1 + length, size);
        add_distinct(out, draft_candidate(tokens_.begin() + p + 1, tokens_.begin() + stop));
      }
    }
    return out;
  }

 private:
  // Hash of the n tokens ending at `end` (FNV-1a over the ids, with n mixed in).
  std::uint64_t hash(std::int32_t end, std::int32_t n) const {
    std::uint64_t h = 1469598103934665603ull ^ static_cast<std::uint64_t>(n);
    for (std::int32_t i = end - n + 1; i <= end; ++i) {
      h ^= static_cast<std::uint32_t>(tokens_[static_cast<std::size_t>(i)]);
      h *= 1099511628211ull;
    }
    return h;
  }

  // Adds c unless it is a prefix of a kept candidate; replaces a kept candidate that is a prefix of
  // c.
  static void add_distinct(std::vector<draft_candidate>& out, draft_candidate c) {
    for (draft_candidate& k : out) {
      const std::size_t n = std::min(k.size(), c.size());
      if (!std::equal(k.begin(), k.begin() + static_cast<std::ptrdiff_t>(n), c.begin())) continue;
      if (c.size() > k.size()) k = std::move(c);
      return;
    }
    out.push_back(std::move(c));
  }

  std::int32_t max_ngram_;
  std::vector<std::int32_t> tokens_;
  std::unordered_map<std::uint64_t, std::int32_t> latest_;  // hash(n-gram) -> latest end position
  std::vector<std::vector<std::int32_t>> previous_;  // [n - 1][end] -> previous end, -1: none
};

template <Backend B>
class lookup_drafter {
 public:
  explicit lookup_drafter(B backend, lookup_options options = {})
      : backend_(backend), options_(options) {
    REDRAFT_REQUIRE(options.min_ngram >= 1 && options.max_ngram >= options.min_ngram,
                    "lookup_drafter: min_ngram ", options.min_ngram, " and max_ngram ",
                    options.max_ngram, " must satisfy 1 <= min_ngram <= max_ngram");
    REDRAFT_REQUIRE(options.max_matches >= 1, "lookup_drafter: max_matches ", options.max_matches,
                    " must be >= 1");
  }

  const lookup_options& options() const { return options_; }

  // The candidates of every request of `in`, best first (at most W of at most L - 1 tokens, within
  // in.max_nodes), after bringing each slot's index up to date. draft() packs them into beams.
  std::vector<std::vector<draft_candidate>> candidates(const draft_input& in) {
    constexpr const char* fn = "lookup_drafter";
    detail::check_history_input(fn, in);
    const index_t rows = in.roots.extent(0);
    std::vector<std::vector<draft_candidate>> out(static_cast<std::size_t>(rows));
    for (index_t r = 0; r < rows; ++r) {
      ngram_index& index = slot(in.slots[r]);
      detail::sync_history(
          fn, in, r, static_cast<std::int64_t>(index.tokens().size()), [&] { index.clear(); },
          [&](std::span<const std::int32_t> t) { index.append(t); });
      auto& c = out[static_cast<std::size_t>(r)];
      c = index.propose(in.beam_width, in.beam_length - 1, options_.min_ngram, options_.max_ngram,
                        options_.max_matches);
      detail::cap_candidates(c, in.max_nodes);
    }
    return out;
  }

  draft_output<B> draft(const draft_input& in) {
    return detail::pack_candidates(backend_, in, candidates(in));
  }

 private:
  ngram_index& slot(std::int32_t s) {
    if (static_cast<std::size_t>(s) >= slots_.size())
      slots_.resize(static_cast<std::size_t>(s) + 1, ngram_index(options_.max_ngram));
    return slots_[static_cast<std::size_t>(s)];
  }

  B backend_;
  lookup_options options_;
  std::vector<ngram_index> slots_;  // [slot]
};

}  // namespace redraft
