// redraft/kv/compaction.hpp: building a KV compaction plan from a verifier's result, and applying
// it to a contiguous KV cache.
//
// Where the tree's KV entries sit before commit (the convention this header assumes, and the one
// the reference target model uses): the verify pass of request r writes the KV of its n_r tree
// nodes at cache positions committed_len[r] .. committed_len[r] + n_r - 1, in packed order (node
// i at committed_len[r] + i). Committing keeps the root and the accepted nodes, moved to
// committed_len[r] + 0, 1, ..., accepted_len[r]; the new committed length is
// committed_len[r] + accepted_len[r] + 1. The next token's KV is computed next step, as the root.
//
// Cache layout: one contiguous block per slot, [layers, 2 (K, V), heads, max_len, head_dim], and
// the slots back to back: cache [slots, layers, 2, heads, max_len, head_dim].
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/transfer.hpp"
#include "redraft/core/view.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/verify/acceptance.hpp"

namespace redraft {

// make_kv_plan(acceptance, slots [B], committed_lengths [B]) -> kv_plan (host).
//   acceptance: a verifier's result on the host; slots[b]: request b's KV slot in the engine;
//   committed_lengths[b]: its committed prefix length before this step.
// Output: per request accepted_len + 1 entries: source_node = accepted_nodes[b, i] (root first),
//   destination = committed_lengths[b] + i.
// Errors (redraft::error, before anything is built): size mismatches, negative slots or lengths,
//   repeated slots, accepted nodes that do not start at the root or do not increase.
// Complexity O(B L); deterministic.
inline kv_plan make_kv_plan(const host_acceptance& acceptance, std::span<const std::int32_t> slots,
                            std::span<const std::int32_t> committed_lengths) {
  const std::int32_t batch = acceptance.batch;
  REDRAFT_REQUIRE(slots.size() == static_cast<std::size_t>(batch), "make_kv_plan: slots has ",
                  slots.size(), " entries but the acceptance has ", batch, " requests");
  REDRAFT_REQUIRE(committed_lengths.size() == static_cast<std::size_t>(batch),
                  "make_kv_plan: committed_lengths has ", committed_lengths.size(),
                  " entries but the acceptance has ", batch, " requests");
  std::vector<std::int32_t> sorted_slots(slots.begin(), slots.end());
  std::sort(sorted_slots.begin(), sorted_slots.end());
  for (std::int32_t b = 0; b < batch; ++b) {
    REDRAFT_REQUIRE(slots[static_cast<std::size_t>(b)] >= 0, "make_kv_plan: slots[", b,
                    "] = ", slots[static_cast<std::size_t>(b)], " is negative");
    REDRAFT_REQUIRE(committed_lengths[static_cast<std::size_t>(b)] >= 0,
                    "make_kv_plan: committed_lengths[", b,
                    "] = ", committed_lengths[static_cast<std::size_t>(b)], " is negative");
    if (b > 0) {
      REDRAFT_REQUIRE(sorted_slots[static_cast<std::size_t>(b)] !=
                          sorted_slots[static_cast<std::size_t>(b) - 1],
                      "make_kv_plan: slot ", sorted_slots[static_cast<std::size_t>(b)],
                      " is used by two requests");
    }
    const std::int32_t len = acceptance.accepted_len[static_cast<std::size_t>(b)];
    REDRAFT_REQUIRE(len >= 0 && len < acceptance.path_length, "make_kv_plan: accepted_len[", b,
                    "] = ", len, " is outside [0, ", acceptance.path_length, ")");
    REDRAFT_REQUIRE(acceptance.accepted_node(b, 0) == 0, "make_kv_plan: accepted_nodes[", b,
                    ", 0] = ", acceptance.accepted_node(b, 0), " is not the root (0)");
    for (std::int32_t i = 1; i <= len; ++i) {
      REDRAFT_REQUIRE(acceptance.accepted_node(b, i) > acceptance.accepted_node(b, i - 1),
                      "make_kv_plan: accepted_nodes[", b, ", ", i,
                      "] = ", acceptance.accepted_node(b, i), " does not follow accepted_nodes[", b,
                      ", ", i - 1, "] = ", acceptance.accepted_node(b, i - 1),
                      " in packed order (a path goes from parents to children)");
    }
  }
  kv_plan plan;
  plan.offsets.assign(1, 0);
  for (std::int32_t b = 0; b < batch; ++b) {
    const std::int32_t len = acceptance.accepted_len[static_cast<std::size_t>(b)];
    const std::int32_t committed = committed_lengths[static_cast<std::size_t>(b)];
    for (std::int32_t i = 0; i <= len; ++i) {
      plan.source_node.push_back(acceptance.accepted_node(b, i));
      plan.destination.push_back(committed + i);
    }
    plan.slot.push_back(slots[static_cast<std::size_t>(b)]);
    plan.offsets.push_back(static_cast<std::int32_t>(plan.source_node.size()));
  }
  return plan;
}

// The same from an acceptance in backend memory (one host copy).
template <Backend B>
kv_plan make_kv_plan(const B& backend, const acceptance<B>& acceptance,
                     std::span<const std::int32_t> slots,
                     std::span<const std::int32_t> committed_lengths) {
  return make_kv_plan(to_host(backend, acceptance), slots, committed_lengths);
}

namespace detail {

// One invocation per (request, layer, K/V, head, d): moves element d of every kept entry, in
// forward entry order.
//
// Why forward order is correct in place: for request r with committed length c and entries
// i = 0 .. m-1, destination_i = c + i and source_i = c + a_i with a_0 < a_1 < ... (validated:
// a path in packed order; make_kv_plan also has a_0 = 0), so a_i >= a_0 + i >= i, i.e.
// source_i >= destination_i. Entry i writes only position c + i. Every later entry j > i reads
// c + a_j >= c + j > c + i, a position no entry up to i has written; earlier entries have already
// read their sources. So no source is overwritten before it is read. (Entries of one request must
// therefore not run concurrently: a later destination c + k can equal an earlier source c + a_j,
// e.g. a = [0, 1, 3, 4] writes position 3 at entry 3 and reads it at entry 2.) Different
// (request, layer, K/V, head, d) touch disjoint elements, so those run in parallel.
template <class T>
struct kv_move_functor {
  view<T, 6> cache;                 // [slots, layers, 2, heads, max_len, head_dim]
  const std::int32_t* offsets;      // [R + 1]
  const std::int32_t* slot;         // [R]
  const std::int32_t* source_node;  // [n_keep]
  const std::int32_t* destination;  // [n_keep]

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const index_t head_dim = cache.extent(5), heads = cache.extent(3), layers = cache.extent(1);
    const index_t d = i % head_dim;
    index_t rest = i / head_dim;
    const index_t h = rest % heads;
    rest /= heads;
    const index_t kv = rest % 2;
    rest /= 2;
    const index_t l = rest % layers;
    const index_t r = rest / layers;
    const std::int32_t first = offsets[r], last = offsets[r + 1];
    if (first == last) return;
    const std::int32_t committed = destination[first];  // destination_0 = committed + 0
    for (std::int32_t e = first; e < last; ++e) {
      const index_t src = committed + source_node[e];
      const index_t dst = destination[e];
      if (src != dst) cache(slot[r], l, kv, h, dst, d) = cache(slot[r], l, kv, h, src, d);
    }
  }
};

}  // namespace detail

// apply_kv_plan(backend, plan, cache [slots, layers, 2, heads, max_len, head_dim]): moves, in
// place, each kept entry of each request from committed + source_node to its destination (see
// the pending-entry convention at the top). Ragged batches are fine: each request has its own
// number of entries and its own committed length. Entries past the new committed length are
// left as they were (stale; the engine's length bookkeeping ignores them).
// Errors (redraft::error, before any move): cache dims != 2 in K/V, plan arrays of inconsistent
// sizes, slots out of range or repeated, destinations not consecutive from the committed length,
// sources not strictly increasing or below their destinations, positions past max_len.
// Complexity O(n_keep * layers * 2 * heads * head_dim), one functor call per
// (request, layer, K/V, head, d); deterministic.
template <Backend B, class T>
void apply_kv_plan(const B& backend, const kv_plan& plan, view<T, 6> cache) {
  const index_t slots = cache.extent(0), max_len = cache.extent(4);
  REDRAFT_REQUIRE(cache.extent(2) == 2, "apply_kv_plan: cache dimension 2 is ", cache.extent(2),
                  " but must be 2 (K and V)");
  const std::int32_t requests = plan.num_requests();
  REDRAFT_REQUIRE(plan.offsets.size() == static_cast<std::size_t>(requests) + 1,
                  "apply_kv_plan: plan has ", requests, " slots but ", plan.offsets.size(),
                  " offsets (expected requests + 1)");
  REDRAFT_REQUIRE(plan.source_node.size() == plan.destination.size() && plan.offsets.front() == 0 &&
                      plan.offsets.back() == static_cast<std::int32_t>(plan.source_node.size()),
                  "apply_kv_plan: plan has ", plan.source_node.size(), " sources, ",
                  plan.destination.size(), " destinations and offsets ending at ",
                  plan.offsets.back());
  std::vector<char> used(static_cast<std::size_t>(slots), 0);
  for (std::int32_t r = 0; r < requests; ++r) {
    const std::int32_t s = plan.slot[static_cast<std::size_t>(r)];
    REDRAFT_REQUIRE(s >= 0 && s < slots, "apply_kv_plan: slot ", s, " of request ", r,
                    " is outside the cache's [0, ", slots, ")");
    REDRAFT_REQUIRE(!used[static_cast<std::size_t>(s)], "apply_kv_plan: slot ", s,
                    " is used by two requests");
    used[static_cast<std::size_t>(s)] = 1;
    const std::int32_t first = plan.offsets[static_cast<std::size_t>(r)];
    const std::int32_t last = plan.offsets[static_cast<std::size_t>(r) + 1];
    REDRAFT_REQUIRE(first <= last, "apply_kv_plan: offsets decrease at request ", r);
    if (first == last) continue;
    const std::int32_t committed = plan.destination[static_cast<std::size_t>(first)];
    REDRAFT_REQUIRE(committed >= 0, "apply_kv_plan: request ", r, " has committed length ",
                    committed);
    for (std::int32_t e = first; e < last; ++e) {
      const std::int32_t src = committed + plan.source_node[static_cast<std::size_t>(e)];
      const std::int32_t dst = plan.destination[static_cast<std::size_t>(e)];
      REDRAFT_REQUIRE(dst == committed + (e - first), "apply_kv_plan: destination ", dst,
                      " of request ", r, " entry ", e - first, " is not committed length ",
                      committed, " + ", e - first);
      REDRAFT_REQUIRE(
          src >= dst && (e == first || plan.source_node[static_cast<std::size_t>(e)] >
                                           plan.source_node[static_cast<std::size_t>(e) - 1]),
          "apply_kv_plan: source nodes of request ", r,
          " must strictly increase from the root (entry ", e - first, " has node ",
          plan.source_node[static_cast<std::size_t>(e)], ")");
      REDRAFT_REQUIRE(src < max_len, "apply_kv_plan: request ", r, " reads position ", src,
                      " past max_len ", max_len);
    }
  }
  if (plan.source_node.empty()) return;

  const auto offsets = to_backend(backend, plan.offsets);          // [R + 1]
  const auto slot = to_backend(backend, plan.slot);                // [R]
  const auto source = to_backend(backend, plan.source_node);       // [n_keep]
  const auto destination = to_backend(backend, plan.destination);  // [n_keep]
  const index_t work =
      static_cast<index_t>(requests) * cache.extent(1) * 2 * cache.extent(3) * cache.extent(5);
  backend.for_each_index(work, detail::kv_move_functor<T>{cache, offsets.data(), slot.data(),
                                                          source.data(), destination.data()});
}

}  // namespace redraft
