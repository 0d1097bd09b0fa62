// custom-target: plugging your own model and drafter into redraft's speculative decoder.
//
// The "engine" here is a bigram model (the next token depends only on the current one), small
// enough to read in one sitting, yet it follows the TargetModel contract exactly as a real engine
// would: it owns its KV cache (here: the committed tokens of each slot), scores every packed tree
// node in one verify() call using the tree's parent array, and keeps only what commit() names.
// The drafter is a user-written bigram guesser that proposes the same table's top choices.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "redraft/redraft.hpp"

namespace {

using namespace redraft;

constexpr std::int32_t vocab = 8, hidden = 4;

// logits[a][b]: how much token b follows token a (a cyclic pattern with some noise).
float bigram_logit(std::int32_t a, std::int32_t b) {
  return b == (a + 1) % vocab
             ? 4.0f
             : (b == (a + 3) % vocab ? 2.5f : 0.1f * static_cast<float>((a * 5 + b * 3) % 7));
}

class bigram_engine {
 public:
  using backend_type = cpu_backend;  // 1. every view we return lives in host memory

  explicit bigram_engine(std::int32_t slots)
      : committed_(static_cast<std::size_t>(slots)), pending_(static_cast<std::size_t>(slots)) {
    for (std::int32_t v = 0; v < vocab; ++v)
      for (std::int32_t j = 0; j < hidden; ++j)
        embedding_.push_back(static_cast<float>((v + j) % 3));
  }

  // 2. sizes and the input embedding table [V, H] (the draft head reads it)
  std::int32_t vocab_size() const { return vocab; }
  std::int32_t hidden_size() const { return hidden; }
  std::int32_t max_context() const { return 1024; }
  matrix_view<const float> embedding() const { return {embedding_.data(), vocab, hidden}; }

  // 6. the backend our work runs on: algorithms that take only the model use this handle
  cpu_backend& backend() { return backend_; }

  // 3. start slots from their prompts; return the rows of each prompt's last token
  model_output prefill(const prefill_input& in) {
    const index_t r_count = in.slots.extent(0);
    resize(r_count);
    for (index_t r = 0; r < r_count; ++r) {
      auto& seq = committed_.at(static_cast<std::size_t>(in.slots[r]));
      seq.assign(in.tokens.data() + in.token_offsets[r],
                 in.tokens.data() + in.token_offsets[r + 1]);
      write_row(r, seq.back());
    }
    return output(r_count);
  }

  // 4. score every packed node of every request in one call. A bigram model only needs the
  //    node's own token; a transformer would attend to the slot's cache plus the node's
  //    ancestors (in.dense_mask / in.packed_mask) at positions in.positions.
  model_output verify(const verify_input& in) {
    const index_t total = in.host_node_offsets[in.slots.extent(0)];
    resize(total);
    for (index_t r = 0; r < in.slots.extent(0); ++r) {  // the tree's entries stay pending per slot
      pending_.at(static_cast<std::size_t>(in.slots[r]))
          .assign(in.tree.token + in.host_node_offsets[r],
                  in.tree.token + in.host_node_offsets[r + 1]);
    }
    for (index_t i = 0; i < total; ++i) write_row(i, in.tree.token[i]);
    return output(total);
  }

  // 5. keep the accepted path's entries (plan.source_node, request-local) after the prefix
  void commit(const kv_plan& plan) {
    for (std::int32_t r = 0; r < plan.num_requests(); ++r) {
      const auto slot = static_cast<std::size_t>(plan.slot[static_cast<std::size_t>(r)]);
      for (std::int32_t e = plan.offsets[static_cast<std::size_t>(r)];
           e < plan.offsets[static_cast<std::size_t>(r) + 1]; ++e)
        committed_.at(slot).push_back(pending_.at(slot).at(
            static_cast<std::size_t>(plan.source_node[static_cast<std::size_t>(e)])));
    }
  }

 private:
  void resize(index_t rows) {
    logits_.resize(static_cast<std::size_t>(rows * vocab));
    hidden_.resize(static_cast<std::size_t>(rows * hidden));
  }
  void write_row(index_t row, std::int32_t token) {
    for (std::int32_t b = 0; b < vocab; ++b)
      logits_[static_cast<std::size_t>(row * vocab + b)] = bigram_logit(token, b);
    for (std::int32_t j = 0; j < hidden; ++j)
      hidden_[static_cast<std::size_t>(row * hidden + j)] =
          embedding_[static_cast<std::size_t>(token * hidden + j)];
  }
  model_output output(index_t rows) const {
    return {{logits_.data(), rows, vocab}, {hidden_.data(), rows, hidden}};
  }

  cpu_backend backend_;
  std::vector<float> embedding_;                      // [V, H]
  std::vector<std::vector<std::int32_t>> committed_;  // per slot: the "KV cache"
  std::vector<std::vector<std::int32_t>> pending_;    // per slot: the last verified tree's tokens
  std::vector<float> logits_, hidden_;                // [rows, V], [rows, H]
};
static_assert(TargetModel<bigram_engine>);

// A drafter that proposes W beams: beam w follows the table's (w+1)-th best first token, then
// greedy choices.
struct bigram_drafter {
  draft_output<cpu_backend> draft(const draft_input& in) {
    const index_t r_count = in.roots.extent(0);
    const std::int32_t w_count = in.beam_width, l_count = in.beam_length;
    draft_output<cpu_backend> out{host_buffer<std::int32_t>(r_count * w_count * l_count), {}, {}};
    for (index_t r = 0; r < r_count; ++r)
      for (std::int32_t w = 0; w < w_count; ++w) {
        std::int32_t* beam = out.beams.data() + (r * w_count + w) * l_count;
        beam[0] = in.roots[r];
        for (std::int32_t l = 1; l < l_count; ++l)
          beam[l] = rank(beam[l - 1], l == 1 ? w % vocab : 0);
      }
    return out;
  }
  static std::int32_t rank(std::int32_t a, std::int32_t k) {  // the k-th most likely successor of a
    std::vector<std::int32_t> order(vocab);
    for (std::int32_t b = 0; b < vocab; ++b) order[static_cast<std::size_t>(b)] = b;
    std::stable_sort(order.begin(), order.end(), [a](std::int32_t x, std::int32_t y) {
      return bigram_logit(a, x) > bigram_logit(a, y);
    });
    return order[static_cast<std::size_t>(k)];
  }
};
static_assert(Drafter<bigram_drafter, cpu_backend>);

}  // namespace

int main() {
  bigram_engine engine(2);
  bigram_drafter drafter;
  speculative_decoder<cpu_backend, bigram_engine, bigram_drafter> decoder(cpu_backend{}, engine,
                                                                          drafter);
  decode_options options;
  options.beam_width = 3;
  options.beam_length = 4;
  const std::vector<generation_request> requests = {{{0, 1}, 12, -1, 0}, {{5}, 12, -1, 1}};
  const generation_result result = decoder.generate(requests, options);
  for (std::size_t r = 0; r < requests.size(); ++r) {
    std::printf("request %zu:", r);
    for (std::int32_t t : result.tokens[r]) std::printf(" %d", t);
    std::printf("   (%d steps, %.2f tokens per step)\n", result.requests[r].steps,
                result.requests[r].tokens_per_step());
  }
  // The same requests with plain greedy decoding give the same tokens.
  bigram_engine engine2(2);
  const generation_result plain =
      plain_decoder<cpu_backend, bigram_engine>(cpu_backend{}, engine2).generate(requests);
  std::printf("identical to plain greedy decoding: %s\n",
              plain.tokens == result.tokens ? "yes" : "no");
  return plain.tokens == result.tokens ? 0 : 1;
}
