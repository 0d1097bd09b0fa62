// redraft/loop/speculative_decoder.hpp: the speculative decoding loop over any TargetModel and
// any Drafter.
//
//   prefill -> first token + h
//   repeat for the requests still running {
//     draft W beams of L tokens from (h, root)              drafter.draft        [A, W, L]
//     trie dedup, masks, positions                          build_tree, masks    n_total nodes
//     one target pass over the packed tree tokens           model.verify         logits [n_total, V]
//     accept the longest valid path, pick the next token    verify_<rule>        acceptance [A]
//     keep the KV entries of the root + accepted nodes      model.commit(kv_plan)
//     next root = next token, h = hidden at the last accepted node
//   } until each request emits its EOS token or max_new_tokens
//
// Greedy (verifier::greedy) output equals plain greedy decoding of the target token for token;
// verifier::lossless output follows the target's sampling law exactly (tests prove both).
// The first token comes from the prefill logits, chosen by the same rule as a one-node tree, so
// it is argmax under greedy and a sample of the processed distribution otherwise.
//
// Requests are validated up front (empty prompt, token ids, context length, duplicate slots):
// a bad request throws redraft::error before the model or the drafter is touched. If the model
// or drafter throws mid-run, the exception propagates; slots are left as the model left them and
// must be re-prefilled before reuse.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <set>
#include <span>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/loop/decode_common.hpp"
#include "redraft/loop/drafter.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/target_model.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/masks.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/greedy.hpp"
#include "redraft/verify/lossless.hpp"
#include "redraft/verify/redrafter.hpp"
#include "redraft/verify/typical.hpp"

namespace redraft {


template <Backend B, TargetModel M, class D>
  requires Drafter<D, B> && std::same_as<typename M::backend_type, B>
class speculative_decoder {
 public:
  speculative_decoder(B backend, M& model, D& drafter) : backend_(backend), model_(model), drafter_(drafter) {}

  // Generates continuations of `requests` (R of them, each on its own KV slot). Returns the
  // emitted tokens, per-request and per-step statistics. See the file comment for semantics.
  generation_result generate(const std::vector<generation_request>& requests, const decode_options& options,
                             const token_callback& on_token = {}) {
    constexpr const char* fn = "speculative_decoder::generate";
    REDRAFT_REQUIRE(options.beam_width >= 1, fn, ": beam_width ", options.beam_width, " must be at least 1");
    REDRAFT_REQUIRE(options.beam_length >= 2, fn, ": beam_length ", options.beam_length,
                    " must be at least 2 (the root plus one drafted token)");
    if (options.rule == verifier::lossless) detail::check_sampling_params(fn, options.sampling);
    const std::vector<std::int32_t> slots = detail::check_requests(fn, model_, requests, options.beam_length - 1);
    const auto run_start = detail::decode_clock::now();
    const index_t vocab = model_.vocab_size(), hidden_size = model_.hidden_size();
    const std::int32_t num_requests = static_cast<std::int32_t>(requests.size());

    generation_result result;
    std::vector<detail::request_progress> progress =
        detail::start_progress(requests, slots, result, options.beam_length);
    for (std::size_t r = 0; r < requests.size(); ++r) {  // the drafters' draft_input::history
      const generation_request& q = requests[r];
      progress[r].keep_history = true;
      progress[r].history.reserve(q.prompt.size() + static_cast<std::size_t>(q.max_new_tokens));
      progress[r].history.assign(q.prompt.begin(), q.prompt.end());
    }

    // h of every request (the target's hidden state at its last committed token): [R, H].
    auto hidden_state = backend_.template allocate<float>(static_cast<index_t>(num_requests) * hidden_size);

    // --- prefill: the first token of every request with something to generate ---
    std::vector<std::int32_t> active = detail::running(progress);
    const auto prefill_start = detail::decode_clock::now();
    if (!active.empty()) {
      std::vector<std::int32_t> last_tokens;
      for (std::int32_t r : active) last_tokens.push_back(requests[static_cast<std::size_t>(r)].prompt.back());
      const index_t a = static_cast<index_t>(active.size());
      const model_output out = detail::prefill_requests(fn, model_, requests, progress, active);
      // The first token: the verification rule applied to one-node trees (nothing drafted).
      const std::vector<std::int32_t> first = first_tokens(last_tokens, active, out.logits, options);
      for (index_t i = 0; i < a; ++i) {
        const std::int32_t r = active[static_cast<std::size_t>(i)];
        backend_.copy(out.hidden.data() + i * hidden_size, hidden_size, hidden_state.data() + r * hidden_size);
        auto& p = progress[static_cast<std::size_t>(r)];
        p.root = first[static_cast<std::size_t>(i)];
        p.emit(p.root, requests[static_cast<std::size_t>(r)], result.tokens[static_cast<std::size_t>(r)],
               result.requests[static_cast<std::size_t>(r)], on_token);
      }
    }
    result.prefill_s = detail::seconds_since(prefill_start);

    // --- speculative steps ---
    const std::int32_t width = options.beam_width, length = options.beam_length;
    std::uint32_t step = 0;
    for (active = detail::running(progress); !active.empty(); active = detail::running(progress)) {
      ++step;
      step_stats st;
      const index_t a = static_cast<index_t>(active.size());
      st.requests = static_cast<std::int32_t>(a);
      std::vector<std::int32_t> aslots, roots, committed;
      std::vector<std::span<const std::int32_t>> history;  // [A] prompt + emitted tokens
      std::vector<std::uint8_t> fresh;                     // [A] 1 on a request's first draft
      for (std::int32_t r : active) {
        const auto& p = progress[static_cast<std::size_t>(r)];
        aslots.push_back(p.slot);
        roots.push_back(p.root);
        committed.push_back(p.committed);
        history.emplace_back(p.history);
        fresh.push_back(result.requests[static_cast<std::size_t>(r)].steps == 0 ? 1 : 0);
      }

      // Draft.
      auto t0 = detail::decode_clock::now();
      auto rows = backend_.template allocate<std::int32_t>(a);
      backend_.copy_from_host(active.data(), a, rows.data());
      auto h = backend_.template allocate<float>(a * hidden_size);  // [A, H]
      backend_.gather_rows(matrix_view<const float>(hidden_state.data(), num_requests, hidden_size),
                           vector_view<const std::int32_t>(rows.data(), a), matrix_view<float>(h.data(), a, hidden_size));
      const bool want_log_probs = options.rule == verifier::redrafter;
      draft_output<B> drafted = drafter_.draft(draft_input{matrix_view<const float>(h.data(), a, hidden_size),
                                                           {roots.data(), a}, {aslots.data(), a}, width, length,
                                                           want_log_probs, {history.data(), a}, {fresh.data(), a},
                                                           0});
      REDRAFT_REQUIRE(drafted.beams.size() == a * width * length, fn, ": the drafter returned ", drafted.beams.size(),
                      " beam tokens, expected ", a * width * length, " ([", a, ", ", width, ", ", length, "])");
      REDRAFT_REQUIRE(!want_log_probs || drafted.log_probs.size() == a * width * (length - 1) * vocab, fn,
                      ": the drafter returned ", drafted.log_probs.size(), " log-probs, expected ",
                      a * width * (length - 1) * vocab);
      const bool short_beams = drafted.beam_lengths.size() > 0;
      REDRAFT_REQUIRE(!short_beams || drafted.beam_lengths.size() == a * width, fn, ": the drafter returned ",
                      drafted.beam_lengths.size(), " beam lengths, expected ", a * width, " ([", a, ", ", width,
                      "]) or none");
      REDRAFT_REQUIRE(!(short_beams && options.rule == verifier::redrafter), fn,
                      ": verifier::redrafter reads every beam position's draft log-probs, but the drafter returned "
                      "beams shorter than L (beam_lengths); use verifier::greedy or verifier::lossless");
      backend_.synchronize();
      st.draft_s = detail::seconds_since(t0);

      // Tree, masks, positions.
      t0 = detail::decode_clock::now();
      const tree<B> t = build_tree(
          backend_, view<const std::int32_t, 3>(drafted.beams.data(), a, width, length),
          short_beams ? matrix_view<const std::int32_t>(drafted.beam_lengths.data(), a, width)
                      : matrix_view<const std::int32_t>());
      {
        // One transfer of the tree's tokens (n_total ints) checks every request's root; build_tree
        // already checked that the beams of a request share it.
        std::vector<std::int32_t> tokens(static_cast<std::size_t>(t.total_nodes()));
        backend_.copy_to_host(t.token.data(), t.total_nodes(), tokens.data());
        for (index_t i = 0; i < a; ++i) {
          const std::int32_t root = tokens[static_cast<std::size_t>(t.host_node_offsets[static_cast<std::size_t>(i)])];
          REDRAFT_REQUIRE(root == roots[static_cast<std::size_t>(i)], fn, ": the drafter's beams for request ",
                          active[static_cast<std::size_t>(i)], " start with token ", root, " instead of the root ",
                          roots[static_cast<std::size_t>(i)]);
        }
      }
      auto base = backend_.template allocate<std::int32_t>(a);
      backend_.copy_from_host(committed.data(), a, base.data());
      const auto positions = build_positions(backend_, t, vector_view<const std::int32_t>(base.data(), a));
      verify_input vin{{aslots.data(), a}, {t.host_node_offsets.data(), a + 1}, view_of(t),
                       {positions.data(), t.total_nodes()}};
      dense_tree_mask<B> dense;
      packed_tree_mask<B> packed;
      if (options.masks != tree_mask_format::packed) {
        dense = build_dense_tree_mask(backend_, t);
        vin.dense_mask = dense.bits.data();
        vin.dense_offsets = dense.offsets.data();
      }
      if (options.masks != tree_mask_format::dense) {
        packed = build_packed_tree_mask(backend_, t);
        vin.packed_mask = packed.words.data();
        vin.packed_words_per_row = packed.words_per_row;
      }
      backend_.synchronize();
      st.tree_s = detail::seconds_since(t0);
      st.nodes = t.total_nodes();

      // Target.
      t0 = detail::decode_clock::now();
      const model_output out = model_.verify(vin);
      detail::check_model_output(fn, "verify", out, t.total_nodes(), vocab, hidden_size);
      backend_.synchronize();
      st.target_s = detail::seconds_since(t0);

      // Verify.
      t0 = detail::decode_clock::now();
      const host_acceptance acc = to_host(
          backend_, run_verifier(t, out.logits, drafted, active, step, options));
      st.verify_s = detail::seconds_since(t0);

      // Emit, then commit the accepted path of the requests that go on.
      t0 = detail::decode_clock::now();
      kv_plan plan;
      plan.offsets.push_back(0);
      std::vector<std::int32_t> next_rows, next_requests;
      for (index_t i = 0; i < a; ++i) {
        const std::int32_t r = active[static_cast<std::size_t>(i)];
        auto& p = progress[static_cast<std::size_t>(r)];
        auto& stats = result.requests[static_cast<std::size_t>(r)];
        const std::int32_t accepted = acc.accepted_len[static_cast<std::size_t>(i)];
        ++stats.steps;
        stats.drafted += length - 1;
        stats.accepted += accepted;
        for (std::int32_t d = 0; d < accepted; ++d) ++stats.accepted_at_depth[static_cast<std::size_t>(d)];
        for (std::int32_t j = 0; j <= accepted; ++j) {
          ++st.emitted;
          if (!p.emit(acc.emitted_token(static_cast<std::int32_t>(i), j), requests[static_cast<std::size_t>(r)],
                      result.tokens[static_cast<std::size_t>(r)], stats, on_token))
            break;
        }
        if (p.done) continue;  // finished: its KV slot is not needed any more
        p.root = acc.next_token[static_cast<std::size_t>(i)];
        plan.slot.push_back(p.slot);
        for (std::int32_t j = 0; j <= accepted; ++j) {
          plan.source_node.push_back(acc.accepted_node(static_cast<std::int32_t>(i), j));
          plan.destination.push_back(p.committed + j);
        }
        plan.offsets.push_back(static_cast<std::int32_t>(plan.source_node.size()));
        p.committed += accepted + 1;
        next_rows.push_back(acc.hidden_row[static_cast<std::size_t>(i)]);
        next_requests.push_back(r);
      }
      if (plan.num_requests() > 0) model_.commit(plan);
      // h for the next step: the hidden state at each request's last accepted node.
      for (std::size_t i = 0; i < next_rows.size(); ++i) {
        backend_.copy(out.hidden.data() + static_cast<index_t>(next_rows[i]) * hidden_size, hidden_size,
                      hidden_state.data() + static_cast<index_t>(next_requests[i]) * hidden_size);
      }
      backend_.synchronize();
      st.kv_s = detail::seconds_since(t0);
      result.steps.push_back(st);
    }
    result.total_s = detail::seconds_since(run_start);
    return result;
  }

 private:
  // Uniforms [A, draws] for the requests of a step: request r draws from Philox (seed, r, step),
  // keyed by its index in the caller's list, so its stream does not depend on which other
  // requests are still running.
  typename B::template buffer<float> step_uniforms(const std::vector<std::int32_t>& active, std::uint32_t step,
                                                   index_t draws, std::uint64_t seed) const {
    std::vector<float> host(active.size() * static_cast<std::size_t>(draws));
    for (std::size_t i = 0; i < active.size(); ++i) {
      const philox_stream s{seed, static_cast<std::uint32_t>(active[i]), step};
      for (index_t j = 0; j < draws; ++j) host[i * static_cast<std::size_t>(draws) + static_cast<std::size_t>(j)] = s.uniform(static_cast<std::uint64_t>(j));
    }
    auto out = backend_.template allocate<float>(static_cast<index_t>(host.size()));
    backend_.copy_from_host(host.data(), static_cast<index_t>(host.size()), out.data());
    return out;
  }

  acceptance<B> run_verifier(const tree<B>& t, matrix_view<const float> logits, const draft_output<B>& drafted,
                             const std::vector<std::int32_t>& active, std::uint32_t step,
                             const decode_options& options) const {
    const index_t a = static_cast<index_t>(active.size());
    // Enough draws for every rule: lossless uses 2 per depth, redrafter W (L-1) + 1.
    const index_t draws = std::max<index_t>(2 * std::max(t.beam_length, 1),
                                            static_cast<index_t>(t.beam_width) * std::max(t.beam_length - 1, 0) + 1);
    switch (options.rule) {
      case verifier::greedy:
        return verify_greedy(backend_, t, logits);
      case verifier::lossless: {
        const auto u = step_uniforms(active, step, draws, options.seed);
        return verify_lossless(backend_, t, logits, options.sampling, matrix_view<const float>(u.data(), a, draws));
      }
      case verifier::redrafter: {
        const auto u = step_uniforms(active, step, draws, options.seed);
        const index_t vocab = logits.extent(1);
        return verify_redrafter(backend_, t, logits,
                                view<const float, 4>(drafted.log_probs.data(), a, t.beam_width, t.beam_length - 1, vocab),
                                options.redrafter, matrix_view<const float>(u.data(), a, draws));
      }
      case verifier::typical: {
        const auto u = step_uniforms(active, step, draws, options.seed);
        return verify_typical(backend_, t, logits, options.typical, matrix_view<const float>(u.data(), a, draws));
      }
    }
    throw error("speculative_decoder: unknown verifier");
  }

  // The first token of each request from its prefill logits [A, V]: the configured rule on a
  // one-node tree (the prompt's last token, nothing drafted) is exactly "argmax" for greedy and
  // "sample the processed distribution" for sampling rules. Step 0 of each request's stream.
  std::vector<std::int32_t> first_tokens(const std::vector<std::int32_t>& last_tokens,
                                         const std::vector<std::int32_t>& active, matrix_view<const float> logits,
                                         const decode_options& options) const {
    const index_t a = static_cast<index_t>(active.size());
    // One-node trees [A nodes] built directly (a beam needs L >= 2).
    tree<B> t;
    t.batch = static_cast<std::int32_t>(a);
    std::vector<std::int32_t> offsets(static_cast<std::size_t>(a) + 1), parent(static_cast<std::size_t>(a), -1),
        depth(static_cast<std::size_t>(a), 0);
    for (index_t i = 0; i <= a; ++i) offsets[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
    t.node_offsets = detail::to_backend(backend_, offsets);
    t.token = detail::to_backend(backend_, last_tokens);
    t.parent = detail::to_backend(backend_, parent);
    t.depth = detail::to_backend(backend_, depth);
    t.host_node_offsets = offsets;
    acceptance<B> acc;
    if (options.rule == verifier::greedy ||
        (options.rule == verifier::typical && !options.typical.sample_next_token)) {
      acc = verify_greedy(backend_, t, logits);
    } else {
      const auto u = step_uniforms(active, 0, 2, options.seed);
      sampling_params p = options.sampling;
      if (options.rule == verifier::redrafter) p = {options.redrafter.temperature, options.redrafter.logit_top_k, 1.0f};
      if (options.rule == verifier::typical) p = {options.typical.temperature, 0, 1.0f};
      acc = verify_lossless(backend_, t, logits, p, matrix_view<const float>(u.data(), a, 2));
    }
    return to_host(backend_, acc).next_token;
  }

  B backend_;
  M& model_;
  D& drafter_;
};

}  // namespace redraft
