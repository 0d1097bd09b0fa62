// redraft/core/transfer.hpp: a host array copied into a new backend buffer.
//
// Algorithms that compute small index arrays on the host (tree offsets, KV plans, one-node trees)
// hand them to the backend the same way: allocate a buffer of the same length, copy the host data
// in (Backend clause 3). This is that one step.
#pragma once

#include <ranges>

#include "redraft/core/backend.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

// to_backend(backend, host[n]) -> buffer<T>[n] in the backend's memory holding a copy of host.
//   host  any contiguous range of T (std::vector, std::span, std::array) in host memory
// The buffer is ready for work issued later on `backend` (clause 4); as with copy_from_host
// (clause 3) the host range may be reused once this returns. Length 0 gives an empty buffer.
template <Backend B, std::ranges::contiguous_range R>
typename B::template buffer<std::ranges::range_value_t<R>> to_backend(const B& backend,
                                                                      const R& host) {
  using T = std::ranges::range_value_t<R>;
  const index_t n = static_cast<index_t>(std::ranges::size(host));
  auto out = backend.template allocate<T>(n);  // [n]
  backend.copy_from_host(std::ranges::data(host), n, out.data());
  return out;
}

}  // namespace redraft
