// redraft/loop/draft_candidates.hpp: what the model-free drafters share: candidate lists, the
// history checks, and packing candidates into beams with per-beam lengths (loop/drafter.hpp,
// clause 3).
//
// A candidate is a list of drafted tokens that follow the root (the root itself is not part of
// it), at most L - 1 of them. Request r's candidates become beams [r, 0 .. k), best first; the
// remaining W - k beams get length 1 (the root alone: no node).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/loop/drafter.hpp"

namespace redraft {

using draft_candidate =
    std::vector<std::int32_t>;  // drafted tokens after the root, best candidate first

namespace detail {

// Checks that `in` carries the history a model-free drafter needs, consistent with the roots, and
// that no log-probs are asked for (a model-free drafter has no distribution to report).
inline void check_history_input(const char* fn, const draft_input& in) {
  const index_t rows = in.roots.extent(0);
  REDRAFT_REQUIRE(
      !in.want_log_probs, fn,
      ": verifier::redrafter needs the drafter's log-probs, which a model-free drafter does not "
      "have; use verifier::greedy or verifier::lossless");
  REDRAFT_REQUIRE(in.beam_width >= 1 && in.beam_length >= 2, fn, ": beam_width ", in.beam_width,
                  " and beam_length ", in.beam_length, " must be >= 1 and >= 2");
  REDRAFT_REQUIRE(in.max_nodes >= 0, fn, ": max_nodes ", in.max_nodes, " must be >= 0 (0: no cap)");
  REDRAFT_REQUIRE(
      in.history.extent(0) == rows && in.history_fresh.extent(0) == rows, fn,
      ": draft_input::history has ", in.history.extent(0), " rows and history_fresh ",
      in.history_fresh.extent(0), " but there are ", rows,
      " requests (this drafter reads each request's tokens; the speculative decoder fills them)");
  REDRAFT_REQUIRE(in.slots.extent(0) == rows, fn, ": ", in.slots.extent(0), " slots for ", rows,
                  " requests");
  for (index_t r = 0; r < rows; ++r) {
    const std::span<const std::int32_t> h = in.history[r];
    REDRAFT_REQUIRE(!h.empty() && h.back() == in.roots[r], fn, ": the history of request ", r, " (",
                    h.size(), " tokens) must end with its root token ", in.roots[r],
                    h.empty() ? " but it is empty" : "");
    REDRAFT_REQUIRE(in.slots[r] >= 0, fn, ": slot ", in.slots[r], " of request ", r,
                    " is negative");
  }
}

// The trie of `candidates` is capped at `max_nodes` nodes (root included; 0: no cap): candidates
// are inserted in order and each is cut where it would create node max_nodes + 1. Candidates
// that are a prefix of an earlier one (or become empty) are dropped: they would add no node.
inline void cap_candidates(std::vector<draft_candidate>& candidates, std::int32_t max_nodes) {
  std::vector<draft_candidate> kept;
  std::int64_t nodes = 1;
  for (draft_candidate& c : candidates) {
    // Longest prefix of c already in the trie = the longest common prefix with a kept candidate.
    std::size_t shared = 0;
    for (const draft_candidate& k : kept) {
      std::size_t n = 0;
      while (n < k.size() && n < c.size() && k[n] == c[n]) ++n;
      if (n > shared) shared = n;
    }
    std::size_t keep = c.size();
    if (max_nodes > 0) {
      const std::int64_t room = max_nodes - nodes;
      if (static_cast<std::int64_t>(keep - shared) > room)
        keep = shared + static_cast<std::size_t>(room > 0 ? room : 0);
    }
    if (keep <= shared) continue;  // adds no node
    c.resize(keep);
    nodes += static_cast<std::int64_t>(keep - shared);
    kept.push_back(std::move(c));
  }
  candidates = std::move(kept);
}

// Packs per-request candidates into draft_output<B>: beams [R, W, L] (-1 past each length) and
// beam_lengths [R, W]. Requires at most W candidates of at most L - 1 tokens each.
template <Backend B>
draft_output<B> pack_candidates(const B& backend, const draft_input& in,
                                const std::vector<std::vector<draft_candidate>>& candidates) {
  const index_t rows = in.roots.extent(0), width = in.beam_width, length = in.beam_length;
  std::vector<std::int32_t> beams(static_cast<std::size_t>(rows * width * length),
                                  -1);                                           // [R, W, L]
  std::vector<std::int32_t> lengths(static_cast<std::size_t>(rows * width), 1);  // [R, W]
  for (index_t r = 0; r < rows; ++r) {
    const auto& cs = candidates[static_cast<std::size_t>(r)];
    REDRAFT_REQUIRE(static_cast<index_t>(cs.size()) <= width, "pack_candidates: request ", r,
                    " has ", cs.size(), " candidates for ", width, " beams");
    for (index_t w = 0; w < width; ++w) {
      std::int32_t* beam = beams.data() + (r * width + w) * length;
      beam[0] = in.roots[r];
      if (w >= static_cast<index_t>(cs.size())) continue;
      const draft_candidate& c = cs[static_cast<std::size_t>(w)];
      REDRAFT_REQUIRE(static_cast<index_t>(c.size()) <= length - 1, "pack_candidates: request ", r,
                      " candidate ", w, " has ", c.size(),
                      " tokens, more than L - 1 = ", length - 1);
      for (std::size_t l = 0; l < c.size(); ++l) beam[l + 1] = c[l];
      lengths[static_cast<std::size_t>(r * width + w)] = static_cast<std::int32_t>(c.size()) + 1;
    }
  }
  draft_output<B> out;
  out.beams = backend.template allocate<std::int32_t>(rows * width * length);
  out.beam_lengths = backend.template allocate<std::int32_t>(rows * width);
  if (rows > 0) {
    backend.copy_from_host(beams.data(), rows * width * length, out.beams.data());
    backend.copy_from_host(lengths.data(), rows * width, out.beam_lengths.data());
  }
  return out;
}

// Brings a slot's index up to date with request r's history: reset on a fresh request, else append
// only the new tail.
template <class Reset, class Append>
void sync_history(const char* fn, const draft_input& in, index_t r, std::int64_t seen, Reset reset,
                  Append append) {
  const std::span<const std::int32_t> h = in.history[r];
  if (in.history_fresh[r] != 0) {
    reset();
    append(h);
    return;
  }
  REDRAFT_REQUIRE(static_cast<std::int64_t>(h.size()) >= seen, fn, ": the history of request ", r,
                  " (slot ", in.slots[r], ") has ", h.size(), " tokens, fewer than the ", seen,
                  " already seen; set history_fresh for a new request on the slot");
  append(h.subspan(static_cast<std::size_t>(seen)));
}

}  // namespace detail

}  // namespace redraft
