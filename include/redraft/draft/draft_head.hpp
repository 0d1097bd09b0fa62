// redraft/draft/draft_head.hpp: the recurrent draft head (weights and forward), over any Backend.
//
// Equations (config in draft_config.hpp; names of the weights are Apple's PyTorch names, every
// Linear weight in PyTorch's [out, in] layout):
//
//   s_0 = 0                                                            [M, H]
//   s_k = SiLU(e(x_{k-1}) rnn_w^T + s_{k-1} rnn_u^T + rnn_u.bias)      recurrence::silu (default)
//   s_k =      e(x_{k-1}) rnn_w^T + s_{k-1} rnn_u^T + rnn_u.bias       recurrence::linear
//   s_k =      e(x_{k-1}) + s_{k-1}                                    recurrence::running_sum
//   x   = concat(h, s_k)                                               [M, 2H]
//   x   = x input_proj.weight^T + input_proj.bias    (only if E != 2H) [M, E]
//   x   = x + SiLU(x lm_head.{i}.linear.weight^T + lm_head.{i}.linear.bias), i = 0..N-1
//   z   = x lm_head.{N}.weight^T                     (no bias)         [M, V]
//   z   = z - rowmax(z)
//   z   = z < (k-th largest of the row) ? logit_mask_value : z         (k = logit_top_k < V)
//   log_probs = log_softmax(z)                                         [M, V]
//
// The forward is split in the two pieces beam search needs: advance_state (the recurrence) and
// log_probs (everything after it), each one batched matmul chain over all M rows. All tensors
// live in the backend's memory; weights are owned by the head in backend buffers.
//
// Weight format. The weight matrices (input_proj, the blocks, the vocabulary projection, rnn_u,
// rnn_w) hold values of the head's weight_format: F32, or F16 / BF16 as checkpoints store them.
// On a backend with half-precision products (Backend clause 9, e.g. the CPU) F16 / BF16 matrices
// stay 16-bit in memory, halving the bytes each product streams; elsewhere, and where the backend
// declines a format (the CPU declines F16 on builds without a hardware F16 conversion), the same
// values are kept in float buffers. Either way every product accumulates in float, and the results
// are the same. Biases are always float.
//
// Packed weights. On a backend with packed weights (Backend clause 11, e.g. the CPU) every weight
// matrix is held only in the backend's packed layout, built when it is set (set_parameter,
// load_draft_head), and every product goes through the backend's packed matmul: on the CPU that
// is packed_matmul (cpu/packed_matmul.hpp), the kernel the reference target uses too, which reads
// each weight once per step for all the beams' rows. get_parameter unpacks; parameter_view is for
// float buffers only (biases, and weight matrices on backends without packing).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/math.hpp"
#include "redraft/core/view.hpp"
#include "redraft/core/warp.hpp"
#include "redraft/draft/draft_config.hpp"

namespace redraft {

namespace detail {

// out[i, :] = concat(hidden[i / repeat, :], state[i, :])      out [M, 2H]
struct concat_hidden_state {
  matrix_view<const float> hidden;  // [M / repeat, H]
  matrix_view<const float> state;   // [M, H]
  matrix_view<float> out;           // [M, 2H]
  index_t repeat;
  REDRAFT_HOST_DEVICE void operator()(index_t flat) const {
    const index_t h = hidden.extent(1);
    const index_t row = flat / (2 * h), col = flat % (2 * h);
    out(row, col) = col < h ? hidden(row / repeat, col) : state(row, col - h);
  }
};

// x[i] += t[i]
struct add_in_place {
  float* x;
  const float* t;
  REDRAFT_HOST_DEVICE void operator()(index_t i) const { x[i] += t[i]; }
};

// out[i] = act(a[i] + b[i]) with act = SiLU or identity.
struct add_activate {
  const float* a;
  const float* b;
  float* out;
  bool silu;
  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const float v = a[i] + b[i];
    out[i] = silu ? v / (1.0f + exp_hd(-v)) : v;
  }
};

// z[r, c] -= row_max[r]
struct subtract_row_max {
  matrix_view<float> z;  // [M, V]
  const float* row_max;  // [M]
  REDRAFT_HOST_DEVICE void operator()(index_t flat) const {
    const index_t v = z.extent(1);
    z[flat] -= row_max[flat / v];
  }
};

// The top-k warp's log-normaliser, log(sum over the survivors of exp(z - top0)), survivors being
// the entries >= the k-th largest (top0 = top_values[r, 0], the row max). Two passes, so that no
// thread walks a whole row: one thread per row over V columns serialised the draft head on a GPU
// (a few rows of 32k-128k columns, each read by one thread).
//  1. warp_survivor_counts, one index per (row, slice): how many entries of the slice survive and
//     how many are NaN (exact integers, whatever the split). A row has C = ceil(V / 256) slices,
//     slice s the columns s, s + C, s + 2C, ...: neighbouring indices read neighbouring columns,
//     so a GPU warp's loads coalesce (a CPU reads each cache line from L1 for 16 slices in turn).
//  2. warp_log_sum, one index per row: the k listed top values' terms, in the list's order, plus
//     the survivors the list left out, which equal the k-th largest (ties past the k-th: each adds
//     exp(kth - top0)) or are NaN (the sum is NaN, as a sum over the survivors would be).
// The sum's order depends only on the top-k list and the counts, so every backend gives the same
// bits. NOTE: masked entries would add exp(mask_value - top0) = exp(-50000) = 0 even in double,
// so summing the survivors gives the log_softmax of the masked row, from about k exponentials per
// row instead of V.
inline constexpr index_t warp_slice_columns = 256;

// The number of slices of a row of `vocab` columns (about warp_slice_columns columns each).
REDRAFT_HOST_DEVICE inline index_t warp_slices(index_t vocab) {
  return (vocab + warp_slice_columns - 1) / warp_slice_columns;
}

struct warp_survivor_counts {
  matrix_view<const float> z;           // [M, V], max already subtracted
  matrix_view<const float> top_values;  // [M, k], sorted descending
  matrix_view<std::int32_t> counts;     // [M, 2 C], C = warp_slices(V): survivors, then NaNs
  REDRAFT_HOST_DEVICE void operator()(index_t flat) const {
    const index_t slices = counts.extent(1) / 2, row = flat / slices, slice = flat % slices;
    const float kth = top_values(row, top_values.extent(1) - 1);
    std::int32_t survivors = 0, nans = 0;
    for (index_t c = slice; c < z.extent(1); c += slices) {
      const float x = z(row, c);
      survivors += !(x < kth);
      nans += x != x;
    }
    counts(row, slice) = survivors;
    counts(row, slices + slice) = nans;
  }
};

struct warp_log_sum {
  matrix_view<const float> top_values;     // [M, k], sorted descending
  matrix_view<const std::int32_t> counts;  // [M, 2 C] from warp_survivor_counts
  float* log_sum;                          // [M]
  REDRAFT_HOST_DEVICE void operator()(index_t row) const {
    const index_t k = top_values.extent(1), slices = counts.extent(1) / 2;
    const float kth = top_values(row, k - 1);
    const float top = top_values(row, 0);
    double sum = 0.0;
    index_t listed_nans = 0;
    for (index_t j = 0; j < k; ++j) {
      const float x = top_values(row, j);
      sum += exp_hd(static_cast<double>(x - top));
      listed_nans += x != x;
    }
    index_t survivors = 0, nans = 0;
    for (index_t c = 0; c < slices; ++c) {
      survivors += counts(row, c);
      nans += counts(row, slices + c);
    }
    // Every listed value survives, so survivors >= k.
    if (nans > listed_nans)
      sum = static_cast<double>(NAN);
    else
      sum += static_cast<double>(survivors - k) * exp_hd(static_cast<double>(kth - top));
    log_sum[row] = static_cast<float>(log_hd(sum));
  }
};

// z[r, c] = ((z[r, c] < kth ? mask_value : z[r, c]) - top0) - log_sum[r]: the top-k warp and
// log_softmax in one pass (the same arithmetic as Backend::log_softmax of the masked row).
struct warp_log_softmax {
  matrix_view<float> z;                 // [M, V]
  matrix_view<const float> top_values;  // [M, k]
  const float* log_sum;                 // [M]
  float mask_value;
  REDRAFT_HOST_DEVICE void operator()(index_t flat) const {
    const index_t row = flat / z.extent(1);
    const float kth = top_values(row, top_values.extent(1) - 1);
    const float x = warp_logit(z[flat], kth, mask_value);
    z[flat] = (x - top_values(row, 0)) - log_sum[row];
  }
};

// The backend buffer of W weights when the backend multiplies W weights (clause 9), else empty.
template <class B, class W, bool = backend_has_half_matmul_v<B, W>>
struct half_weight_buffer {
  struct type {
    index_t size() const { return 0; }
  };
};
template <class B, class W>
struct half_weight_buffer<B, W, true> {
  using type = typename B::template buffer<W>;
};

// The backend's packed matrix of W weights when it packs them (clause 11), else empty.
template <class B, class W, bool = backend_has_packed_matmul_v<B, W>>
struct packed_weight_matrix {
  struct type {};
};
template <class B, class W>
struct packed_weight_matrix<B, W, true> {
  using type = typename B::template packed_matrix<W>;
};

}  // namespace detail

// Scratch buffers of the forward, for up to `rows` rows. Reuse one across calls (beam search
// keeps one for all its steps) to avoid allocating inside a decoding loop.
template <Backend B>
struct draft_head_workspace {
  using float_buffer = typename B::template buffer<float>;
  using int_buffer = typename B::template buffer<std::int32_t>;

  index_t rows = 0;         // capacity in rows
  float_buffer input;       // [rows, 2H]  concat(h, s)
  float_buffer x;           // [rows, E]   residual stream (unused when E == 2H)
  float_buffer tmp;         // [rows, max(E, H)]
  float_buffer tmp2;        // [rows, H]
  float_buffer row_max;     // [rows] row max, then the log-normaliser of the warped row
  float_buffer top_values;  // [rows, k]
  int_buffer top_indices;   // [rows, k]
  int_buffer warp_counts;   // [rows, 2 ceil(V / 256)] survivors and NaNs per slice of the warp
};

template <Backend B>
class draft_head {
 public:
  using float_buffer = typename B::template buffer<float>;

  // A head of the given shape with all weights zero; fill them with set_parameter or load a
  // checkpoint (checkpoint.hpp). `format` is the weight matrices' format (see the top of the
  // file). Throws redraft::error if the config is invalid.
  draft_head(B backend, draft_config config, weight_format format = weight_format::f32)
      : backend_(std::move(backend)), config_(config), format_(format) {
    config_.validate("draft_head");
    if ((format_ == weight_format::f16 && backend_prefers_half_weights_v<B, float16>) ||
        (format_ == weight_format::bf16 && backend_prefers_half_weights_v<B, bfloat16>)) {
      stored_ = format_;
    }
    const index_t v = config_.vocab_size, h = config_.hidden_size, e = config_.exit_dim;
    if (config_.has_input_proj()) {
      input_proj_weight_ = add_parameter("input_proj.weight", {e, 2 * h});
      input_proj_bias_ = add_parameter("input_proj.bias", {e});
    }
    for (index_t i = 0; i < config_.num_draft_layers; ++i) {
      block_weight_.push_back(
          add_parameter("lm_head." + std::to_string(i) + ".linear.weight", {e, e}));
      block_bias_.push_back(add_parameter("lm_head." + std::to_string(i) + ".linear.bias", {e}));
    }
    lm_head_ = add_parameter(lm_head_name(), {v, e});
    if (config_.has_rnn_weights()) {
      rnn_u_weight_ = add_parameter("rnn_u.weight", {h, h});
      rnn_u_bias_ = add_parameter("rnn_u.bias", {h});
      rnn_w_weight_ = add_parameter("rnn_w.weight", {h, h});
    }
  }

  const draft_config& config() const { return config_; }
  // The format of the weight matrices' values, and the one they are stored in: equal on a
  // backend with half-precision products that prefers them (backend_prefers_half_weights_v),
  // f32 storage of half values elsewhere.
  weight_format format() const { return format_; }
  weight_format stored_format() const { return stored_; }
  const B& backend() const { return backend_; }

  // ---- Parameters by PyTorch name ----

  // Names in a fixed order: input_proj.*, lm_head.{i}.linear.*, lm_head.{N}.weight, rnn_*.
  std::vector<std::string> parameter_names() const {
    std::vector<std::string> names;
    for (const parameter& p : parameters_) names.push_back(p.name);
    return names;
  }
  bool has_parameter(const std::string& name) const { return find(name) != nullptr; }
  // PyTorch shape of a parameter ([out, in] for weights, [out] for biases).
  const std::vector<std::int64_t>& parameter_shape(const std::string& name) const {
    return get("draft_head::parameter_shape", name).shape;
  }
  // Copies host values into a parameter; `count` must equal the parameter's element count.
  // Weight matrices of an F16 / BF16 head round each value to that format (to nearest, ties to
  // even); values a checkpoint stored in the format are kept exactly.
  void set_parameter(const std::string& name, const float* host_values, index_t count) {
    parameter& p = get("draft_head::set_parameter", name);
    REDRAFT_REQUIRE(count == p.count, "draft_head::set_parameter: '", name, "' has ", p.count,
                    " elements but ", count, " values were given");
    if (!p.matrix) {
      backend_.copy_from_host(host_values, count, p.values.data());
      return;
    }
    // The values rounded to the head's format, in the type they are stored as.
    const auto rounded = [&](auto convert) {
      std::vector<decltype(convert(0.0f))> out(static_cast<std::size_t>(count));
      for (index_t i = 0; i < count; ++i)
        out[static_cast<std::size_t>(i)] = convert(host_values[i]);
      return out;
    };
    if constexpr (backend_has_half_matmul_v<B, float16>) {
      if (stored_ == weight_format::f16)
        return store_matrix(p, rounded([](float v) { return to_float16(v); }), p.f16, p.packed_f16);
    }
    if constexpr (backend_has_half_matmul_v<B, bfloat16>) {
      if (stored_ == weight_format::bf16)
        return store_matrix(p, rounded([](float v) { return to_bfloat16(v); }), p.bf16,
                            p.packed_bf16);
    }
    if (format_ == weight_format::f16)
      return store_matrix(p, rounded([](float v) { return to_float(to_float16(v)); }), p.values,
                          p.packed_f32);
    if (format_ == weight_format::bf16)
      return store_matrix(p, rounded([](float v) { return to_float(to_bfloat16(v)); }), p.values,
                          p.packed_f32);
    store_matrix(p, rounded([](float v) { return v; }), p.values, p.packed_f32);
  }
  void set_parameter(const std::string& name, const std::vector<float>& host_values) {
    set_parameter(name, host_values.data(), static_cast<index_t>(host_values.size()));
  }
  // A host copy of a parameter's values (row-major), as floats.
  std::vector<float> get_parameter(const std::string& name) const {
    const parameter& p = get("draft_head::get_parameter", name);
    std::vector<float> out(static_cast<std::size_t>(p.count));
    if (!p.matrix) {
      backend_.copy_to_host(p.values.data(), p.count, out.data());
      return out;
    }
    with_matrix(p, [&](const auto& w, auto type) {
      using W = typename decltype(type)::type;
      // A packed matrix is unpacked into a backend buffer first.
      typename B::template buffer<W> unpacked;
      const W* values = nullptr;
      if constexpr (std::is_same_v<std::decay_t<decltype(w)>, matrix_view<const W>>) {
        values = w.data();
      } else {
        unpacked = backend_.template allocate<W>(p.count);
        unpack_matrix(w, matrix_view<W>(unpacked.data(), p.shape[0], p.shape[1]));
        values = unpacked.data();
      }
      std::vector<W> stored(static_cast<std::size_t>(p.count));
      backend_.copy_to_host(values, p.count, stored.data());
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = to_float(stored[i]);
    });
    return out;
  }
  // A view of a float-stored parameter in backend memory, as a matrix [out, in] (biases as
  // [1, out]). Throws redraft::error for a weight matrix stored as F16 / BF16 or packed
  // (get_parameter reads those).
  matrix_view<const float> parameter_view(const std::string& name) const {
    const parameter& p = get("draft_head::parameter_view", name);
    REDRAFT_REQUIRE(!p.packed, "draft_head::parameter_view: '", name,
                    "' is stored packed for the backend's products (use get_parameter)");
    REDRAFT_REQUIRE(!p.matrix || stored_ == weight_format::f32, "draft_head::parameter_view: '",
                    name, "' is stored as ", weight_format_name(stored_),
                    ", not float (use get_parameter)");
    const index_t rows = p.shape.size() == 2 ? p.shape[0] : 1;
    const index_t cols = p.shape.size() == 2 ? p.shape[1] : p.shape[0];
    return matrix_view<const float>(p.values.data(), rows, cols);
  }

  // ---- Forward ----

  // Makes sure `ws` holds buffers for `rows` rows (grows, never shrinks).
  void reserve(draft_head_workspace<B>& ws, index_t rows) const {
    if (ws.rows >= rows) return;
    const index_t h = config_.hidden_size, e = config_.exit_dim;
    const index_t k = top_k_in_use() ? config_.logit_top_k : 0;
    ws.input = backend_.template allocate<float>(rows * 2 * h);
    ws.x = backend_.template allocate<float>(config_.has_input_proj() ? rows * e : 0);
    ws.tmp = backend_.template allocate<float>(rows * (e > h ? e : h));
    ws.tmp2 = backend_.template allocate<float>(rows * h);
    ws.row_max = backend_.template allocate<float>(rows);
    ws.top_values = backend_.template allocate<float>(rows * k);
    ws.top_indices = backend_.template allocate<std::int32_t>(rows * k);
    ws.warp_counts = backend_.template allocate<std::int32_t>(
        k > 0 ? rows * 2 * detail::warp_slices(config_.vocab_size) : 0);
    ws.rows = rows;
  }

  // The recurrence: next_state = recurrence(embedded, state).
  //   embedded [M, H]  e(x_{k-1}), the embeddings of the previous tokens
  //   state [M, H]     s_{k-1} (zeros at the first step)
  //   next_state [M, H] s_k; may alias `state`
  // Deterministic. O(M H^2) (two matmuls; O(M H) for running_sum).
  void advance_state(matrix_view<const float> embedded, matrix_view<const float> state,
                     matrix_view<float> next_state, draft_head_workspace<B>& ws) const {
    const index_t m = embedded.extent(0), h = config_.hidden_size;
    REDRAFT_REQUIRE(embedded.extent(1) == h && state.extent(1) == h && next_state.extent(1) == h,
                    "draft_head::advance_state: embedded, state and next_state must have ", h,
                    " columns (hidden_size), they have ", embedded.extent(1), ", ", state.extent(1),
                    ", ", next_state.extent(1));
    REDRAFT_REQUIRE(state.extent(0) == m && next_state.extent(0) == m,
                    "draft_head::advance_state: embedded has ", m, " rows but state has ",
                    state.extent(0), " and next_state ", next_state.extent(0));
    reserve(ws, m);
    if (config_.recurrence == recurrence::running_sum) {
      // NOTE: e + s in this order, as the reference computes it (float addition commutes, so the
      // order only matters for documentation).
      backend_.for_each_index(
          m * h, detail::add_activate{embedded.data(), state.data(), next_state.data(), false});
      return;
    }
    matrix_view<float> from_embedding(ws.tmp.data(), m, h);  // [M, H]
    matrix_view<float> from_state(ws.tmp2.data(), m, h);     // [M, H]
    product(embedded, rnn_w_weight_, nullptr, activation::none, from_embedding);
    product(state, rnn_u_weight_, bias(rnn_u_bias_), activation::none, from_state);
    backend_.for_each_index(
        m * h, detail::add_activate{from_embedding.data(), from_state.data(), next_state.data(),
                                    config_.recurrence == recurrence::silu});
  }

  // Everything after the recurrence: the head's log-distribution of the next token.
  //   hidden [M_h, H]  the target's hidden state; row i of the output uses hidden row
  //                    i / (M / M_h), so one row per request serves all its beams (M_h divides M)
  //   state [M, H]     s_k
  //   log_probs [M, V] output: log_softmax of the max-subtracted, top-k-warped logits. Masked
  //                    entries are logit_mask_value - logsumexp(row), i.e. near -50000.
  // Deterministic on a deterministic backend. O(M (2H E + N E^2 + E V)) in matmuls plus
  // O(M V) for the row max, top-k, mask and log_softmax.
  void log_probs(matrix_view<const float> hidden, matrix_view<const float> state,
                 matrix_view<float> log_probs, draft_head_workspace<B>& ws) const {
    const index_t m = state.extent(0), h = config_.hidden_size, e = config_.exit_dim,
                  v = config_.vocab_size;
    REDRAFT_REQUIRE(hidden.extent(1) == h && state.extent(1) == h,
                    "draft_head::log_probs: hidden and state must have ", h,
                    " columns (hidden_size), they have ", hidden.extent(1), " and ",
                    state.extent(1));
    REDRAFT_REQUIRE(hidden.extent(0) >= 1 && m % hidden.extent(0) == 0,
                    "draft_head::log_probs: hidden has ", hidden.extent(0),
                    " rows, which must divide the ", m, " rows of state");
    REDRAFT_REQUIRE(log_probs.extent(0) == m && log_probs.extent(1) == v,
                    "draft_head::log_probs: log_probs is [", log_probs.extent(0), ", ",
                    log_probs.extent(1), "] but must be [", m, ", ", v, "]");
    if (m == 0) return;
    reserve(ws, m);
    // concat(h, s)                                                      [M, 2H]
    matrix_view<float> input(ws.input.data(), m, 2 * h);
    backend_.for_each_index(
        m * 2 * h, detail::concat_hidden_state{hidden, state, input, m / hidden.extent(0)});
    // Optional input projection                                         [M, E]
    matrix_view<float> x = input;
    if (config_.has_input_proj()) {
      x = matrix_view<float>(ws.x.data(), m, e);
      product(input, input_proj_weight_, bias(input_proj_bias_), activation::none, x);
    }
    // Residual blocks x <- x + SiLU(W x + b)                            [M, E]
    matrix_view<float> block_out(ws.tmp.data(), m, e);
    for (index_t i = 0; i < config_.num_draft_layers; ++i) {
      const std::size_t block = static_cast<std::size_t>(i);
      product(x, block_weight_[block], bias(block_bias_[block]), activation::silu, block_out);
      backend_.for_each_index(m * e, detail::add_in_place{x.data(), block_out.data()});
    }
    // Vocabulary projection, no bias                                    [M, V]
    product(x, lm_head_, nullptr, activation::none, log_probs);
    // z - rowmax(z)
    vector_view<float> row_max(ws.row_max.data(), m);
    backend_.row_max(log_probs, row_max);
    backend_.for_each_index(m * v, detail::subtract_row_max{log_probs, row_max.data()});
    // Top-k warp: strictly below the k-th largest -> mask value (ties with the k-th survive),
    // then log_softmax.
    if (top_k_in_use()) {
      const int k = static_cast<int>(config_.logit_top_k);
      matrix_view<float> top_values(ws.top_values.data(), m, k);
      matrix_view<std::int32_t> top_indices(ws.top_indices.data(), m, k);
      backend_.row_top_k(log_probs, k, top_values, top_indices);
      // NOTE: the warp and log_softmax are fused: the normaliser needs only the ~k survivors.
      const index_t slices = detail::warp_slices(v);
      matrix_view<std::int32_t> counts(ws.warp_counts.data(), m, 2 * slices);
      backend_.for_each_index(m * slices,
                              detail::warp_survivor_counts{log_probs, top_values, counts});
      backend_.for_each_index(m, detail::warp_log_sum{top_values, counts, row_max.data()});
      backend_.for_each_index(m * v, detail::warp_log_softmax{log_probs, top_values, row_max.data(),
                                                              config_.logit_mask_value});
    } else {
      backend_.log_softmax(log_probs, log_probs);
    }
  }

  // The name of the vocabulary projection, "lm_head.{N}.weight".
  std::string lm_head_name() const {
    return "lm_head." + std::to_string(config_.num_draft_layers) + ".weight";
  }

 private:
  struct parameter {
    std::string name;
    std::vector<std::int64_t> shape;
    index_t count = 0;    // elements
    bool matrix = false;  // a weight matrix [out, in] (takes the head's format), else a bias
    bool packed = false;  // a weight matrix held only in the backend's packed layout
    // Unpacked storage, [count]: values for biases and float matrices, f16 / bf16 for matrices
    // stored as F16 / BF16.
    float_buffer values;
    typename detail::half_weight_buffer<B, float16>::type f16;
    typename detail::half_weight_buffer<B, bfloat16>::type bf16;
    // Packed storage [out, in] of the stored type (when packed).
    typename detail::packed_weight_matrix<B, float>::type packed_f32;
    typename detail::packed_weight_matrix<B, float16>::type packed_f16;
    typename detail::packed_weight_matrix<B, bfloat16>::type packed_bf16;
  };

  bool top_k_in_use() const { return config_.logit_top_k < config_.vocab_size; }

  std::size_t add_parameter(std::string name, std::vector<std::int64_t> shape) {
    index_t count = 1;
    for (const std::int64_t d : shape) count *= d;
    parameter p;
    p.name = std::move(name);
    p.matrix = shape.size() == 2;
    p.shape = std::move(shape);
    p.count = count;
    p.packed = p.matrix && packs_stored_format();
    bool half = false;
    if constexpr (backend_has_half_matmul_v<B, float16>) {
      if (p.matrix && stored_ == weight_format::f16)
        zero_matrix<float16>(p, p.f16, p.packed_f16), half = true;
    }
    if constexpr (backend_has_half_matmul_v<B, bfloat16>) {
      if (p.matrix && stored_ == weight_format::bf16)
        zero_matrix<bfloat16>(p, p.bf16, p.packed_bf16), half = true;
    }
    if (!half) zero_matrix<float>(p, p.values, p.packed_f32);
    parameters_.push_back(std::move(p));
    return parameters_.size() - 1;
  }
  // Zeros of the stored type W in the parameter's storage: packed when p.packed, else `buffer`.
  template <class W, class Buffer, class Packed>
  void zero_matrix(parameter& p, Buffer& buffer, Packed& packed) {
    auto zeros = backend_.template allocate<W>(p.count);
    backend_.fill(zeros.data(), p.count, W{});
    if constexpr (backend_has_packed_matmul_v<B, W>) {
      if (p.packed) {
        packed = backend_.pack(matrix_view<const W>(zeros.data(), p.shape[0], p.shape[1]));
        return;
      }
    }
    buffer = std::move(zeros);
  }
  // Whether the backend packs weight matrices of the stored format (clause 11).
  bool packs_stored_format() const {
    switch (stored_) {
      case weight_format::f16:
        return backend_has_packed_matmul_v<B, float16>;
      case weight_format::bf16:
        return backend_has_packed_matmul_v<B, bfloat16>;
      case weight_format::f32:
        break;
    }
    return backend_has_packed_matmul_v<B, float>;
  }
  // Stores host values [count] of a weight matrix (already in the stored type W): packed through
  // a backend staging buffer when p.packed, else into `buffer`.
  template <class W, class Buffer, class Packed>
  void store_matrix(parameter& p, const std::vector<W>& host, Buffer& buffer, Packed& packed) {
    if constexpr (backend_has_packed_matmul_v<B, W>) {
      if (p.packed) {
        auto staging = backend_.template allocate<W>(p.count);
        backend_.copy_from_host(host.data(), p.count, staging.data());
        packed = backend_.pack(matrix_view<const W>(staging.data(), p.shape[0], p.shape[1]));
        return;
      }
    }
    backend_.copy_from_host(host.data(), p.count, buffer.data());
  }
  // Writes a packed matrix back into [out, in] backend memory (reached only on packing backends).
  // NOTE: a member template rather than code in get_parameter's generic lambda, where clang 14
  // looks up `unpack` in B even in a discarded branch.
  template <class Packed, class W>
  void unpack_matrix(const Packed& packed, matrix_view<W> out) const {
    if constexpr (backend_has_packed_matmul_v<B, W>) backend_.unpack(packed, out);
  }
  // Calls f(w, std::type_identity<W>{}) with the weight matrix p in its storage: the backend's
  // packed matrix, or a matrix_view<const W> [out, in] of its buffer.
  template <class F>
  void with_matrix(const parameter& p, F&& f) const {
    const index_t rows = p.shape[0], cols = p.shape[1];
    if (stored_ == weight_format::f16) {
      if constexpr (backend_has_packed_matmul_v<B, float16>) {
        if (p.packed) return f(p.packed_f16, std::type_identity<float16>{});
      }
      if constexpr (backend_has_half_matmul_v<B, float16>)
        return f(matrix_view<const float16>(p.f16.data(), rows, cols),
                 std::type_identity<float16>{});
    }
    if (stored_ == weight_format::bf16) {
      if constexpr (backend_has_packed_matmul_v<B, bfloat16>) {
        if (p.packed) return f(p.packed_bf16, std::type_identity<bfloat16>{});
      }
      if constexpr (backend_has_half_matmul_v<B, bfloat16>)
        return f(matrix_view<const bfloat16>(p.bf16.data(), rows, cols),
                 std::type_identity<bfloat16>{});
    }
    if constexpr (backend_has_packed_matmul_v<B, float>) {
      if (p.packed) return f(p.packed_f32, std::type_identity<float>{});
    }
    f(matrix_view<const float>(p.values.data(), rows, cols), std::type_identity<float>{});
  }
  const parameter* find(const std::string& name) const {
    for (const parameter& p : parameters_)
      if (p.name == name) return &p;
    return nullptr;
  }
  const parameter& get(const char* fn, const std::string& name) const {
    const parameter* p = find(name);
    REDRAFT_REQUIRE(p != nullptr, fn, ": the draft head has no parameter '", name, "'");
    return *p;
  }
  parameter& get(const char* fn, const std::string& name) {
    return const_cast<parameter&>(std::as_const(*this).get(fn, name));
  }
  // y = act(x w^T + bias) for the weight matrix parameters_[index], in its stored format.
  void product(matrix_view<const float> x, std::size_t index, const float* bias_values,
               activation act, matrix_view<float> y) const {
    with_matrix(parameters_[index],
                [&](const auto& w, auto) { backend_.matmul(x, w, bias_values, act, y); });
  }
  const float* bias(std::size_t index) const { return parameters_[index].values.data(); }

  B backend_;
  draft_config config_;
  weight_format format_ = weight_format::f32;
  weight_format stored_ = weight_format::f32;
  std::vector<parameter> parameters_;
  // Indices into parameters_, so the forward never looks names up.
  std::size_t input_proj_weight_ = 0, input_proj_bias_ = 0, lm_head_ = 0;
  std::size_t rnn_u_weight_ = 0, rnn_u_bias_ = 0, rnn_w_weight_ = 0;
  std::vector<std::size_t> block_weight_, block_bias_;
};

}  // namespace redraft
