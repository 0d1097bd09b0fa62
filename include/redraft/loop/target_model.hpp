// redraft/loop/target_model.hpp: the TargetModel concept, the contract between the speculative
// decoding loop and any inference engine's model.
//
// The loop never owns the model nor its KV cache. It refers to sequences by `slot`: an engine
// index of a KV-cache sequence, chosen by the caller. Per step the loop asks the model to run one
// forward pass over the packed tree tokens of every request, then tells it which KV entries to
// keep.
//
// The contract, for a type M and a value `m` of it:
//  1. `typename M::backend_type` models Backend; every view the model returns lives in that
//     backend's memory and stays valid until the next non-const call on m.
//  2. `m.vocab_size()`, `m.hidden_size()` (int32), `m.max_context()` (the longest sequence a slot
//     can hold, prompt included), `m.embedding()`: the input embedding table [V, H] (the draft
//     head's recurrence reads it).
//  3. `m.prefill(in)`: starts each listed slot from empty with its prompt, fills its KV cache with
//     the prompt's entries, and returns the rows of each prompt's last token: logits [R, V] and
//     post-final-norm hidden states [R, H].
//  4. `m.verify(in)`: one forward pass over the packed tree tokens of every listed slot, attending
//     to the slot's committed KV entries plus the tree under the tree mask; returns logits
//     [n_total, V] and hidden states [n_total, H], row i for packed node i. The tree's KV entries
//     are held as pending until commit.
//  5. `m.commit(plan)`: for each request of the plan, keeps the pending entries of
//     plan.source_node at positions plan.destination (the committed prefix grows by their
//     count) and discards the rest of the pending tree.
//  6. `m.backend()`: the backend the model's work runs on, as an lvalue reference (B& or
//     const B&, B = M::backend_type). Algorithms that take only the model (plain_decode,
//     generate_distill_data) issue their own work on a copy of this handle, never on a backend
//     they construct: on CUDA a default-constructed backend is a new stream, unordered with the
//     model's work.
// Models throw redraft::error for inputs they cannot serve (unknown slot, context overflow).
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "redraft/core/backend.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/kv/kv_plan.hpp"

namespace redraft {

// Prompts to start: request r uses KV slot slots[r] and the tokens
// tokens[token_offsets[r] .. token_offsets[r + 1]). Host memory.
struct prefill_input {
  vector_view<const std::int32_t> slots;          // [R]
  vector_view<const std::int32_t> token_offsets;  // [R + 1]
  vector_view<const std::int32_t> tokens;         // [sum of prompt lengths]
};

// One verification pass. The tree fields and masks live in the model's backend memory; slots and
// node offsets are on the host as well, for sizing.
struct verify_input {
  vector_view<const std::int32_t> slots;              // [R] host
  vector_view<const std::int32_t> host_node_offsets;  // [R + 1] host
  tree_view tree;                                     // tokens, parents, depths [n_total]
  vector_view<const std::int32_t> positions;          // [n_total] committed length + depth
  // Dense ragged ancestor-or-self masks: request r's [n_r, n_r] at dense_mask + dense_offsets[r].
  const std::uint8_t* dense_mask = nullptr;
  const std::int64_t* dense_offsets = nullptr;  // [R + 1]
  // Bit-packed rows [n_total, packed_words_per_row] (see packed_tree_mask).
  const std::uint32_t* packed_mask = nullptr;
  std::int32_t packed_words_per_row = 0;
  // A capturable step (loop/capturable_step.hpp) sets node_capacity > 0 and leaves
  // host_node_offsets empty: the node offsets are only in backend memory (tree.node_offsets), and
  // the model returns node_capacity rows (rows past the last request's nodes are padding).
  std::int32_t node_capacity = 0;
};

// What prefill and verify return (views into model-owned memory).
struct model_output {
  matrix_view<const float> logits;  // [rows, V]
  matrix_view<const float> hidden;  // [rows, H]
};

namespace detail {

// T is an lvalue reference to B, const or not.
template <class T, class B>
concept lvalue_reference_to =
    std::is_lvalue_reference_v<T> && std::same_as<std::remove_cvref_t<T>, B>;

}  // namespace detail

template <class M>
concept TargetModel = requires(M m, const M cm, const prefill_input& pin, const verify_input& vin,
                               const kv_plan& plan) {
  typename M::backend_type;
  requires Backend<typename M::backend_type>;
  { cm.vocab_size() } -> std::convertible_to<std::int32_t>;
  { cm.hidden_size() } -> std::convertible_to<std::int32_t>;
  { cm.max_context() } -> std::convertible_to<std::int32_t>;
  { cm.embedding() } -> std::convertible_to<matrix_view<const float>>;
  { m.prefill(pin) } -> std::same_as<model_output>;
  { m.verify(vin) } -> std::same_as<model_output>;
  m.commit(plan);
  { m.backend() } -> detail::lvalue_reference_to<typename M::backend_type>;
};

}  // namespace redraft
