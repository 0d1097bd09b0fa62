// redraft/testing/tiny_llama.hpp: a tiny Llama-style decoder, the reference target model.
//
// It implements the TargetModel contract (loop/target_model.hpp) on the CPU backend, so the whole
// speculative loop runs and is tested with no external weights. The forward pass is Hugging
// Face's LlamaForCausalLM (float32, multi-head attention):
//
//   x = embed_tokens[token]                                         [n, H]
//   per layer:  a = RMSNorm(x) ; q, k, v = a Wq^T, a Wk^T, a Wv^T    [n, D], D = heads * head_dim
//               q, k rotated by RoPE at the token's position (HF "rotate_half" convention)
//               x += softmax(q k^T / sqrt(head_dim) + mask) v Wo^T
//               m = RMSNorm(x) ; x += (SiLU(m Wgate^T) * (m Wup^T)) Wdown^T
//   hidden = RMSNorm(x)   (what prefill/verify return as hidden states)
//   logits = hidden lm_head^T  (lm_head = embed_tokens when tied)
//
// KV cache. Each slot owns a cache [layers, 2 (k, v), heads, max_context, head_dim] (keys stored
// after RoPE). Its first committed_length entries are the sequence so far. verify() writes the
// tree's entries as *pending* right after the committed prefix, node i at committed_length + i,
// and attends to [0, committed_length) plus the tree entries its mask row allows. commit(plan)
// moves the kept nodes to committed_length + 0, 1, ... and advances committed_length; the rest of
// the pending tree is dropped. A new verify() of a slot replaces its pending tree.
//
// Every entry point validates all its inputs before it changes any state, so a request that fails
// does not disturb the other requests of its batch.
//
// Performance: the projections go through packed_matmul (cpu/packed_matmul.hpp: the weights
// packed once into column panels, each weight read once per call, every row's result independent
// of the others), with weights in F32, F16 or BF16 (weight_format); attention's two products per
// request and head, q k^T and p v, go through small_matmul and small_matmul_nn, every tree row at
// once. prefill and verify do
// not allocate once the scratch buffers have grown (commit stages a plan that moves entries in
// apply_kv_plan's few small buffers). One core.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>
#include "redraft/cpu/eigen.hpp"

#include "redraft/core/aligned_allocator.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/cpu/packed_matmul.hpp"
#include "redraft/cpu/small_matmul.hpp"
#include "redraft/kv/compaction.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/loop/target_model.hpp"
#include "redraft/testing/tiny_llama_weights.hpp"

namespace redraft::testing {

class tiny_llama {
 public:
  using backend_type = cpu_backend;

  // tiny_llama(config, weights, num_slots): a model serving num_slots sequences (slots 0 ..
  // num_slots - 1). Allocates num_slots caches of layers * 2 * heads * max_context * head_dim
  // floats up front. `format`: how the projection matrices (q, k, v, o, gate, up, down, lm_head)
  // are kept for the forward: F32, or F16 / BF16 (half the bytes per step, F32 accumulation);
  // every weight matrix is rounded to it (to nearest, ties to even; exact for a checkpoint stored
  // in that format), and weights() returns the rounded values. Norm weights stay float.
  // Throws redraft::error when the weights do not match the configuration or num_slots < 1.
  tiny_llama(tiny_llama_config config, tiny_llama_weights weights, std::int32_t num_slots = 1,
             weight_format format = weight_format::f32)
      : config_(config), weights_(std::move(weights)), format_(format) {
    check_weights("tiny_llama", config_, weights_);
    REDRAFT_REQUIRE(num_slots >= 1, "tiny_llama: num_slots ", num_slots, " must be at least 1");
    if (format_ == weight_format::f32) {
      build_projections(f32_, [](float v) { return v; });
    } else if (format_ == weight_format::f16) {
      build_projections(f16_, [](float v) { return to_float16(v); });
    } else {
      build_projections(bf16_, [](float v) { return to_bfloat16(v); });
    }
    // RoPE table: cos/sin of position p and frequency j at [p * head_dim / 2 + j].
    // NOTE: angles are computed in double and rounded once, so the table is exact to float
    // precision at every position (HF computes p * inv_freq in float32, which differs by up to
    // ~1e-4 radians at positions in the thousands).
    const std::int32_t half = config_.head_dim / 2;
    rope_cos_.resize(static_cast<std::size_t>(config_.max_context) *
                     static_cast<std::size_t>(half));
    rope_sin_.resize(rope_cos_.size());
    for (std::int32_t p = 0; p < config_.max_context; ++p) {
      for (std::int32_t j = 0; j < half; ++j) {
        const double inv_freq =
            std::pow(static_cast<double>(config_.rope_theta), -2.0 * j / config_.head_dim);
        const double angle = static_cast<double>(p) * inv_freq;
        rope_cos_[static_cast<std::size_t>(p * half + j)] = static_cast<float>(std::cos(angle));
        rope_sin_[static_cast<std::size_t>(p * half + j)] = static_cast<float>(std::sin(angle));
      }
    }
    slot_stride_ = static_cast<std::size_t>(config_.num_layers) * 2 *
                   static_cast<std::size_t>(config_.num_heads) *
                   static_cast<std::size_t>(config_.max_context) *
                   static_cast<std::size_t>(config_.head_dim);
    cache_.assign(slot_stride_ * static_cast<std::size_t>(num_slots), 0.0f);
    committed_.assign(static_cast<std::size_t>(num_slots), 0);
    pending_.assign(static_cast<std::size_t>(num_slots), 0);
  }

  // A model with random_tiny_llama_weights(config, seed).
  static tiny_llama random(const tiny_llama_config& config, std::uint64_t seed,
                           std::int32_t num_slots = 1, weight_format format = weight_format::f32) {
    return tiny_llama(config, random_tiny_llama_weights(config, seed), num_slots, format);
  }

  // ---- TargetModel clause 2 -------------------------------------------------------------------
  std::int32_t vocab_size() const { return config_.vocab_size; }
  std::int32_t hidden_size() const { return config_.hidden_size; }
  std::int32_t max_context() const { return config_.max_context; }
  // The input embedding table [V, H].
  matrix_view<const float> embedding() const {
    return matrix_view<const float>(weights_.embed_tokens.data(), config_.vocab_size,
                                    config_.hidden_size);
  }
  // ---- TargetModel clause 6: the backend this model's work runs on ----
  backend_type& backend() { return backend_; }
  const backend_type& backend() const { return backend_; }

  // ---- TargetModel clause 3 -------------------------------------------------------------------
  // prefill(in): request r starts slot in.slots[r] from empty with prompt
  //   in.tokens[in.token_offsets[r] .. in.token_offsets[r + 1]) at positions 0, 1, ...
  //   (causal attention) and commits the prompt's KV entries.
  // Returns logits [R, V] and hidden [R, H] of each prompt's last token, valid until the next
  // non-const call. Deterministic. Cost O(sum P (params + P D)) for prompt lengths P.
  // Throws redraft::error (before changing any slot) for: offsets not [R + 1] / not starting at 0
  // / decreasing / not ending at tokens.extent(0), a slot outside [0, num_slots) or listed twice,
  // an empty prompt, a prompt longer than max_context, a token outside [0, V).
  model_output prefill(const prefill_input& in) {
    const std::int32_t requests = static_cast<std::int32_t>(in.slots.extent(0));
    REDRAFT_REQUIRE(in.token_offsets.extent(0) == requests + 1,
                    "tiny_llama::prefill: token_offsets has ", in.token_offsets.extent(0),
                    " entries but there are ", requests, " slots (expected ", requests + 1, ")");
    REDRAFT_REQUIRE(requests == 0 || in.token_offsets[0] == 0,
                    "tiny_llama::prefill: token_offsets[0] is ", in.token_offsets[0], ", not 0");
    check_slots("tiny_llama::prefill", in.slots);
    for (std::int32_t r = 0; r < requests; ++r) {
      const std::int32_t length = in.token_offsets[r + 1] - in.token_offsets[r];
      REDRAFT_REQUIRE(length >= 1, "tiny_llama::prefill: the prompt of request ", r, " (slot ",
                      in.slots[r], ") is empty");
      REDRAFT_REQUIRE(length <= config_.max_context, "tiny_llama::prefill: the prompt of request ",
                      r, " has ", length, " tokens but max_context is ", config_.max_context);
    }
    const std::int32_t n_rows = requests == 0 ? 0 : in.token_offsets[requests];
    REDRAFT_REQUIRE(n_rows == in.tokens.extent(0), "tiny_llama::prefill: token_offsets end at ",
                    n_rows, " but tokens has ", in.tokens.extent(0), " entries");
    check_tokens("tiny_llama::prefill", "tokens", in.tokens.data(), n_rows);

    // All checks passed: from here on nothing throws.
    positions_.resize(static_cast<std::size_t>(n_rows));
    segments_.clear();
    for (std::int32_t r = 0; r < requests; ++r) {
      const std::int32_t begin = in.token_offsets[r], n = in.token_offsets[r + 1] - begin;
      for (std::int32_t j = 0; j < n; ++j) positions_[static_cast<std::size_t>(begin + j)] = j;
      segments_.push_back(segment{in.slots[r], 0, begin, n, nullptr});
    }
    forward(in.tokens.data(), positions_.data(), n_rows);
    for (std::int32_t r = 0; r < requests; ++r) {
      committed_[static_cast<std::size_t>(in.slots[r])] =
          in.token_offsets[r + 1] - in.token_offsets[r];
      pending_[static_cast<std::size_t>(in.slots[r])] = 0;
    }
    // Output rows: each prompt's last token.
    last_rows_.clear();
    for (std::int32_t r = 0; r < requests; ++r) last_rows_.push_back(in.token_offsets[r + 1] - 1);
    return head(last_rows_.data(), requests);
  }

  // ---- TargetModel clause 4 -------------------------------------------------------------------
  // verify(in): one pass over the packed tree tokens of every listed slot.
  //   in.tree: tokens/parents [n_total] with in.host_node_offsets [R + 1] (CSR);
  //   in.positions [n_total]: RoPE position of each node (normally committed_length + depth);
  //   mask: in.dense_mask (+ dense_offsets) if non-null, else in.packed_mask, else derived from
  //   in.tree.parent (ancestor-or-self). Node i of request r attends to the slot's committed
  //   entries and to the nodes j its mask row allows.
  // Returns logits [n_total, V] and hidden [n_total, H], row i for packed node i, valid until the
  // next non-const call. The tree's KV entries become the slot's pending entries (node i at
  // committed_length + i), replacing any earlier pending tree. Deterministic.
  // Cost O(n_total params + sum n_r (C_r + n_r) D) for committed lengths C_r.
  // Throws redraft::error (before changing any slot) for: tree.batch or host_node_offsets not
  // matching slots, an empty tree, positions not [n_total], a slot unknown / listed twice / never
  // prefilled, committed_length + n_r > max_context, a position outside [0, max_context), a token
  // outside [0, V), a mask with the wrong size, or (when deriving the mask) a parent that does not
  // precede its child.
  model_output verify(const verify_input& in) {
    const char* fn = "tiny_llama::verify";
    check_tree_requests(fn, in);
    const std::int32_t requests = static_cast<std::int32_t>(in.slots.extent(0));
    const std::int32_t n_total = requests == 0 ? 0 : in.host_node_offsets[requests];
    check_tree_nodes(fn, in, n_total);
    check_tree_mask(fn, in, n_total);
    // All checks passed: from here on nothing throws.
    build_tree_segments(in);
    forward(in.tree.token, in.positions.data(), n_total);
    for (std::int32_t r = 0; r < requests; ++r) {
      pending_[static_cast<std::size_t>(in.slots[r])] =
          in.host_node_offsets[r + 1] - in.host_node_offsets[r];
    }
    all_rows_.resize(static_cast<std::size_t>(n_total));
    for (std::int32_t i = 0; i < n_total; ++i) all_rows_[static_cast<std::size_t>(i)] = i;
    return head(all_rows_.data(), n_total);
  }

  // ---- TargetModel clause 5 -------------------------------------------------------------------
  // commit(plan): for each request r of the plan, the pending entries of nodes
  //   plan.source_node[plan.offsets[r] + i] move to position plan.destination[...] which must be
  //   committed_length + i; committed_length grows by the count and the pending tree is dropped.
  // The entries move with apply_kv_plan (kv/compaction.hpp). Cost O(n_keep layers heads
  // head_dim). Throws redraft::error (before changing any slot) for malformed offsets, a slot
  // unknown / listed twice / without a pending tree, a source node outside the pending tree or
  // not after the one before it, more entries than pending nodes, or a destination other than
  // committed_length + i.
  void commit(const kv_plan& plan) {
    const char* fn = "tiny_llama::commit";
    const std::int32_t requests = plan.num_requests();
    if (requests == 0 && plan.offsets.empty() && plan.source_node.empty()) return;  // empty plan
    check_commit(fn, plan);
    // All checks passed. The move is the library's KV compaction: this model's cache has the
    // layout and the pending-entry convention apply_kv_plan assumes. A plan that keeps a prefix
    // of every pending tree (a chain's accepted nodes, a plain step's root) moves nothing.
    if (plan_moves_entries(plan)) apply_kv_plan(backend(), plan, all_caches());
    for (std::int32_t r = 0; r < requests; ++r) {
      const std::size_t slot = static_cast<std::size_t>(plan.slot[static_cast<std::size_t>(r)]);
      committed_[slot] +=
          plan.offsets[static_cast<std::size_t>(r) + 1] - plan.offsets[static_cast<std::size_t>(r)];
      pending_[slot] = 0;
    }
  }

  // ---- Slots ----------------------------------------------------------------------------------
  std::int32_t num_slots() const { return static_cast<std::int32_t>(committed_.size()); }

  // Empties a slot (committed and pending entries); a later prefill starts it again.
  void release(std::int32_t slot) {
    check_slot("tiny_llama::release", slot);
    committed_[static_cast<std::size_t>(slot)] = 0;
    pending_[static_cast<std::size_t>(slot)] = 0;
  }

  // Number of committed KV entries of a slot (0 when empty or released).
  std::int32_t committed_length(std::int32_t slot) const {
    check_slot("tiny_llama::committed_length", slot);
    return committed_[static_cast<std::size_t>(slot)];
  }

  // Number of pending tree entries of a slot (0 when none).
  std::int32_t pending_length(std::int32_t slot) const {
    check_slot("tiny_llama::pending_length", slot);
    return pending_[static_cast<std::size_t>(slot)];
  }

  // The slot's whole cache [layers, 2, heads, max_context, head_dim] (k = 0, v = 1; keys after
  // RoPE). Entries [0, committed_length) are the sequence; pending tree entries follow; the rest is
  // stale.
  view<const float, 5> kv_cache(std::int32_t slot) const {
    check_slot("tiny_llama::kv_cache", slot);
    return view<const float, 5>(cache_.data() + slot_stride_ * static_cast<std::size_t>(slot),
                                config_.num_layers, 2, config_.num_heads, config_.max_context,
                                config_.head_dim);
  }

  const tiny_llama_config& config() const { return config_; }
  weight_format format() const { return format_; }
  const tiny_llama_weights& weights() const { return weights_; }

 private:
  // Rows [row_begin, row_begin + n) of a call belong to slot `slot`; their KV entries go to
  // positions base + j; row i attends to [0, base) and to rows j with mask[i * n + j] != 0
  // (causal j <= i when mask is null).
  struct segment {
    std::int32_t slot;
    std::int32_t base;
    std::int32_t row_begin;
    std::int32_t n;
    const std::uint8_t* mask;  // [n, n] or null
  };

  // ---- verify's phases ------------------------------------------------------------------------
  // Offsets, slots and per-request node counts against the slots' committed lengths.
  void check_tree_requests(const char* fn, const verify_input& in) {
    const std::int32_t requests = static_cast<std::int32_t>(in.slots.extent(0));
    REDRAFT_REQUIRE(in.host_node_offsets.extent(0) == requests + 1, fn, ": host_node_offsets has ",
                    in.host_node_offsets.extent(0), " entries but there are ", requests,
                    " slots (expected ", requests + 1, ")");
    REDRAFT_REQUIRE(in.tree.batch == requests, fn, ": tree.batch is ", in.tree.batch,
                    " but there are ", requests, " slots");
    REDRAFT_REQUIRE(requests == 0 || in.host_node_offsets[0] == 0, fn, ": host_node_offsets[0] is ",
                    in.host_node_offsets[0], ", not 0");
    check_slots(fn, in.slots);
    for (std::int32_t r = 0; r < requests; ++r) {
      const std::int32_t slot = in.slots[r];
      const std::int32_t n = in.host_node_offsets[r + 1] - in.host_node_offsets[r];
      const std::int32_t committed = committed_[static_cast<std::size_t>(slot)];
      REDRAFT_REQUIRE(n >= 1, fn, ": the tree of request ", r, " has ", n, " nodes (at least 1)");
      REDRAFT_REQUIRE(committed >= 1, fn, ": slot ", slot, " of request ", r,
                      " holds no sequence (prefill it first)");
      REDRAFT_REQUIRE(committed + n <= config_.max_context, fn, ": slot ", slot, " has ", committed,
                      " committed entries and request ", r, "'s tree has ", n,
                      " nodes, exceeding max_context ", config_.max_context);
      if (in.tree.node_offsets != nullptr) {
        REDRAFT_REQUIRE(in.tree.node_offsets[r + 1] == in.host_node_offsets[r + 1], fn,
                        ": tree.node_offsets[", r + 1, "] = ", in.tree.node_offsets[r + 1],
                        " differs from host_node_offsets[", r + 1,
                        "] = ", in.host_node_offsets[r + 1]);
      }
    }
  }

  // Positions and tokens of the n_total packed nodes.
  void check_tree_nodes(const char* fn, const verify_input& in, std::int32_t n_total) const {
    REDRAFT_REQUIRE(in.positions.extent(0) == n_total, fn, ": positions has ",
                    in.positions.extent(0), " entries but the tree has ", n_total, " nodes");
    REDRAFT_REQUIRE(n_total == 0 || in.tree.token != nullptr, fn, ": tree.token is null");
    check_tokens(fn, "tree.token", in.tree.token, n_total);
    for (std::int32_t i = 0; i < n_total; ++i) {
      REDRAFT_REQUIRE(in.positions[i] >= 0 && in.positions[i] < config_.max_context, fn,
                      ": positions[", i, "] = ", in.positions[i], " is outside [0, max_context ",
                      config_.max_context, ")");
    }
  }

  // The mask the call gives (dense, packed) or the parents it is derived from.
  void check_tree_mask(const char* fn, const verify_input& in, std::int32_t n_total) const {
    const std::int32_t requests = static_cast<std::int32_t>(in.slots.extent(0));
    if (in.dense_mask != nullptr) {
      REDRAFT_REQUIRE(in.dense_offsets != nullptr, fn,
                      ": dense_mask is given without dense_offsets");
      for (std::int32_t r = 0; r < requests; ++r) {
        const std::int64_t n = in.host_node_offsets[r + 1] - in.host_node_offsets[r];
        REDRAFT_REQUIRE(in.dense_offsets[r + 1] - in.dense_offsets[r] == n * n, fn,
                        ": dense_offsets give request ", r, " ",
                        in.dense_offsets[r + 1] - in.dense_offsets[r],
                        " mask entries but its tree has ", n, " nodes (expected ", n * n, ")");
      }
    } else if (in.packed_mask != nullptr) {
      for (std::int32_t r = 0; r < requests; ++r) {
        const std::int32_t n = in.host_node_offsets[r + 1] - in.host_node_offsets[r];
        REDRAFT_REQUIRE(static_cast<std::int64_t>(in.packed_words_per_row) * 32 >= n, fn,
                        ": packed_words_per_row ", in.packed_words_per_row, " cannot hold the ", n,
                        " nodes of request ", r, "'s tree");
      }
    } else {
      REDRAFT_REQUIRE(
          n_total == 0 || in.tree.parent != nullptr, fn,
          ": no mask is given and tree.parent is null (nothing to derive the mask from)");
      for (std::int32_t r = 0; r < requests; ++r) {
        const std::int32_t first = in.host_node_offsets[r];
        const std::int32_t n = in.host_node_offsets[r + 1] - first;
        REDRAFT_REQUIRE(in.tree.parent[first] == -1, fn, ": the root of request ", r,
                        " has parent ", in.tree.parent[first], " (expected -1)");
        for (std::int32_t i = 1; i < n; ++i) {
          const std::int32_t p = in.tree.parent[first + i];
          REDRAFT_REQUIRE(p >= 0 && p < i, fn, ": node ", i, " of request ", r, " has parent ", p,
                          ", which does not precede it");
        }
      }
    }
  }

  // segments_: one per request, with its dense [n_r, n_r] mask (the call's own dense mask, or
  // unpacked / derived from the parents into mask_scratch_).
  void build_tree_segments(const verify_input& in) {
    const std::int32_t requests = static_cast<std::int32_t>(in.slots.extent(0));
    segments_.clear();
    std::size_t mask_size = 0;
    for (std::int32_t r = 0; r < requests; ++r) {
      const std::size_t n =
          static_cast<std::size_t>(in.host_node_offsets[r + 1] - in.host_node_offsets[r]);
      mask_size += n * n;
    }
    if (in.dense_mask == nullptr) mask_scratch_.assign(mask_size, 0);
    std::size_t mask_at = 0;
    for (std::int32_t r = 0; r < requests; ++r) {
      const std::int32_t first = in.host_node_offsets[r];
      const std::int32_t n = in.host_node_offsets[r + 1] - first;
      const std::uint8_t* mask = nullptr;
      if (in.dense_mask != nullptr) {
        mask = in.dense_mask + in.dense_offsets[r];
      } else {
        std::uint8_t* out = mask_scratch_.data() + mask_at;  // [n, n]
        for (std::int32_t i = 0; i < n; ++i) {
          if (in.packed_mask != nullptr) {
            const std::uint32_t* row =
                in.packed_mask + static_cast<std::int64_t>(first + i) * in.packed_words_per_row;
            for (std::int32_t j = 0; j < n; ++j) {
              out[i * n + j] = static_cast<std::uint8_t>((row[j / 32] >> (j % 32)) & 1u);
            }
          } else {
            for (std::int32_t j = i; j >= 0; j = in.tree.parent[first + j]) out[i * n + j] = 1;
          }
        }
        mask = out;
        mask_at += static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
      }
      segments_.push_back(
          segment{in.slots[r], committed_[static_cast<std::size_t>(in.slots[r])], first, n, mask});
    }
  }

  // ---- commit's phases ------------------------------------------------------------------------
  // The plan against the slots' committed lengths and pending trees.
  void check_commit(const char* fn, const kv_plan& plan) {
    const std::int32_t requests = plan.num_requests();
    REDRAFT_REQUIRE(plan.offsets.size() == static_cast<std::size_t>(requests) + 1, fn,
                    ": plan.offsets has ", plan.offsets.size(), " entries but the plan has ",
                    requests, " requests");
    REDRAFT_REQUIRE(plan.offsets[0] == 0, fn, ": plan.offsets[0] is ", plan.offsets[0], ", not 0");
    REDRAFT_REQUIRE(plan.source_node.size() == static_cast<std::size_t>(plan.offsets.back()) &&
                        plan.destination.size() == plan.source_node.size(),
                    fn, ": plan.offsets end at ", plan.offsets.back(), " but source_node has ",
                    plan.source_node.size(), " and destination ", plan.destination.size(),
                    " entries");
    check_slots(fn, vector_view<const std::int32_t>(plan.slot.data(), requests));
    for (std::int32_t r = 0; r < requests; ++r) {
      const std::int32_t slot = plan.slot[static_cast<std::size_t>(r)];
      const std::int32_t begin = plan.offsets[static_cast<std::size_t>(r)];
      const std::int32_t n_keep = plan.offsets[static_cast<std::size_t>(r) + 1] - begin;
      const std::int32_t pending = pending_[static_cast<std::size_t>(slot)];
      const std::int32_t committed = committed_[static_cast<std::size_t>(slot)];
      REDRAFT_REQUIRE(pending >= 1, fn, ": slot ", slot, " of request ", r,
                      " has no pending tree (verify it first)");
      REDRAFT_REQUIRE(n_keep >= 0 && n_keep <= pending, fn, ": request ", r, " keeps ", n_keep,
                      " entries but slot ", slot, " has ", pending, " pending nodes");
      for (std::int32_t i = 0; i < n_keep; ++i) {
        const std::int32_t source = plan.source_node[static_cast<std::size_t>(begin + i)];
        const std::int32_t destination = plan.destination[static_cast<std::size_t>(begin + i)];
        REDRAFT_REQUIRE(source >= 0 && source < pending, fn, ": source_node[", begin + i,
                        "] = ", source, " is outside slot ", slot, "'s pending tree of ", pending,
                        " nodes");
        REDRAFT_REQUIRE(
            i == 0 || source > plan.source_node[static_cast<std::size_t>(begin + i - 1)], fn,
            ": source_node[", begin + i, "] = ", source, " does not follow source_node[",
            begin + i - 1, "] = ", plan.source_node[static_cast<std::size_t>(begin + i - 1)],
            " (a path's nodes increase in packed order)");
        REDRAFT_REQUIRE(destination == committed + i, fn, ": destination[", begin + i,
                        "] = ", destination, " but slot ", slot, " has ", committed,
                        " committed entries (expected ", committed + i, ")");
      }
    }
  }

  // Whether some kept entry is not already in place (source_node[i] != i).
  static bool plan_moves_entries(const kv_plan& plan) {
    for (std::size_t r = 0; r + 1 < plan.offsets.size(); ++r)
      for (std::int32_t e = plan.offsets[r]; e < plan.offsets[r + 1]; ++e)
        if (plan.source_node[static_cast<std::size_t>(e)] != e - plan.offsets[r]) return true;
    return false;
  }

  // Every slot's cache [slots, layers, 2, heads, max_context, head_dim].
  view<float, 6> all_caches() {
    return view<float, 6>(cache_.data(), num_slots(), config_.num_layers, 2, config_.num_heads,
                          config_.max_context, config_.head_dim);
  }

  void check_slot(const char* fn, std::int32_t slot) const {
    REDRAFT_REQUIRE(slot >= 0 && slot < num_slots(), fn, ": slot ", slot, " is outside [0, ",
                    num_slots(), ")");
  }

  void check_slots(const char* fn, vector_view<const std::int32_t> slots) {
    seen_.assign(committed_.size(), 0);
    for (index_t r = 0; r < slots.extent(0); ++r) {
      const std::int32_t slot = slots[r];
      REDRAFT_REQUIRE(slot >= 0 && slot < num_slots(), fn, ": slot ", slot, " of request ", r,
                      " is outside [0, ", num_slots(), ")");
      REDRAFT_REQUIRE(!seen_[static_cast<std::size_t>(slot)], fn, ": slot ", slot,
                      " is listed twice (request ", r, ")");
      seen_[static_cast<std::size_t>(slot)] = 1;
    }
  }

  void check_tokens(const char* fn, const char* what, const std::int32_t* tokens,
                    std::int32_t n) const {
    for (std::int32_t i = 0; i < n; ++i) {
      REDRAFT_REQUIRE(tokens[i] >= 0 && tokens[i] < config_.vocab_size, fn, ": ", what, "[", i,
                      "] = ", tokens[i], " is outside the vocabulary [0, ", config_.vocab_size,
                      ")");
    }
  }

  float* cache_block(std::int32_t slot, std::int32_t layer, std::int32_t kv, std::int32_t head) {
    const std::size_t block =
        static_cast<std::size_t>(config_.max_context) * static_cast<std::size_t>(config_.head_dim);
    return cache_.data() + slot_stride_ * static_cast<std::size_t>(slot) +
           ((static_cast<std::size_t>(layer) * 2 + static_cast<std::size_t>(kv)) *
                static_cast<std::size_t>(config_.num_heads) +
            static_cast<std::size_t>(head)) *
               block;
  }

  // out[n, H] = RMSNorm(x[n, H]) * weight[H]: x / sqrt(mean(x^2) + eps) * weight, per row.
  void rms_norm(const float* x, std::int32_t n, const std::vector<float>& weight,
                float* out) const {
    const std::int32_t hs = config_.hidden_size;
    const Eigen::Map<const Eigen::ArrayXf> w(weight.data(), hs);
    for (std::int32_t r = 0; r < n; ++r) {
      const Eigen::Map<const Eigen::ArrayXf> row(x + static_cast<std::size_t>(r) * hs, hs);
      const float inv = 1.0f / std::sqrt(row.square().mean() + config_.rms_norm_eps);
      Eigen::Map<Eigen::ArrayXf>(out + static_cast<std::size_t>(r) * hs, hs) = row * inv * w;
    }
  }

  // y[n, out] = x[n, in] w^T (or += when accumulate) for packed w [out, in], through
  // packed_matmul for every n: each weight is read once per 64 rows, and a row's result does not
  // depend on how many rows share the call (a tree pass gives each node the logits a one-token
  // step would).
  template <weight_element W>
  static void linear(const float* x, std::int32_t n, std::int32_t in, const packed_weights<W>& w,
                     float* y, bool accumulate) {
    packed_matmul(matrix_view<const float>(x, n, in), w,
                  matrix_view<float>(y, n, static_cast<index_t>(w.rows())), accumulate);
  }

  // The forward's copies of the projection matrices in one storage type W, packed for
  // packed_matmul (cpu/packed_matmul.hpp: no lane sums, so short rows such as H = 256 run near
  // the arithmetic peak); q, k, v fused into one matrix and gate, up into another, so each is one
  // product.
  template <class W>
  struct projections {
    std::vector<packed_weights<W>> qkv;      // [layers] of [3D, H]
    std::vector<packed_weights<W>> o;        // [layers] of [H, D]
    std::vector<packed_weights<W>> gate_up;  // [layers] of [2I, H]
    std::vector<packed_weights<W>> down;     // [layers] of [H, I]
    packed_weights<W> lm_head;               // [V, H]
  };

  // Rounds every weight matrix of weights_ to the format (convert) and fills `out`.
  template <class W, class Convert>
  void build_projections(projections<W>& out, Convert convert) {
    const auto round = [&](std::vector<float>& m) {
      for (float& v : m) v = to_float(convert(v));
    };
    // The parts stacked row-wise ([sum of rows, cols]), converted and packed.
    const auto stored = [&](std::initializer_list<const std::vector<float>*> parts, index_t cols) {
      std::vector<W> joined;
      for (const std::vector<float>* part : parts)
        for (float v : *part) joined.push_back(convert(v));
      const index_t rows = static_cast<index_t>(joined.size()) / cols;
      return packed_weights<W>(matrix_view<const W>(joined.data(), rows, cols));
    };
    const index_t hs = config_.hidden_size, d = config_.attention_width();
    const index_t inter = config_.intermediate_size;
    round(weights_.embed_tokens);
    round(weights_.lm_head);
    for (auto& lw : weights_.layers) {
      for (std::vector<float>* m : {&lw.q_proj, &lw.k_proj, &lw.v_proj, &lw.o_proj, &lw.gate_proj,
                                    &lw.up_proj, &lw.down_proj})
        round(*m);
      out.qkv.push_back(stored({&lw.q_proj, &lw.k_proj, &lw.v_proj}, hs));
      out.o.push_back(stored({&lw.o_proj}, d));
      out.gate_up.push_back(stored({&lw.gate_proj, &lw.up_proj}, hs));
      out.down.push_back(stored({&lw.down_proj}, inter));
    }
    out.lm_head =
        stored({config_.tie_word_embeddings ? &weights_.embed_tokens : &weights_.lm_head}, hs);
  }

  // Rotates the first and second halves of a head vector v[head_dim] at position p (HF Llama's
  // rotate_half): v'[j] = v[j] cos - v[j + d/2] sin, v'[j + d/2] = v[j + d/2] cos + v[j] sin.
  void rope(float* v, std::int32_t position) const {
    const std::int32_t half = config_.head_dim / 2;
    const float* c = rope_cos_.data() + static_cast<std::size_t>(position) * half;
    const float* s = rope_sin_.data() + static_cast<std::size_t>(position) * half;
    for (std::int32_t j = 0; j < half; ++j) {
      const float a = v[j], b = v[j + half];
      v[j] = a * c[j] - b * s[j];
      v[j + half] = b * c[j] + a * s[j];
    }
  }

  // Runs the decoder stack over n_rows tokens grouped by segments_, writing their KV entries into
  // the slots' caches and the final-normed hidden states into normed_ [n_rows, H].
  void forward(const std::int32_t* tokens, const std::int32_t* positions, std::int32_t n_rows) {
    if (format_ == weight_format::f32) return forward_with(f32_, tokens, positions, n_rows);
    if (format_ == weight_format::f16) return forward_with(f16_, tokens, positions, n_rows);
    forward_with(bf16_, tokens, positions, n_rows);
  }

  template <class W>
  void forward_with(const projections<W>& p, const std::int32_t* tokens,
                    const std::int32_t* positions, std::int32_t n_rows) {
    const std::int32_t hs = config_.hidden_size, d = config_.attention_width();
    const std::int32_t hd = config_.head_dim, heads = config_.num_heads;
    const std::int32_t inter = config_.intermediate_size;
    const std::size_t rows = static_cast<std::size_t>(n_rows);
    x_.resize(rows * static_cast<std::size_t>(hs));               // [n, H] residual stream
    normed_.resize(rows * static_cast<std::size_t>(hs));          // [n, H]
    qkv_.resize(rows * 3 * static_cast<std::size_t>(d));          // [n, 3D]
    attn_.resize(rows * static_cast<std::size_t>(d));             // [n, D]
    gate_up_.resize(rows * 2 * static_cast<std::size_t>(inter));  // [n, 2I]
    act_.resize(rows * static_cast<std::size_t>(inter));          // [n, I]
    for (std::int32_t r = 0; r < n_rows; ++r) {
      std::memcpy(x_.data() + static_cast<std::size_t>(r) * hs,
                  weights_.embed_tokens.data() + static_cast<std::size_t>(tokens[r]) * hs,
                  static_cast<std::size_t>(hs) * sizeof(float));
    }
    // NOTE: the softmax scale is folded into the scores after the product, as HF does.
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    for (std::int32_t l = 0; l < config_.num_layers; ++l) {
      const auto& lw = weights_.layers[static_cast<std::size_t>(l)];
      rms_norm(x_.data(), n_rows, lw.input_layernorm, normed_.data());
      linear(normed_.data(), n_rows, hs, p.qkv[static_cast<std::size_t>(l)], qkv_.data(), false);
      for (std::int32_t r = 0; r < n_rows; ++r) {
        float* row = qkv_.data() + static_cast<std::size_t>(r) * 3 * d;
        for (std::int32_t h = 0; h < heads; ++h) {
          rope(row + h * hd, positions[r]);      // q
          rope(row + d + h * hd, positions[r]);  // k
        }
      }
      for (const segment& seg : segments_) {
        const std::int32_t total = seg.base + seg.n;
        for (std::int32_t h = 0; h < heads; ++h) {
          float* k_cache = cache_block(seg.slot, l, 0, h);  // [max_context, hd]
          float* v_cache = cache_block(seg.slot, l, 1, h);  // [max_context, hd]
          for (std::int32_t j = 0; j < seg.n; ++j) {
            const float* row = qkv_.data() + static_cast<std::size_t>(seg.row_begin + j) * 3 * d;
            std::memcpy(k_cache + static_cast<std::size_t>(seg.base + j) * hd, row + d + h * hd,
                        static_cast<std::size_t>(hd) * sizeof(float));
            std::memcpy(v_cache + static_cast<std::size_t>(seg.base + j) * hd, row + 2 * d + h * hd,
                        static_cast<std::size_t>(hd) * sizeof(float));
          }
          // NOTE: scores and outputs go through small_matmul and small_matmul_nn rather than Eigen
          // products: for n >= 2 rows Eigen's GEMM packs the [C + n, hd] keys and values of every
          // head on every call, which for a small tree costs as much as the projections.
          q_head_.resize(static_cast<std::size_t>(seg.n) * static_cast<std::size_t>(hd));
          head_out_.resize(q_head_.size());
          for (std::int32_t i = 0; i < seg.n; ++i) {
            std::memcpy(q_head_.data() + static_cast<std::size_t>(i) * hd,
                        qkv_.data() + static_cast<std::size_t>(seg.row_begin + i) * 3 * d + h * hd,
                        static_cast<std::size_t>(hd) * sizeof(float));
          }
          scores_.resize(static_cast<std::size_t>(seg.n) * static_cast<std::size_t>(total));
          small_matmul(matrix_view<const float>(q_head_.data(), seg.n, hd),  // [n, hd]
                       matrix_view<const float>(k_cache, total, hd),         // [C + n, hd]
                       matrix_view<float>(scores_.data(), seg.n, total));    // [n, C + n]
          for (std::int32_t i = 0; i < seg.n; ++i) {
            float* srow = scores_.data() + static_cast<std::size_t>(i) * total;
            Eigen::Map<Eigen::ArrayXf> a(srow, total);
            a *= scale;
            for (std::int32_t j = 0; j < seg.n; ++j) {
              const bool allowed = seg.mask == nullptr ? j <= i : seg.mask[i * seg.n + j] != 0;
              if (!allowed) srow[seg.base + j] = -std::numeric_limits<float>::infinity();
            }
            // NOTE: every row sees at least the committed prefix or itself, so its max is finite.
            a = (a - a.maxCoeff()).exp();
            a /= a.sum();
          }
          // o[i] = sum_j p[i, j] v[j] for all n rows in one product: masked entries have p = 0
          // exactly and add exactly zero (small_matmul_nn's note), as if absent.
          small_matmul_nn(matrix_view<const float>(scores_.data(), seg.n, total),  // [n, C + n]
                          matrix_view<const float>(v_cache, total, hd),            // [C + n, hd]
                          matrix_view<float>(head_out_.data(), seg.n, hd));        // [n, hd]
          for (std::int32_t i = 0; i < seg.n; ++i) {
            std::memcpy(attn_.data() + static_cast<std::size_t>(seg.row_begin + i) * d + h * hd,
                        head_out_.data() + static_cast<std::size_t>(i) * hd,
                        static_cast<std::size_t>(hd) * sizeof(float));
          }
        }
      }
      linear(attn_.data(), n_rows, d, p.o[static_cast<std::size_t>(l)], x_.data(), true);
      rms_norm(x_.data(), n_rows, lw.post_attention_layernorm, normed_.data());
      linear(normed_.data(), n_rows, hs, p.gate_up[static_cast<std::size_t>(l)], gate_up_.data(),
             false);
      for (std::int32_t r = 0; r < n_rows; ++r) {
        const Eigen::Map<const Eigen::ArrayXf> g(
            gate_up_.data() + static_cast<std::size_t>(r) * 2 * inter, inter);
        const Eigen::Map<const Eigen::ArrayXf> u(
            gate_up_.data() + static_cast<std::size_t>(r) * 2 * inter + inter, inter);
        Eigen::Map<Eigen::ArrayXf>(act_.data() + static_cast<std::size_t>(r) * inter, inter) =
            g / (1.0f + (-g).exp()) * u;
      }
      linear(act_.data(), n_rows, inter, p.down[static_cast<std::size_t>(l)], x_.data(), true);
    }
  }

  // Final norm and LM head of the listed rows of the last forward(): hidden_ [m, H], logits_ [m,
  // V].
  model_output head(const std::int32_t* rows, std::int32_t m) {
    const std::int32_t hs = config_.hidden_size, vocab = config_.vocab_size;
    gathered_.resize(static_cast<std::size_t>(m) * hs);
    for (std::int32_t r = 0; r < m; ++r) {
      std::memcpy(gathered_.data() + static_cast<std::size_t>(r) * hs,
                  x_.data() + static_cast<std::size_t>(rows[r]) * hs,
                  static_cast<std::size_t>(hs) * sizeof(float));
    }
    hidden_.resize(static_cast<std::size_t>(m) * hs);
    logits_.resize(static_cast<std::size_t>(m) * vocab);
    rms_norm(gathered_.data(), m, weights_.norm, hidden_.data());
    if (format_ == weight_format::f32) {
      linear(hidden_.data(), m, hs, f32_.lm_head, logits_.data(), false);
    } else if (format_ == weight_format::f16) {
      linear(hidden_.data(), m, hs, f16_.lm_head, logits_.data(), false);
    } else {
      linear(hidden_.data(), m, hs, bf16_.lm_head, logits_.data(), false);
    }
    return model_output{matrix_view<const float>(logits_.data(), m, vocab),
                        matrix_view<const float>(hidden_.data(), m, hs)};
  }

  tiny_llama_config config_;
  tiny_llama_weights weights_;
  backend_type backend_;
  weight_format format_ = weight_format::f32;
  projections<float> f32_;                  // filled when format_ is F32
  projections<float16> f16_;                // ... F16
  projections<bfloat16> bf16_;              // ... BF16
  std::vector<float> rope_cos_, rope_sin_;  // [max_context, head_dim / 2]
  std::size_t slot_stride_ = 0;             // floats per slot cache
  aligned_vector<float> cache_;             // [slots, layers, 2, heads, max_context, hd]
  std::vector<std::int32_t> committed_;     // [slots]
  std::vector<std::int32_t> pending_;       // [slots]

  // Scratch, grown on demand and reused.
  std::vector<segment> segments_;
  std::vector<std::uint8_t> seen_, mask_scratch_;
  std::vector<std::int32_t> positions_, last_rows_, all_rows_;
  // 64-byte aligned (core/aligned_allocator.hpp), so results do not depend on where they landed.
  aligned_vector<float> x_, normed_, qkv_, q_head_, head_out_, attn_, gate_up_, act_, scores_,
      gathered_;
  aligned_vector<float> hidden_, logits_;
};

static_assert(TargetModel<tiny_llama>, "tiny_llama must model redraft::TargetModel");

}  // namespace redraft::testing
