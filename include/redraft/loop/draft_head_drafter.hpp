// redraft/loop/draft_head_drafter.hpp: the ReDrafter draft head as a Drafter (loop/drafter.hpp):
// the default drafter of the speculative decoder.
//
// Each draft() runs one batched beam search (draft/beam_search.hpp) over the requests of the
// step: hidden [R, H] and root tokens [R] in, beams [R, W, L] (and, for verify_redrafter, the
// head's log-probs [R, W, L-1, V]) out. The beam-search workspace is kept across steps, so a
// steady-state step allocates only its outputs.
#pragma once

#include <cstdint>
#include <utility>

#include "redraft/core/backend.hpp"
#include "redraft/core/view.hpp"
#include "redraft/draft/beam_search.hpp"
#include "redraft/draft/draft_head.hpp"
#include "redraft/loop/drafter.hpp"

namespace redraft {

template <Backend B>
class draft_head_drafter {
 public:
  // head: the trained draft head; embedding [V, H]: the target's input embedding table (in B's
  // memory, e.g. model.embedding()). Both must outlive the drafter.
  draft_head_drafter(const draft_head<B>& head, matrix_view<const float> embedding)
      : head_(head), embedding_(embedding) {}

  draft_output<B> draft(const draft_input& in) {
    const B& backend = head_.backend();
    const index_t rows = in.roots.extent(0);
    auto roots = backend.template allocate<std::int32_t>(rows);  // [R]
    backend.copy_from_host(in.roots.data(), rows, roots.data());
    beam_search_result<B> r = beam_search(
        head_, in.hidden, vector_view<const std::int32_t>(roots.data(), rows), embedding_,
        in.beam_width, in.beam_length, beam_search_options{in.want_log_probs}, &workspace_);
    return draft_output<B>{std::move(r.beams), std::move(r.log_probs), {}};
  }

  const draft_head<B>& head() const { return head_; }

 private:
  const draft_head<B>& head_;
  matrix_view<const float> embedding_;  // [V, H]
  beam_search_workspace<B> workspace_;
};

}  // namespace redraft
