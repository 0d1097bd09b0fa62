// redraft/draft/beam_search.hpp: batched beam search over the draft head (ReDrafter's drafting).
//
// For every request b the draft head proposes W beams of L tokens, column 0 the root token:
//
//   scores[b] = [0, m, m, ..., m]          m = logit_mask_value (-50000): only beam 0 is alive
//   tokens[b, w] = root[b];  s = 0
//   for k = 1 .. L-1:
//     s         = recurrence(e(tokens), s)                       [B*W, H]
//     logp      = draft_head.log_probs(h, s)                     [B*W, V]
//     candidate = scores[b, w] + logp[b*W + w, v]                [B, W*V]
//     keep the top W candidates of each row, sorted descending, ties to the lower flat index f:
//       source beam = f / V, token = f % V, scores = the kept candidates
//       (computed as each beam's own top W, then the top W of those W*W: a candidate among its
//       request's top W has fewer than W candidates of its own beam above it, so the per-beam
//       selection runs over B*W rows of V columns in parallel instead of B rows of W*V)
//     reorder s by source beam; tokens = the kept tokens
//
// Each step is one batched matmul chain over all B*W rows (never a loop over beams). Scores are
// plain sums of log-probs (no length normalisation). Beams are reconstructed at the end from the
// per-step (token, source beam) pairs, so nothing of size [W, L] is copied inside the loop.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/view.hpp"
#include "redraft/draft/draft_head.hpp"
#include "redraft/step/row_ops.hpp"

namespace redraft {

struct beam_search_options {
  // Also return the draft head's log-distributions [B, W, L-1, V] (needed by
  // redrafter_compat verification and by lossless sampling against the drafter).
  bool want_log_probs = false;
};

// Output of beam_search, in the backend's memory.
template <Backend B>
struct beam_search_result {
  index_t batch = 0, beam_width = 0, beam_length = 0, vocab_size = 0;
  typename B::template buffer<std::int32_t> beams;  // [B, W, L] column 0 the root, best beam first
  typename B::template buffer<float> scores;  // [B, W] sum of the chosen log-probs, descending
  // [B, W, L-1, V] log_probs[b, w, k] is the distribution that produced beams[b, w, k+1]
  // (after warp and log_softmax); empty unless options.want_log_probs.
  typename B::template buffer<float> log_probs;

  view<const std::int32_t, 3> beams_view() const {
    return {beams.data(), batch, beam_width, beam_length};
  }
  matrix_view<const float> scores_view() const { return {scores.data(), batch, beam_width}; }
  view<const float, 4> log_probs_view() const {
    return {log_probs.data(), log_probs.size() == 0 ? 0 : batch, beam_width, beam_length - 1,
            vocab_size};
  }
};

// Scratch of beam_search; pass the same one to successive calls to allocate only once.
template <Backend B>
struct beam_search_workspace {
  using float_buffer = typename B::template buffer<float>;
  using int_buffer = typename B::template buffer<std::int32_t>;

  draft_head_workspace<B> head;
  index_t rows = 0, steps = 0, vocab = 0, hidden = 0;  // the current call's sizes (buffers may
                                                       // be larger: they only grow)
  bool with_history = false;
  float_buffer state;            // [B*W, H]
  float_buffer gathered_state;   // [B*W, H]
  float_buffer embedded;         // [B*W, H]
  float_buffer step_log_probs;   // [L-1, B*W, V] with log-probs wanted, else [1, B*W, V]
  float_buffer candidates;       // [B, W*V] (only with log-probs wanted; else step_log_probs)
  float_buffer scores;           // [B, W]
  float_buffer beam_top_values;  // [B*W, W] each beam's top W candidates, sorted descending
  int_buffer beam_top_tokens;    // [B*W, W] their tokens
  float_buffer top_values;       // [B, W]
  int_buffer top_indices;        // [B, W] flat index beam * V + token
  int_buffer tokens;             // [B*W]
  int_buffer source_rows;        // [B*W]
  int_buffer history;            // [2, L-1, B, W] chosen token, then source beam, per step
  int_buffer ancestors;          // [B, W, L-1]
};

namespace detail {

// scores[b, w] = w == 0 ? 0 : dead;  tokens[b*W + w] = root[b]
struct init_beams {
  float* scores;
  std::int32_t* tokens;
  const std::int32_t* roots;
  index_t width;
  float dead;
  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    scores[i] = i % width == 0 ? 0.0f : dead;
    tokens[i] = roots[i / width];
  }
};

// out[f] = log_probs[f] + scores[f / V]: the [B*W, V] log-probs are the [B, W*V] candidates.
struct add_beam_scores {
  const float* log_probs;
  const float* scores;
  float* out;
  index_t vocab;
  REDRAFT_HOST_DEVICE void operator()(index_t f) const {
    out[f] = log_probs[f] + scores[f / vocab];
  }
};

// The request's top W candidates from each beam's top W: candidate (b, j, i), the i-th best of beam
// j, goes to slot r of request b when exactly r of the request's W*W listed candidates beat it
// (r < W), in row_top_k's order over the request's whole row of W*V candidates: the greater value
// (order key: -0 and +0 tie), then the lower flat index j*V + token. Counting every listed
// candidate, not only the other beams' (whose lists are sorted), keeps the ranks a permutation even
// for lists a backend returned in another order (NaN), so every slot is written once.
struct merge_beam_tops {
  matrix_view<const float> beam_values;         // [B*W, W]
  matrix_view<const std::int32_t> beam_tokens;  // [B*W, W]
  matrix_view<float> top_values;                // [B, W]
  matrix_view<std::int32_t> top_indices;        // [B, W]
  index_t vocab;
  REDRAFT_HOST_DEVICE void operator()(index_t f) const {
    const index_t width = top_values.extent(1), per_request = width * width;
    const index_t b = f / per_request, j = (f % per_request) / width, i = f % width;
    const std::uint32_t key = row_ops::order_key(beam_values(b * width + j, i));
    const index_t flat = j * vocab + beam_tokens(b * width + j, i);
    index_t rank = 0;
    for (index_t jj = 0; jj < width; ++jj)
      for (index_t ii = 0; ii < width; ++ii) {
        const std::uint32_t other = row_ops::order_key(beam_values(b * width + jj, ii));
        const index_t other_flat = jj * vocab + beam_tokens(b * width + jj, ii);
        rank += other > key || (other == key && other_flat < flat);
      }
    if (rank < width) {
      top_values(b, rank) = beam_values(b * width + j, i);
      top_indices(b, rank) = static_cast<std::int32_t>(flat);
    }
  }
};

// For kept candidate (b, j): split its flat index into source beam and token.
struct select_beams {
  matrix_view<const float> top_values;          // [B, W]
  matrix_view<const std::int32_t> top_indices;  // [B, W]
  float* scores;                                // [B, W]
  std::int32_t* tokens;                         // [B*W]
  std::int32_t* source_rows;                    // [B*W]
  std::int32_t* step_tokens;                    // [B, W] history of this step
  std::int32_t* step_sources;                   // [B, W]
  index_t width, vocab;
  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const index_t b = i / width, j = i % width;
    const index_t flat = top_indices(b, j);
    const auto source = static_cast<std::int32_t>(flat / vocab);
    const auto token = static_cast<std::int32_t>(flat % vocab);
    scores[i] = top_values(b, j);
    tokens[i] = token;
    source_rows[i] = static_cast<std::int32_t>(b * width + source);
    step_tokens[i] = token;
    step_sources[i] = source;
  }
};

// Walks beam (b, j) back through the steps: its tokens and, per step, the beam whose log-probs
// row produced it.
struct assemble_beams {
  const std::int32_t* history;  // [2, L-1, B, W]
  const std::int32_t* roots;    // [B]
  std::int32_t* beams;          // [B, W, L]
  std::int32_t* ancestors;      // [B, W, L-1]
  index_t batch, width, length;
  REDRAFT_HOST_DEVICE void operator()(index_t i) const {
    const index_t b = i / width;
    const index_t steps = length - 1, plane = steps * batch * width;
    index_t a = i % width;
    for (index_t k = steps; k >= 1; --k) {
      const index_t at = ((k - 1) * batch + b) * width + a;
      const std::int32_t source = history[plane + at];
      beams[i * length + k] = history[at];
      ancestors[i * steps + (k - 1)] = source;
      a = source;
    }
    beams[i * length] = roots[b];
  }
};

// out[b, j, k, v] = step_log_probs[k, b*W + ancestors[b, j, k], v]
struct gather_log_probs {
  const float* step_log_probs;    // [L-1, B*W, V]
  const std::int32_t* ancestors;  // [B, W, L-1]
  float* out;                     // [B, W, L-1, V]
  index_t width, steps, vocab, rows;
  REDRAFT_HOST_DEVICE void operator()(index_t f) const {
    const index_t v = f % vocab, bjk = f / vocab;
    const index_t k = bjk % steps, bj = bjk / steps, b = bj / width;
    const index_t row = b * width + ancestors[bjk];
    out[f] = step_log_probs[(k * rows + row) * vocab + v];
  }
};

// Phase 1: every input checked (nothing is written before it completes); see beam_search.
template <Backend B>
void check_beam_search_inputs(const draft_head<B>& head, matrix_view<const float> hidden,
                              vector_view<const std::int32_t> root_tokens,
                              matrix_view<const float> embedding, index_t width, index_t length) {
  const draft_config& config = head.config();
  const index_t batch = hidden.extent(0), h = config.hidden_size, v = config.vocab_size;
  REDRAFT_REQUIRE(width >= 1, "beam_search: beam_width ", width, " must be at least 1");
  REDRAFT_REQUIRE(width <= config.logit_top_k, "beam_search: beam_width ", width,
                  " exceeds the draft head's logit_top_k ", config.logit_top_k,
                  "; beams past the top-k would extend masked tokens (log-prob near ",
                  config.logit_mask_value, ")");
  REDRAFT_REQUIRE(width <= v, "beam_search: beam_width ", width, " exceeds vocab_size ", v);
  REDRAFT_REQUIRE(length >= 2, "beam_search: beam_length ", length,
                  " must be at least 2 (the root token plus one drafted token)");
  REDRAFT_REQUIRE(width * v <= index_t{2147483647},
                  "beam_search: beam_width * vocab_size = ", width * v,
                  " does not fit the int32 candidate indices");
  REDRAFT_REQUIRE(hidden.extent(1) == h, "beam_search: hidden has ", hidden.extent(1),
                  " columns but the draft head's hidden_size is ", h);
  REDRAFT_REQUIRE(root_tokens.extent(0) == batch, "beam_search: root_tokens has ",
                  root_tokens.extent(0), " entries but hidden has ", batch, " rows (batch)");
  REDRAFT_REQUIRE(embedding.extent(0) == v, "beam_search: embedding has ", embedding.extent(0),
                  " rows but the draft head's vocab_size is ", v);
  REDRAFT_REQUIRE(embedding.extent(1) == h, "beam_search: embedding has ", embedding.extent(1),
                  " columns but the draft head's hidden_size is ", h);
  std::vector<std::int32_t> roots(static_cast<std::size_t>(batch));  // [B]
  head.backend().copy_to_host(root_tokens.data(), batch, roots.data());
  for (index_t b = 0; b < batch; ++b) {
    REDRAFT_REQUIRE(
        roots[static_cast<std::size_t>(b)] >= 0 && roots[static_cast<std::size_t>(b)] < v,
        "beam_search: root_tokens[", b, "] = ", roots[static_cast<std::size_t>(b)],
        " is outside [0, ", v, ") (vocab_size)");
  }
}

// A buffer of at least n elements: kept when it already is that large (its contents are scratch).
template <Backend B, class Buffer>
void ensure_capacity(const B& backend, Buffer& buffer, index_t n) {
  using T = std::remove_cvref_t<decltype(*buffer.data())>;
  if (static_cast<index_t>(buffer.size()) < n) buffer = backend.template allocate<T>(n);
}

// Phase 2: the workspace set up for rows = B*W beams of `steps` steps. Buffers only grow: a
// decoder whose speculation policy changes W, L or the batch from step to step would otherwise
// reallocate all of them at every change.
template <Backend B>
void prepare_beam_workspace(const B& backend, beam_search_workspace<B>& ws, index_t rows,
                            index_t width, index_t steps, index_t v, index_t h, bool history) {
  ensure_capacity(backend, ws.state, rows * h);
  ensure_capacity(backend, ws.gathered_state, rows * h);
  ensure_capacity(backend, ws.embedded, rows * h);
  ensure_capacity(backend, ws.step_log_probs, (history ? steps : 1) * rows * v);
  ensure_capacity(backend, ws.candidates, history ? rows * v : 0);
  ensure_capacity(backend, ws.scores, rows);
  ensure_capacity(backend, ws.beam_top_values, rows * width);
  ensure_capacity(backend, ws.beam_top_tokens, rows * width);
  ensure_capacity(backend, ws.top_values, rows);
  ensure_capacity(backend, ws.top_indices, rows);
  ensure_capacity(backend, ws.tokens, rows);
  ensure_capacity(backend, ws.source_rows, rows);
  ensure_capacity(backend, ws.history, 2 * steps * rows);
  ensure_capacity(backend, ws.ancestors, rows * steps);
  ws.rows = rows;
  ws.steps = steps;
  ws.vocab = v;
  ws.hidden = h;
  ws.with_history = history;
}

// Phase 3, step k of 1 .. steps: advance every beam's state by its last token, score the W*V
// extensions of each request, keep the top W (tokens and source beams into ws.history), and
// (before the last step) move each kept beam's state to its row.
template <Backend B>
void beam_search_step(const draft_head<B>& head, matrix_view<const float> hidden,
                      matrix_view<const float> embedding, beam_search_workspace<B>& ws,
                      index_t batch, index_t width, index_t k) {
  const B& backend = head.backend();
  const index_t rows = ws.rows, steps = ws.steps, v = ws.vocab, h = ws.hidden;
  const bool history = ws.with_history;
  matrix_view<float> state(ws.state.data(), rows, h);        // [B*W, H]
  matrix_view<float> embedded(ws.embedded.data(), rows, h);  // [B*W, H]
  backend.gather_rows(embedding, vector_view<const std::int32_t>(ws.tokens.data(), rows), embedded);
  head.advance_state(embedded, state, state, ws.head);
  float* step = ws.step_log_probs.data() + (history ? (k - 1) * rows * v : 0);
  matrix_view<float> log_probs(step, rows, v);  // [B*W, V]
  head.log_probs(hidden, state, log_probs, ws.head);
  // NOTE: without history the candidates overwrite the log-probs in place; with it the
  // log-probs must survive for the output, so the candidates get their own buffer.
  float* candidates = history ? ws.candidates.data() : step;  // [B, W*V]
  backend.for_each_index(rows * v, add_beam_scores{step, ws.scores.data(), candidates, v});
  // The top W of each request's W*V candidates: each beam's top W over its V, then the merge.
  const matrix_view<float> beam_values(ws.beam_top_values.data(), rows, width);         // [B*W, W]
  const matrix_view<std::int32_t> beam_tokens(ws.beam_top_tokens.data(), rows, width);  // [B*W, W]
  backend.row_top_k(matrix_view<const float>(candidates, rows, v), static_cast<int>(width),
                    beam_values, beam_tokens);
  backend.for_each_index(
      rows * width,
      merge_beam_tops{beam_values, beam_tokens,
                      matrix_view<float>(ws.top_values.data(), batch, width),
                      matrix_view<std::int32_t>(ws.top_indices.data(), batch, width), v});
  std::int32_t* step_tokens = ws.history.data() + (k - 1) * rows;           // [B*W]
  std::int32_t* step_sources = ws.history.data() + (steps + k - 1) * rows;  // [B*W]
  const matrix_view<const float> top_values(ws.top_values.data(), batch, width);
  const matrix_view<const std::int32_t> top_indices(ws.top_indices.data(), batch, width);
  backend.for_each_index(rows,
                         select_beams{top_values, top_indices, ws.scores.data(), ws.tokens.data(),
                                      ws.source_rows.data(), step_tokens, step_sources, width, v});
  if (k < steps) {
    // Each kept beam continues from its source beam's state.
    backend.gather_rows(state, vector_view<const std::int32_t>(ws.source_rows.data(), rows),
                        matrix_view<float>(ws.gathered_state.data(), rows, h));
    std::swap(ws.state, ws.gathered_state);
  }
}

// Phase 4: beams (walking each kept beam's sources back to the root, into ws.ancestors), scores
// and, with history, each beam's log-probs at every step.
template <Backend B>
void assemble_beam_outputs(const B& backend, beam_search_workspace<B>& ws,
                           vector_view<const std::int32_t> root_tokens,
                           beam_search_result<B>& result) {
  const index_t rows = ws.rows, steps = ws.steps, v = ws.vocab;
  backend.for_each_index(rows, assemble_beams{ws.history.data(), root_tokens.data(),
                                              result.beams.data(), ws.ancestors.data(),
                                              result.batch, result.beam_width, result.beam_length});
  backend.copy(ws.scores.data(), rows, result.scores.data());
  if (ws.with_history) {
    backend.for_each_index(
        rows * steps * v,
        gather_log_probs{ws.step_log_probs.data(), ws.ancestors.data(), result.log_probs.data(),
                         result.beam_width, steps, v, rows});
  }
}

}  // namespace detail

// Beam search of the draft head for a batch of requests.
//   head         the draft head (config V, H, E, N, recurrence, logit_top_k)
//   hidden       [B, H] the target's hidden state (after its final norm) at each request's last
//                accepted token
//   root_tokens  [B] int32 in [0, V): the token the target chose last step
//   embedding    [V, H] the target's input embedding table
//   beam_width W in [1, min(logit_top_k, V)], beam_length L >= 2 (including the root)
// Returns beams [B, W, L] best first, scores [B, W] descending, and log_probs [B, W, L-1, V] when
// options.want_log_probs. Ties between candidates go to the lower flat index (beam * V + token),
// so the result is deterministic on a deterministic backend.
// Complexity: L-1 steps, each O(B W (H^2 + 2H E + N E^2 + E V)) in matmuls plus O(B W V) for the
// warp, log_softmax and the top-W selection. Reads root_tokens back to the host to validate them.
template <Backend B>
beam_search_result<B> beam_search(const draft_head<B>& head, matrix_view<const float> hidden,
                                  vector_view<const std::int32_t> root_tokens,
                                  matrix_view<const float> embedding, index_t beam_width,
                                  index_t beam_length, beam_search_options options = {},
                                  beam_search_workspace<B>* workspace = nullptr) {
  const B& backend = head.backend();
  const index_t batch = hidden.extent(0), width = beam_width, length = beam_length;
  const index_t h = head.config().hidden_size, v = head.config().vocab_size;
  detail::check_beam_search_inputs(head, hidden, root_tokens, embedding, width, length);

  beam_search_result<B> result;
  result.batch = batch;
  result.beam_width = width;
  result.beam_length = length;
  result.vocab_size = v;
  result.beams = backend.template allocate<std::int32_t>(batch * width * length);
  result.scores = backend.template allocate<float>(batch * width);
  result.log_probs = backend.template allocate<float>(
      options.want_log_probs ? batch * width * (length - 1) * v : 0);
  if (batch == 0) return result;

  const index_t rows = batch * width, steps = length - 1;
  beam_search_workspace<B> local;
  beam_search_workspace<B>& ws = workspace != nullptr ? *workspace : local;
  detail::prepare_beam_workspace(backend, ws, rows, width, steps, v, h, options.want_log_probs);
  head.reserve(ws.head, rows);

  backend.fill(ws.state.data(), rows * h, 0.0f);  // s_0 = 0
  backend.for_each_index(
      rows, detail::init_beams{ws.scores.data(), ws.tokens.data(), root_tokens.data(), width,
                               head.config().logit_mask_value});
  for (index_t k = 1; k <= steps; ++k)
    detail::beam_search_step(head, hidden, embedding, ws, batch, width, k);
  detail::assemble_beam_outputs(backend, ws, root_tokens, result);
  return result;
}

}  // namespace redraft
