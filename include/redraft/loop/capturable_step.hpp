// redraft/loop/capturable_step.hpp: a speculative step that can be captured in a CUDA graph
// (opt-in: decode_options::capturable, or this object driven by an engine's own loop).
//
// Between the drafter's beams and the KV plan the step runs only Backend::for_each_index passes
// (and the backend's fused verifier / mask members) over buffers allocated once, in the
// constructor, for the largest batch, W and L it will see. It reads no host memory, allocates
// nothing, makes no transfer and does not synchronise, so a stream capture of
//
//   step.build(beams, beam_lengths)          beams checked, trie dedup, positions, masks
//   model forward on the returned input      the caller's (see "The target" below)
//   step.accept(logits, hidden, ...)         verifier, emission, KV plan, next-step state
//
// replays the whole step. What depends on the data (node counts, offsets, which requests stop)
// stays in backend memory; the kernels are sized by the step's shape (A requests, W beams of L
// tokens), which is the captured graph's shape.
//
//   capturable_step<B> step(backend, {max_batch, max_width, max_length}, tree_mask_format::both);
//   step.set_requests(requests);          host -> backend, once per change of the request set
//   per step (capturable):
//     const verify_input& in = step.build(beams [A, W, L], beam_lengths [A, W] or empty);
//     model_output out = model.verify(in);   // logits [in.node_capacity, V] (rows >= n_total:
//                                            // padding, ignored), hidden [in.node_capacity, H]
//     step.accept(out.logits, out.hidden, hidden_state, options, draft_log_probs, step_index);
//   once per step, or at the end (one transfer):
//     step_outcome o = step.read("my_engine");   // throws the step's first error, else results
//
// Validation on the backend: the beams' checks (roots equal within a request and equal to the
// request's root, beam lengths in [1, L], token ids >= 0) and every verifier check (tree shape,
// token ids < V, NaN / +inf logits, bad draft log-probs) go to status records in backend memory;
// they are sticky until read() (the first error of a request is kept) and read() throws them with
// the ordinary path's messages. The outputs of a request with an error are unspecified.
// Errors the host sees without a transfer (shapes, capacity, parameters) throw at once.
//
// The results equal the ordinary path's, bit for bit: the same trie numbering (the passes of
// tree/build_tree_parallel.hpp, with the node-offset scan done per request instead of by the
// backend's scan, which may allocate), the same verifier functors, Philox uniforms keyed by the
// request's index in the caller's list exactly as speculative_decoder's, and the plan of the
// requests that go on (tests/test_capturable_step.cpp).
//
// The target (what it must do to be capturable too): read the tree from in.tree (backend memory:
// node_offsets [A + 1], token / parent / depth), positions and masks from in (all backend memory),
// and the slots from in.slots (host, fixed for the captured batch) or step.backend_slots(); it
// gets no host node counts (in.host_node_offsets is empty) and must size its work by
// in.node_capacity, returning logits and hidden rows for node_capacity nodes (rows past
// node_offsets[A] are padding). Its own forward must not allocate, transfer or synchronise, and
// it applies the plan (backend memory: step.plan_header(), plan_offsets(), ...; or the host copy
// in step_outcome) to its KV cache.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/target_model.hpp"
#include "redraft/step/run_step.hpp"
#include "redraft/tree/build_tree_parallel.hpp"
#include "redraft/tree/masks.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/greedy.hpp"
#include "redraft/verify/lossless.hpp"
#include "redraft/verify/redrafter.hpp"
#include "redraft/verify/tree_walk.hpp"
#include "redraft/verify/typical.hpp"

namespace redraft {

// The largest step a capturable_step serves; every buffer is sized from it once.
struct step_capacity {
  std::int32_t max_batch = 0;   // A_max: requests per step
  std::int32_t max_width = 0;   // W_max: beams per request
  std::int32_t max_length = 0;  // L_max: tokens per beam, root included (>= 2)

  std::int32_t nodes_per_request() const { return 1 + max_width * (max_length - 1); }
  index_t max_nodes() const { return static_cast<index_t>(max_batch) * nodes_per_request(); }
};

// One request of a step, as the host knows it between steps (set_requests).
struct step_request {
  std::int32_t request = 0;     // index in the caller's list: Philox stream and hidden_state row
  std::int32_t slot = 0;        // KV slot
  std::int32_t committed = 0;   // committed length: the root's position
  std::int32_t root = 0;        // the root token every beam must start with
  std::int32_t eos_token = -1;  // stop after emitting it (-1: none)
  std::int32_t remaining = 0;   // tokens it may still emit (>= 1)
};

// The host copy of a step's results (step.read()).
struct step_outcome {
  host_acceptance acceptance;              // [A] rows, path_length = the step's L
  std::vector<std::int32_t> node_offsets;  // [A + 1]
  std::vector<std::int32_t> emit_count;    // [A] tokens emitted (EOS and the budget applied)
  std::vector<std::int32_t> done;          // [A] 1 when the request stopped this step
  kv_plan plan;                            // the requests that go on, in step order
};

namespace detail {

// f(i) for i < *count only: kernels are sized by capacity, the live node count is on the backend.
template <class F>
struct bounded_functor {
  F f;
  const std::int32_t* count;
  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    if (i < *count) f(i);
  }
};

// Per request r: request-local inclusive ranks of the created flags, and r's node count.
struct step_local_rank_functor {
  const std::int32_t* created;  // [A, W (L-1)]
  std::int32_t* rank;           // [A, W (L-1)]
  std::int32_t* node_count;     // [A]
  index_t per_request;          // W (L - 1)

  REDRAFT_HOST_DEVICE void operator()(index_t r) const {
    std::int32_t sum = 0;
    for (index_t i = r * per_request; i < (r + 1) * per_request; ++i) {
      sum += created[i];
      rank[i] = sum;
    }
    node_count[r] = 1 + sum;
  }
};

// Per r in [0, A]: node_offsets[r] = nodes of the requests before r; and, when dense_offsets is
// set, dense_offsets[r] = sum of their n^2 (the ragged dense mask's blocks). O(A) each.
struct step_offsets_functor {
  const std::int32_t* node_count;  // [A]
  std::int32_t* node_offsets;      // [A + 1]
  std::int64_t* dense_offsets;     // [A + 1] or nullptr

  REDRAFT_HOST_DEVICE void operator()(index_t r) const {
    std::int32_t nodes = 0;
    std::int64_t squares = 0;
    for (index_t q = 0; q < r; ++q) {
      nodes += node_count[q];
      squares += static_cast<std::int64_t>(node_count[q]) * node_count[q];
    }
    node_offsets[r] = nodes;
    if (dense_offsets != nullptr) dense_offsets[r] = squares;
  }
};

// Per (r, drafted position): local rank -> global inclusive rank (build_tree_parallel's scan).
struct step_global_rank_functor {
  std::int32_t* rank;                // [A, W (L-1)]
  const std::int32_t* node_offsets;  // [A + 1]
  index_t per_request;

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const index_t r = i / per_request;
    rank[i] += node_offsets[r] - static_cast<std::int32_t>(r);  // drafted nodes before r
  }
};

// Philox uniforms [A, draws]: row i draws from philox_stream{seed, request[i], step}, as
// speculative_decoder's uniforms.
struct step_uniforms_functor {
  const std::int32_t* request;  // [A]
  float* out;                   // [A, draws]
  std::uint64_t seed;
  std::uint32_t step;
  index_t draws;

  REDRAFT_HOST_DEVICE void operator()(index_t k) const {
    const index_t i = k / draws;
    const philox_stream s{seed, static_cast<std::uint32_t>(request[i]), step};
    out[k] = s.uniform(static_cast<std::uint64_t>(k % draws));
  }
};

// The request state rows of the state buffer [6, A_max].
enum step_state_row : index_t {
  row_request = 0,
  row_slot = 1,
  row_committed = 2,
  row_root = 3,
  row_eos = 4,
  row_remaining = 5,
  state_rows = 6
};

// Per request i: how many of the accepted_len + 1 tokens it emits (up to and including EOS, at
// most `remaining`) and whether it stops, as request_progress::emit decides on the host.
struct step_emit_functor {
  const std::int32_t* state;  // [6, A_max]
  index_t stride;             // A_max
  step::acceptance_view acc;
  std::int32_t* emit_count;  // [A]
  std::int32_t* done;        // [A]

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const std::int32_t eos = state[row_eos * stride + i];
    const std::int32_t remaining = state[row_remaining * stride + i];
    const std::int32_t* tokens = acc.emitted_tokens + i * acc.path_length;
    std::int32_t count = 0, stop = 0;
    for (std::int32_t j = 0; j <= acc.accepted_len[i]; ++j) {
      ++count;
      if (tokens[j] == eos || count >= remaining) {
        stop = 1;
        break;
      }
    }
    emit_count[i] = count;
    done[i] = stop;
  }
};

// Per i in [0, A]: the KV plan of the requests that go on (make_kv_plan's entries: the root and
// the accepted nodes to committed + 0, 1, ...), compacted in step order; call A writes the header
// (requests, entries) and offsets[0]. O(A) each.
struct step_plan_functor {
  const std::int32_t* state;  // [6, A_max]
  index_t stride;             // A_max
  step::acceptance_view acc;
  const std::int32_t* done;   // [A]
  std::int32_t batch;         // A
  std::int32_t* header;       // [2]: requests, entries
  std::int32_t* offsets;      // [A_max + 1]
  std::int32_t* slot;         // [A_max]
  std::int32_t* source;       // [A_max L_max]
  std::int32_t* destination;  // [A_max L_max]

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    std::int32_t k = 0, start = 0;
    for (index_t q = 0; q < i; ++q) {
      if (done[q] != 0) continue;
      ++k;
      start += acc.accepted_len[q] + 1;
    }
    if (i == batch) {
      header[0] = k;
      header[1] = start;
      offsets[0] = 0;
      return;
    }
    if (done[i] != 0) return;
    const std::int32_t n = acc.accepted_len[i] + 1;
    const std::int32_t committed = state[row_committed * stride + i];
    const std::int32_t* nodes = acc.nodes_row(static_cast<std::int32_t>(i));
    for (std::int32_t j = 0; j < n; ++j) {
      source[start + j] = nodes[j];
      destination[start + j] = committed + j;
    }
    slot[k] = state[row_slot * stride + i];
    offsets[k + 1] = start + n;
  }
};

// Per request i, after the plan: the next step's state (the loop's bookkeeping, on the backend).
struct step_advance_functor {
  std::int32_t* state;  // [6, A_max]
  index_t stride;
  step::acceptance_view acc;
  const std::int32_t* emit_count;  // [A]
  const std::int32_t* done;        // [A]

  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    state[row_remaining * stride + i] -= emit_count[i];
    if (done[i] != 0) return;
    state[row_committed * stride + i] += acc.accepted_len[i] + 1;
    state[row_root * stride + i] = acc.next_token[i];
  }
};

// Per (request i, hidden column): h of the requests that go on = the hidden row of their last
// accepted node.
struct step_hidden_functor {
  const std::int32_t* state;  // [6, A_max]
  index_t stride;
  const std::int32_t* hidden_row;   // [A] global packed row
  const std::int32_t* done;         // [A]
  matrix_view<const float> hidden;  // [node_capacity, H]
  matrix_view<float> hidden_state;  // [R, H]

  REDRAFT_HOST_DEVICE void operator()(index_t k) const {
    const index_t h = hidden.extent(1), i = k / h, c = k % h;
    if (done[i] != 0) return;
    hidden_state(state[row_request * stride + i], c) = hidden(hidden_row[i], c);
  }
};

}  // namespace detail

template <Backend B>
class capturable_step {
  template <class T>
  using buffer = typename B::template buffer<T>;

 public:
  // Allocates every buffer for `capacity` (the only allocations the object makes). `masks`: which
  // tree masks build() makes (tree_mask_format, as decode_options::masks).
  capturable_step(const B& backend, step_capacity capacity,
                  tree_mask_format masks = tree_mask_format::both)
      : backend_(backend), cap_(capacity), masks_(masks) {
    REDRAFT_REQUIRE(capacity.max_batch >= 1 && capacity.max_width >= 1 && capacity.max_length >= 2,
                    "capturable_step: capacity max_batch ", capacity.max_batch, ", max_width ",
                    capacity.max_width, ", max_length ", capacity.max_length,
                    " must be >= 1, >= 1 and >= 2");
    REDRAFT_REQUIRE(
        static_cast<std::int64_t>(capacity.max_batch) * capacity.max_width * capacity.max_length <
            (std::int64_t{1} << 31),
        "capturable_step: capacity holds 2^31 or more beam tokens");
    const index_t a = cap_.max_batch, w = cap_.max_width, l = cap_.max_length;
    const index_t n = cap_.max_nodes(), per = cap_.nodes_per_request();
    layout_.lay(a, l);
    record_ = backend.template allocate<std::int32_t>(layout_.size);
    backend.fill(record_.data(), layout_.size, std::int32_t{0});
    host_record_.resize(static_cast<std::size_t>(layout_.size));
    state_ = backend.template allocate<std::int32_t>(detail::state_rows * a);
    backend.fill(state_.data(), detail::state_rows * a, std::int32_t{0});
    valid_length_ = backend.template allocate<std::int32_t>(a * w);       // [A, W]
    owner_ = backend.template allocate<std::int32_t>(a * w * l);          // [A, W, L]
    created_ = backend.template allocate<std::int32_t>(a * w * (l - 1));  // [A, W, L-1]
    rank_ = backend.template allocate<std::int32_t>(a * w * (l - 1));     // [A, W, L-1]
    node_count_ = backend.template allocate<std::int32_t>(a);             // [A]
    token_ = backend.template allocate<std::int32_t>(n);                  // [N]
    parent_ = backend.template allocate<std::int32_t>(n);                 // [N]
    depth_ = backend.template allocate<std::int32_t>(n);                  // [N]
    positions_ = backend.template allocate<std::int32_t>(n);              // [N]
    beam_to_node_ = backend.template allocate<std::int32_t>(a * w * l);   // [A, W, L]
    if (masks != tree_mask_format::packed) {
      dense_offsets_ = backend.template allocate<std::int64_t>(a + 1);       // [A + 1]
      dense_bits_ = backend.template allocate<std::uint8_t>(a * per * per);  // [sum n_r^2]
    }
    if (masks != tree_mask_format::dense) {
      packed_words_ = backend.template allocate<std::uint32_t>(n * words_per_row());
    }
    first_child_ = backend.template allocate<std::int32_t>(n);   // [N]
    next_sibling_ = backend.template allocate<std::int32_t>(n);  // [N]
    scratch_ = backend.template allocate<std::int32_t>(n);       // [N]
    threshold_ = backend.template allocate<float>(n);            // [N] (redrafter)
    max_ = backend.template allocate<float>(n);                  // [N]
    log_sum_ = backend.template allocate<float>(n);              // [N]
    bad_ = backend.template allocate<std::int32_t>(n);           // [N]
    uniforms_ = backend.template allocate<float>(a * max_draws(cap_.max_width, cap_.max_length));
  }

  const step_capacity& capacity() const { return cap_; }
  // The packed mask's row width: ceil(nodes_per_request / 32) (fixed, unlike the ordinary
  // path's ceil(n_max / 32), so that the mask's shape does not depend on the data).
  std::int32_t words_per_row() const { return (cap_.nodes_per_request() + 31) / 32; }

  // Host, between steps: the requests of the next steps (rows [0, A) of the state), one upload.
  // After accept() the state already holds the next step's committed lengths, roots and budgets
  // of the requests that go on, so an engine calls this only when the set of requests changes.
  void set_requests(std::span<const step_request> requests) {
    const index_t a = static_cast<index_t>(requests.size()), stride = cap_.max_batch;
    REDRAFT_REQUIRE(a >= 1 && a <= stride, "capturable_step::set_requests: ", a,
                    " requests, the capacity is 1 .. ", stride);
    std::vector<std::int32_t> host(static_cast<std::size_t>(detail::state_rows * stride), 0);
    slots_.clear();
    requests_.clear();
    for (index_t i = 0; i < a; ++i) {
      const step_request& q = requests[static_cast<std::size_t>(i)];
      REDRAFT_REQUIRE(
          q.request >= 0 && q.slot >= 0 && q.committed >= 0 && q.root >= 0 && q.remaining >= 1,
          "capturable_step::set_requests: request ", i, " has request ", q.request, ", slot ",
          q.slot, ", committed ", q.committed, ", root ", q.root, " and remaining ", q.remaining,
          " (needs all >= 0 and remaining >= 1)");
      const std::int32_t fields[detail::state_rows] = {q.request, q.slot,      q.committed,
                                                       q.root,    q.eos_token, q.remaining};
      for (index_t row = 0; row < detail::state_rows; ++row)
        host[static_cast<std::size_t>(row * stride + i)] = fields[row];
      slots_.push_back(q.slot);
      requests_.push_back(q.request);
    }
    backend_.copy_from_host(host.data(), static_cast<index_t>(host.size()), state_.data());
    batch_ = static_cast<std::int32_t>(a);
    built_ = false;
  }
  std::int32_t batch() const { return batch_; }
  // The state [6, A_max] in backend memory: rows request, slot, committed, root, eos, remaining.
  const std::int32_t* backend_state() const { return state_.data(); }
  const std::int32_t* backend_slots() const {
    return state_.data() + detail::row_slot * cap_.max_batch;
  }

  // Capturable: checks the beams [A, W, L] (and beam_lengths [A, W], or empty: all L), builds the
  // tree, positions (committed + depth) and masks; returns the target's input. Backend memory.
  const verify_input& build(view<const std::int32_t, 3> beams,
                            matrix_view<const std::int32_t> beam_lengths = {}) {
    constexpr const char* fn = "capturable_step::build";
    const index_t a = beams.extent(0), w = beams.extent(1), l = beams.extent(2);
    REDRAFT_REQUIRE(batch_ >= 1 && a == batch_, fn, ": beams have ", a,
                    " requests but set_requests gave ", batch_);
    REDRAFT_REQUIRE(w >= 1 && w <= cap_.max_width && l >= 2 && l <= cap_.max_length, fn,
                    ": beams [", a, ", ", w, ", ", l, "] need 1 <= W <= ", cap_.max_width,
                    " and 2 <= L <= ", cap_.max_length, " (the capacity)");
    const bool short_beams = beam_lengths.data() != nullptr;
    REDRAFT_REQUIRE(!short_beams || (beam_lengths.extent(0) == a && beam_lengths.extent(1) == w),
                    fn, ": beam_lengths is [", beam_lengths.extent(0), ", ", beam_lengths.extent(1),
                    "], expected [", a, ", ", w, "] or empty");
    short_beams_ = short_beams;
    width_ = static_cast<std::int32_t>(w);
    length_ = static_cast<std::int32_t>(l);
    const std::int32_t w32 = width_, l32 = length_;
    const index_t per_request = w * (l - 1);
    std::int32_t* offsets = node_offsets();

    backend_.for_each_index(
        a, detail::beam_check_functor{beams.data(), short_beams ? beam_lengths.data() : nullptr,
                                      state_row(detail::row_root), valid_length_.data(),
                                      record_.data() + layout_.tree_status, w32, l32});
    // build_tree_parallel's passes over the checked lengths, node offsets scanned per request.
    backend_.for_each_index(
        a * w, detail::beam_owner_functor{beams.data(), valid_length_.data(), owner_.data(),
                                          created_.data(), w32, l32});
    backend_.for_each_index(a, detail::step_local_rank_functor{created_.data(), rank_.data(),
                                                               node_count_.data(), per_request});
    const bool dense = masks_ != tree_mask_format::packed;
    backend_.for_each_index(a + 1,
                            detail::step_offsets_functor{node_count_.data(), offsets,
                                                         dense ? dense_offsets_.data() : nullptr});
    backend_.for_each_index(a * per_request,
                            detail::step_global_rank_functor{rank_.data(), offsets, per_request});
    backend_.for_each_index(a * w * l, detail::beam_scatter_functor{
                                           beams.data(), owner_.data(), created_.data(),
                                           rank_.data(), offsets, beam_to_node_.data(),
                                           token_.data(), parent_.data(), depth_.data(), w32, l32});

    const tree_view t = tree();
    const index_t nodes = node_capacity();
    const std::int32_t* live = offsets + a;  // n_total, on the backend
    backend_.for_each_index(nodes,
                            detail::bounded_functor<detail::positions_functor>{
                                {t, state_row(detail::row_committed), positions_.data()}, live});
    input_ = verify_input{};
    input_.slots = {slots_.data(), a};
    input_.tree = t;
    input_.positions = {positions_.data(), nodes};
    input_.node_capacity = static_cast<std::int32_t>(nodes);
    if (dense) {
      backend_.for_each_index(
          nodes, detail::bounded_functor<detail::dense_mask_row_functor>{
                     {t, dense_offsets_.data(), nullptr, dense_bits_.data(), 0}, live});
      input_.dense_mask = dense_bits_.data();
      input_.dense_offsets = dense_offsets_.data();
    }
    if (masks_ != tree_mask_format::dense) {
      // NOTE: the generic loop bounded by the live node count (a backend value): a fused mask
      // kernel (step::packed_mask_rows through run_fused) needs n_total on the host.
      const step::packed_mask_rows rows{t, packed_words_.data(), words_per_row(), nodes,
                                        1 + w32 * (l32 - 1)};
      backend_.for_each_index(nodes, detail::bounded_functor<step::packed_mask_rows>{rows, live});
      input_.packed_mask = packed_words_.data();
      input_.packed_words_per_row = words_per_row();
    }
    built_ = true;
    return input_;
  }
  const verify_input& input() const { return input_; }
  // The tree build() made (backend memory; beam_to_node [A, W, L]).
  tree_view tree() const {
    return tree_view{batch_,        width_,         length_,       node_offsets(),
                     token_.data(), parent_.data(), depth_.data(), beam_to_node_.data()};
  }
  // The largest n_total of the built shape, A (1 + W (L - 1)): the rows the target returns.
  index_t node_capacity() const {
    return static_cast<index_t>(batch_) * (1 + static_cast<index_t>(width_) * (length_ - 1));
  }

  // Capturable: verifies with options.rule (its parameters, Philox keyed by options.seed, the
  // request and `step`), then on the backend: tokens each request emits (EOS, budget), the KV plan
  // of the requests that go on, their next state, and (when hidden_state is given) h of the
  // requests that go on: hidden_state[request] = hidden[last accepted node].
  //   logits [>= node_capacity, V], hidden [>= node_capacity, H] or empty, hidden_state [R, H] or
  //   empty, draft_log_probs [A, W, L-1, V] (verifier::redrafter only, else empty).
  void accept(matrix_view<const float> logits_in, matrix_view<const float> hidden,
              matrix_view<float> hidden_state, const decode_options& options,
              view<const float, 4> draft_log_probs, std::uint32_t step) {
    constexpr const char* fn = "capturable_step::accept";
    REDRAFT_REQUIRE(built_, fn, ": build() has not run since set_requests()");
    const index_t a = batch_, nodes = node_capacity(), vocab = logits_in.extent(1);
    REDRAFT_REQUIRE(logits_in.extent(0) >= nodes && vocab >= 1, fn, ": logits are [",
                    logits_in.extent(0), ", ", vocab, "], expected at least [", nodes, ", 1]");
    REDRAFT_REQUIRE(hidden_state.data() == nullptr ||
                        (hidden.extent(0) >= nodes && hidden.extent(1) == hidden_state.extent(1)),
                    fn, ": hidden is [", hidden.extent(0), ", ", hidden.extent(1),
                    "] and hidden_state [", hidden_state.extent(0), ", ", hidden_state.extent(1),
                    "]; expected [>= ", nodes, ", H] and [R, H]");
    const std::int32_t last_request = *std::max_element(requests_.begin(), requests_.end());
    REDRAFT_REQUIRE(hidden_state.data() == nullptr || last_request < hidden_state.extent(0), fn,
                    ": hidden_state has ", hidden_state.extent(0), " rows but request ",
                    last_request, " is in the step");
    const matrix_view<const float> logits(logits_in.data(), nodes, vocab);
    const tree_view t = tree();
    const step::acceptance_view out = acceptance_out();
    const step::status_view status{record_.data() + layout_.verify_status};
    const index_t draws = max_draws(width_, length_);
    const auto uniforms = [&] {
      backend_.for_each_index(
          a * draws, detail::step_uniforms_functor{state_row(detail::row_request), uniforms_.data(),
                                                   options.seed, step, draws});
      return uniform_source(matrix_view<const float>(uniforms_.data(), a, draws));
    };
    switch (options.rule) {
      case verifier::greedy:
        run(step::greedy_walk<float>{t, logits, first_child_.data(), next_sibling_.data(), out,
                                     status});
        break;
      case verifier::lossless:
        detail::check_sampling_params(fn, options.sampling);
        run(step::lossless_walk<float>{t, logits, options.sampling, uniforms(), first_child_.data(),
                                       next_sibling_.data(), scratch_.data(), out, status});
        break;
      case verifier::typical:
        detail::check_typical_params(fn, options.typical);
        run(step::typical_walk<float>{t, logits, options.typical, uniforms(), first_child_.data(),
                                      next_sibling_.data(), scratch_.data(), out, status});
        break;
      case verifier::redrafter: {
        REDRAFT_REQUIRE(
            !short_beams_, fn,
            ": verifier::redrafter reads every beam position's draft log-probs, but the "
            "beams were built with beam_lengths");
        REDRAFT_REQUIRE(draft_log_probs.extent(0) == a && draft_log_probs.extent(1) == width_ &&
                            draft_log_probs.extent(2) == length_ - 1 &&
                            draft_log_probs.extent(3) == vocab,
                        fn, ": draft_log_probs is [", draft_log_probs.extent(0), ", ",
                        draft_log_probs.extent(1), ", ", draft_log_probs.extent(2), ", ",
                        draft_log_probs.extent(3), "], expected [", a, ", ", width_, ", ",
                        length_ - 1, ", ", vocab, "]");
        const step::redrafter_rows<float> rows{logits,      options.redrafter, threshold_.data(),
                                               max_.data(), log_sum_.data(),   bad_.data()};
        step::run_step(backend_, rows);  // padding rows too: their results are not read
        run(step::redrafter_walk<float>{t, logits, draft_log_probs, options.redrafter, uniforms(),
                                        threshold_.data(), max_.data(), log_sum_.data(),
                                        bad_.data(), out, status});
        break;
      }
    }
    std::int32_t* emit = field(layout_.emit_count);
    std::int32_t* done = field(layout_.done);
    const index_t stride = cap_.max_batch;
    backend_.for_each_index(a, detail::step_emit_functor{state_.data(), stride, out, emit, done});
    backend_.for_each_index(
        a + 1, detail::step_plan_functor{state_.data(), stride, out, done, batch_,
                                         field(layout_.plan_header), field(layout_.plan_offsets),
                                         field(layout_.plan_slot), field(layout_.plan_source),
                                         field(layout_.plan_destination)});
    if (hidden_state.data() != nullptr && hidden.extent(1) > 0) {
      backend_.for_each_index(
          a * hidden.extent(1),
          detail::step_hidden_functor{state_.data(), stride, field(layout_.hidden_row), done,
                                      hidden, hidden_state});
    }
    backend_.for_each_index(a,
                            detail::step_advance_functor{state_.data(), stride, out, emit, done});
    built_ = false;
  }

  // Host, once per step or at the end: one transfer of the step's record. Throws redraft::error
  // (prefixed by fn) for the first request with an error since the last read, beam errors first,
  // with the ordinary path's messages, then clears the error records; otherwise returns the last
  // step's results.
  step_outcome read(const char* fn) {
    backend_.copy_to_host(record_.data(), layout_.size, host_record_.data());
    const std::int32_t* h = host_record_.data();
    const std::size_t a = static_cast<std::size_t>(batch_), l = static_cast<std::size_t>(length_);
    const auto part = [&](index_t at, std::size_t n) {
      return std::vector<std::int32_t>(h + at, h + at + static_cast<index_t>(n));
    };
    step_outcome o;
    o.node_offsets = part(layout_.node_offsets, a + 1);
    try {
      detail::throw_on_beam_status(fn, h + layout_.tree_status, batch_, requests_.data());
      detail::throw_on_host_status(fn, h + layout_.verify_status, batch_, o.node_offsets.data());
    } catch (...) {
      backend_.fill(record_.data(), layout_.statuses, std::int32_t{0});
      throw;
    }
    host_acceptance& acc = o.acceptance;
    acc.batch = batch_;
    acc.path_length = length_;
    acc.accepted_len = part(layout_.accepted_len, a);
    acc.best_beam = part(layout_.best_beam, a);
    acc.next_token = part(layout_.next_token, a);
    acc.hidden_row = part(layout_.hidden_row, a);
    acc.accepted_nodes = part(layout_.accepted_nodes, a * l);
    acc.emitted_tokens = part(layout_.emitted_tokens, a * l);
    o.emit_count = part(layout_.emit_count, a);
    o.done = part(layout_.done, a);
    const std::size_t requests = static_cast<std::size_t>(h[layout_.plan_header]);
    const std::size_t entries = static_cast<std::size_t>(h[layout_.plan_header + 1]);
    o.plan.offsets = part(layout_.plan_offsets, requests + 1);
    o.plan.slot = part(layout_.plan_slot, requests);
    o.plan.source_node = part(layout_.plan_source, entries);
    o.plan.destination = part(layout_.plan_destination, entries);
    return o;
  }

  // The last step's KV plan in backend memory: header [2] (requests, entries), offsets
  // [requests + 1], slot [requests], source_node / destination [entries].
  const std::int32_t* plan_header() const { return record_.data() + layout_.plan_header; }
  const std::int32_t* plan_offsets() const { return record_.data() + layout_.plan_offsets; }
  const std::int32_t* plan_slot() const { return record_.data() + layout_.plan_slot; }
  const std::int32_t* plan_source() const { return record_.data() + layout_.plan_source; }
  const std::int32_t* plan_destination() const { return record_.data() + layout_.plan_destination; }

 private:
  // Where each field sits in the one int32 record read() copies back.
  struct record_layout {
    index_t tree_status = 0, verify_status = 0, statuses = 0, node_offsets = 0, accepted_len = 0,
            best_beam = 0, next_token = 0, hidden_row = 0, emit_count = 0, done = 0,
            accepted_nodes = 0, emitted_tokens = 0, plan_header = 0, plan_offsets = 0,
            plan_slot = 0, plan_source = 0, plan_destination = 0, size = 0;
    void lay(index_t a, index_t l) {
      index_t at = 0;
      const auto take = [&](index_t& field, index_t n) {
        field = at;
        at += n;
      };
      take(tree_status, 4 * a);  // the two status records first: one fill clears both
      take(verify_status, 3 * a);
      statuses = at;
      take(node_offsets, a + 1);
      take(accepted_len, a);
      take(best_beam, a);
      take(next_token, a);
      take(hidden_row, a);
      take(emit_count, a);
      take(done, a);
      take(accepted_nodes, a * l);
      take(emitted_tokens, a * l);
      take(plan_header, 2);
      take(plan_offsets, a + 1);
      take(plan_slot, a);
      take(plan_source, a * l);
      take(plan_destination, a * l);
      size = at;
    }
  };

  // Enough uniforms for every rule: lossless 2 per depth, redrafter W (L - 1) + 1.
  static index_t max_draws(index_t width, index_t length) {
    return std::max<index_t>(2 * length, width * (length - 1) + 1);
  }

  std::int32_t* field(index_t at) { return record_.data() + at; }
  std::int32_t* node_offsets() { return field(layout_.node_offsets); }
  const std::int32_t* node_offsets() const { return record_.data() + layout_.node_offsets; }
  std::int32_t* state_row(index_t row) { return state_.data() + row * cap_.max_batch; }

  step::acceptance_view acceptance_out() {
    return step::acceptance_view{length_,
                                 field(layout_.accepted_len),
                                 field(layout_.best_beam),
                                 field(layout_.accepted_nodes),
                                 field(layout_.emitted_tokens),
                                 field(layout_.next_token),
                                 field(layout_.hidden_row)};
  }

  // The walk: the backend's fused kernel when it has one (clause 10; one block per request on
  // CUDA), else one invocation per request.
  template <class F>
  void run(const F& walk) {
    step::run_step(backend_, walk);
  }

  B backend_;
  step_capacity cap_;
  tree_mask_format masks_;
  record_layout layout_;
  std::int32_t batch_ = 0, width_ = 0, length_ = 0;
  bool built_ = false;
  bool short_beams_ = false;
  std::vector<std::int32_t> slots_;        // [A] host
  std::vector<std::int32_t> requests_;     // [A] host: the caller's request indices
  std::vector<std::int32_t> host_record_;  // [layout_.size] host
  verify_input input_;
  buffer<std::int32_t> record_;  // [layout_.size] statuses, node offsets, acceptance, plan
  buffer<std::int32_t> state_;   // [6, A_max]
  buffer<std::int32_t> valid_length_, owner_, created_, rank_, node_count_;
  buffer<std::int32_t> token_, parent_, depth_, positions_, beam_to_node_;
  buffer<std::int64_t> dense_offsets_;
  buffer<std::uint8_t> dense_bits_;
  buffer<std::uint32_t> packed_words_;
  buffer<std::int32_t> first_child_, next_sibling_, scratch_, bad_;
  buffer<float> threshold_, max_, log_sum_, uniforms_;
};

}  // namespace redraft
