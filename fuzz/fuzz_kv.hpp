// fuzz/fuzz_kv.hpp: KV compaction plans: make_kv_plan from arbitrary acceptances and
// apply_kv_plan of arbitrary (mostly well-formed) plans to a small cache.
//
// Contract checked: a plan apply_kv_plan accepts moves exactly what a naive out-of-place copy
// moves (every kept entry ends at its destination, everything else is unchanged); a plan it
// refuses leaves the cache bit-for-bit unchanged; make_kv_plan's plans are always accepted by
// apply_kv_plan when the cache is long enough.
#pragma once

#include <cstdint>
#include <vector>

#include "fuzz_input.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/kv/compaction.hpp"

namespace redraft_fuzz {

inline outcome fuzz_kv(const std::uint8_t* data, std::size_t size) {
  using redraft::index_t;
  outcome out;
  const redraft::cpu_backend backend;
  byte_reader in(data, size);
  // Cache [slots, layers, kv (2, sometimes not), heads, max_len, head_dim], small.
  const index_t slots = in.range(0, 4), layers = in.range(0, 2),
                kv = in.byte() < 250 ? 2 : in.range(0, 3);
  const index_t heads = in.range(1, 2), max_len = in.range(0, 24), head_dim = in.range(1, 3);
  std::vector<float> cache(
      static_cast<std::size_t>(slots * layers * kv * heads * max_len * head_dim));
  for (std::size_t i = 0; i < cache.size(); ++i) cache[i] = static_cast<float>(i);
  const std::vector<float> before = cache;
  const redraft::view<float, 6> cache_view(cache.data(), slots, layers, kv, heads, max_len,
                                           head_dim);

  redraft::kv_plan plan;
  if (in.flag()) {
    // From an acceptance: make_kv_plan validates it.
    redraft::host_acceptance a;
    a.batch = static_cast<std::int32_t>(in.range(0, 4));
    a.path_length = static_cast<std::int32_t>(in.range(0, 6));
    std::vector<std::int32_t> slot_ids, committed;
    for (std::int32_t b = 0; b < a.batch; ++b) {
      const std::int32_t len = static_cast<std::int32_t>(in.range(-1, a.path_length));
      a.accepted_len.push_back(len);
      std::int32_t node = 0;
      for (std::int32_t i = 0; i < a.path_length; ++i) {
        const bool valid = in.byte() < 240;
        a.accepted_nodes.push_back(i > len ? -1
                                   : valid ? node
                                           : static_cast<std::int32_t>(in.range(-2, 10)));
        node += static_cast<std::int32_t>(in.range(1, 3));
      }
      slot_ids.push_back(static_cast<std::int32_t>(in.byte() < 240 ? b : in.range(-1, 5)));
      committed.push_back(static_cast<std::int32_t>(in.range(-1, 12)));
    }
    try {
      plan = redraft::make_kv_plan(a, slot_ids, committed);
    } catch (const redraft::error& e) {
      out.refused("make_kv_plan", e);
      return out;
    }
    FUZZ_CHECK(plan.num_requests() == a.batch);
    out.ok("make_kv_plan");
  } else {
    const std::int32_t requests = static_cast<std::int32_t>(in.range(0, 4));
    plan.offsets.push_back(0);
    for (std::int32_t r = 0; r < requests; ++r) {
      const bool valid = in.byte() < 220;
      plan.slot.push_back(valid ? r : static_cast<std::int32_t>(in.range(-1, 5)));
      const std::int32_t committed = static_cast<std::int32_t>(in.range(-1, 12));
      const std::int32_t entries = static_cast<std::int32_t>(in.range(0, 5));
      std::int32_t node = 0;
      for (std::int32_t e = 0; e < entries; ++e) {
        plan.source_node.push_back(
            valid || in.flag() ? node : static_cast<std::int32_t>(in.range(-3, 12)));
        plan.destination.push_back(
            valid || in.flag() ? committed + e : static_cast<std::int32_t>(in.range(-3, 20)));
        node += static_cast<std::int32_t>(in.range(1, 3));
      }
      plan.offsets.push_back(static_cast<std::int32_t>(plan.source_node.size()));
    }
    if (in.byte() >= 250) {  // structural damage
      const std::uint8_t what = in.byte() % 4;
      if (what == 0 && !plan.offsets.empty()) plan.offsets.back() += 1;
      if (what == 1) plan.destination.push_back(0);
      if (what == 2 && !plan.offsets.empty()) plan.offsets.pop_back();
      if (what == 3 && plan.offsets.size() > 2) std::swap(plan.offsets[1], plan.offsets[2]);
    }
  }

  try {
    redraft::apply_kv_plan(backend, plan, cache_view);
  } catch (const redraft::error& e) {
    FUZZ_CHECK(cache == before);  // refused: nothing was moved
    out.refused("apply_kv_plan", e);
    return out;
  }
  // Accepted: compare with the naive out-of-place semantics.
  std::vector<float> expected = before;
  const auto at = [&](index_t s, index_t l, index_t k, index_t h, index_t p, index_t d) {
    return static_cast<std::size_t>(
        ((((s * layers + l) * kv + k) * heads + h) * max_len + p) * head_dim + d);
  };
  for (std::int32_t r = 0; r < plan.num_requests(); ++r) {
    const std::int32_t first = plan.offsets[r], last = plan.offsets[r + 1];
    if (first == last) continue;
    const std::int32_t committed = plan.destination[first];
    for (std::int32_t e = first; e < last; ++e) {
      const index_t src = committed + plan.source_node[e], dst = plan.destination[e];
      FUZZ_CHECK(src >= 0 && src < max_len && dst >= 0 && dst < max_len);
      for (index_t l = 0; l < layers; ++l)
        for (index_t k = 0; k < kv; ++k)
          for (index_t h = 0; h < heads; ++h)
            for (index_t d = 0; d < head_dim; ++d)
              expected[at(plan.slot[r], l, k, h, dst, d)] =
                  before[at(plan.slot[r], l, k, h, src, d)];
    }
  }
  FUZZ_CHECK(cache == expected);
  out.ok("apply_kv_plan");
  return out;
}

}  // namespace redraft_fuzz
