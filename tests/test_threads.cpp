// Thread safety (docs/reliability.md): the CPU backend, the pure entry points and the decoders
// are usable from several threads at once on separate requests, i.e. separate model instances,
// drafters and decoders per thread, shared read-only inputs allowed. Every thread's result must
// equal the single-threaded one. Run under ThreadSanitizer with the `tsan` preset:
//   cmake --preset tsan && cmake --build --preset tsan && ctest --preset tsan
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "redraft/draft/draft_init.hpp"
#include "redraft/loop/draft_head_drafter.hpp"
#include "redraft/loop/plain_decoder.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/masks.hpp"
#include "redraft/verify/greedy.hpp"
#include "redraft/verify/lossless.hpp"

using namespace redraft;
using redraft::testing::tiny_llama;

namespace {

constexpr int num_threads = 4;

redraft::testing::tiny_llama_config small_model() {
  redraft::testing::tiny_llama_config c;
  c.vocab_size = 64;
  c.hidden_size = 16;
  c.num_layers = 1;
  c.num_heads = 2;
  c.head_dim = 8;
  c.intermediate_size = 32;
  c.max_context = 64;
  return c;
}

// One complete, independent speculative decode: its own target, head, drafter and decoder.
generation_result decode_alone(std::uint64_t seed, verifier rule) {
  const auto config = small_model();
  tiny_llama target = tiny_llama::random(config, 11, 2);
  draft_config d;
  d.vocab_size = config.vocab_size;
  d.hidden_size = config.hidden_size;
  d.exit_dim = 2 * config.hidden_size;
  d.num_draft_layers = 1;
  draft_head<cpu_backend> head(cpu_backend{}, d);
  init_draft_head(head, 3);
  draft_head_drafter<cpu_backend> drafter(head, target.embedding());
  speculative_decoder<cpu_backend, tiny_llama, decltype(drafter)> decoder(cpu_backend{}, target,
                                                                          drafter);
  decode_options options;
  options.beam_width = 3;
  options.beam_length = 4;
  options.rule = rule;
  options.seed = seed;
  return decoder.generate(
      {generation_request{{1, 2, 3}, 12, -1, 0},
       generation_request{{static_cast<std::int32_t>(seed % 60 + 1), 4}, 9, -1, 1}},
      options);
}

}  // namespace

TEST_CASE("speculative decoders on separate models run concurrently and match the serial run",
          "[threads]") {
  const verifier rule = GENERATE(verifier::greedy, verifier::lossless);
  CAPTURE(static_cast<int>(rule));
  std::vector<generation_result> serial;
  for (int t = 0; t < num_threads; ++t) serial.push_back(decode_alone(100 + t, rule));

  std::vector<generation_result> parallel(num_threads);
  std::vector<std::thread> threads;
  for (int t = 0; t < num_threads; ++t) {
    threads.emplace_back([&parallel, t, rule] { parallel[t] = decode_alone(100 + t, rule); });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < num_threads; ++t) {
    CAPTURE(t);
    CHECK(parallel[t].tokens == serial[t].tokens);
  }
}

TEST_CASE("plain decoders on separate models run concurrently", "[threads]") {
  const auto config = small_model();
  const auto run = [&config](std::int32_t first) {
    tiny_llama model = tiny_llama::random(config, 5, 1);
    plain_decoder<cpu_backend, tiny_llama> decoder(cpu_backend{}, model);
    return decoder.generate({generation_request{{first, 7, 9}, 10, -1, 0}}).tokens;
  };
  std::vector<std::vector<std::vector<std::int32_t>>> serial, parallel(num_threads);
  for (int t = 0; t < num_threads; ++t) serial.push_back(run(t + 1));
  std::vector<std::thread> threads;
  for (int t = 0; t < num_threads; ++t) threads.emplace_back([&, t] { parallel[t] = run(t + 1); });
  for (auto& th : threads) th.join();
  CHECK(parallel == serial);
}

TEST_CASE("pure entry points share read-only inputs across threads", "[threads]") {
  const cpu_backend backend;
  // One tree and one logits matrix, read by every thread; each thread owns its outputs.
  const std::vector<std::int32_t> beams = {5, 1, 2, 5, 1, 3, 5, 4, 2};  // [1, 3, 3]
  const auto t = build_tree(backend, view<const std::int32_t, 3>(beams.data(), 1, 3, 3));
  std::vector<float> logits(static_cast<std::size_t>(t.total_nodes()) * 8);
  for (std::size_t i = 0; i < logits.size(); ++i)
    logits[i] = static_cast<float>((i * 37) % 11) / 3.0f;
  const matrix_view<const float> lv(logits.data(), t.total_nodes(), 8);
  const std::vector<std::int32_t> base = {17};

  const auto work = [&](std::uint64_t seed) {
    const auto again = build_tree(backend, view<const std::int32_t, 3>(beams.data(), 1, 3, 3));
    const auto dense = build_dense_tree_mask(backend, t);
    const auto packed = build_packed_tree_mask(backend, t);
    const auto positions = build_positions(backend, t, view<const std::int32_t, 1>(base.data(), 1));
    const auto g = to_host(backend, verify_greedy(backend, t, lv));
    const auto l = to_host(backend, verify_lossless(backend, t, lv, sampling_params{0.8f, 0, 1.0f},
                                                    philox_uniforms{seed, 0}));
    std::vector<std::int32_t> out = {again.total_nodes(),
                                     static_cast<std::int32_t>(dense.bits.size()),
                                     static_cast<std::int32_t>(packed.words[1]),
                                     positions[2],
                                     g.next_token[0],
                                     g.accepted_len[0],
                                     l.next_token[0],
                                     l.accepted_len[0]};
    return out;
  };
  std::vector<std::vector<std::int32_t>> serial, parallel(num_threads);
  for (int i = 0; i < num_threads; ++i) serial.push_back(work(i));
  std::vector<std::thread> threads;
  for (int i = 0; i < num_threads; ++i) threads.emplace_back([&, i] { parallel[i] = work(i); });
  for (auto& th : threads) th.join();
  CHECK(parallel == serial);
}
