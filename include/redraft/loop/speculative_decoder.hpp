// redraft/loop/speculative_decoder.hpp: the speculative decoding loop over any TargetModel and
// any Drafter (DESIGN.md §5 "Loop").
//
//   prefill -> first token + h
//   repeat for the requests still running {
//     (W, L) = policy.choose(earlier steps)                 speculation policy (L = 1: plain step)
//     draft W beams of L tokens from (h, root)              drafter.draft        [A, W, L]
//     trie dedup, masks, positions                          build_tree, masks    n_total nodes
//     one target pass over the packed tree tokens           model.verify         logits [n_total,
//     V] accept the longest valid path, pick the next token    verify_<rule>        acceptance [A]
//     keep the KV entries of the root + accepted nodes      model.commit(kv_plan)
//     next root = next token, h = hidden at the last accepted node
//     policy.observe(shape, nodes, phase times, acceptance by depth and beam rank)
//   } until each request emits its EOS token or max_new_tokens
//
// The speculation policy (loop/speculation_policy.hpp) picks each step's shape: fixed_policy, the
// default, always uses decode_options' beam_width and beam_length; adaptive_policy
// (loop/adaptive_policy.hpp) picks the shape that maximises the expected tokens per second. A
// plain step (L = 1) skips the drafter and verifies a one-node tree per request: it emits the
// token plain decoding would (greedy) or a sample of the same distribution (sampling rules).
// The decoder times its phases with an injected clock (DecodeClock; std::chrono::steady_clock by
// default), which tests replace with a simulated one.
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
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/core/transfer.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/loop/capturable_step.hpp"
#include "redraft/loop/decode_common.hpp"
#include "redraft/loop/drafter.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/speculation_policy.hpp"
#include "redraft/loop/target_model.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/chain_tree.hpp"
#include "redraft/tree/masks.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/greedy.hpp"
#include "redraft/verify/lossless.hpp"
#include "redraft/verify/redrafter.hpp"
#include "redraft/verify/typical.hpp"

namespace redraft {

template <Backend B, TargetModel M, class D, SpeculationPolicy P = fixed_policy,
          DecodeClock C = steady_seconds>
requires Drafter<D, B> && std::same_as<typename M::backend_type, B>
class speculative_decoder {
 public:
  speculative_decoder(B backend, M& model, D& drafter, P policy = P{}, C clock = C{})
      : backend_(backend),
        model_(model),
        drafter_(drafter),
        policy_(std::move(policy)),
        clock_(std::move(clock)) {}

  // The policy, with what it has learned (it persists across generate() calls).
  P& policy() { return policy_; }
  const P& policy() const { return policy_; }

  // Generates continuations of `requests` (R of them, each on its own KV slot). Returns the
  // emitted tokens, per-request and per-step statistics. See the file comment for semantics.
  generation_result generate(const std::vector<generation_request>& requests,
                             const decode_options& options, const token_callback& on_token = {}) {
    constexpr const char* fn = "speculative_decoder::generate";
    const std::int32_t max_length = static_cast<std::int32_t>(policy_.start(options));
    REDRAFT_REQUIRE(max_length >= 1, fn, ": the speculation policy's start() returned beam_length ",
                    max_length, " (must be at least 1)");
    if (options.rule == verifier::lossless) detail::check_sampling_params(fn, options.sampling);
    const std::vector<std::int32_t> slots =
        detail::check_requests(fn, model_, requests, max_length - 1);
    const bool reports = policy_.needs_reports();
    const bool timed = options.phase_timing || reports;
    const double run_start = clock_.now();
    const index_t vocab = model_.vocab_size(), hidden_size = model_.hidden_size();
    const std::int32_t num_requests = static_cast<std::int32_t>(requests.size());

    generation_result result;
    std::vector<detail::request_progress> progress =
        detail::start_progress(requests, slots, result, max_length);
    for (std::size_t r = 0; r < requests.size(); ++r) {  // the drafters' draft_input::history
      const generation_request& q = requests[r];
      progress[r].keep_history = true;
      progress[r].history.reserve(q.prompt.size() + static_cast<std::size_t>(q.max_new_tokens));
      progress[r].history.assign(q.prompt.begin(), q.prompt.end());
    }

    // h of every request (the target's hidden state at its last committed token): [R, H].
    auto hidden_state =
        backend_.template allocate<float>(static_cast<index_t>(num_requests) * hidden_size);

    // --- prefill: the first token of every request with something to generate ---
    std::vector<std::int32_t> active = detail::running(progress);
    const double prefill_start = clock_.now();
    if (!active.empty()) {
      std::vector<std::int32_t> last_tokens;
      for (std::int32_t r : active)
        last_tokens.push_back(requests[static_cast<std::size_t>(r)].prompt.back());
      const index_t a = static_cast<index_t>(active.size());
      const model_output out = detail::prefill_requests(fn, model_, requests, progress, active);
      // The first token: the verification rule applied to one-node trees (nothing drafted).
      const tree<B> t = one_node_trees(last_tokens);
      const std::vector<std::int32_t> first =
          to_host(backend_, one_node_acceptance(t, out.logits, active, 0, options)).next_token;
      for (index_t i = 0; i < a; ++i) {
        const std::int32_t r = active[static_cast<std::size_t>(i)];
        backend_.copy(out.hidden.data() + i * hidden_size, hidden_size,
                      hidden_state.data() + r * hidden_size);
        auto& p = progress[static_cast<std::size_t>(r)];
        p.root = first[static_cast<std::size_t>(i)];
        p.emit(p.root, requests[static_cast<std::size_t>(r)],
               result.tokens[static_cast<std::size_t>(r)],
               result.requests[static_cast<std::size_t>(r)], on_token);
      }
    }
    backend_.synchronize();
    result.prefill_s = clock_.now() - prefill_start;

    // Phase timing: synchronise, then read the clock (skipped when nobody needs the times).
    const auto mark = [&]() -> double {
      if (!timed) return 0.0;
      backend_.synchronize();
      return clock_.now();
    };

    // The capturable step's buffers, once for the largest step (decode_options::capturable).
    REDRAFT_REQUIRE(!options.capturable || !reports, fn,
                    ": decode_options::capturable needs a speculation policy without step reports "
                    "(their phase times would synchronise inside the step)");
    std::optional<capturable_step<B>> captured;
    if (options.capturable && max_length >= 2 && num_requests > 0)
      captured.emplace(backend_, step_capacity{num_requests, options.beam_width, max_length},
                       options.masks);
    std::vector<std::int32_t> captured_requests;  // the requests the captured state holds

    // --- steps ---
    std::uint32_t step = 0;
    std::vector<std::int32_t> accepted_rank,
        shared_prefix;  // the report's detail, [A, L-1] and [A, W]
    for (active = detail::running(progress); !active.empty(); active = detail::running(progress)) {
      ++step;
      step_stats st;
      const index_t a = static_cast<index_t>(active.size());
      st.requests = static_cast<std::int32_t>(a);
      std::vector<std::int32_t> aslots, roots, committed, remaining;
      std::vector<std::span<const std::int32_t>> history;  // [A] prompt + emitted tokens
      std::vector<std::uint8_t> fresh;                     // [A] 1 on a request's first draft
      std::int64_t context_tokens = 0;                     // sum of committed
      for (std::int32_t r : active) {
        const auto& p = progress[static_cast<std::size_t>(r)];
        aslots.push_back(p.slot);
        roots.push_back(p.root);
        committed.push_back(p.committed);
        context_tokens += p.committed;
        history.emplace_back(p.history);
        fresh.push_back(result.requests[static_cast<std::size_t>(r)].steps == 0 ? 1 : 0);
        remaining.push_back(
            requests[static_cast<std::size_t>(r)].max_new_tokens -
            static_cast<std::int32_t>(result.tokens[static_cast<std::size_t>(r)].size()));
      }

      // The shape, from earlier steps only (nothing of this step is drawn yet).
      const draft_shape shape =
          policy_.choose(step_context{step, &options, {remaining.data(), a}, context_tokens});
      REDRAFT_REQUIRE(shape.beam_width >= 1 && shape.beam_length >= 1 &&
                          shape.beam_length <= max_length &&
                          (shape.beam_length > 1 || shape.beam_width == 1),
                      fn, ": the speculation policy chose beam_width ", shape.beam_width,
                      ", beam_length ", shape.beam_length, " for step ", step,
                      " (needs W >= 1 and 1 <= L <= ", max_length, ", and W = 1 when L = 1)");
      const std::int32_t width = shape.beam_width, length = shape.beam_length;
      st.beam_width = width;
      st.beam_length = length;
      if (captured && !shape.is_plain()) {
        captured_step(*captured, captured_requests, requests, progress, result, active, roots,
                      aslots, history, fresh, hidden_state, shape, step, options, on_token, st);
        result.steps.push_back(st);
        // no detail: the policy needs no reports
        policy_.observe(report_of(step, shape, st, context_tokens));
        continue;
      }
      captured_requests.clear();  // an ordinary step moves the requests on the host only

      // Draft (speculative steps), then the tree, masks and positions.
      double t0 = mark();
      draft_output<B> drafted;
      tree<B> t;
      if (shape.is_plain()) {
        t = one_node_trees(roots);
      } else {
        drafted = draft(active, roots, aslots, history, fresh, hidden_state, num_requests, shape,
                        options);
        const double drafted_at = mark();
        st.draft_s = drafted_at - t0;
        t0 = drafted_at;
        t = tree_of(drafted, active, roots, a, width, length);
      }
      auto base = backend_.template allocate<std::int32_t>(a);
      backend_.copy_from_host(committed.data(), a, base.data());
      const auto positions =
          build_positions(backend_, t, vector_view<const std::int32_t>(base.data(), a));
      verify_input vin{{aslots.data(), a},
                       {t.host_node_offsets.data(), a + 1},
                       view_of(t),
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
      double t1 = mark();
      st.tree_s = t1 - t0;
      st.nodes = t.total_nodes();

      // Target.
      const model_output out = model_.verify(vin);
      detail::check_model_output(fn, "verify", out, t.total_nodes(), vocab, hidden_size);
      t0 = mark();
      st.target_s = t0 - t1;

      // Verify.
      const host_acceptance acc = to_host(
          backend_, shape.is_plain() ? one_node_acceptance(t, out.logits, active, step, options)
                                     : run_verifier(t, out.logits, drafted, active, step, options));
      t1 = mark();
      st.verify_s = t1 - t0;

      // Emit, then commit the accepted path of the requests that go on.
      kv_plan plan;
      plan.offsets.push_back(0);
      std::vector<std::int32_t> next_rows, next_requests;
      for (index_t i = 0; i < a; ++i) {
        const std::int32_t r = active[static_cast<std::size_t>(i)];
        auto& p = progress[static_cast<std::size_t>(r)];
        const std::int32_t accepted = acc.accepted_len[static_cast<std::size_t>(i)];
        if (!emit_accepted(acc, static_cast<std::int32_t>(i), r, length, requests, progress, result,
                           on_token, st))
          continue;  // finished: its KV slot is not needed any more
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
        backend_.copy(out.hidden.data() + static_cast<index_t>(next_rows[i]) * hidden_size,
                      hidden_size,
                      hidden_state.data() + static_cast<index_t>(next_requests[i]) * hidden_size);
      }
      st.kv_s = mark() - t1;
      result.steps.push_back(st);

      // Tell the policy.
      step_report report = report_of(step, shape, st, context_tokens);
      if (reports && !shape.is_plain()) {
        acceptance_detail(t, acc, accepted_rank, shared_prefix);
        report.accepted_len = {acc.accepted_len.data(), a};
        report.accepted_rank = {accepted_rank.data(), a, length - 1};
        report.shared_prefix = {shared_prefix.data(), a, width};
      }
      policy_.observe(report);
    }
    backend_.synchronize();
    result.total_s = clock_.now() - run_start;
    return result;
  }

 private:
  // The step report's sizes and phase times (the acceptance detail is the caller's).
  static step_report report_of(std::uint32_t step, draft_shape shape, const step_stats& st,
                               std::int64_t context_tokens) {
    step_report report;
    report.context_tokens = context_tokens;
    report.step = step;
    report.shape = shape;
    report.requests = st.requests;
    report.nodes = st.nodes;
    report.emitted = st.emitted;
    report.draft_s = st.draft_s;
    report.tree_s = st.tree_s;
    report.target_s = st.target_s;
    report.verify_s = st.verify_s;
    report.kv_s = st.kv_s;
    return report;
  }

  // Emits row i's accepted tokens and next token for request r (stopping at EOS or its budget) and
  // counts them; returns whether r goes on, and then sets its next root.
  bool emit_accepted(const host_acceptance& acc, std::int32_t i, std::int32_t r,
                     std::int32_t length, const std::vector<generation_request>& requests,
                     std::vector<detail::request_progress>& progress, generation_result& result,
                     const token_callback& on_token, step_stats& st) const {
    auto& p = progress[static_cast<std::size_t>(r)];
    auto& stats = result.requests[static_cast<std::size_t>(r)];
    const std::int32_t accepted = acc.accepted_len[static_cast<std::size_t>(i)];
    ++stats.steps;
    stats.drafted += length - 1;
    stats.accepted += accepted;
    for (std::int32_t d = 0; d < accepted; ++d)
      ++stats.accepted_at_depth[static_cast<std::size_t>(d)];
    for (std::int32_t j = 0; j <= accepted; ++j) {
      ++st.emitted;
      if (!p.emit(acc.emitted_token(i, j), requests[static_cast<std::size_t>(r)],
                  result.tokens[static_cast<std::size_t>(r)], stats, on_token))
        break;
    }
    if (p.done) return false;
    p.root = acc.next_token[static_cast<std::size_t>(i)];
    return true;
  }

  // One speculative step through the capturable step: draft, then (with no allocation, transfer
  // or synchronisation) tree, masks, positions, target, verification, KV plan and next h on the
  // backend, then one read of the results, emission on the host and the device-built plan's commit.
  // The state on the backend advances by itself; it is uploaded only when the set of requests
  // changes (one finished).
  void captured_step(capturable_step<B>& cs, std::vector<std::int32_t>& held,
                     const std::vector<generation_request>& requests,
                     std::vector<detail::request_progress>& progress, generation_result& result,
                     const std::vector<std::int32_t>& active,
                     const std::vector<std::int32_t>& roots,
                     const std::vector<std::int32_t>& aslots,
                     const std::vector<std::span<const std::int32_t>>& history,
                     const std::vector<std::uint8_t>& fresh,
                     typename B::template buffer<float>& hidden_state, draft_shape shape,
                     std::uint32_t step, const decode_options& options,
                     const token_callback& on_token, step_stats& st) {
    constexpr const char* fn = "speculative_decoder::generate";
    const index_t a = static_cast<index_t>(active.size()), hidden_size = model_.hidden_size();
    const std::int32_t num_requests = static_cast<std::int32_t>(requests.size());
    const std::int32_t width = shape.beam_width, length = shape.beam_length;
    REDRAFT_REQUIRE(
        width <= cs.capacity().max_width, fn, ": the speculation policy chose beam_width ", width,
        " but decode_options::capturable sized the step for beam_width ", cs.capacity().max_width);
    double t0 = clock_.now();
    const draft_output<B> drafted =
        draft(active, roots, aslots, history, fresh, hidden_state, num_requests, shape, options);
    if (held != active) {  // outside the captured region: the new set of requests
      std::vector<step_request> rs;
      for (std::size_t i = 0; i < active.size(); ++i) {
        const auto& p = progress[static_cast<std::size_t>(active[i])];
        const auto& q = requests[static_cast<std::size_t>(active[i])];
        rs.push_back(
            {active[i], p.slot, p.committed, p.root, q.eos_token,
             q.max_new_tokens - static_cast<std::int32_t>(
                                    result.tokens[static_cast<std::size_t>(active[i])].size())});
      }
      cs.set_requests(rs);
      held = active;
    }
    const double t1 = clock_.now();
    st.draft_s = t1 - t0;
    // --- the capturable region ---
    const verify_input& vin =
        cs.build(view<const std::int32_t, 3>(drafted.beams.data(), a, width, length),
                 drafted.beam_lengths.size() > 0
                     ? matrix_view<const std::int32_t>(drafted.beam_lengths.data(), a, width)
                     : matrix_view<const std::int32_t>());
    const model_output out = model_.verify(vin);
    detail::check_model_output(fn, "verify", out, vin.node_capacity, model_.vocab_size(),
                               hidden_size);
    const view<const float, 4> q = options.rule == verifier::redrafter
                                       ? view<const float, 4>(drafted.log_probs.data(), a, width,
                                                              length - 1, model_.vocab_size())
                                       : view<const float, 4>();
    cs.accept(out.logits, out.hidden,
              matrix_view<float>(hidden_state.data(), num_requests, hidden_size), options, q, step);
    // --- end of the region: one transfer, errors thrown here ---
    const step_outcome o = cs.read(fn);
    st.nodes = o.node_offsets.back();
    for (index_t i = 0; i < a; ++i) {
      const std::int32_t r = active[static_cast<std::size_t>(i)];
      if (emit_accepted(o.acceptance, static_cast<std::int32_t>(i), r, length, requests, progress,
                        result, on_token, st))
        progress[static_cast<std::size_t>(r)].committed +=
            o.acceptance.accepted_len[static_cast<std::size_t>(i)] + 1;
    }
    if (o.plan.num_requests() > 0) model_.commit(o.plan);
    if (detail::running(progress) != active)
      held.clear();  // a request stopped: re-upload the state
    st.verify_s = clock_.now() - t1;
  }

  // Uniforms [A, draws] for the requests of a step: request r draws from Philox (seed, r, step),
  // keyed by its index in the caller's list, so its stream does not depend on which other
  // requests are still running.
  typename B::template buffer<float> step_uniforms(const std::vector<std::int32_t>& active,
                                                   std::uint32_t step, index_t draws,
                                                   std::uint64_t seed) const {
    std::vector<float> host(active.size() * static_cast<std::size_t>(draws));
    for (std::size_t i = 0; i < active.size(); ++i) {
      const philox_stream s{seed, static_cast<std::uint32_t>(active[i]), step};
      for (index_t j = 0; j < draws; ++j)
        host[i * static_cast<std::size_t>(draws) + static_cast<std::size_t>(j)] =
            s.uniform(static_cast<std::uint64_t>(j));
    }
    return to_backend(backend_, host);
  }

  acceptance<B> run_verifier(const tree<B>& t, matrix_view<const float> logits,
                             const draft_output<B>& drafted,
                             const std::vector<std::int32_t>& active, std::uint32_t step,
                             const decode_options& options) const {
    const index_t a = static_cast<index_t>(active.size());
    // Enough draws for every rule: lossless uses 2 per depth, redrafter W (L-1) + 1.
    const index_t draws =
        std::max<index_t>(2 * std::max(t.beam_length, 1),
                          static_cast<index_t>(t.beam_width) * std::max(t.beam_length - 1, 0) + 1);
    switch (options.rule) {
      case verifier::greedy:
        return verify_greedy(backend_, t, logits);
      case verifier::lossless: {
        const auto u = step_uniforms(active, step, draws, options.seed);
        return verify_lossless(backend_, t, logits, options.sampling,
                               matrix_view<const float>(u.data(), a, draws));
      }
      case verifier::redrafter: {
        const auto u = step_uniforms(active, step, draws, options.seed);
        const index_t vocab = logits.extent(1);
        return verify_redrafter(backend_, t, logits,
                                view<const float, 4>(drafted.log_probs.data(), a, t.beam_width,
                                                     t.beam_length - 1, vocab),
                                options.redrafter, matrix_view<const float>(u.data(), a, draws));
      }
      case verifier::typical: {
        const auto u = step_uniforms(active, step, draws, options.seed);
        return verify_typical(backend_, t, logits, options.typical,
                              matrix_view<const float>(u.data(), a, draws));
      }
    }
    throw error("speculative_decoder: unknown verifier");
  }

  // Drafts W beams of L tokens for the `active` requests from their hidden states [R, H] and
  // roots [A]; checks the drafter's output shapes.
  draft_output<B> draft(const std::vector<std::int32_t>& active,
                        const std::vector<std::int32_t>& roots,
                        const std::vector<std::int32_t>& aslots,
                        const std::vector<std::span<const std::int32_t>>& history,
                        const std::vector<std::uint8_t>& fresh,
                        const typename B::template buffer<float>& hidden_state,
                        std::int32_t num_requests, draft_shape shape,
                        const decode_options& options) {
    constexpr const char* fn = "speculative_decoder::generate";
    const index_t a = static_cast<index_t>(active.size()), hidden_size = model_.hidden_size(),
                  vocab = model_.vocab_size();
    const std::int32_t width = shape.beam_width, length = shape.beam_length;
    auto rows = backend_.template allocate<std::int32_t>(a);
    backend_.copy_from_host(active.data(), a, rows.data());
    auto h = backend_.template allocate<float>(a * hidden_size);  // [A, H]
    backend_.gather_rows(matrix_view<const float>(hidden_state.data(), num_requests, hidden_size),
                         vector_view<const std::int32_t>(rows.data(), a),
                         matrix_view<float>(h.data(), a, hidden_size));
    const bool want_log_probs = options.rule == verifier::redrafter;
    draft_output<B> drafted =
        drafter_.draft(draft_input{matrix_view<const float>(h.data(), a, hidden_size),
                                   {roots.data(), a},
                                   {aslots.data(), a},
                                   width,
                                   length,
                                   want_log_probs,
                                   {history.data(), a},
                                   {fresh.data(), a},
                                   0});
    REDRAFT_REQUIRE(drafted.beams.size() == a * width * length, fn, ": the drafter returned ",
                    drafted.beams.size(), " beam tokens, expected ", a * width * length, " ([", a,
                    ", ", width, ", ", length, "])");
    REDRAFT_REQUIRE(!want_log_probs || drafted.log_probs.size() == a * width * (length - 1) * vocab,
                    fn, ": the drafter returned ", drafted.log_probs.size(),
                    " log-probs, expected ", a * width * (length - 1) * vocab);
    const bool short_beams = drafted.beam_lengths.size() > 0;
    REDRAFT_REQUIRE(!short_beams || drafted.beam_lengths.size() == a * width, fn,
                    ": the drafter returned ", drafted.beam_lengths.size(),
                    " beam lengths, expected ", a * width, " ([", a, ", ", width, "]) or none");
    REDRAFT_REQUIRE(
        !(short_beams && options.rule == verifier::redrafter), fn,
        ": verifier::redrafter reads every beam position's draft log-probs, but the drafter "
        "returned "
        "beams shorter than L (beam_lengths); use verifier::greedy or verifier::lossless");
    return drafted;
  }

  // One transfer of the tree's tokens (n_total ints) checks every request's root; build_tree
  // already checked that the beams of a request share it.
  // The tree of the drafted beams, after checking that request i's beams start at roots[i].
  // Host-accessible memory: the trie, then the roots read in place. Elsewhere (CUDA): the parallel
  // build, which checks the roots in the status transfer it makes anyway (no read of the tree).
  tree<B> tree_of(const draft_output<B>& drafted, const std::vector<std::int32_t>& active,
                  const std::vector<std::int32_t>& roots, index_t a, index_t width,
                  index_t length) const {
    const view<const std::int32_t, 3> beams(drafted.beams.data(), a, width, length);
    const matrix_view<const std::int32_t> lengths =
        drafted.beam_lengths.size() > 0
            ? matrix_view<const std::int32_t>(drafted.beam_lengths.data(), a, width)
            : matrix_view<const std::int32_t>();
    if constexpr (backend_memory_is_host_accessible_v<B>) {
      tree<B> t = build_tree(backend_, beams, lengths);
      for (std::size_t i = 0; i < active.size(); ++i) {
        const std::int32_t root = t.token.data()[t.host_node_offsets[i]];
        REDRAFT_REQUIRE(root == roots[i],
                        "speculative_decoder::generate: the drafter's beams for request ",
                        active[i], " start with token ", root, " instead of the root ", roots[i]);
      }
      return t;
    } else {
      const auto expected = to_backend(backend_, roots);  // [A]
      return detail::build_tree_parallel_checked("speculative_decoder::generate", backend_, beams,
                                                 lengths, expected.data(), active.data());
    }
  }

  // One-node trees [A nodes]: node i is request i's root token (a plain step, or the prefill's
  // last prompt token); a beam needs L >= 2.
  tree<B> one_node_trees(const std::vector<std::int32_t>& tokens) const {
    return build_one_node_tree(backend_, tokens);
  }

  // The token of each request from the logits [A, V] of one-node trees: the configured rule on a
  // tree with nothing drafted is exactly "argmax" for greedy and "sample the processed
  // distribution" for sampling rules. Used for the prefill's first token (step 0) and plain steps.
  acceptance<B> one_node_acceptance(const tree<B>& t, matrix_view<const float> logits,
                                    const std::vector<std::int32_t>& active, std::uint32_t step,
                                    const decode_options& options) const {
    const index_t a = static_cast<index_t>(active.size());
    if (options.rule == verifier::greedy ||
        (options.rule == verifier::typical && !options.typical.sample_next_token))
      return verify_greedy(backend_, t, logits);
    const auto u = step_uniforms(active, step, 2, options.seed);
    sampling_params p = options.sampling;
    if (options.rule == verifier::redrafter)
      p = {options.redrafter.temperature, options.redrafter.logit_top_k, 1.0f};
    if (options.rule == verifier::typical) p = {options.typical.temperature, 0, 1.0f};
    return verify_lossless(backend_, t, logits, p, matrix_view<const float>(u.data(), a, 2));
  }

  // The step report's acceptance detail (step_report): accepted_rank [A, L-1] and shared_prefix
  // [A, W], from the tree's beam_to_node [A, W, L] and the accepted nodes. O(A W L) host work.
  void acceptance_detail(const tree<B>& t, const host_acceptance& acc,
                         std::vector<std::int32_t>& accepted_rank,
                         std::vector<std::int32_t>& shared_prefix) const {
    const std::int32_t a = t.batch, width = t.beam_width, length = t.beam_length;
    std::vector<std::int32_t> beam_to_node(static_cast<std::size_t>(a) * width * length);
    backend_.copy_to_host(t.beam_to_node.data(), static_cast<index_t>(beam_to_node.size()),
                          beam_to_node.data());
    accepted_rank.assign(static_cast<std::size_t>(a) * (length - 1), -1);
    shared_prefix.assign(static_cast<std::size_t>(a) * width, 0);
    std::vector<std::int32_t> owner;  // [n_r] lowest beam holding each node
    for (std::int32_t i = 0; i < a; ++i) {
      owner.assign(static_cast<std::size_t>(t.num_nodes(i)), -1);
      std::int32_t last_node = 0;  // the highest node created by beams 0..w-1
      for (std::int32_t w = 0; w < width; ++w) {
        const std::int32_t* beam =
            beam_to_node.data() + (static_cast<std::size_t>(i) * width + w) * length;
        std::int32_t shared = 0;
        // beam_to_node is -1 past the end of a beam shorter than L (a drafter's beam_lengths).
        while (shared + 1 < length && beam[shared + 1] >= 0 && beam[shared + 1] <= last_node &&
               w > 0)
          ++shared;
        shared_prefix[static_cast<std::size_t>(i) * width + w] = shared;
        for (std::int32_t l = 0; l < length && beam[l] >= 0; ++l) {
          if (owner[static_cast<std::size_t>(beam[l])] < 0)
            owner[static_cast<std::size_t>(beam[l])] = w;
          last_node = std::max(last_node, beam[l]);
        }
      }
      for (std::int32_t d = 1; d <= acc.accepted_len[static_cast<std::size_t>(i)]; ++d)
        accepted_rank[static_cast<std::size_t>(i) * (length - 1) + d - 1] =
            owner[static_cast<std::size_t>(acc.accepted_node(i, d))];
    }
  }

  B backend_;
  M& model_;
  D& drafter_;
  P policy_;
  C clock_;
};

}  // namespace redraft
