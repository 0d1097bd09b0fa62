// redraft/testing/synthetic_target.hpp: a synthetic TargetModel whose outputs are a pure,
// cheap function of the sequence, for testing and benchmarking the decoding loop in isolation.
//
// The logits and hidden state at a token are Philox draws keyed by a hash of the last `window`
// tokens of the sequence ending at it (prompt, committed tokens, then the tree path). So:
//   - the "right answer" is known without any attention math: plain greedy decoding of it is a
//     deterministic sequence, and speculative decoding must reproduce it exactly;
//   - it keeps the real KV discipline: verify() sees only committed tokens plus the tree path
//     given by the parent array, and commit() must name the right nodes, or later outputs change;
//   - `verify_cost` adds a fixed busy-wait per verify call, so a benchmark can show the library's
//     own per-step overhead next to a known target cost.
// It runs on any backend B (basic_synthetic_target<B>; synthetic_target is the CPU one): the model
// itself is host code, which reads the tree from backend memory and writes its outputs back there
// through B's transfers only, so the decoding loop around it runs exactly as it would on B.
#pragma once

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/loop/target_model.hpp"

namespace redraft::testing {

struct synthetic_target_config {
  std::int32_t vocab_size = 32;
  std::int32_t hidden_size = 16;
  std::int32_t max_context = 4096;
  std::int32_t num_slots = 8;
  std::int32_t window = 3;   // how many trailing tokens determine the next distribution
  float logit_scale = 3.0f;  // spread of the logits (larger: peakier distributions)
  std::uint64_t seed = 1;
  std::chrono::nanoseconds verify_cost{0};  // busy-wait added to every prefill/verify call
};

template <Backend B>
class basic_synthetic_target {
 public:
  using backend_type = B;

  basic_synthetic_target(B backend, synthetic_target_config config)
      : backend_(backend), config_(config) {
    REDRAFT_REQUIRE(config.vocab_size >= 2 && config.hidden_size >= 1 && config.window >= 1 &&
                        config.num_slots >= 1 && config.max_context >= 2,
                    "synthetic_target: invalid config (vocab_size ", config.vocab_size,
                    ", hidden_size ", config.hidden_size, ", window ", config.window,
                    ", num_slots ", config.num_slots, ", max_context ", config.max_context, ")");
    std::vector<float> embedding(static_cast<std::size_t>(config.vocab_size) * config.hidden_size);
    const philox_stream s{config.seed, 0xE3Bu, 0};
    for (std::size_t i = 0; i < embedding.size(); ++i) embedding[i] = s.uniform(i) * 2.0f - 1.0f;
    embedding_ = upload(embedding);
    slots_.resize(static_cast<std::size_t>(config.num_slots));
  }
  // The CPU model needs no handle from the caller.
  explicit basic_synthetic_target(
      synthetic_target_config config) requires std::same_as<B, cpu_backend>
      : basic_synthetic_target(cpu_backend{}, config) {}

  // The backend this model's work runs on (TargetModel clause 6).
  B& backend() { return backend_; }
  const B& backend() const { return backend_; }
  std::int32_t vocab_size() const { return config_.vocab_size; }
  std::int32_t hidden_size() const { return config_.hidden_size; }
  std::int32_t max_context() const { return config_.max_context; }
  matrix_view<const float> embedding() const {  // [V, H] backend memory
    return {embedding_.data(), config_.vocab_size, config_.hidden_size};
  }
  const synthetic_target_config& config() const { return config_; }

  // The committed tokens of a slot (prompt + committed generated tokens).
  const std::vector<std::int32_t>& committed(std::int32_t slot) const {
    return slots_.at(static_cast<std::size_t>(slot)).tokens;
  }

  model_output prefill(const prefill_input& in) {
    const index_t requests = in.slots.extent(0);
    REDRAFT_REQUIRE(in.token_offsets.extent(0) == requests + 1,
                    "synthetic_target::prefill: token_offsets has ", in.token_offsets.extent(0),
                    " entries, expected ", requests + 1);
    for (index_t r = 0; r < requests; ++r) {
      check_slot("prefill", in.slots[r]);
      const std::int32_t length = in.token_offsets[r + 1] - in.token_offsets[r];
      REDRAFT_REQUIRE(length >= 1 && length <= config_.max_context,
                      "synthetic_target::prefill: prompt ", r, " has length ", length,
                      ", expected 1..", config_.max_context);
      for (std::int32_t i = in.token_offsets[r]; i < in.token_offsets[r + 1]; ++i)
        check_token("prefill", in.tokens[i]);
    }
    resize_outputs(requests);
    for (index_t r = 0; r < requests; ++r) {
      slot_state& s = slots_[static_cast<std::size_t>(in.slots[r])];
      s.tokens.assign(in.tokens.data() + in.token_offsets[r],
                      in.tokens.data() + in.token_offsets[r + 1]);
      s.pending.clear();
      write_row(r, s.tokens);
    }
    spin();
    return output(requests);
  }

  model_output verify(const verify_input& in) {
    const index_t requests = in.slots.extent(0);
    REDRAFT_REQUIRE(in.host_node_offsets.extent(0) == requests + 1,
                    "synthetic_target::verify: host_node_offsets has ",
                    in.host_node_offsets.extent(0), " entries, expected ", requests + 1);
    const index_t total = requests == 0 ? 0 : in.host_node_offsets[requests];
    // The tree and positions live in backend memory: read them through the backend.
    const std::vector<std::int32_t> token = download(in.tree.token, total),
                                    parent = download(in.tree.parent, total),
                                    depth = download(in.tree.depth, total),
                                    positions = download(in.positions.data(), total);
    for (index_t r = 0; r < requests; ++r) {
      check_slot("verify", in.slots[r]);
      const slot_state& s = slots_[static_cast<std::size_t>(in.slots[r])];
      const std::int32_t first = in.host_node_offsets[r], n = in.host_node_offsets[r + 1] - first;
      REDRAFT_REQUIRE(n >= 1, "synthetic_target::verify: request ", r, " has no nodes");
      for (std::int32_t i = 0; i < n; ++i) {
        const auto k = static_cast<std::size_t>(first + i);
        const std::int32_t p = parent[k];
        REDRAFT_REQUIRE((i == 0 && p == -1) || (i > 0 && p >= 0 && p < i),
                        "synthetic_target::verify: request ", r, " node ", i, " has parent ", p,
                        " (packed order needs -1 at the root and parent < node)");
        check_token("verify", token[k]);
        REDRAFT_REQUIRE(positions[k] == static_cast<std::int32_t>(s.tokens.size()) + depth[k],
                        "synthetic_target::verify: request ", r, " node ", i, " has position ",
                        positions[k], " but committed length + depth is ",
                        s.tokens.size() + static_cast<std::size_t>(depth[k]));
        REDRAFT_REQUIRE(positions[k] < config_.max_context, "synthetic_target::verify: position ",
                        positions[k], " exceeds max_context ", config_.max_context);
      }
    }
    resize_outputs(total);
    std::vector<std::int32_t> path;
    for (index_t r = 0; r < requests; ++r) {
      slot_state& s = slots_[static_cast<std::size_t>(in.slots[r])];
      const std::int32_t first = in.host_node_offsets[r], n = in.host_node_offsets[r + 1] - first;
      s.pending.assign(token.begin() + first, token.begin() + first + n);
      for (std::int32_t i = 0; i < n; ++i) {
        // The sequence ending at node i: committed tokens, then the root-to-i path.
        path.clear();
        for (std::int32_t u = i; u != -1; u = parent[static_cast<std::size_t>(first + u)])
          path.push_back(token[static_cast<std::size_t>(first + u)]);
        std::vector<std::int32_t> seq(s.tokens);
        seq.insert(seq.end(), path.rbegin(), path.rend());
        write_row(first + i, seq);
      }
    }
    spin();
    return output(total);
  }

  void commit(const kv_plan& plan) {
    for (std::int32_t r = 0; r < plan.num_requests(); ++r) {
      check_slot("commit", plan.slot[static_cast<std::size_t>(r)]);
      const slot_state& s =
          slots_[static_cast<std::size_t>(plan.slot[static_cast<std::size_t>(r)])];
      for (std::int32_t e = plan.offsets[static_cast<std::size_t>(r)];
           e < plan.offsets[static_cast<std::size_t>(r) + 1]; ++e) {
        const std::int32_t node = plan.source_node[static_cast<std::size_t>(e)];
        REDRAFT_REQUIRE(node >= 0 && node < static_cast<std::int32_t>(s.pending.size()),
                        "synthetic_target::commit: request ", r, " keeps node ", node,
                        " but the pending tree has ", s.pending.size(), " nodes");
        REDRAFT_REQUIRE(plan.destination[static_cast<std::size_t>(e)] ==
                            static_cast<std::int32_t>(s.tokens.size()) +
                                (e - plan.offsets[static_cast<std::size_t>(r)]),
                        "synthetic_target::commit: request ", r, " entry ", e, " goes to ",
                        plan.destination[static_cast<std::size_t>(e)],
                        " but the committed prefix ends at ", s.tokens.size());
      }
    }
    for (std::int32_t r = 0; r < plan.num_requests(); ++r) {
      slot_state& s = slots_[static_cast<std::size_t>(plan.slot[static_cast<std::size_t>(r)])];
      for (std::int32_t e = plan.offsets[static_cast<std::size_t>(r)];
           e < plan.offsets[static_cast<std::size_t>(r) + 1]; ++e)
        s.tokens.push_back(
            s.pending[static_cast<std::size_t>(plan.source_node[static_cast<std::size_t>(e)])]);
      s.pending.clear();
    }
  }

  // The model's exact next-token distribution after `sequence` (double precision softmax of the
  // logits verify() would return): lets tests compute exact laws.
  std::vector<double> next_distribution(const std::vector<std::int32_t>& sequence) const {
    std::vector<float> logits(static_cast<std::size_t>(config_.vocab_size));
    fill_logits(hash_of(sequence), logits.data());
    double max = logits[0];
    for (float l : logits) max = std::max(max, static_cast<double>(l));
    std::vector<double> p(logits.size());
    double z = 0;
    for (std::size_t v = 0; v < p.size(); ++v) z += p[v] = std::exp(logits[v] - max);
    for (double& x : p) x /= z;
    return p;
  }

 private:
  struct slot_state {
    std::vector<std::int32_t> tokens;   // committed
    std::vector<std::int32_t> pending;  // the last verified tree's tokens, in packed order
  };

  std::uint64_t hash_of(const std::vector<std::int32_t>& seq) const {
    std::uint64_t h = 0x9E3779B97F4A7C15ull ^ config_.seed;
    const std::size_t from =
        seq.size() > static_cast<std::size_t>(config_.window) ? seq.size() - config_.window : 0;
    for (std::size_t i = from; i < seq.size(); ++i) {
      h ^= static_cast<std::uint32_t>(seq[i]) + 0x632BE59BD9B4E019ull + (h << 6) + (h >> 2);
      h *= 0xBF58476D1CE4E5B9ull;
    }
    return h;
  }

  void fill_logits(std::uint64_t h, float* out) const {
    const philox_stream s{h, 0x10617u, 0};
    for (std::int32_t v = 0; v < config_.vocab_size; ++v) {
      // Sum of two uniforms: a triangular spread, so distributions are varied but not uniform.
      out[v] = config_.logit_scale * (s.uniform(2u * v) + s.uniform(2u * v + 1) - 1.0f) * 2.0f;
    }
  }

  void write_row(index_t row, const std::vector<std::int32_t>& seq) {
    const std::uint64_t h = hash_of(seq);
    fill_logits(h, logits_.data() + row * config_.vocab_size);
    const philox_stream s{h, 0x41DDu, 0};
    for (std::int32_t j = 0; j < config_.hidden_size; ++j)
      hidden_[static_cast<std::size_t>(row * config_.hidden_size + j)] =
          s.uniform(static_cast<std::uint64_t>(j)) * 2.0f - 1.0f;
  }

  void resize_outputs(index_t rows) {
    logits_.resize(static_cast<std::size_t>(rows * config_.vocab_size));
    hidden_.resize(static_cast<std::size_t>(rows * config_.hidden_size));
  }
  // Uploads the rows just written to backend memory and returns views of them.
  model_output output(index_t rows) {
    logits_on_backend_ = upload(logits_);
    hidden_on_backend_ = upload(hidden_);
    return {{logits_on_backend_.data(), rows, config_.vocab_size},
            {hidden_on_backend_.data(), rows, config_.hidden_size}};
  }
  template <class T>
  typename B::template buffer<T> upload(const std::vector<T>& host) const {
    auto out = backend_.template allocate<T>(static_cast<index_t>(host.size()));
    if (!host.empty())
      backend_.copy_from_host(host.data(), static_cast<index_t>(host.size()), out.data());
    return out;
  }
  std::vector<std::int32_t> download(const std::int32_t* src, index_t n) const {
    std::vector<std::int32_t> out(static_cast<std::size_t>(n));
    if (n > 0) backend_.copy_to_host(src, n, out.data());
    return out;
  }
  void check_slot(const char* fn, std::int32_t slot) const {
    REDRAFT_REQUIRE(slot >= 0 && slot < config_.num_slots, "synthetic_target::", fn, ": slot ",
                    slot, " is outside [0, ", config_.num_slots, ")");
  }
  void check_token(const char* fn, std::int32_t token) const {
    REDRAFT_REQUIRE(token >= 0 && token < config_.vocab_size, "synthetic_target::", fn, ": token ",
                    token, " is outside [0, ", config_.vocab_size, ")");
  }
  void spin() const {
    if (config_.verify_cost.count() <= 0) return;
    const auto until = std::chrono::steady_clock::now() + config_.verify_cost;
    while (std::chrono::steady_clock::now() < until) {
    }
  }

  B backend_;
  synthetic_target_config config_;
  typename B::template buffer<float> embedding_;  // [V, H] backend memory
  std::vector<slot_state> slots_;
  std::vector<float> logits_;                             // [rows, V] host
  std::vector<float> hidden_;                             // [rows, H] host
  typename B::template buffer<float> logits_on_backend_;  // [rows, V] what prefill / verify return
  typename B::template buffer<float> hidden_on_backend_;  // [rows, H]
};

// The CPU synthetic target (what benchmarks and CPU-only tests use).
using synthetic_target = basic_synthetic_target<cpu_backend>;

static_assert(TargetModel<synthetic_target>);

}  // namespace redraft::testing
