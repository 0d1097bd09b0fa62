// redraft/verify/acceptance.hpp: what every verifier returns.
//
// Per request b of a batch of B, with path_length L = beam_length for trees built from beams and
// max depth + 1 otherwise:
//   accepted_len   [B]     number of drafted tokens accepted, 0 .. L-1
//   best_beam      [B]     lowest-index beam whose first accepted_len+1 positions are the accepted
//                          path; -1 for trees not built from beams
//   accepted_nodes [B, L]  request-local packed node indices of the root and the accepted nodes,
//                          root first (entry 0 is always 0), -1 padded: the KV entries to keep
//   emitted_tokens [B, L]  the accepted drafted tokens followed by the next token, -1 padded
//                          (accepted_len + 1 valid entries)
//   next_token     [B]     the token the target emits after the accepted path ("bonus"): the
//                          root token of the next step
//   hidden_row     [B]     GLOBAL packed row (node_offsets[b] + last accepted node) whose target
//                          hidden state feeds the draft head next step
// All buffers live in the backend's memory; to_host() copies them out.
#pragma once

#include <cstdint>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

template <class B>
struct acceptance {
  using int_buffer = typename B::template buffer<std::int32_t>;

  std::int32_t batch = 0;        // B
  std::int32_t path_length = 0;  // L

  int_buffer accepted_len;    // [B]
  int_buffer best_beam;       // [B]
  int_buffer accepted_nodes;  // [B, L]
  int_buffer emitted_tokens;  // [B, L]
  int_buffer next_token;      // [B]
  int_buffer hidden_row;      // [B]
};

// The same result in host memory, with accessors.
struct host_acceptance {
  std::int32_t batch = 0;
  std::int32_t path_length = 0;
  std::vector<std::int32_t> accepted_len;    // [B]
  std::vector<std::int32_t> best_beam;       // [B]
  std::vector<std::int32_t> accepted_nodes;  // [B, L]
  std::vector<std::int32_t> emitted_tokens;  // [B, L]
  std::vector<std::int32_t> next_token;      // [B]
  std::vector<std::int32_t> hidden_row;      // [B]

  std::int32_t accepted_node(std::int32_t b, std::int32_t i) const {
    return accepted_nodes[static_cast<std::size_t>(b) * path_length + i];
  }
  std::int32_t emitted_token(std::int32_t b, std::int32_t i) const {
    return emitted_tokens[static_cast<std::size_t>(b) * path_length + i];
  }
  // The accepted_len[b] + 1 emitted tokens of request b.
  std::vector<std::int32_t> emitted(std::int32_t b) const {
    const auto first = emitted_tokens.begin() + static_cast<std::ptrdiff_t>(b) * path_length;
    return std::vector<std::int32_t>(first, first + accepted_len[static_cast<std::size_t>(b)] + 1);
  }
};

// to_host(backend, result): copies every field to host memory (synchronous).
template <Backend B>
host_acceptance to_host(const B& backend, const acceptance<B>& a) {
  host_acceptance h;
  h.batch = a.batch;
  h.path_length = a.path_length;
  const auto copy = [&](const typename acceptance<B>::int_buffer& src, std::size_t n,
                        std::vector<std::int32_t>& dst) {
    dst.resize(n);
    if (n > 0) backend.copy_to_host(src.data(), static_cast<index_t>(n), dst.data());
  };
  const std::size_t nb = static_cast<std::size_t>(a.batch);
  const std::size_t nl = nb * static_cast<std::size_t>(a.path_length);
  copy(a.accepted_len, nb, h.accepted_len);
  copy(a.best_beam, nb, h.best_beam);
  copy(a.accepted_nodes, nl, h.accepted_nodes);
  copy(a.emitted_tokens, nl, h.emitted_tokens);
  copy(a.next_token, nb, h.next_token);
  copy(a.hidden_row, nb, h.hidden_row);
  return h;
}

}  // namespace redraft
