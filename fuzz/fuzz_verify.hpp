// fuzz/fuzz_verify.hpp: the verifiers on random trees and hostile logits and parameters.
//
// Input: a tree (beams, or a parent array with mostly valid parents), a vocabulary V in [0, 8],
// logits [n_total, V] drawn from a palette of NaN, +-inf, +-FLT_MAX, subnormals, huge and
// ordinary values, then sampling parameters (extreme temperatures included), then uniforms
// (Philox or caller-supplied, sometimes outside [0, 1)). Runs verify_greedy, verify_lossless,
// verify_typical and, for beam trees, verify_redrafter. Every call either throws redraft::error
// or returns a well-formed acceptance: accepted path from the root along parent links, emitted
// tokens = the path's tokens + next token, next token in [0, V); greedy's decisions are the
// argmaxes; lossless never emits a token of zero probability.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fuzz_input.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/static_tree.hpp"
#include "redraft/verify/greedy.hpp"
#include "redraft/verify/lossless.hpp"
#include "redraft/verify/redrafter.hpp"
#include "redraft/verify/typical.hpp"

namespace redraft_fuzz {

namespace detail {

inline void check_acceptance(const redraft::tree<redraft::cpu_backend>& t,
                             const redraft::acceptance<redraft::cpu_backend>& a,
                             redraft::index_t vocab) {
  const redraft::host_acceptance h = redraft::to_host(redraft::cpu_backend{}, a);
  FUZZ_CHECK(h.batch == t.batch);
  for (std::int32_t b = 0; b < t.batch; ++b) {
    const std::int32_t first = t.host_node_offsets[b];
    const std::int32_t len = h.accepted_len[b];
    FUZZ_CHECK(len >= 0 && len < h.path_length);
    FUZZ_CHECK(h.accepted_node(b, 0) == 0);
    for (std::int32_t i = 1; i <= len; ++i) {
      const std::int32_t node = h.accepted_node(b, i);
      FUZZ_CHECK(node > 0 && node < t.num_nodes(b));
      FUZZ_CHECK(t.parent[first + node] == h.accepted_node(b, i - 1));
      FUZZ_CHECK(h.emitted_token(b, i - 1) == t.token[first + node]);
    }
    for (std::int32_t i = len + 1; i < h.path_length; ++i) FUZZ_CHECK(h.accepted_node(b, i) == -1);
    FUZZ_CHECK(h.next_token[b] >= 0 && h.next_token[b] < vocab);
    FUZZ_CHECK(h.emitted_token(b, len) == h.next_token[b]);
    FUZZ_CHECK(h.hidden_row[b] == first + h.accepted_node(b, len));
  }
}

}  // namespace detail

inline outcome fuzz_verify(const std::uint8_t* data, std::size_t size) {
  using redraft::cpu_backend;
  outcome out;
  using redraft::index_t;
  const cpu_backend backend;
  byte_reader in(data, size);
  const bool from_beams = in.flag();
  const index_t vocab = in.range(0, 8) == 0 ? 0 : in.range(1, 8);
  const auto token = [&]() -> std::int32_t {
    const std::uint8_t b = in.byte();
    return b < 250 ? static_cast<std::int32_t>(b % (vocab > 0 ? vocab : 1))
                   : static_cast<std::int32_t>(vocab) + (b - 250);  // out of range
  };
  redraft::tree<cpu_backend> t;
  std::vector<std::int32_t> beams;
  std::int32_t width = 0, length = 0;
  try {
    if (from_beams) {
      const std::int32_t batch = static_cast<std::int32_t>(in.range(0, 3));
      width = static_cast<std::int32_t>(in.range(1, 6));
      length = static_cast<std::int32_t>(in.range(2, 6));
      beams.resize(static_cast<std::size_t>(batch) * width * length);
      for (std::int32_t b = 0; b < batch; ++b) {
        const std::int32_t root = token();
        for (std::int32_t w = 0; w < width; ++w) {
          for (std::int32_t l = 0; l < length; ++l) {
            beams[(static_cast<std::size_t>(b) * width + w) * length + l] = l == 0 ? root : token();
          }
        }
      }
      t = redraft::build_tree(
          backend, redraft::view<const std::int32_t, 3>(beams.data(), batch, width, length));
    } else {
      const std::int32_t batch = static_cast<std::int32_t>(in.range(0, 3));
      std::vector<std::int32_t> offsets(1, 0), parent, tokens;
      for (std::int32_t b = 0; b < batch; ++b) {
        const std::int32_t n = static_cast<std::int32_t>(in.range(1, 12));
        for (std::int32_t i = 0; i < n; ++i) {
          parent.push_back(i == 0 ? -1 : static_cast<std::int32_t>(in.range(0, i - 1)));
          tokens.push_back(token());
        }
        offsets.push_back(offsets.back() + n);
      }
      t = redraft::build_tree_from_parents(
          backend, redraft::view<const std::int32_t, 1>(offsets.data(), batch + 1),
          redraft::view<const std::int32_t, 1>(parent.data(), static_cast<index_t>(parent.size())),
          redraft::view<const std::int32_t, 1>(tokens.data(), static_cast<index_t>(tokens.size())));
    }
    out.ok("tree");
  } catch (const redraft::error& e) {
    out.refused("tree", e);
    return out;
  }
  const index_t rows = t.total_nodes();
  // Hostile rows with probability ~1/4, otherwise ordinary values.
  std::vector<float> logits(static_cast<std::size_t>(rows * vocab));
  for (index_t r = 0; r < rows; ++r) {
    const bool hostile = in.byte() >= 192;
    for (index_t v = 0; v < vocab; ++v) {
      logits[static_cast<std::size_t>(r * vocab + v)] =
          hostile ? in.hostile_float()
                  : static_cast<float>(static_cast<int>(in.byte()) - 128) / 8.0f;
    }
  }
  const redraft::matrix_view<const float> logits_view(logits.data(), rows, vocab);

  // Caller uniforms: [B, columns], mostly in [0, 1).
  const std::int32_t batch = t.batch;
  const bool caller = in.flag();
  const index_t columns = in.range(0, 64);
  std::vector<float> uniforms(static_cast<std::size_t>(batch * columns));
  for (auto& u : uniforms) {
    const std::uint8_t b = in.byte();
    u = b < 250 ? static_cast<float>(b) / 250.0f : in.hostile_float();
  }
  const redraft::uniform_source source =
      caller ? redraft::uniform_source(
                   redraft::matrix_view<const float>(uniforms.data(), batch, columns))
             : redraft::uniform_source(redraft::philox_uniforms{in.u32(), in.u32()});

  try {
    const auto a = redraft::verify_greedy(backend, t, logits_view);
    detail::check_acceptance(t, a, vocab);
    const auto h = redraft::to_host(backend, a);
    for (std::int32_t b = 0; b < batch; ++b) {  // each decision is the row's first argmax
      const std::int32_t first = t.host_node_offsets[b];
      for (std::int32_t i = 0; i <= h.accepted_len[b]; ++i) {
        const float* row = logits.data() + (first + h.accepted_node(b, i)) * vocab;
        const std::int32_t chosen = i < h.accepted_len[b] ? h.emitted_token(b, i) : h.next_token[b];
        for (index_t v = 0; v < vocab; ++v) {
          FUZZ_CHECK(row[v] < row[chosen] || (row[v] == row[chosen] && v >= chosen));
        }
      }
    }
    out.ok("verify_greedy");
  } catch (const redraft::error& e) {
    out.refused("verify_greedy", e);
  }

  redraft::sampling_params params;
  params.temperature = in.hostile_parameter();
  params.top_k = static_cast<std::int32_t>(in.range(-1, 10));
  params.top_p = in.flag() ? 1.0f : in.hostile_parameter();
  try {
    const auto a = redraft::verify_lossless(backend, t, logits_view, params, source);
    detail::check_acceptance(t, a, vocab);
    const auto h = redraft::to_host(backend, a);
    for (std::int32_t b = 0; b < batch; ++b) {  // never a token of zero probability
      const std::int32_t node = t.host_node_offsets[b] + h.accepted_node(b, h.accepted_len[b]);
      const float* row = logits.data() + node * vocab;
      const auto p = redraft::row_ops::process_row(row, vocab, params);
      FUZZ_CHECK(p.ok());
      FUZZ_CHECK(p.prob(row[h.next_token[b]]) > 0.0);
    }
    out.ok("verify_lossless");
  } catch (const redraft::error& e) {
    out.refused("verify_lossless", e);
  }

  redraft::typical_params typical;
  typical.temperature = in.hostile_parameter();
  typical.epsilon = in.hostile_parameter();
  typical.delta = in.hostile_parameter();
  typical.sample_next_token = in.flag();
  try {
    const auto a = redraft::verify_typical(backend, t, logits_view, typical, source);
    detail::check_acceptance(t, a, vocab);
    out.ok("verify_typical");
  } catch (const redraft::error& e) {
    out.refused("verify_typical", e);
  }

  if (from_beams) {
    redraft::redrafter_params rp;
    rp.temperature = in.hostile_parameter();
    rp.logit_top_k = static_cast<std::int32_t>(in.range(-1, 10));
    rp.logit_mask_value = in.flag() ? -50000.0f : in.hostile_float();
    std::vector<float> q(static_cast<std::size_t>(batch) * width * (length - 1) * vocab);
    for (auto& x : q) {
      const std::uint8_t b = in.byte();
      x = b < 240 ? -static_cast<float>(b) / 32.0f : in.hostile_float();
    }
    try {
      const auto a = redraft::verify_redrafter(
          backend, t, logits_view,
          redraft::view<const float, 4>(q.data(), batch, width, length - 1, vocab), rp, source);
      detail::check_acceptance(t, a, vocab);
      out.ok("verify_redrafter");
    } catch (const redraft::error& e) {
      out.refused("verify_redrafter", e);
    }
  }
  return out;
}

}  // namespace redraft_fuzz
