// redraft/train/distill_data.hpp: distillation data from the target model itself.
//
// For every training prompt the target writes its own continuations (one greedy and/or several
// sampled ones) through the TargetModel contract with plain_decoder. Then each whole sequence
// (prompt + continuation) goes through the model once more as a *chain tree*: a prefill of its
// first token, and one verify() of the remaining T - 1 tokens as a tree whose parent array is a
// path (node j's parent is node j - 1, mask = lower triangle). That single pass returns the
// target's post-final-norm hidden state and logits at EVERY position, which the draft head needs
// (h_t at each position t) and the KL loss uses (the target's distribution of token t + 1).
// Nothing is committed after the chain pass; the next prefill of the slot starts afresh.
//
// Why the target's own continuations: the drafter must predict what the target will say, not
// what a corpus says. Greedy continuations teach exactly the tokens greedy decoding verifies;
// sampled ones (temperature 1) are draws from p_target, so cross-entropy on them is a Monte Carlo
// estimate of cross-entropy against p_target, i.e. of KL(p_target || q) up to p's entropy
// (docs/distill.md).
//
// Prompts: lines of a text file (bytes -> tokens, for byte-level vocabularies V >= 256) or the
// built-in default_prompts(). Host code; the model may live on any backend (outputs are copied to
// the host).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/plain_decoder.hpp"
#include "redraft/loop/target_model.hpp"
#include "redraft/loop/verify_pass.hpp"
#include "redraft/tree/chain_tree.hpp"

namespace redraft {

// One training sequence: a prompt and the target's continuation of it.
struct distill_sequence {
  std::vector<std::int32_t> tokens;  // [T] prompt + continuation
  std::int32_t prompt_length = 0;    // tokens [0, prompt_length) are the prompt
  bool sampled = false;              // continuation sampled (true) or greedy (false)
  std::vector<float> hidden;     // [T, H] target's post-final-norm hidden state at each position
  std::vector<float> log_probs;  // [T, V] log_softmax of the target's logits at each position
                                 // (the distribution of token t + 1), or empty
  std::int32_t length() const { return static_cast<std::int32_t>(tokens.size()); }
};

struct distill_dataset {
  std::int32_t vocab_size = 0;   // V
  std::int32_t hidden_size = 0;  // H
  std::vector<float> embedding;  // [V, H] copy of the target's input embedding table
  std::vector<distill_sequence> sequences;

  bool has_distributions() const {
    return !sequences.empty() && !sequences.front().log_probs.empty();
  }
  matrix_view<const float> embedding_view() const {
    return {embedding.data(), vocab_size, hidden_size};
  }
  // Continuation tokens in all sequences (what the target generated).
  std::int64_t generated_tokens() const {
    std::int64_t n = 0;
    for (const auto& s : sequences) n += s.length() - s.prompt_length;
    return n;
  }
  // A 64-bit FNV-1a hash of the shapes and every token: identifies the data a run trained on.
  std::uint64_t fingerprint() const {
    std::uint64_t h = 1469598103934665603ull;
    const auto mix = [&](std::uint64_t v) {
      for (int i = 0; i < 8; ++i) {
        h ^= (v >> (8 * i)) & 0xffu;
        h *= 1099511628211ull;
      }
    };
    mix(static_cast<std::uint64_t>(vocab_size));
    mix(static_cast<std::uint64_t>(hidden_size));
    for (const auto& s : sequences) {
      mix(static_cast<std::uint64_t>(s.prompt_length));
      mix(s.tokens.size());
      for (const std::int32_t t : s.tokens) mix(static_cast<std::uint32_t>(t));
    }
    return h;
  }
};

struct distill_data_options {
  std::int32_t continuation_tokens = 128;  // tokens the target writes after each prompt
  bool greedy = true;                      // one greedy continuation per prompt
  std::int32_t samples_per_prompt = 0;     // sampled continuations per prompt
  sampling_params sampling;                // how samples are drawn (temperature 1: p_target itself)
  std::uint64_t seed = 0;                  // Philox seed of the samples
  bool keep_distributions = false;         // store log p_target at every position (KL loss)
  std::int32_t slots = 1;                  // KV slots 0 .. slots-1 of the model used at once
};

// Progress: (sequences done, sequences in all).
using distill_data_progress = std::function<void(std::int64_t, std::int64_t)>;

namespace detail {

// One training sequence to produce: a prompt and whether its continuation is sampled.
struct distill_job {
  std::size_t prompt;
  bool sampled;
};

// Refuses bad prompts and options before the model runs (see generate_distill_data).
template <TargetModel M>
void check_distill_inputs(const M& model, const std::vector<std::vector<std::int32_t>>& prompts,
                          const distill_data_options& options) {
  constexpr const char* fn = "generate_distill_data";
  const std::int32_t vocab = model.vocab_size();
  REDRAFT_REQUIRE(!prompts.empty(), fn,
                  ": the prompt set is empty (give at least one training prompt)");
  REDRAFT_REQUIRE(options.slots >= 1, fn, ": slots ", options.slots, " must be at least 1");
  REDRAFT_REQUIRE(options.continuation_tokens >= 1, fn, ": continuation_tokens ",
                  options.continuation_tokens, " must be at least 1");
  REDRAFT_REQUIRE(options.greedy || options.samples_per_prompt >= 1, fn,
                  ": neither greedy nor sampled continuations were requested");
  REDRAFT_REQUIRE(options.samples_per_prompt >= 0, fn, ": samples_per_prompt ",
                  options.samples_per_prompt, " is negative");
  for (std::size_t p = 0; p < prompts.size(); ++p) {
    REDRAFT_REQUIRE(!prompts[p].empty(), fn, ": prompt ", p, " is empty");
    REDRAFT_REQUIRE(static_cast<std::int64_t>(prompts[p].size()) + options.continuation_tokens <=
                        model.max_context(),
                    fn, ": prompt ", p, " has ", prompts[p].size(), " tokens; with ",
                    options.continuation_tokens,
                    " continuation tokens it exceeds the target's max_context ",
                    model.max_context());
    for (const std::int32_t t : prompts[p])
      REDRAFT_REQUIRE(t >= 0 && t < vocab, fn, ": prompt ", p, " holds token ", t, " outside [0, ",
                      vocab, ")");
  }
}

// The jobs in output order: for each prompt, its greedy continuation (if asked), then its samples.
inline std::vector<distill_job> distill_jobs(std::size_t prompts,
                                             const distill_data_options& options) {
  std::vector<distill_job> jobs;
  for (std::size_t p = 0; p < prompts; ++p) {
    if (options.greedy) jobs.push_back({p, false});
    for (std::int32_t s = 0; s < options.samples_per_prompt; ++s) jobs.push_back({p, true});
  }
  return jobs;
}

// Phase 1 of a chunk (jobs [begin, end), slot j - begin each): the target's continuations,
// greedy and sampled requests each in their own plain decoding run, written to data.sequences.
template <TargetModel M>
void distill_continuations(M& model, const std::vector<std::vector<std::int32_t>>& prompts,
                           const distill_data_options& options,
                           const std::vector<distill_job>& jobs, std::size_t begin, std::size_t end,
                           std::size_t chunk, distill_dataset& data) {
  for (const bool sampled : {false, true}) {
    std::vector<generation_request> requests;
    std::vector<std::size_t> which;
    for (std::size_t j = begin; j < end; ++j) {
      if (jobs[j].sampled != sampled) continue;
      generation_request q;
      q.prompt = prompts[jobs[j].prompt];
      q.max_new_tokens = options.continuation_tokens;
      q.slot = static_cast<std::int32_t>(j - begin);
      requests.push_back(std::move(q));
      which.push_back(j);
    }
    if (requests.empty()) continue;
    decode_options d;
    d.rule = sampled ? verifier::lossless : verifier::greedy;
    d.sampling = options.sampling;
    const philox_stream key{options.seed, static_cast<std::uint32_t>(chunk), 0x5eedu};
    d.seed = (static_cast<std::uint64_t>(key.bits(0)) << 32) | key.bits(1);
    const generation_result r = plain_decode(model, requests, d);
    for (std::size_t i = 0; i < which.size(); ++i) {
      distill_sequence& s = data.sequences[which[i]];
      s.tokens = requests[i].prompt;
      s.prompt_length = static_cast<std::int32_t>(requests[i].prompt.size());
      s.sampled = sampled;
      s.tokens.insert(s.tokens.end(), r.tokens[i].begin(), r.tokens[i].end());
    }
  }
}

// The rows of one target pass, copied to the host.
struct distill_rows {
  std::vector<float> hidden;  // [rows, H]
  std::vector<float> logits;  // [rows, V], or empty when not kept
};

// The first `rows` rows of a target pass's output; logits only when `logits`.
template <TargetModel M>
distill_rows copy_distill_rows(M& model, const model_output& out, index_t rows, bool logits) {
  const index_t hidden_size = model.hidden_size(), vocab = model.vocab_size();
  distill_rows host;
  host.hidden.resize(static_cast<std::size_t>(rows * hidden_size));
  model.backend().copy_to_host(out.hidden.data(), rows * hidden_size, host.hidden.data());
  if (logits) {
    host.logits.resize(static_cast<std::size_t>(rows * vocab));
    model.backend().copy_to_host(out.logits.data(), rows * vocab, host.logits.data());
  }
  return host;
}

// Phase 2a: a prefill of each sequence's first token (slot j - begin). Rows [count, .].
template <TargetModel M>
distill_rows distill_first_rows(M& model, const distill_dataset& data, std::size_t begin,
                                std::size_t end) {
  const index_t count = static_cast<index_t>(end - begin);
  std::vector<std::int32_t> slots, offsets{0}, tokens;  // [count], [count + 1], [count]
  for (std::size_t j = begin; j < end; ++j) {
    slots.push_back(static_cast<std::int32_t>(j - begin));
    tokens.push_back(data.sequences[j].tokens[0]);
    offsets.push_back(static_cast<std::int32_t>(tokens.size()));
  }
  const model_output first = model.prefill(
      prefill_input{{slots.data(), count}, {offsets.data(), count + 1}, {tokens.data(), count}});
  return copy_distill_rows(model, first, count, true);
}

// Phase 2b: tokens 1 .. T-1 of each sequence as one chain tree (positions 1 .. T-1, parent i - 1,
// mask the lower triangle), all in one verify; nothing is committed. Rows [sum (T - 1), .], the
// chain of sequence j at rows chain_offsets[j - begin].
template <TargetModel M>
distill_rows distill_chain_rows(M& model, const distill_dataset& data, std::size_t begin,
                                std::size_t end, bool logits,
                                std::vector<std::int32_t>& chain_offsets) {
  const index_t count = static_cast<index_t>(end - begin);
  std::vector<std::int32_t> slots, tokens, base;  // [count], [n_total], [count]
  chain_offsets.assign(1, 0);
  for (std::size_t j = begin; j < end; ++j) {
    const distill_sequence& s = data.sequences[j];
    slots.push_back(static_cast<std::int32_t>(j - begin));
    tokens.insert(tokens.end(), s.tokens.begin() + 1, s.tokens.end());
    chain_offsets.push_back(static_cast<std::int32_t>(tokens.size()));
    base.push_back(1);
  }
  const auto& backend = model.backend();
  const verify_pass<typename M::backend_type> pass = make_verify_pass(
      backend, build_chain_tree(backend, tokens, chain_offsets), base, tree_mask_format::both);
  const model_output rest = model.verify(pass.input({slots.data(), count}));
  return copy_distill_rows(model, rest, static_cast<index_t>(tokens.size()), logits);
}

// log_softmax of a row [V] in place, in double, stored as float (p_target of the KL loss).
inline void log_softmax_in_place(float* row, std::size_t vocab) {
  double max = row[0], sum = 0.0;
  for (std::size_t v = 1; v < vocab; ++v) max = std::max(max, static_cast<double>(row[v]));
  for (std::size_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - max);
  const double lse = max + std::log(sum);
  for (std::size_t v = 0; v < vocab; ++v)
    row[v] = static_cast<float>(static_cast<double>(row[v]) - lse);
}

// Phase 3: per-position rows of each sequence, position 0 from the prefill, 1 .. T-1 from the
// chain.
inline void distill_store_rows(const distill_rows& first, const distill_rows& chain,
                               const std::vector<std::int32_t>& chain_offsets,
                               bool keep_distributions, std::size_t begin, std::size_t end,
                               distill_dataset& data) {
  const std::size_t hs = static_cast<std::size_t>(data.hidden_size),
                    vs = static_cast<std::size_t>(data.vocab_size);
  for (std::size_t j = begin; j < end; ++j) {
    distill_sequence& s = data.sequences[j];
    const std::size_t r = j - begin, len = s.tokens.size();
    const std::size_t first_node = static_cast<std::size_t>(chain_offsets[r]);
    s.hidden.resize(len * hs);
    std::copy_n(first.hidden.data() + r * hs, hs, s.hidden.data());
    std::copy_n(chain.hidden.data() + first_node * hs, (len - 1) * hs, s.hidden.data() + hs);
    if (!keep_distributions) continue;
    s.log_probs.resize(len * vs);
    std::copy_n(first.logits.data() + r * vs, vs, s.log_probs.data());
    std::copy_n(chain.logits.data() + first_node * vs, (len - 1) * vs, s.log_probs.data() + vs);
    for (std::size_t p = 0; p < len; ++p) log_softmax_in_place(s.log_probs.data() + p * vs, vs);
  }
}

}  // namespace detail

// The target's continuations of `prompts` with hidden states (and optionally log-probabilities)
// at every position; see the file comment.
//   model    a TargetModel with KV slots 0 .. options.slots - 1 (e.g. tiny_llama(.., slots))
//   prompts  token lists, each non-empty, prompt + continuation_tokens <= model.max_context()
// Output order: for each prompt in order, its greedy continuation (if options.greedy), then its
// samples. Sample j of prompt p is drawn from Philox stream (seed', request index, step) where
// seed' depends on (options.seed, chunk); deterministic for fixed options and slots.
// Throws redraft::error (before running the model) for an empty prompt set, an empty prompt, a
// token outside [0, V), a sequence longer than max_context, no continuation requested, or
// slots < 1. Cost: one plain decoding run plus one prefill + one chain verify per sequence.
// All work runs on model.backend() (TargetModel clause 6).
template <TargetModel M>
distill_dataset generate_distill_data(M& model,
                                      const std::vector<std::vector<std::int32_t>>& prompts,
                                      const distill_data_options& options,
                                      const distill_data_progress& progress = {}) {
  detail::check_distill_inputs(model, prompts, options);
  distill_dataset data;
  data.vocab_size = model.vocab_size();
  data.hidden_size = model.hidden_size();
  const matrix_view<const float> emb = model.embedding();  // [V, H]
  data.embedding.resize(static_cast<std::size_t>(emb.size()));
  model.backend().copy_to_host(emb.data(), emb.size(), data.embedding.data());

  const std::vector<detail::distill_job> jobs = detail::distill_jobs(prompts.size(), options);
  data.sequences.resize(jobs.size());
  const std::size_t slots = static_cast<std::size_t>(options.slots);
  std::vector<std::int32_t> chain_offsets;  // [chunk + 1]
  for (std::size_t begin = 0, chunk = 0; begin < jobs.size(); begin += slots, ++chunk) {
    const std::size_t end = std::min(jobs.size(), begin + slots);
    detail::distill_continuations(model, prompts, options, jobs, begin, end, chunk, data);
    const detail::distill_rows first = detail::distill_first_rows(model, data, begin, end);
    const detail::distill_rows chain = detail::distill_chain_rows(
        model, data, begin, end, options.keep_distributions, chain_offsets);
    detail::distill_store_rows(first, chain, chain_offsets, options.keep_distributions, begin, end,
                               data);
    if (progress) progress(static_cast<std::int64_t>(end), static_cast<std::int64_t>(jobs.size()));
  }
  return data;
}

// ---- Prompt sources (byte-level vocabularies) ----

// Every non-empty line of `text` as a prompt of byte tokens (a trailing '\r' is dropped).
// Throws redraft::error when vocab_size < 256 (bytes need ids 0..255).
inline std::vector<std::vector<std::int32_t>> prompts_from_text(const std::string& text,
                                                                std::int32_t vocab_size) {
  REDRAFT_REQUIRE(vocab_size >= 256,
                  "prompts_from_text: byte prompts need a vocabulary of at least 256 tokens, the "
                  "target has ",
                  vocab_size);
  std::vector<std::vector<std::int32_t>> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<std::int32_t> tokens;
    for (const char ch : line) tokens.push_back(static_cast<unsigned char>(ch));
    out.push_back(std::move(tokens));
  }
  return out;
}

// The prompts of a text file, one per non-empty line. Throws redraft::error when the file cannot
// be read or holds no prompt.
inline std::vector<std::vector<std::int32_t>> load_prompt_file(const std::filesystem::path& path,
                                                               std::int32_t vocab_size) {
  std::ifstream in(path, std::ios::binary);
  REDRAFT_REQUIRE(in.good(), "load_prompt_file: cannot open ", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  auto prompts = prompts_from_text(text.str(), vocab_size);
  REDRAFT_REQUIRE(!prompts.empty(), "load_prompt_file: ", path.string(),
                  " holds no prompt (no non-empty line)");
  return prompts;
}

// Built-in training prompts: short English openings of varied kinds. They deliberately do not
// include redraft-demo's four prompts, so the demo measures the head on unseen prompts.
inline std::vector<std::vector<std::int32_t>> default_prompts(std::int32_t vocab_size) {
  static const char* const text =
      "Once upon a time, in a village by the sea, \n"
      "The results of the experiment were \n"
      "def fibonacci(n):\n"
      "It was a bright cold day in April, and \n"
      "The main advantage of this approach is \n"
      "Dear Sir or Madam, I am writing to \n"
      "In 1969 the first humans landed on \n"
      "The recipe calls for two cups of flour, \n"
      "for (int i = 0; i < n; ++i) {\n"
      "Breaking news: the city council voted \n"
      "A neural network is a function that \n"
      "She opened the door and saw \n"
      "The weather tomorrow will be \n"
      "Chapter 1. The road to the mountains \n"
      "Q: What is the capital of France? A: \n"
      "The theorem follows from the lemma because \n"
      "Ladies and gentlemen, thank you for \n"
      "He walked along the river until \n"
      "Install the package with the command \n"
      "Our company was founded in \n"
      "The old man looked at the sky and said, \n"
      "Step 3: mix the eggs with \n"
      "If you want to learn a language, \n"
      "The stock market fell sharply on \n"
      "Water boils at one hundred degrees \n"
      "My favourite book is \n"
      "The train leaves the station at \n"
      "In conclusion, we have shown that \n"
      "Hello, world! This program prints \n"
      "All happy families are alike; \n"
      "The committee will meet again on \n"
      "Light travels faster than sound, so \n";
  return prompts_from_text(text, vocab_size);
}

}  // namespace redraft
