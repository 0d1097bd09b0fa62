// redraft/loop/suffix_drafter.hpp: suffix drafting with frequency-ranked continuations, a
// model-free Drafter (loop/drafter.hpp).
//
// Each KV slot keeps a suffix trie of its request's history (prompt + emitted), cut at depth D =
// max_depth: every substring of at most D tokens is a path from the root, and each node counts
// the occurrences of its substring. An optional shared corpus (suffix_corpus, read only, any
// number of sequences) is a second trie of the same kind.
//
// Drafting request r: the context is the longest suffix of its history (at most D - (L - 1)
// tokens, so continuations of L - 1 tokens fit under the depth cut) that occurred before with a
// continuation. From the context node, a beam search of width W over the trie's children, scored
// by the product of the children's frequencies (count(child) / counts of all children; ties go to
// the continuation seen first), gives up
// to W distinct continuations of up to L - 1 tokens; a path that reaches a node without children
// ends early (a shorter candidate). With a corpus, the corpus trie is searched the same way from
// its own longest matching context, and the two candidate lists merge by score (the request's own
// history first on ties), prefixes of kept candidates dropped.
//
// Incremental: the trie keeps the nodes of the history's current suffixes (depths 1..D-1), so
// appending a token extends each of them by one child: O(D) hash operations per token, never a
// rescan (the first draft of a request indexes its prompt: O(P D)); the corpus match of each
// request moves the same way, read only, O(D) per token. Proposing costs O(D) to find the context
// plus O(W (L - 1) F) for the beam search (F: the children per node, small in practice). Memory: at
// most D nodes per history token (a node: 6 int32 plus a hash entry).
//
// Bad input: a missing history, or one not ending with the root, throws redraft::error; a
// history whose suffixes never occurred before gives no candidate (every beam length 1).
// verifier::redrafter is refused (no log-probs).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/loop/draft_candidates.hpp"
#include "redraft/loop/drafter.hpp"

namespace redraft {

struct suffix_options {
  std::int32_t max_depth = 24;  // D: longest substring indexed (context + continuation)
  float min_token_probability =
      0.0f;  // a child less frequent than this (among its siblings) is not followed
};

// A candidate with its score (log of the product of the frequencies along it).
struct scored_candidate {
  draft_candidate tokens;
  double log_score = 0;
};

// A suffix trie with occurrence counts, cut at depth max_depth. Node 0 is the root (the empty
// substring).
class suffix_trie {
 public:
  explicit suffix_trie(std::int32_t max_depth = 24) : max_depth_(max_depth) {
    REDRAFT_REQUIRE(max_depth >= 2, "suffix_trie: max_depth ", max_depth,
                    " must be >= 2 (a context and a token)");
    clear();
  }

  std::int32_t max_depth() const { return max_depth_; }
  std::size_t num_nodes() const { return nodes_.size(); }

  void clear() {
    nodes_.assign(1, node{-1, 0, -1, -1, -1, 0});
    children_.clear();
  }

  // The child of u holding `token`, or -1.
  std::int32_t child(std::int32_t u, std::int32_t token) const {
    const auto it = children_.find(key(u, token));
    return it == children_.end() ? -1 : it->second;
  }

  // Appends `token` to a sequence whose current suffixes (depths 1, 2, ... up to D - 1) are the
  // nodes `active`: counts one more occurrence of every suffix ending at the token (creating
  // nodes as needed) and updates `active`. O(D).
  void extend(std::vector<std::int32_t>& active, std::int32_t token) {
    std::vector<std::int32_t> next;
    next.reserve(active.size() + 1);
    const std::int32_t first = add(0, token);
    if (max_depth_ > 1) next.push_back(first);
    for (const std::int32_t u : active) {
      const std::int32_t v = add(u, token);
      if (nodes_[static_cast<std::size_t>(v)].depth < max_depth_) next.push_back(v);
    }
    active = std::move(next);
  }

  // Read-only form of extend for matching another sequence against this trie: `active` keeps the
  // nodes of that sequence's suffixes present in the trie (depths 1..m, shorter first). O(D).
  void follow(std::vector<std::int32_t>& active, std::int32_t token) const {
    std::vector<std::int32_t> next;
    std::int32_t v = child(0, token);
    if (v >= 0) {
      next.push_back(v);
      for (const std::int32_t u : active) {
        v = child(u, token);
        if (v < 0) break;  // a longer suffix cannot be present when a shorter one is missing
        if (nodes_[static_cast<std::size_t>(v)].depth < max_depth_) next.push_back(v);
      }
    }
    active = std::move(next);
  }

  // The deepest node of `active` (suffixes, shorter first) of depth <= max_context with a child;
  // -1: none.
  std::int32_t context(const std::vector<std::int32_t>& active, std::int32_t max_context) const {
    for (std::size_t i = active.size(); i-- > 0;) {
      const node& n = nodes_[static_cast<std::size_t>(active[i])];
      if (n.depth <= max_context && n.first_child >= 0) return active[i];
    }
    return -1;
  }

  // Up to `count` continuations of at most `length` tokens from node u, by beam search over the
  // children's frequencies (see the file comment). Best first.
  std::vector<scored_candidate> continuations(std::int32_t u, std::int32_t count,
                                              std::int32_t length, float min_probability) const {
    struct path {
      std::int32_t node;
      scored_candidate c;
      bool open;
    };
    std::vector<path> beams{path{u, {}, true}};
    for (std::int32_t step = 0; step < length; ++step) {
      std::vector<path> next;
      bool grew = false;
      for (path& p : beams) {
        if (!p.open) {
          next.push_back(std::move(p));
          continue;
        }
        double total = 0;
        for (std::int32_t c = nodes_[static_cast<std::size_t>(p.node)].first_child; c >= 0;
             c = nodes_[static_cast<std::size_t>(c)].next_sibling)
          total += nodes_[static_cast<std::size_t>(c)].count;
        bool any = false;
        for (std::int32_t c = nodes_[static_cast<std::size_t>(p.node)].first_child; c >= 0;
             c = nodes_[static_cast<std::size_t>(c)].next_sibling) {
          const node& n = nodes_[static_cast<std::size_t>(c)];
          const double prob = n.count / total;
          if (prob < min_probability) continue;
          path q{c, p.c, n.depth < max_depth_};
          q.c.tokens.push_back(n.token);
          q.c.log_score += std::log(prob);
          next.push_back(std::move(q));
          any = grew = true;
        }
        if (!any && !p.c.tokens.empty()) next.push_back(path{p.node, std::move(p.c), false});
      }
      beams = std::move(next);
      if (!grew) break;
      std::stable_sort(beams.begin(), beams.end(),
                       [](const path& a, const path& b) { return a.c.log_score > b.c.log_score; });
      if (static_cast<std::int32_t>(beams.size()) > count)
        beams.resize(static_cast<std::size_t>(count));
    }
    std::vector<scored_candidate> out;
    for (path& p : beams)
      if (!p.c.tokens.empty()) out.push_back(std::move(p.c));
    return out;
  }

 private:
  struct node {
    std::int32_t token;
    std::int32_t count;         // occurrences of the substring (end positions)
    std::int32_t first_child;   // -1: none; children in creation order
    std::int32_t last_child;    // -1: none
    std::int32_t next_sibling;  // -1: none
    std::int32_t depth;
  };

  static std::uint64_t key(std::int32_t u, std::int32_t token) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(u)) << 32) |
           static_cast<std::uint32_t>(token);
  }

  // The child of u holding token (created if new), with its count incremented.
  std::int32_t add(std::int32_t u, std::int32_t token) {
    auto [it, inserted] =
        children_.try_emplace(key(u, token), static_cast<std::int32_t>(nodes_.size()));
    if (inserted) {
      const std::int32_t v = it->second, previous = nodes_[static_cast<std::size_t>(u)].last_child;
      nodes_.push_back(node{token, 0, -1, -1, -1, nodes_[static_cast<std::size_t>(u)].depth + 1});
      if (previous < 0) {
        nodes_[static_cast<std::size_t>(u)].first_child = v;
      } else {
        nodes_[static_cast<std::size_t>(previous)].next_sibling = v;
      }
      nodes_[static_cast<std::size_t>(u)].last_child = v;
    }
    ++nodes_[static_cast<std::size_t>(it->second)].count;
    return it->second;
  }

  std::int32_t max_depth_;
  std::vector<node> nodes_;
  std::unordered_map<std::uint64_t, std::int32_t> children_;  // (parent, token) -> child
};

// A shared, read-only corpus for suffix_drafter: the suffix trie of any number of sequences
// (substrings never cross two sequences). Build it before decoding; O(D) per token.
class suffix_corpus {
 public:
  explicit suffix_corpus(std::int32_t max_depth = 24) : trie_(max_depth) {}

  void add(std::span<const std::int32_t> sequence) {
    std::vector<std::int32_t> active;
    for (const std::int32_t t : sequence) {
      REDRAFT_REQUIRE(t >= 0, "suffix_corpus::add: token ", t, " is not a valid token id");
      trie_.extend(active, t);
    }
  }

  const suffix_trie& trie() const { return trie_; }

 private:
  suffix_trie trie_;
};

template <Backend B>
class suffix_drafter {
 public:
  // corpus: optional shared corpus; it must outlive the drafter and use the same max_depth.
  explicit suffix_drafter(B backend, suffix_options options = {},
                          const suffix_corpus* corpus = nullptr)
      : backend_(backend), options_(options), corpus_(corpus) {
    REDRAFT_REQUIRE(options.max_depth >= 2, "suffix_drafter: max_depth ", options.max_depth,
                    " must be >= 2");
    REDRAFT_REQUIRE(options.min_token_probability >= 0.0f && options.min_token_probability <= 1.0f,
                    "suffix_drafter: min_token_probability ", options.min_token_probability,
                    " must be in [0, 1]");
    REDRAFT_REQUIRE(corpus == nullptr || corpus->trie().max_depth() == options.max_depth,
                    "suffix_drafter: the corpus has max_depth ",
                    corpus == nullptr ? 0 : corpus->trie().max_depth(),
                    " but the drafter's max_depth is ", options.max_depth);
  }

  // The candidates of every request of `in` (at most W of at most L - 1 tokens, within
  // in.max_nodes), after bringing each slot's trie up to date. draft() packs them into beams.
  std::vector<std::vector<draft_candidate>> candidates(const draft_input& in) {
    constexpr const char* fn = "suffix_drafter";
    detail::check_history_input(fn, in);
    const index_t rows = in.roots.extent(0);
    const std::int32_t length = in.beam_length - 1;
    const std::int32_t max_context = std::max(1, options_.max_depth - length);
    std::vector<std::vector<draft_candidate>> out(static_cast<std::size_t>(rows));
    for (index_t r = 0; r < rows; ++r) {
      slot_state& s = slot(in.slots[r]);
      detail::sync_history(
          fn, in, r, s.seen,
          [&] {
            s.trie.clear();
            s.active.clear();
            s.corpus_active.clear();
            s.seen = 0;
          },
          [&](std::span<const std::int32_t> tokens) {
            for (const std::int32_t t : tokens) {
              s.trie.extend(s.active, t);
              if (corpus_ != nullptr) corpus_->trie().follow(s.corpus_active, t);
            }
            s.seen += static_cast<std::int64_t>(tokens.size());
          });
      std::vector<scored_candidate> found;
      const std::int32_t own = s.trie.context(s.active, max_context);
      if (own >= 0)
        found = s.trie.continuations(own, in.beam_width, length, options_.min_token_probability);
      if (corpus_ != nullptr) {
        const std::int32_t shared = corpus_->trie().context(s.corpus_active, max_context);
        if (shared >= 0) {
          std::vector<scored_candidate> more = corpus_->trie().continuations(
              shared, in.beam_width, length, options_.min_token_probability);
          for (auto& c : more) found.push_back(std::move(c));
          std::stable_sort(found.begin(), found.end(),
                           [](const scored_candidate& a, const scored_candidate& b) {
                             return a.log_score > b.log_score;
                           });
        }
      }
      auto& c = out[static_cast<std::size_t>(r)];
      for (auto& f : found) c.push_back(std::move(f.tokens));
      detail::cap_candidates(
          c, 0);  // drops candidates that are prefixes of earlier ones (own vs corpus)
      if (static_cast<std::int32_t>(c.size()) > in.beam_width)
        c.resize(static_cast<std::size_t>(in.beam_width));
      detail::cap_candidates(c, in.max_nodes);
    }
    return out;
  }

  draft_output<B> draft(const draft_input& in) {
    return detail::pack_candidates(backend_, in, candidates(in));
  }

 private:
  struct slot_state {
    suffix_trie trie;
    std::vector<std::int32_t> active;         // nodes of the history's suffixes, depths 1..D-1
    std::vector<std::int32_t> corpus_active;  // the same suffixes matched in the corpus
    std::int64_t seen = 0;                    // history tokens indexed
  };

  slot_state& slot(std::int32_t s) {
    while (static_cast<std::size_t>(s) >= slots_.size())
      slots_.push_back(slot_state{suffix_trie(options_.max_depth), {}, {}, 0});
    return slots_[static_cast<std::size_t>(s)];
  }

  B backend_;
  suffix_options options_;
  const suffix_corpus* corpus_;
  std::vector<slot_state> slots_;  // [slot]
};

}  // namespace redraft
