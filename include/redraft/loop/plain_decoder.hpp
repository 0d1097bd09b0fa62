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
#include <utility>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/core/view.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/loop/decode_common.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/target_model.hpp"
#include "redraft/loop/verify_pass.hpp"
#include "redraft/tree/chain_tree.hpp"
#include "redraft/verify/logits_processing.hpp"

namespace redraft {

// plain_choose_token(row [V], rule, sampling, u): the token plain decoding emits from one logits
// row: argmax (ties to the lower index) for verifier::greedy, otherwise the smallest token i with
// cumsum(p)[i] > u * sum(p) for the processed distribution p of `sampling`. u in [0, 1).
// Throws redraft::error for a row with NaN / +inf or without a finite logit. O(V).
inline std::int32_t plain_choose_token(const float* row, index_t vocab, verifier rule,
                                       const sampling_params& sampling, float u) {
  if (rule == verifier::greedy) {
    const row_ops::row_argmax_result best = row_ops::argmax_checked(row, vocab);
    REDRAFT_REQUIRE(best.bad_column != -2,
                    "plain_choose_token: the logits row has no finite logit");
    REDRAFT_REQUIRE(best.bad_column == -1,
                    "plain_choose_token: the logits row holds NaN or +inf at column ",
                    best.bad_column);
    return best.index;
  }
  const row_ops::processed_row p = row_ops::process_row(row, vocab, sampling);
  REDRAFT_REQUIRE(p.bad_column != -2, "plain_choose_token: the logits row has no finite logit");
  REDRAFT_REQUIRE(p.ok(), "plain_choose_token: the logits row holds NaN or +inf at column ",
                  p.bad_column);
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
  generation_result generate(const std::vector<generation_request>& requests,
                             const decode_options& options = {},
                             const token_callback& on_token = {}) {
    if (options.rule != verifier::greedy) detail::check_sampling_params(fn, options.sampling);
    run_state run(requests, options, on_token, detail::check_requests(fn, model_, requests, 0));
    const auto run_start = detail::decode_clock::now();
    run.progress = detail::start_progress(requests, run.slots, run.result, 0);
    prefill(run);
    std::uint32_t step = 0;
    for (auto active = detail::running(run.progress); !active.empty();
         active = detail::running(run.progress)) {
      ++step;
      step_stats st;
      st.requests = static_cast<std::int32_t>(active.size());
      st.nodes = st.requests;
      st.target_s = target_pass(run, active);
      st.kv_s = commit(run, active);
      st.verify_s = emit(run, active, step, st);
      run.result.steps.push_back(st);
    }
    run.result.total_s = detail::seconds_since(run_start);
    return std::move(run.result);
  }

 private:
  static constexpr const char* fn = "plain_decoder::generate";

  // What one generate() call carries from phase to phase.
  struct run_state {
    run_state(const std::vector<generation_request>& requests_in, const decode_options& options_in,
              const token_callback& on_token_in, std::vector<std::int32_t> slots_in)
        : requests(requests_in),
          options(options_in),
          on_token(on_token_in),
          slots(std::move(slots_in)) {}

    const std::vector<generation_request>& requests;
    const decode_options& options;
    const token_callback& on_token;
    std::vector<std::int32_t> slots;  // [R] the KV slot of each request
    generation_result result;
    std::vector<detail::request_progress> progress;  // [R]
    std::vector<float> logits;                       // [A, V] host copy of the model's last logits
  };

  // The token of request r from row `row` of run.logits at `step` (0: the prefill's token).
  std::int32_t choose(const run_state& run, std::int32_t r, std::size_t row,
                      std::uint32_t step) const {
    const index_t vocab = model_.vocab_size();
    const bool sampling = run.options.rule != verifier::greedy;
    const float u =
        sampling ? philox_stream{run.options.seed, static_cast<std::uint32_t>(r), step}.uniform(0)
                 : 0.0f;
    return plain_choose_token(run.logits.data() + row * static_cast<std::size_t>(vocab), vocab,
                              run.options.rule, run.options.sampling, u);
  }

  // Chooses request r's token from logits row `row` and emits it (the request may stop).
  void emit_token(run_state& run, std::int32_t r, std::size_t row, std::uint32_t step) {
    auto& p = run.progress[static_cast<std::size_t>(r)];
    p.root = choose(run, r, row, step);
    p.emit(p.root, run.requests[static_cast<std::size_t>(r)],
           run.result.tokens[static_cast<std::size_t>(r)],
           run.result.requests[static_cast<std::size_t>(r)], run.on_token);
  }

  // Copies the first `rows` logits rows [rows, V] of `out` to run.logits.
  void read_logits(run_state& run, const model_output& out, index_t rows) const {
    const index_t vocab = model_.vocab_size();
    run.logits.resize(static_cast<std::size_t>(rows * vocab));
    backend_.copy_to_host(out.logits.data(), rows * vocab, run.logits.data());
  }

  // Prefill: the first token (step 0) of every request with something to generate.
  void prefill(run_state& run) {
    const std::vector<std::int32_t> active = detail::running(run.progress);
    const auto start = detail::decode_clock::now();
    if (!active.empty()) {
      const model_output out =
          detail::prefill_requests(fn, model_, run.requests, run.progress, active);
      read_logits(run, out, static_cast<index_t>(active.size()));
      for (std::size_t i = 0; i < active.size(); ++i) emit_token(run, active[i], i, 0);
    }
    run.result.prefill_s = detail::seconds_since(start);
  }

  // Target: one verify of a one-node tree per active request (its last token at position
  // committed), logits to the host. Returns the seconds of the verify and the copy.
  double target_pass(run_state& run, const std::vector<std::int32_t>& active) {
    const index_t a = static_cast<index_t>(active.size());
    std::vector<std::int32_t> aslots, roots, positions;  // [A] each
    for (const std::int32_t r : active) {
      const auto& p = run.progress[static_cast<std::size_t>(r)];
      aslots.push_back(p.slot);
      roots.push_back(p.root);
      positions.push_back(p.committed);
    }
    const detail::verify_pass<B> pass = detail::make_verify_pass(
        backend_, build_one_node_tree(backend_, roots), positions, tree_mask_format::both);
    const auto start = detail::decode_clock::now();
    const model_output out = model_.verify(pass.input({aslots.data(), a}));
    detail::check_model_output(fn, "verify", out, a, model_.vocab_size(), model_.hidden_size());
    read_logits(run, out, a);
    return detail::seconds_since(start);
  }

  // Commit: every active request keeps its one node, at position committed. Returns the seconds.
  double commit(run_state& run, const std::vector<std::int32_t>& active) {
    const auto start = detail::decode_clock::now();
    kv_plan plan;
    plan.offsets.push_back(0);
    for (const std::int32_t r : active) {
      auto& p = run.progress[static_cast<std::size_t>(r)];
      plan.slot.push_back(p.slot);
      plan.source_node.push_back(0);
      plan.destination.push_back(p.committed);
      plan.offsets.push_back(static_cast<std::int32_t>(plan.source_node.size()));
      ++p.committed;
    }
    model_.commit(plan);
    backend_.synchronize();
    return detail::seconds_since(start);
  }

  // Emit: the next token of every active request from its logits row. Returns the seconds.
  double emit(run_state& run, const std::vector<std::int32_t>& active, std::uint32_t step,
              step_stats& st) {
    const auto start = detail::decode_clock::now();
    for (std::size_t i = 0; i < active.size(); ++i) {
      ++run.result.requests[static_cast<std::size_t>(active[i])].steps;
      ++st.emitted;
      emit_token(run, active[i], i, step);
    }
    return detail::seconds_since(start);
  }

  B backend_;
  M& model_;
};

// plain_decode(model, requests, options, on_token): plain_decoder over the model's backend
// (TargetModel clause 6; see plain_decoder::generate).
template <TargetModel M>
generation_result plain_decode(M& model, const std::vector<generation_request>& requests,
                               const decode_options& options = {},
                               const token_callback& on_token = {}) {
  using B = typename M::backend_type;
  plain_decoder<B, M> decoder(model.backend(), model);
  return decoder.generate(requests, options, on_token);
}

}  // namespace redraft
