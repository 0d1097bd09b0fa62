// redraft/loop/plain_decoder.hpp: plain autoregressive decoding over any TargetModel, the
// baseline the speculative decoder is measured and tested against.
//
//   prefill -> first token (step 0)
//   repeat for the requests still running {
//     one-node tree per request: the last emitted token at position committed_length
//     model.verify -> logits [A, V]; model.commit keeps that node        (one target pass)
//     next token (step s)
//   } until each request emits its EOS token or max_new_tokens
//
// Uses the same request, option, statistics and result types as the speculative decoder
// (loop/generation.hpp), so both run on one request list and their results compare directly.
// Token choice: options.rule == verifier::greedy takes the argmax (ties to the lower index);
// every other rule samples the processed distribution of options.sampling (temperature, then
// top-k, then top-p, the semantics of verify/logits_processing.hpp) by inverse CDF with draw 0 of
// the Philox stream (options.seed, request index, step), step 0 being the prefill's token.
// Streams are keyed by the request's index in the caller's list, so a request's tokens do not
// depend on the other requests of the batch. Deterministic.
//
// Cost: one prefill plus one model.verify of A one-node trees and one commit per emitted token
// after the first; O(A V) host work per step for the token choice.
// Requests are validated up front (empty prompt, token ids, context length, duplicate slots,
// sampling parameters): a bad request throws redraft::error before the model is touched. After
// generate() each running request's slot holds prompt + emitted tokens except the last one.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/core/view.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/decode_common.hpp"
#include "redraft/loop/target_model.hpp"
#include "redraft/verify/logits_processing.hpp"

namespace redraft {

// plain_choose_token(row [V], rule, sampling, u): the token plain decoding emits from one logits
// row: argmax (ties to the lower index) for verifier::greedy, otherwise the smallest token i with
// cumsum(p)[i] > u * sum(p) for the processed distribution p of `sampling`. u in [0, 1).
// Throws redraft::error for a row with NaN / +inf or without a finite logit. O(V).
inline std::int32_t plain_choose_token(const float* row, index_t vocab, verifier rule, const sampling_params& sampling,
                                       float u) {
  if (rule == verifier::greedy) {
    const row_ops::row_argmax_result best = row_ops::argmax_checked(row, vocab);
    REDRAFT_REQUIRE(best.bad_column != -2, "plain_choose_token: the logits row has no finite logit");
    REDRAFT_REQUIRE(best.bad_column == -1, "plain_choose_token: the logits row holds NaN or +inf at column ",
                    best.bad_column);
    return best.index;
  }
  const row_ops::processed_row p = row_ops::process_row(row, vocab, sampling);
  REDRAFT_REQUIRE(p.bad_column != -2, "plain_choose_token: the logits row has no finite logit");
  REDRAFT_REQUIRE(p.ok(), "plain_choose_token: the logits row holds NaN or +inf at column ", p.bad_column);
  double residual = 0.0;
  return row_ops::sample_excluding(row, vocab, p, nullptr, 0, u, &residual);
}

template <Backend B, TargetModel M>
  requires std::same_as<typename M::backend_type, B>
class plain_decoder {
 public:
  plain_decoder(B backend, M& model) : backend_(backend), model_(model) {}

  // Generates continuations of `requests` (R of them, each on its own KV slot: request.slot, or
  // its index when -1). Returns the emitted tokens and statistics: per request `steps` (target
  // passes after the prefill) and `emitted`; per step the target (verify) and kv (commit) times.
  // drafted / accepted stay 0. See the file comment for semantics.
  generation_result generate(const std::vector<generation_request>& requests, const decode_options& options = {},
                             const token_callback& on_token = {}) {
    constexpr const char* fn = "plain_decoder::generate";
    const bool sampling = options.rule != verifier::greedy;
    if (sampling) detail::check_sampling_params(fn, options.sampling);
    const std::vector<std::int32_t> slots = detail::check_requests(fn, model_, requests, 0);
    const auto run_start = detail::decode_clock::now();
    const index_t vocab = model_.vocab_size(), hidden_size = model_.hidden_size();

    generation_result result;
    std::vector<detail::request_progress> progress = detail::start_progress(requests, slots, result, 0);

    std::vector<float> logits;  // [A, V] host copy of the model's logits
    const auto choose = [&](std::int32_t r, std::size_t row, std::uint32_t step) {
      const float u = sampling ? philox_stream{options.seed, static_cast<std::uint32_t>(r), step}.uniform(0) : 0.0f;
      return plain_choose_token(logits.data() + row * static_cast<std::size_t>(vocab), vocab, options.rule,
                                options.sampling, u);
    };

    // --- prefill: the first token (step 0) ---
    std::vector<std::int32_t> active = detail::running(progress);
    const auto prefill_start = detail::decode_clock::now();
    if (!active.empty()) {
      const index_t a = static_cast<index_t>(active.size());
      const model_output out = detail::prefill_requests(fn, model_, requests, progress, active);
      logits.resize(static_cast<std::size_t>(a * vocab));
      backend_.copy_to_host(out.logits.data(), a * vocab, logits.data());
      for (index_t i = 0; i < a; ++i) {
        const std::int32_t r = active[static_cast<std::size_t>(i)];
        auto& p = progress[static_cast<std::size_t>(r)];
        p.root = choose(r, static_cast<std::size_t>(i), 0);
        p.emit(p.root, requests[static_cast<std::size_t>(r)], result.tokens[static_cast<std::size_t>(r)],
               result.requests[static_cast<std::size_t>(r)], on_token);
      }
    }
    result.prefill_s = detail::seconds_since(prefill_start);

    // --- one token per step ---
    std::uint32_t step = 0;
    for (active = detail::running(progress); !active.empty(); active = detail::running(progress)) {
      ++step;
      step_stats st;
      const index_t a = static_cast<index_t>(active.size());
      st.requests = static_cast<std::int32_t>(a);
      st.nodes = static_cast<std::int32_t>(a);
      std::vector<std::int32_t> aslots, offsets, tokens, positions;
      offsets.push_back(0);
      for (const std::int32_t r : active) {
        const auto& p = progress[static_cast<std::size_t>(r)];
        aslots.push_back(p.slot);
        tokens.push_back(p.root);
        positions.push_back(p.committed);
        offsets.push_back(static_cast<std::int32_t>(offsets.size()));
      }
      // One-node trees and their masks (a single set bit), in backend memory.
      const std::vector<std::int32_t> parent(static_cast<std::size_t>(a), -1), depth(static_cast<std::size_t>(a), 0);
      std::vector<std::int64_t> dense_offsets(static_cast<std::size_t>(a) + 1);
      for (index_t i = 0; i <= a; ++i) dense_offsets[static_cast<std::size_t>(i)] = i;
      const std::vector<std::uint8_t> dense_ones(static_cast<std::size_t>(a), 1);
      const std::vector<std::uint32_t> packed_ones(static_cast<std::size_t>(a), 1u);
      const auto d_offsets = upload(offsets), d_tokens = upload(tokens), d_parent = upload(parent),
                 d_depth = upload(depth), d_positions = upload(positions);
      const auto d_dense_offsets = upload(dense_offsets);
      const auto d_dense = upload(dense_ones);
      const auto d_packed = upload(packed_ones);
      tree_view t;
      t.batch = static_cast<std::int32_t>(a);
      t.node_offsets = d_offsets.data();
      t.token = d_tokens.data();
      t.parent = d_parent.data();
      t.depth = d_depth.data();
      verify_input vin{{aslots.data(), a}, {offsets.data(), a + 1}, t, {d_positions.data(), a}};
      vin.dense_mask = d_dense.data();
      vin.dense_offsets = d_dense_offsets.data();
      vin.packed_mask = d_packed.data();
      vin.packed_words_per_row = 1;

      auto t0 = detail::decode_clock::now();
      const model_output out = model_.verify(vin);
      detail::check_model_output(fn, "verify", out, a, vocab, hidden_size);
      logits.resize(static_cast<std::size_t>(a * vocab));
      backend_.copy_to_host(out.logits.data(), a * vocab, logits.data());
      st.target_s = detail::seconds_since(t0);

      t0 = detail::decode_clock::now();
      kv_plan plan;
      plan.offsets.push_back(0);
      for (index_t i = 0; i < a; ++i) {
        auto& p = progress[static_cast<std::size_t>(active[static_cast<std::size_t>(i)])];
        plan.slot.push_back(p.slot);
        plan.source_node.push_back(0);
        plan.destination.push_back(p.committed);
        plan.offsets.push_back(static_cast<std::int32_t>(plan.source_node.size()));
        ++p.committed;
      }
      model_.commit(plan);
      backend_.synchronize();
      st.kv_s = detail::seconds_since(t0);

      t0 = detail::decode_clock::now();
      for (index_t i = 0; i < a; ++i) {
        const std::int32_t r = active[static_cast<std::size_t>(i)];
        auto& p = progress[static_cast<std::size_t>(r)];
        auto& stats = result.requests[static_cast<std::size_t>(r)];
        ++stats.steps;
        ++st.emitted;
        p.root = choose(r, static_cast<std::size_t>(i), step);
        p.emit(p.root, requests[static_cast<std::size_t>(r)], result.tokens[static_cast<std::size_t>(r)], stats,
               on_token);
      }
      st.verify_s = detail::seconds_since(t0);
      result.steps.push_back(st);
    }
    result.total_s = detail::seconds_since(run_start);
    return result;
  }

 private:

  template <class T>
  typename B::template buffer<T> upload(const std::vector<T>& host) const {
    auto out = backend_.template allocate<T>(static_cast<index_t>(host.size()));
    backend_.copy_from_host(host.data(), static_cast<index_t>(host.size()), out.data());
    return out;
  }

  B backend_;
  M& model_;
};

// plain_decode(model, requests, options, on_token): plain_decoder over a default-constructed
// backend of the model's type (see plain_decoder::generate).
template <TargetModel M>
generation_result plain_decode(M& model, const std::vector<generation_request>& requests,
                               const decode_options& options = {}, const token_callback& on_token = {}) {
  using B = typename M::backend_type;
  plain_decoder<B, M> decoder(B{}, model);
  return decoder.generate(requests, options, on_token);
}

}  // namespace redraft
