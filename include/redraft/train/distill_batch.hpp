// redraft/train/distill_batch.hpp: training positions of a distill_dataset, batch assembly
// (teacher forcing), and evaluation of a head over a whole dataset.
//
// A training position is a (sequence, t) whose step-0 label x_{t+2} exists and was written by the
// target (t + 2 < T and t + 2 >= prompt_length). For step i of position t:
//   input  = x_{t+1+i}                       (0 when past the end; its label is then ignored)
//   label  = x_{t+2+i}  when t+2+i < T and t+2+i >= prompt_length, else ignore_index
//   p      = the target's distribution at position t+1+i (the distribution of x_{t+2+i}), kl only
// Host code.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/train/distill_data.hpp"
#include "redraft/train/distill_loss.hpp"
#include "redraft/train/head_gradient.hpp"
#include "redraft/train/head_parameters.hpp"

namespace redraft {

struct distill_position {
  std::int32_t sequence = 0;  // index into data.sequences
  std::int32_t t = 0;         // the position whose hidden state h_t the head sees
};

// Every training position of `data`, sequence by sequence, t ascending. O(total tokens).
inline std::vector<distill_position> distill_positions(const distill_dataset& data) {
  std::vector<distill_position> out;
  for (std::size_t s = 0; s < data.sequences.size(); ++s) {
    const distill_sequence& q = data.sequences[s];
    for (std::int32_t t = std::max(0, q.prompt_length - 2); t + 2 < q.length(); ++t)
      out.push_back({static_cast<std::int32_t>(s), t});
  }
  return out;
}

// Fills `batch` with positions[which[r]] for r < which.size() (see the file comment).
// Throws redraft::error for an index outside positions or kl on data without distributions.
// O(rows (H + next_n) (+ rows next_n V for kl)).
inline void assemble_distill_batch(const distill_dataset& data,
                                   const std::vector<distill_position>& positions,
                                   const std::vector<std::int64_t>& which, std::int32_t next_n,
                                   const distill_loss_options& loss, distill_batch& batch) {
  const index_t n = next_n, h = data.hidden_size, v = data.vocab_size;
  const bool kl = loss.kind == distill_loss_kind::kl;
  REDRAFT_REQUIRE(!kl || data.has_distributions(),
                  "assemble_distill_batch: the kl loss needs the target's "
                  "distributions (generate the data with keep_distributions)");
  for (const std::int64_t w : which)
    REDRAFT_REQUIRE(w >= 0 && w < static_cast<std::int64_t>(positions.size()),
                    "assemble_distill_batch: position ", w, " is outside [0, ", positions.size(),
                    ")");
  batch.rows = static_cast<index_t>(which.size());
  batch.next_n = n;
  batch.hidden.resize(static_cast<std::size_t>(batch.rows * h));
  batch.inputs.assign(static_cast<std::size_t>(batch.rows * n), 0);
  batch.labels.assign(static_cast<std::size_t>(batch.rows * n), loss.ignore_index);
  batch.target_log_probs.assign(kl ? static_cast<std::size_t>(batch.rows * n * v) : 0, 0.0f);
  for (index_t r = 0; r < batch.rows; ++r) {
    const distill_position& p =
        positions[static_cast<std::size_t>(which[static_cast<std::size_t>(r)])];
    const distill_sequence& s = data.sequences[static_cast<std::size_t>(p.sequence)];
    std::copy_n(s.hidden.data() + static_cast<std::size_t>(p.t) * static_cast<std::size_t>(h), h,
                batch.hidden.data() + r * h);
    for (index_t i = 0; i < n; ++i) {
      const index_t in = p.t + 1 + i, label = p.t + 2 + i;
      if (in < s.length())
        batch.inputs[static_cast<std::size_t>(r * n + i)] = s.tokens[static_cast<std::size_t>(in)];
      if (label >= s.length() || label < s.prompt_length) continue;
      batch.labels[static_cast<std::size_t>(r * n + i)] = s.tokens[static_cast<std::size_t>(label)];
      if (kl)
        std::copy_n(s.log_probs.data() + in * v, v,
                    batch.target_log_probs.data() + (r * n + i) * v);
    }
  }
}

// The loss and top-1 accuracy per future step of `params` over every training position of
// `data`, in batches of `batch_rows` positions; no gradient. kl falls back to cross-entropy on
// data without distributions. Deterministic. Cost: one training forward per position.
inline distill_loss_stats evaluate_draft_head(const head_parameters<float>& params,
                                              const distill_dataset& data, std::int32_t next_n,
                                              distill_loss_options loss,
                                              std::int32_t batch_rows = 256) {
  REDRAFT_REQUIRE(data.vocab_size == params.config().vocab_size &&
                      data.hidden_size == params.config().hidden_size,
                  "evaluate_draft_head: the data's V ", data.vocab_size, " / H ", data.hidden_size,
                  " differ from the head's ", params.config().vocab_size, " / ",
                  params.config().hidden_size);
  REDRAFT_REQUIRE(batch_rows >= 1, "evaluate_draft_head: batch_rows ", batch_rows,
                  " must be at least 1");
  if (loss.kind == distill_loss_kind::kl && !data.has_distributions())
    loss.kind = distill_loss_kind::cross_entropy;
  const std::vector<distill_position> positions = distill_positions(data);
  distill_loss_stats total;
  head_workspace<float> ws;
  distill_batch batch;
  std::vector<std::int64_t> which;
  for (std::int64_t begin = 0; begin < static_cast<std::int64_t>(positions.size());
       begin += batch_rows) {
    which.clear();
    for (std::int64_t i = begin;
         i <
         std::min<std::int64_t>(static_cast<std::int64_t>(positions.size()), begin + batch_rows);
         ++i)
      which.push_back(i);
    assemble_distill_batch(data, positions, which, next_n, loss, batch);
    total.merge(draft_head_loss(params, data.embedding_view(), batch, loss,
                                static_cast<head_parameters<float>*>(nullptr), ws));
  }
  total.loss = 0.0;
  for (std::size_t i = 0; i < total.step_loss.size(); ++i)
    total.loss += (loss.step_weight.empty() ? 1.0 : loss.step_weight[i]) * total.step_loss[i];
  return total;
}

}  // namespace redraft
