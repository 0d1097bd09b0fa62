// redraft/kv/kv_plan.hpp: the KV-cache compaction plan type.
//
// After verification a request keeps the KV entries of its accepted path (the root and the
// accepted drafted nodes) and drops the rest of the tree. The plan says, per request, which
// packed nodes to keep, in order, and the cache slot each goes to: contiguous right after the
// request's committed prefix. The next token's KV is computed next step, as the new root.
//
// The plan lives in host memory: it is tiny (at most B * L entries) and every engine's commit
// step either applies it on the host or uploads it once.
#pragma once

#include <cstdint>
#include <vector>

namespace redraft {

struct kv_plan {
  std::vector<std::int32_t>
      offsets;  // [R + 1] CSR: request r's entries are [offsets[r], offsets[r+1])
  std::vector<std::int32_t> slot;  // [R]     the KV slot (sequence) of each request in the engine
  std::vector<std::int32_t>
      source_node;  // [n_keep] request-local packed node index to keep, root first
  std::vector<std::int32_t> destination;  // [n_keep] absolute cache position it moves to
                                          //          (committed length of the request + i)
  std::int32_t num_requests() const { return static_cast<std::int32_t>(slot.size()); }
};

}  // namespace redraft
