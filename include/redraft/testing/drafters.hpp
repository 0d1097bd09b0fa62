// redraft/testing/drafters.hpp: two drafters for testing the decoding loop at the extremes of
// acceptance, on the CPU backend.
//
//   random_drafter  proposes Philox-random tokens: acceptance is near zero, so every step emits
//                   about one token and the loop's bookkeeping is exercised on short paths.
//   oracle_drafter  asks a shadow copy of the target model for its greedy continuation (beam 0)
//                   and perturbs it at one depth for the other beams: beam 0 is accepted in full
//                   under greedy verification, so every step emits L tokens and the loop's
//                   bookkeeping is exercised on the longest paths, EOS and max_new_tokens in
//                   mid-step, and shared prefixes in the trie.
// Both report log-probs when asked (a smoothed one-hot of the proposal), so every verifier can
// run with them.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/loop/drafter.hpp"
#include "redraft/loop/target_model.hpp"

namespace redraft::testing {

namespace detail {

// Fills log_probs [R, W, L-1, V] with log(0.9) at each proposed token and an even share of 0.1
// elsewhere: a valid log-distribution whose argmax is the proposal.
inline void smoothed_log_probs(const host_buffer<std::int32_t>& beams, std::int32_t requests, std::int32_t width,
                               std::int32_t length, std::int32_t vocab, host_buffer<float>& out) {
  out = host_buffer<float>(static_cast<index_t>(requests) * width * (length - 1) * vocab);
  const float other = std::log(0.1f / static_cast<float>(vocab - 1)), chosen = std::log(0.9f);
  for (index_t row = 0; row < static_cast<index_t>(requests) * width; ++row)
    for (std::int32_t k = 0; k + 1 < length; ++k) {
      float* dst = out.data() + (row * (length - 1) + k) * vocab;
      for (std::int32_t v = 0; v < vocab; ++v) dst[v] = other;
      dst[beams[row * length + k + 1]] = chosen;
    }
}

}  // namespace detail

class random_drafter {
 public:
  random_drafter(std::int32_t vocab_size, std::uint64_t seed) : vocab_(vocab_size), seed_(seed) {}

  draft_output<cpu_backend> draft(const draft_input& in) {
    const std::int32_t requests = static_cast<std::int32_t>(in.roots.extent(0));
    const std::int32_t width = in.beam_width, length = in.beam_length;
    draft_output<cpu_backend> out;
    out.beams = host_buffer<std::int32_t>(static_cast<index_t>(requests) * width * length);
    for (std::int32_t r = 0; r < requests; ++r) {
      const philox_stream s{seed_, static_cast<std::uint32_t>(in.slots[r]), calls_};
      for (std::int32_t w = 0; w < width; ++w)
        for (std::int32_t l = 0; l < length; ++l) {
          const index_t i = (static_cast<index_t>(r) * width + w) * length + l;
          out.beams[i] = l == 0 ? in.roots[r] : static_cast<std::int32_t>(s.bits(static_cast<std::uint64_t>(i)) % vocab_);
        }
    }
    ++calls_;
    if (in.want_log_probs) detail::smoothed_log_probs(out.beams, requests, width, length, vocab_, out.log_probs);
    return out;
  }

 private:
  std::int32_t vocab_;
  std::uint64_t seed_;
  std::uint32_t calls_ = 0;
};

// Drafts with a shadow TargetModel on the CPU. The caller keeps the drafter told of each slot's
// committed sequence: set_context(slot, prompt) at start, and observe(slot, token) for every
// emitted token (the speculative decoder's token callback does exactly that).
template <TargetModel M>
class oracle_drafter {
 public:
  oracle_drafter(M& shadow, std::int32_t num_slots, std::uint64_t seed)
      : shadow_(shadow), context_(static_cast<std::size_t>(num_slots)), seed_(seed) {}

  void set_context(std::int32_t slot, std::vector<std::int32_t> tokens) {
    context_.at(static_cast<std::size_t>(slot)) = std::move(tokens);
  }
  void observe(std::int32_t slot, std::int32_t token) { context_.at(static_cast<std::size_t>(slot)).push_back(token); }

  draft_output<cpu_backend> draft(const draft_input& in) {
    const std::int32_t requests = static_cast<std::int32_t>(in.roots.extent(0));
    const std::int32_t width = in.beam_width, length = in.beam_length, vocab = shadow_.vocab_size();
    draft_output<cpu_backend> out;
    out.beams = host_buffer<std::int32_t>(static_cast<index_t>(requests) * width * length);
    for (std::int32_t r = 0; r < requests; ++r) {
      // Committed sequence = everything observed except the root (the last emitted token).
      const auto& seen = context_.at(static_cast<std::size_t>(in.slots[r]));
      REDRAFT_REQUIRE(!seen.empty() && seen.back() == in.roots[r], "oracle_drafter: slot ", in.slots[r],
                      " was not told its context (last observed token must be the root ", in.roots[r], ")");
      const std::vector<std::int32_t> greedy = continue_greedy(seen, length - 1);
      const philox_stream s{seed_, static_cast<std::uint32_t>(in.slots[r]), calls_};
      for (std::int32_t w = 0; w < width; ++w) {
        std::int32_t* beam = out.beams.data() + (static_cast<index_t>(r) * width + w) * length;
        beam[0] = in.roots[r];
        for (std::int32_t l = 1; l < length; ++l) beam[l] = greedy[static_cast<std::size_t>(l - 1)];
        if (w > 0) {  // perturb one depth so beams share a prefix and then diverge
          const std::int32_t depth = 1 + static_cast<std::int32_t>(s.bits(2u * w) % static_cast<std::uint32_t>(length - 1));
          beam[depth] = static_cast<std::int32_t>((beam[depth] + 1 + s.bits(2u * w + 1) % (vocab - 1)) % vocab);
        }
      }
    }
    ++calls_;
    if (in.want_log_probs) detail::smoothed_log_probs(out.beams, requests, width, length, vocab, out.log_probs);
    return out;
  }

 private:
  // The shadow model's greedy continuation of `sequence` by `count` tokens (slot 0 of the shadow).
  std::vector<std::int32_t> continue_greedy(const std::vector<std::int32_t>& sequence, std::int32_t count) {
    const std::int32_t slot = 0, zero = 0, length = static_cast<std::int32_t>(sequence.size());
    const std::int32_t offsets[2] = {0, length};
    model_output o = shadow_.prefill(prefill_input{{&slot, 1}, {offsets, 2}, {sequence.data(), length}});
    std::vector<std::int32_t> out;
    std::int32_t committed = length;
    for (std::int32_t i = 0; i < count; ++i) {
      const float* row = o.logits.data();
      std::int32_t best = 0;
      for (std::int32_t v = 1; v < shadow_.vocab_size(); ++v)
        if (row[v] > row[best]) best = v;
      out.push_back(best);
      if (i + 1 == count || committed >= shadow_.max_context()) break;
      // One-node tree: the new token at position `committed`, then keep it.
      const std::int32_t node_offsets[2] = {0, 1}, parent = -1, depth = 0;
      const std::int64_t dense_offsets[2] = {0, 1};
      const std::uint8_t dense = 1;
      const std::uint32_t packed = 1;
      tree_view t{1, 0, 0, node_offsets, &best, &parent, &depth, nullptr};
      verify_input vin{{&slot, 1}, {node_offsets, 2}, t, {&committed, 1}, &dense, dense_offsets, &packed, 1};
      o = shadow_.verify(vin);
      kv_plan plan{{0, 1}, {slot}, {zero}, {committed}};
      shadow_.commit(plan);
      ++committed;
    }
    while (static_cast<std::int32_t>(out.size()) < count) out.push_back(out.empty() ? 0 : out.back());
    return out;
  }

  M& shadow_;
  std::vector<std::vector<std::int32_t>> context_;
  std::uint64_t seed_;
  std::uint32_t calls_ = 0;
};

}  // namespace redraft::testing
