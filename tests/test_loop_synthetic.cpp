// The speculative decoding loop against the synthetic target: exactness of greedy decoding with
// drafters at both ends of acceptance, stop conditions in mid-step, statistics, bad input.
#include <catch2/catch.hpp>

#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/testing/drafters.hpp"
#include "redraft/testing/synthetic_target.hpp"

using namespace redraft;
using redraft::testing::synthetic_target;
using redraft::testing::synthetic_target_config;

namespace {

// Plain greedy decoding of the synthetic target, straight from its definition.
std::vector<std::int32_t> greedy_reference(const synthetic_target& model, std::vector<std::int32_t> seq,
                                           std::int32_t max_new, std::int32_t eos) {
  std::vector<std::int32_t> out;
  while (static_cast<std::int32_t>(out.size()) < max_new) {
    const auto p = model.next_distribution(seq);
    const auto best = static_cast<std::int32_t>(std::max_element(p.begin(), p.end()) - p.begin());
    out.push_back(best);
    seq.push_back(best);
    if (best == eos) break;
  }
  return out;
}

std::vector<generation_request> make_requests(std::int32_t batch, std::int32_t vocab, std::uint64_t seed,
                                              std::int32_t max_new) {
  std::vector<generation_request> requests;
  for (std::int32_t r = 0; r < batch; ++r) {
    const philox_stream s{seed, static_cast<std::uint32_t>(r), 99};
    generation_request q;
    const std::int32_t len = 1 + static_cast<std::int32_t>(s.bits(0) % 9);
    for (std::int32_t i = 0; i < len; ++i) q.prompt.push_back(static_cast<std::int32_t>(s.bits(1 + i) % vocab));
    q.max_new_tokens = max_new + r % 3;  // requests stop at different steps
    requests.push_back(q);
  }
  return requests;
}

}  // namespace

TEST_CASE("speculative greedy equals plain greedy on the synthetic target", "[loop]") {
  const std::int32_t batch = GENERATE(1, 3, 8);
  const std::int32_t width = GENERATE(1, 4, 16);
  const std::int32_t length = GENERATE(2, 5, 8);
  const bool oracle = GENERATE(false, true);
  CAPTURE(batch, width, length, oracle);
  synthetic_target_config config;
  config.vocab_size = 24;
  config.num_slots = 8;
  synthetic_target model(config), shadow(config);
  auto requests = make_requests(batch, config.vocab_size, 7, 20);
  // A token that greedy decoding of request 0 emits mid-way serves as its EOS.
  const auto plain0 = greedy_reference(model, requests[0].prompt, 20, -1);
  requests[0].eos_token = plain0[9];

  decode_options options;
  options.beam_width = width;
  options.beam_length = length;
  generation_result result;
  if (oracle) {
    redraft::testing::oracle_drafter<synthetic_target> drafter(shadow, config.num_slots, 3);
    for (std::int32_t r = 0; r < batch; ++r) drafter.set_context(r, requests[static_cast<std::size_t>(r)].prompt);
    speculative_decoder<cpu_backend, synthetic_target, decltype(drafter)> decoder(cpu_backend{}, model, drafter);
    result = decoder.generate(requests, options, [&](std::int32_t r, std::int32_t tok) { drafter.observe(r, tok); });
  } else {
    redraft::testing::random_drafter drafter(config.vocab_size, 5);
    speculative_decoder<cpu_backend, synthetic_target, decltype(drafter)> decoder(cpu_backend{}, model, drafter);
    result = decoder.generate(requests, options);
  }
  for (std::int32_t r = 0; r < batch; ++r) {
    CAPTURE(r);
    const auto& q = requests[static_cast<std::size_t>(r)];
    CHECK(result.tokens[static_cast<std::size_t>(r)] == greedy_reference(model, q.prompt, q.max_new_tokens, q.eos_token));
    const auto& st = result.requests[static_cast<std::size_t>(r)];
    CHECK(st.emitted == static_cast<std::int64_t>(result.tokens[static_cast<std::size_t>(r)].size()));
    CHECK(st.accepted <= st.drafted);
    if (oracle && length > 2 && st.steps > 1) CHECK(st.tokens_per_step() > 1.5);
  }
  CHECK(result.requests[0].stop_reason == "eos");
  CHECK(result.tokens[0].size() == 10);
}
