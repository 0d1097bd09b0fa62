// End-to-end exactness on the reference tiny Llama: speculative greedy decoding equals plain
// greedy decoding token for token, across batch sizes, beam shapes, prompt lengths, a random draft
// head (low acceptance) and an oracle drafter that copies the target (high acceptance), with
// requests stopping at EOS and max_new_tokens in mid-step; and the committed KV cache equals
// plain decoding's.
#include <catch2/catch.hpp>

#include "redraft/draft/draft_init.hpp"
#include "redraft/loop/draft_head_drafter.hpp"
#include "redraft/loop/hybrid_drafter.hpp"
#include "redraft/loop/lookup_drafter.hpp"
#include "redraft/loop/plain_decoder.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/loop/suffix_drafter.hpp"
#include "redraft/testing/drafters.hpp"
#include "redraft/testing/tiny_llama.hpp"

using namespace redraft;
using redraft::testing::tiny_llama;

namespace {}  // namespace
namespace {

redraft::testing::tiny_llama_config small_config() {
  redraft::testing::tiny_llama_config c;
  c.vocab_size = 96;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 64;
  c.max_context = 160;
  c.tie_word_embeddings =
      false;  // untied: a random model's greedy text does not settle into repeats
  return c;
}

std::vector<generation_request> mixed_requests(std::int32_t batch, std::int32_t vocab,
                                               std::int32_t max_new) {
  std::vector<generation_request> out;
  for (std::int32_t r = 0; r < batch; ++r) {
    const philox_stream s{77, static_cast<std::uint32_t>(r), 0};
    generation_request q;
    const std::int32_t len = 1 + static_cast<std::int32_t>(s.bits(0) % 23);  // 1 .. 23 tokens
    for (std::int32_t i = 0; i < len; ++i)
      q.prompt.push_back(static_cast<std::int32_t>(s.bits(1 + i) % vocab));
    q.max_new_tokens = max_new - (r % 4) * 3;  // stops at different points of a step
    out.push_back(q);
  }
  return out;
}

draft_config head_config(const redraft::testing::tiny_llama_config& c) {
  draft_config d;
  d.vocab_size = c.vocab_size;
  d.hidden_size = c.hidden_size;
  d.exit_dim = 2 * c.hidden_size;
  d.num_draft_layers = 1;
  return d;
}

}  // namespace

TEST_CASE("speculative greedy equals plain greedy on the tiny Llama", "[loop][e2e]") {
  const std::int32_t batch = GENERATE(1, 3, 8);
  const std::int32_t width = GENERATE(1, 4, 16);
  const std::int32_t length = GENERATE(2, 5, 8);
  const bool oracle = GENERATE(false, true);
  CAPTURE(batch, width, length, oracle);
  const auto config = small_config();
  tiny_llama target = tiny_llama::random(config, 5, batch);
  tiny_llama baseline = tiny_llama::random(config, 5, batch);

  auto requests = mixed_requests(batch, config.vocab_size, 24);
  plain_decoder<cpu_backend, tiny_llama> plain(cpu_backend{}, baseline);
  // Give request 0 an EOS token that plain greedy decoding first emits at index >= 5.
  std::size_t eos_index = 5;
  {
    const auto probe = plain.generate({requests[0]}).tokens[0];
    while (std::find(probe.begin(), probe.begin() + static_cast<std::ptrdiff_t>(eos_index),
                     probe[eos_index]) != probe.begin() + static_cast<std::ptrdiff_t>(eos_index))
      ++eos_index;
    REQUIRE(eos_index + 1 < probe.size());
    requests[0].eos_token = probe[eos_index];
  }
  const generation_result expected = plain.generate(requests);

  decode_options options;
  options.beam_width = width;
  options.beam_length = length;
  generation_result got;
  if (oracle) {
    tiny_llama shadow = tiny_llama::random(config, 5, 1);
    redraft::testing::oracle_drafter<tiny_llama> drafter(shadow, batch, 9);
    for (std::int32_t r = 0; r < batch; ++r)
      drafter.set_context(r, requests[static_cast<std::size_t>(r)].prompt);
    speculative_decoder<cpu_backend, tiny_llama, decltype(drafter)> decoder(cpu_backend{}, target,
                                                                            drafter);
    got = decoder.generate(requests, options,
                           [&](std::int32_t r, std::int32_t t) { drafter.observe(r, t); });
  } else {
    draft_head<cpu_backend> head(cpu_backend{}, head_config(config));
    init_draft_head(head, 3);
    draft_head_drafter<cpu_backend> drafter(head, target.embedding());
    speculative_decoder<cpu_backend, tiny_llama, decltype(drafter)> decoder(cpu_backend{}, target,
                                                                            drafter);
    got = decoder.generate(requests, options);
  }
  for (std::int32_t r = 0; r < batch; ++r) {
    CAPTURE(r);
    CHECK(got.tokens[static_cast<std::size_t>(r)] == expected.tokens[static_cast<std::size_t>(r)]);
    CHECK(got.requests[static_cast<std::size_t>(r)].stop_reason ==
          expected.requests[static_cast<std::size_t>(r)].stop_reason);
    if (oracle && length > 2) CHECK(got.requests[static_cast<std::size_t>(r)].accepted > 0);
  }
  CHECK(got.requests[0].stop_reason == "eos");
  CHECK(got.tokens[0].size() == eos_index + 1);

  // The committed KV entries agree with plain decoding's over the prefix both committed.
  for (std::int32_t r = 0; r < batch; ++r) {
    CAPTURE(r);
    const std::int32_t common = std::min(target.committed_length(r), baseline.committed_length(r));
    const auto a = target.kv_cache(r),
               b = baseline.kv_cache(r);  // [layers, 2, heads, max_context, head_dim]
    double worst = 0;
    for (index_t l = 0; l < a.extent(0); ++l)
      for (index_t kv = 0; kv < 2; ++kv)
        for (index_t h = 0; h < a.extent(2); ++h)
          for (index_t p = 0; p < common; ++p)
            for (index_t d = 0; d < a.extent(4); ++d)
              worst = std::max(
                  worst, static_cast<double>(std::abs(a(l, kv, h, p, d) - b(l, kv, h, p, d))));
    CHECK(worst < 1e-4);
  }
}

TEST_CASE("speculative decoder rejects bad requests before touching the model", "[loop][errors]") {
  const auto config = small_config();
  tiny_llama target = tiny_llama::random(config, 5, 2);
  draft_head<cpu_backend> head(cpu_backend{}, head_config(config));
  init_draft_head(head, 3);
  draft_head_drafter<cpu_backend> drafter(head, target.embedding());
  speculative_decoder<cpu_backend, tiny_llama, decltype(drafter)> decoder(cpu_backend{}, target,
                                                                          drafter);
  // Slot 1 holds a running sequence that a failed call must not disturb.
  plain_decoder<cpu_backend, tiny_llama> plain(cpu_backend{}, target);
  plain.generate({generation_request{{1, 2, 3}, 4, -1, 1}});
  const std::int32_t before = target.committed_length(1);

  decode_options options;
  CHECK_THROWS_WITH(decoder.generate({generation_request{{}, 4, -1, 0}}, options),
                    Catch::Contains("request 0 has an empty prompt"));
  std::vector<std::int32_t> long_prompt(static_cast<std::size_t>(config.max_context), 1);
  CHECK_THROWS_WITH(decoder.generate({generation_request{long_prompt, 4, -1, 0}}, options),
                    Catch::Contains("max_context is 160"));
  CHECK_THROWS_WITH(decoder.generate({generation_request{{1, 200}, 4, -1, 0}}, options),
                    Catch::Contains("prompt[1] = 200 is outside the vocabulary"));
  CHECK_THROWS_WITH(
      decoder.generate({generation_request{{1}, 4, -1, 0}, generation_request{{2}, 4, -1, 0}},
                       options),
      Catch::Contains("slot 0 which another request"));
  options.beam_length = 1;
  CHECK_THROWS_WITH(decoder.generate({generation_request{{1}, 4, -1, 0}}, options),
                    Catch::Contains("beam_length 1 must be at least 2"));
  CHECK(target.committed_length(1) == before);
}

namespace {

// A TargetModel wrapper that returns one row too few from verify: the decoder must notice.
struct short_rows_model {
  using backend_type = cpu_backend;
  tiny_llama& inner;
  std::int32_t vocab_size() const { return inner.vocab_size(); }
  std::int32_t hidden_size() const { return inner.hidden_size(); }
  std::int32_t max_context() const { return inner.max_context(); }
  matrix_view<const float> embedding() const { return inner.embedding(); }
  cpu_backend& backend() { return inner.backend(); }
  model_output prefill(const prefill_input& in) { return inner.prefill(in); }
  model_output verify(const verify_input& in) {
    model_output out = inner.verify(in);
    out.logits =
        matrix_view<const float>(out.logits.data(), out.logits.extent(0) - 1, out.logits.extent(1));
    return out;
  }
  void commit(const kv_plan& plan) { inner.commit(plan); }
};

}  // namespace

TEST_CASE("speculative decoder reports a target model returning the wrong number of rows",
          "[loop][errors]") {
  const auto config = small_config();
  tiny_llama target = tiny_llama::random(config, 5, 1);
  short_rows_model broken{target};
  redraft::testing::random_drafter drafter(config.vocab_size, 1);
  speculative_decoder<cpu_backend, short_rows_model, redraft::testing::random_drafter> decoder(
      cpu_backend{}, broken, drafter);
  CHECK_THROWS_WITH(decoder.generate({generation_request{{1, 2}, 8, -1, 0}}, decode_options{}),
                    Catch::Contains("verify returned logits ["));
}

namespace {

// Wraps a drafter and checks that the hidden state it is handed for each request equals the
// target's hidden state at the request's last committed token, recomputed from scratch by a
// shadow model's prefill of that sequence.
struct hidden_checking_drafter {
  redraft::testing::random_drafter inner;
  tiny_llama& shadow;
  std::vector<std::vector<std::int32_t>> context;  // per slot: prompt + emitted tokens
  double worst = 0;
  std::int64_t checked = 0;

  draft_output<cpu_backend> draft(const draft_input& in) {
    for (index_t r = 0; r < in.roots.extent(0); ++r) {
      const auto& seq = context[static_cast<std::size_t>(in.slots[r])];
      const std::int32_t slot = 0, offsets[2] = {0, static_cast<std::int32_t>(seq.size()) - 1};
      // The committed sequence is everything but the root (the last emitted token).
      const model_output o =
          shadow.prefill(prefill_input{{&slot, 1}, {offsets, 2}, {seq.data(), offsets[1]}});
      for (index_t j = 0; j < in.hidden.extent(1); ++j)
        worst = std::max(worst, static_cast<double>(std::abs(in.hidden(r, j) - o.hidden(0, j))));
      ++checked;
    }
    return inner.draft(in);
  }
};

}  // namespace

TEST_CASE("the drafter receives the target's hidden state at the last accepted token",
          "[loop][e2e]") {
  const std::int32_t width = GENERATE(1, 4);
  const std::int32_t length = GENERATE(2, 5);
  const bool oracle_like =
      GENERATE(false, true);  // greedy: low acceptance; always-accept: long paths
  CAPTURE(width, length, oracle_like);
  auto config = small_config();
  tiny_llama target = tiny_llama::random(config, 5, 3), shadow = tiny_llama::random(config, 5, 1);
  auto requests = mixed_requests(3, config.vocab_size, 16);
  hidden_checking_drafter drafter{
      redraft::testing::random_drafter(config.vocab_size, 4), shadow, {}};
  for (const auto& q : requests) drafter.context.push_back(q.prompt);
  decode_options options;
  options.beam_width = width;
  options.beam_length = length;
  // Typical acceptance with zero thresholds accepts every drafted token: paths of full length.
  if (oracle_like) {
    options.rule = verifier::typical;
    options.typical.epsilon = 0.0f;
    options.typical.delta = 0.0f;
  }
  speculative_decoder<cpu_backend, tiny_llama, hidden_checking_drafter> decoder(cpu_backend{},
                                                                                target, drafter);
  const auto result = decoder.generate(requests, options, [&](std::int32_t r, std::int32_t t) {
    drafter.context[static_cast<std::size_t>(r)].push_back(t);
  });
  CHECK(drafter.checked >= 6);
  CHECK(drafter.worst < 1e-4);
  if (oracle_like && length > 2) CHECK(result.requests[0].accepted > 0);
}

// The same exactness with the model-free drafters and the hybrid (beams shorter than L, missing
// candidates, merged sources, a node cap), on prompts that repeat themselves so lookups hit.
TEST_CASE("speculative greedy equals plain greedy with lookup, suffix and hybrid drafters",
          "[loop][e2e][lookup]") {
  const std::int32_t batch = GENERATE(1, 4);
  const std::int32_t width = GENERATE(2, 5);
  const std::int32_t length = GENERATE(2, 4, 7);
  const int kind = GENERATE(
      0, 1, 2, 3);  // lookup, suffix, hybrid head + lookup, hybrid oracle + suffix (capped)
  CAPTURE(batch, width, length, kind);
  const auto config = small_config();
  tiny_llama target = tiny_llama::random(config, 5, batch);
  tiny_llama baseline = tiny_llama::random(config, 5, batch);
  auto requests = mixed_requests(batch, config.vocab_size, 24);
  for (auto& q : requests) {  // prompt, prompt, prompt
    const auto once = q.prompt;
    for (int i = 0; i < 2; ++i) q.prompt.insert(q.prompt.end(), once.begin(), once.end());
  }
  plain_decoder<cpu_backend, tiny_llama> plain(cpu_backend{}, baseline);
  const generation_result expected = plain.generate(requests);

  decode_options options;
  options.beam_width = width;
  options.beam_length = length;
  // kind 2: the model source drafts at most 3 tokens (root included), the lookup runs to L.
  const hybrid_options split{width - width / 2,
                             width / 2,
                             kind == 3 ? 1 + width * (length - 1) / 2 : 0,
                             kind == 3,
                             kind == 2 ? std::min(length, 3) : 0,
                             0};
  generation_result got;
  if (kind == 0) {
    lookup_drafter<cpu_backend> drafter(cpu_backend{});
    speculative_decoder<cpu_backend, tiny_llama, decltype(drafter)> decoder(cpu_backend{}, target,
                                                                            drafter);
    got = decoder.generate(requests, options);
  } else if (kind == 1) {
    suffix_drafter<cpu_backend> drafter(cpu_backend{}, suffix_options{12, 0.0f});
    speculative_decoder<cpu_backend, tiny_llama, decltype(drafter)> decoder(cpu_backend{}, target,
                                                                            drafter);
    got = decoder.generate(requests, options);
  } else if (kind == 2) {
    draft_head<cpu_backend> head(cpu_backend{}, head_config(config));
    init_draft_head(head, 3);
    draft_head_drafter<cpu_backend> model(head, target.embedding());
    lookup_drafter<cpu_backend> lookup(cpu_backend{});
    hybrid_drafter<cpu_backend, decltype(model), decltype(lookup)> drafter(cpu_backend{}, model,
                                                                           lookup, split);
    speculative_decoder<cpu_backend, tiny_llama, decltype(drafter)> decoder(cpu_backend{}, target,
                                                                            drafter);
    got = decoder.generate(requests, options);
  } else {
    tiny_llama shadow = tiny_llama::random(config, 5, 1);
    redraft::testing::oracle_drafter<tiny_llama> oracle(shadow, batch, 9);
    for (std::int32_t r = 0; r < batch; ++r)
      oracle.set_context(r, requests[static_cast<std::size_t>(r)].prompt);
    suffix_drafter<cpu_backend> suffix(cpu_backend{}, suffix_options{12, 0.0f});
    hybrid_drafter<cpu_backend, decltype(oracle), decltype(suffix)> drafter(cpu_backend{}, oracle,
                                                                            suffix, split);
    speculative_decoder<cpu_backend, tiny_llama, decltype(drafter)> decoder(cpu_backend{}, target,
                                                                            drafter);
    got = decoder.generate(requests, options,
                           [&](std::int32_t r, std::int32_t t) { oracle.observe(r, t); });
    for (const auto& st : got.steps) CHECK(st.nodes <= st.requests * split.max_nodes);
  }
  std::int64_t accepted = 0;
  for (std::int32_t r = 0; r < batch; ++r) {
    CAPTURE(r);
    CHECK(got.tokens[static_cast<std::size_t>(r)] == expected.tokens[static_cast<std::size_t>(r)]);
    CHECK(got.requests[static_cast<std::size_t>(r)].stop_reason ==
          expected.requests[static_cast<std::size_t>(r)].stop_reason);
    accepted += got.requests[static_cast<std::size_t>(r)].accepted;
  }
  if (kind == 3 && length > 2) CHECK(accepted > 0);  // the oracle's beams are accepted
}
