// tools/conformance/backend_io.hpp: moving golden tensors into a backend's memory and results
// back, so every case kind runs on any Backend (cpu, thrust_host, and a device backend whose
// memory the host cannot read).
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/view.hpp"

namespace redraft::conformance {

// A backend buffer holding a copy of host values.
template <class B, class T>
typename B::template buffer<T> upload(const B& backend, const std::vector<T>& host) {
  auto out = backend.template allocate<T>(static_cast<index_t>(host.size()));
  if (!host.empty())
    backend.copy_from_host(host.data(), static_cast<index_t>(host.size()), out.data());
  return out;
}

// A host copy of a whole backend buffer.
template <class B, class Buffer>
auto download(const B& backend, const Buffer& buffer) {
  using T = std::remove_const_t<std::remove_pointer_t<decltype(buffer.data())>>;
  std::vector<T> host(static_cast<std::size_t>(buffer.size()));
  if (!host.empty()) backend.copy_to_host(buffer.data(), buffer.size(), host.data());
  return host;
}

}  // namespace redraft::conformance
