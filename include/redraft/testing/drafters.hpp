// redraft/testing/drafters.hpp: two drafters for testing the decoding loop at the extremes of
// acceptance, on any backend (they compute on the host and upload their beams).
//
//   random_drafter  proposes Philox-random tokens: acceptance is near zero, so every step emits
//                   about one token and the loop's bookkeeping is exercised on short paths.
//   oracle_drafter  asks a shadow copy of the target model for its greedy continuation (beam 0)
//                   and perturbs it at one depth for the other beams: beam 0 is accepted in full
//                   under greedy verification, so every step emits L tokens and the loop's
//                   bookkeeping is exercised on the longest paths, EOS and max_new_tokens in
//                   mid-step, and shared prefixes in the trie.
// Both report log-probs when asked (a smoothed one-hot of the proposal), so every verifier can
// run with them. random_drafter is basic_random_drafter on the CPU backend; oracle_drafter<M>
// drafts on its shadow model's backend.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/loop/drafter.hpp"
#include "redraft/loop/target_model.hpp"

namespace redraft::testing {

namespace detail {

// Log-probs [R, W, L-1, V] with log(0.9) at each proposed token and an even share of 0.1
// elsewhere: a valid log-distribution whose argmax is the proposal. beams: [R, W, L] host.
inline std::vector<float> smoothed_log_probs(const std::vector<std::int32_t>& beams,
                                             std::int32_t requests, std::int32_t width,
                                             std::int32_t length, std::int32_t vocab) {
  std::vector<float> out(static_cast<std::size_t>(requests) * width * (length - 1) * vocab);
  const float other = std::log(0.1f / static_cast<float>(vocab - 1)), chosen = std::log(0.9f);
  for (index_t row = 0; row < static_cast<index_t>(requests) * width; ++row)
    for (std::int32_t k = 0; k + 1 < length; ++k) {
      float* dst = out.data() + (row * (length - 1) + k) * vocab;
      for (std::int32_t v = 0; v < vocab; ++v) dst[v] = other;
      dst[beams[static_cast<std::size_t>(row * length + k + 1)]] = chosen;
    }
  return out;
}

template <Backend B, class T>
typename B::template buffer<T> upload(const B& backend, const std::vector<T>& host) {
  auto out = backend.template allocate<T>(static_cast<index_t>(host.size()));
  if (!host.empty())
    backend.copy_from_host(host.data(), static_cast<index_t>(host.size()), out.data());
  return out;
}

// The drafter's output on B: beams [R, W, L] and, when asked, their smoothed log-probs.
template <Backend B>
draft_output<B> upload_draft(const B& backend, const std::vector<std::int32_t>& beams,
                             const draft_input& in, std::int32_t vocab) {
  const auto requests = static_cast<std::int32_t>(in.roots.extent(0));
  draft_output<B> out;
  out.beams = upload(backend, beams);
  out.log_probs = in.want_log_probs
                      ? upload(backend, smoothed_log_probs(beams, requests, in.beam_width,
                                                           in.beam_length, vocab))
                      : backend.template allocate<float>(0);
  return out;
}

}  // namespace detail

template <Backend B>
class basic_random_drafter {
 public:
  basic_random_drafter(B backend, std::int32_t vocab_size, std::uint64_t seed)
      : backend_(backend), vocab_(vocab_size), seed_(seed) {}
  basic_random_drafter(std::int32_t vocab_size,
                       std::uint64_t seed) requires std::same_as<B, cpu_backend>
      : basic_random_drafter(cpu_backend{}, vocab_size, seed) {}

  draft_output<B> draft(const draft_input& in) {
    const std::int32_t requests = static_cast<std::int32_t>(in.roots.extent(0));
    const std::int32_t width = in.beam_width, length = in.beam_length;
    std::vector<std::int32_t> beams(static_cast<std::size_t>(requests) * width *
                                    length);  // [R, W, L]
    for (std::int32_t r = 0; r < requests; ++r) {
      const philox_stream s{seed_, static_cast<std::uint32_t>(in.slots[r]), calls_};
      for (std::int32_t w = 0; w < width; ++w)
        for (std::int32_t l = 0; l < length; ++l) {
          const index_t i = (static_cast<index_t>(r) * width + w) * length + l;
          beams[static_cast<std::size_t>(i)] =
              l == 0 ? in.roots[r]
                     : static_cast<std::int32_t>(s.bits(static_cast<std::uint64_t>(i)) % vocab_);
        }
    }
    ++calls_;
    return detail::upload_draft(backend_, beams, in, vocab_);
  }

 private:
  B backend_;
  std::int32_t vocab_;
  std::uint64_t seed_;
  std::uint32_t calls_ = 0;
};

using random_drafter = basic_random_drafter<cpu_backend>;

// Drafts with a shadow TargetModel, on the shadow's backend. The caller keeps the drafter told of
// each slot's committed sequence: set_context(slot, prompt) at start, and observe(slot, token) for
// every emitted token (the speculative decoder's token callback does exactly that).
template <TargetModel M>
class oracle_drafter {
 public:
  using backend_type = typename M::backend_type;

  oracle_drafter(M& shadow, std::int32_t num_slots, std::uint64_t seed)
      : shadow_(shadow),
        backend_(shadow.backend()),
        context_(static_cast<std::size_t>(num_slots)),
        seed_(seed) {}

  void set_context(std::int32_t slot, std::vector<std::int32_t> tokens) {
    context_.at(static_cast<std::size_t>(slot)) = std::move(tokens);
  }
  void observe(std::int32_t slot, std::int32_t token) {
    context_.at(static_cast<std::size_t>(slot)).push_back(token);
  }

  draft_output<backend_type> draft(const draft_input& in) {
    const std::int32_t requests = static_cast<std::int32_t>(in.roots.extent(0));
    const std::int32_t width = in.beam_width, length = in.beam_length, vocab = shadow_.vocab_size();
    std::vector<std::int32_t> beams(static_cast<std::size_t>(requests) * width *
                                    length);  // [R, W, L]
    for (std::int32_t r = 0; r < requests; ++r) {
      // Committed sequence = everything observed except the root (the last emitted token).
      const auto& seen = context_.at(static_cast<std::size_t>(in.slots[r]));
      REDRAFT_REQUIRE(
          !seen.empty() && seen.back() == in.roots[r], "oracle_drafter: slot ", in.slots[r],
          " was not told its context (last observed token must be the root ", in.roots[r], ")");
      const std::vector<std::int32_t> greedy = continue_greedy(seen, length - 1);
      const philox_stream s{seed_, static_cast<std::uint32_t>(in.slots[r]), calls_};
      for (std::int32_t w = 0; w < width; ++w) {
        std::int32_t* beam = beams.data() + (static_cast<index_t>(r) * width + w) * length;
        beam[0] = in.roots[r];
        for (std::int32_t l = 1; l < length; ++l) beam[l] = greedy[static_cast<std::size_t>(l - 1)];
        if (w > 0) {  // perturb one depth so beams share a prefix and then diverge
          const std::int32_t depth =
              1 +
              static_cast<std::int32_t>(s.bits(2u * w) % static_cast<std::uint32_t>(length - 1));
          beam[depth] = static_cast<std::int32_t>(
              (beam[depth] + 1 + s.bits(2u * w + 1) % (vocab - 1)) % vocab);
        }
      }
    }
    ++calls_;
    return detail::upload_draft(backend_, beams, in, vocab);
  }

 private:
  // The shadow model's greedy continuation of `sequence` by `count` tokens (slot 0 of the shadow).
  std::vector<std::int32_t> continue_greedy(const std::vector<std::int32_t>& sequence,
                                            std::int32_t count) {
    const std::int32_t slot = 0, zero = 0, length = static_cast<std::int32_t>(sequence.size());
    const std::int32_t offsets[2] = {0, length};
    model_output o =
        shadow_.prefill(prefill_input{{&slot, 1}, {offsets, 2}, {sequence.data(), length}});
    std::vector<std::int32_t> out;
    std::vector<float> row(static_cast<std::size_t>(shadow_.vocab_size()));  // [V] host
    std::int32_t committed = length;
    // The one-node tree's fixed fields, in backend memory: node offsets, parent, depth, masks.
    const auto node_offsets = detail::upload(backend_, std::vector<std::int32_t>{0, 1});
    const auto parent = detail::upload(backend_, std::vector<std::int32_t>{-1});
    const auto depth = detail::upload(backend_, std::vector<std::int32_t>{0});
    const auto dense_offsets = detail::upload(backend_, std::vector<std::int64_t>{0, 1});
    const auto dense = detail::upload(backend_, std::vector<std::uint8_t>{1});
    const auto packed = detail::upload(backend_, std::vector<std::uint32_t>{1});
    const std::int32_t host_node_offsets[2] = {0, 1};
    for (std::int32_t i = 0; i < count; ++i) {
      backend_.copy_to_host(o.logits.data(), static_cast<index_t>(row.size()), row.data());
      std::int32_t best = 0;
      for (std::int32_t v = 1; v < shadow_.vocab_size(); ++v)
        if (row[static_cast<std::size_t>(v)] > row[static_cast<std::size_t>(best)]) best = v;
      out.push_back(best);
      if (i + 1 == count || committed >= shadow_.max_context()) break;
      // One-node tree: the new token at position `committed`, then keep it.
      const auto token = detail::upload(backend_, std::vector<std::int32_t>{best});
      const auto position = detail::upload(backend_, std::vector<std::int32_t>{committed});
      tree_view t{1, 0, 0, node_offsets.data(), token.data(), parent.data(), depth.data(), nullptr};
      verify_input vin{
          {&slot, 1},           {host_node_offsets, 2}, t, {position.data(), 1}, dense.data(),
          dense_offsets.data(), packed.data(),          1};
      o = shadow_.verify(vin);
      kv_plan plan{{0, 1}, {slot}, {zero}, {committed}};
      shadow_.commit(plan);
      ++committed;
    }
    while (static_cast<std::int32_t>(out.size()) < count)
      out.push_back(out.empty() ? 0 : out.back());
    return out;
  }

  M& shadow_;
  backend_type backend_;
  std::vector<std::vector<std::int32_t>> context_;
  std::uint64_t seed_;
  std::uint32_t calls_ = 0;
};

}  // namespace redraft::testing
