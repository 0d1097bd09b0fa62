// redraft-demo: speculative decoding end to end, against plain decoding of the same model.
//
// With no arguments it runs the shipped KJV pair when present (data/models/kjv-target, a
// byte-level Llama trained on the King James Bible, and its distilled draft head
// data/draft_heads/kjv; docs/results.md), else the reference tiny Llama target (deterministic
// random weights, a byte-level vocabulary) and its draft head; decodes a few prompts with plain
// decoding and with speculative decoding in the same run, and prints the text, tokens per step,
// acceptance by depth, where the time goes, the draft shapes used, and the measured speedup. By
// default the adaptive speculation policy picks each step's shape (W, L) or a plain step from
// measured costs and acceptance; --width / --length fix the shape instead. Flags pick the policy,
// beam shape, batch, sampling, verifier, and checkpoints for the target and the draft head
// (--help).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/draft_init.hpp"
#include "redraft/loop/adaptive_policy.hpp"
#include "redraft/loop/draft_head_drafter.hpp"
#include "redraft/loop/hybrid_drafter.hpp"
#include "redraft/loop/lookup_drafter.hpp"
#include "redraft/loop/plain_decoder.hpp"
#include "redraft/loop/policy_trace.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/loop/suffix_drafter.hpp"
#include "redraft/testing/demo_models.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/testing/tiny_llama_io.hpp"

namespace {

using namespace redraft;
using redraft::testing::tiny_llama;

struct demo_flags {
  std::int32_t width = 4, length = 5, batch = 1, max_tokens = 64, repeat = 1;
  float temperature = 0.0f;  // 0: greedy
  std::uint64_t seed = 1;
  std::string verifier_name;  // default: greedy at T = 0, lossless otherwise
  std::string target_dir, draft_dir;
  std::vector<std::string>
      prompts;  // --prompt; default: built-in prompts (KJV ones for the KJV pair)
  // --prompts-file: the prompts come from a file, and each repeat takes the next batch of them
  bool rotate_prompts = false;
  std::string prompts_file;
  bool quiet = false, untrained = false, builtin = false, kjv = false;
  std::string drafter = "head";  // head | lookup | suffix | hybrid | hybrid-suffix
  std::int32_t lookup_beams = 2, max_nodes = 0, ngram = 3, head_length = 0;
  bool lookup_first = false;
  float min_acceptance = 0.0f;
  bool adaptive = true;           // --policy; --width / --length select fixed
  bool plain_steps = false;       // --policy plain
  adaptive_policy_config policy;  // --widths, --lengths: the adaptive policy's candidates
  std::string policy_trace;       // --policy-trace: CSV of the adaptive policy's every step
};

void usage() {
  std::printf(
      "usage: redraft-demo [options]\n"
      "  --policy NAME      adaptive (default): each step's shape (W, L), or a plain step, is the\n"
      "                     one with the most expected tokens per second from measured costs and\n"
      "                     acceptance; fixed: every step uses --width x --length; plain: every\n"
      "                     step plain (measures the speculative decoder's plain-step cost)\n"
      "  --width W          beams per step of the fixed policy (default 4; implies --policy "
      "fixed)\n"
      "  --length L         tokens per beam including the root (default 5; implies --policy "
      "fixed)\n"
      "  --widths LIST      the adaptive policy's candidate W, comma-separated (default "
      "1,2,4,8,16)\n"
      "  --lengths LIST     the adaptive policy's candidate L (default 2,3,4,5,6)\n"
      "  --policy-trace FILE  write the adaptive policy's decisions as CSV: per step and\n"
      "                     candidate shape, the choice (calibrate, exploit, probe), what the\n"
      "                     step measured, and every candidate's estimate when it chose\n"
      "                     (columns: include/redraft/loop/policy_trace.hpp; docs/loop.md)\n"
      "  --batch B          requests decoded together (default 1)\n"
      "  --max-tokens N     tokens to generate per request (default 64)\n"
      "  --repeat N         time plain and speculative decoding N times each, alternating which\n"
      "                     runs first (default 1); the speculative decoder and its policy "
      "persist\n"
      "                     across the repeats, as in a server; repeat r samples with seed S + r\n"
      "  --temperature T    0 = greedy (default); > 0 samples\n"
      "  --seed S           Philox seed for sampling (default 1)\n"
      "  --verifier NAME    greedy | lossless | redrafter | typical\n"
      "                     (default: greedy at T = 0, lossless otherwise)\n"
      "  --target DIR       target checkpoint (config.json + model.safetensors, Llama layout);\n"
      "                     default: the shipped KJV target data/models/kjv-target with its\n"
      "                     draft head data/draft_heads/kjv when both are present, else the\n"
      "                     built-in reference model with deterministic weights\n"
      "  --builtin          use the built-in reference model even when the KJV pair is present\n"
      "  --draft DIR        draft head checkpoint (ReDrafter layout); default for the built-in\n"
      "                     target: the distilled head in data/draft_heads/demo when present,\n"
      "                     else a deterministic untrained head\n"
      "  --untrained        use the deterministic untrained head (for comparisons)\n"
      "  --prompt TEXT      a prompt (repeat for several; requests cycle through them)\n"
      "  --prompts-file F   prompts, one per line (empty lines skipped); not with --prompt;\n"
      "                     repeat r decodes prompts r B .. r B + B - 1 (B = --batch, taken\n"
      "                     cyclically), so each repeat decodes other text\n"
      "  --quiet            print only the summary\n"
      "  --drafter NAME     head (default) | lookup (prompt lookup / n-gram) | suffix (suffix "
      "trie)\n"
      "                     | hybrid (head + lookup in one tree) | hybrid-suffix (head + suffix);\n"
      "                     lookup and suffix propose W candidates (docs/lookup.md)\n"
      "  --lookup-beams K   hybrid: candidates from the model-free source per step (default 2);\n"
      "                     the tree has W + K beams (fixed policy); under the adaptive policy\n"
      "                     each step's W is split in the ratio 4 : K (hybrid_split)\n"
      "  --lookup-first     hybrid: the model-free candidates come first in the tree\n"
      "  --max-nodes N      hybrid: node cap per request tree, root included (default 0: none)\n"
      "  --min-acceptance A hybrid: cut the lookup candidates after the depths whose observed\n"
      "                     acceptance rate is below A (default 0: off; docs/lookup.md)\n"
      "  --head-length N    hybrid: the head drafts beams of N tokens, root included (default L);\n"
      "                     the lookup candidates still run to L\n"
      "  --ngram N          lookup: longest suffix matched (default 3)\n");
}

// The repository's data/ directory.
std::filesystem::path demo_data_dir() {
  return std::filesystem::path(REDRAFT_DEMO_DATA_DIR);  // <repo>/data (examples/CMakeLists.txt)
}

std::vector<std::int32_t> parse_list(const std::string& flag, const std::string& text) {
  std::vector<std::int32_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    REDRAFT_REQUIRE(!item.empty() && item.find_first_not_of("0123456789") == std::string::npos,
                    "redraft-demo: ", flag, " '", text,
                    "' is not a comma-separated list of positive integers");
    out.push_back(std::stoi(item));
  }
  return out;
}

demo_flags parse(int argc, char** argv) {
  demo_flags f;
  std::string policy;
  bool shape_given = false, candidates_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      REDRAFT_REQUIRE(i + 1 < argc, "redraft-demo: ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else if (a == "--policy") {
      policy = value();
    } else if (a == "--width") {
      f.width = std::stoi(value());
      shape_given = true;
    } else if (a == "--length") {
      f.length = std::stoi(value());
      shape_given = true;
    } else if (a == "--widths") {
      f.policy.widths = parse_list(a, value());
      candidates_given = true;
    } else if (a == "--lengths") {
      f.policy.lengths = parse_list(a, value());
      candidates_given = true;
    } else if (a == "--policy-trace") {
      f.policy_trace = value();
    } else if (a == "--batch") {
      f.batch = std::stoi(value());
    } else if (a == "--max-tokens") {
      f.max_tokens = std::stoi(value());
    } else if (a == "--repeat") {
      f.repeat = std::stoi(value());
    } else if (a == "--temperature") {
      f.temperature = std::stof(value());
    } else if (a == "--seed") {
      f.seed = std::stoull(value());
    } else if (a == "--verifier") {
      f.verifier_name = value();
    } else if (a == "--target") {
      f.target_dir = value();
    } else if (a == "--draft") {
      f.draft_dir = value();
    } else if (a == "--untrained") {
      f.untrained = true;
    } else if (a == "--builtin") {
      f.builtin = true;
    } else if (a == "--prompt") {
      REDRAFT_REQUIRE(!f.rotate_prompts, "redraft-demo: --prompt cannot follow --prompts-file '",
                      f.prompts_file, "'");
      f.prompts.push_back(value());
    } else if (a == "--prompts-file") {
      const std::string path = value();
      REDRAFT_REQUIRE(!f.rotate_prompts && f.prompts.empty(), "redraft-demo: --prompts-file '",
                      path, "' cannot follow another --prompts-file or --prompt");
      std::ifstream in(path);
      REDRAFT_REQUIRE(in.good(), "redraft-demo: --prompts-file '", path, "' cannot be read");
      for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();  // a file with CRLF lines
        if (!line.empty()) f.prompts.push_back(line);
      }
      REDRAFT_REQUIRE(!f.prompts.empty(), "redraft-demo: --prompts-file '", path,
                      "' has no prompts");
      f.rotate_prompts = true;
      f.prompts_file = path;
    } else if (a == "--quiet") {
      f.quiet = true;
    } else if (a == "--drafter") {
      f.drafter = value();
    } else if (a == "--lookup-beams") {
      f.lookup_beams = std::stoi(value());
    } else if (a == "--lookup-first") {
      f.lookup_first = true;
    } else if (a == "--min-acceptance") {
      f.min_acceptance = std::stof(value());
    } else if (a == "--head-length") {
      f.head_length = std::stoi(value());
    } else if (a == "--max-nodes") {
      f.max_nodes = std::stoi(value());
    } else if (a == "--ngram") {
      f.ngram = std::stoi(value());
    } else {
      detail::throw_error("redraft-demo: unknown option '", a, "' (see --help)");
    }
  }
  REDRAFT_REQUIRE(policy.empty() || policy == "adaptive" || policy == "fixed" || policy == "plain",
                  "redraft-demo: unknown --policy '", policy, "' (adaptive, fixed, plain)");
  REDRAFT_REQUIRE(!(policy == "plain" && (shape_given || candidates_given)),
                  "redraft-demo: --policy plain drafts "
                  "nothing; it takes no --width / --length / --widths / --lengths");
  f.plain_steps = policy == "plain";
  REDRAFT_REQUIRE(
      !(policy == "adaptive" && shape_given),
      "redraft-demo: --width / --length fix the draft shape; "
      "they do not combine with --policy adaptive (use --widths / --lengths for its candidates)");
  f.adaptive = policy.empty() ? !shape_given : policy == "adaptive";
  REDRAFT_REQUIRE(f.adaptive || !candidates_given,
                  "redraft-demo: --widths / --lengths are the adaptive policy's "
                  "candidates; with a fixed shape use --width / --length");
  REDRAFT_REQUIRE(f.adaptive || f.policy_trace.empty(),
                  "redraft-demo: --policy-trace traces the adaptive policy; it does not combine "
                  "with --policy fixed / plain or --width / --length");
  REDRAFT_REQUIRE(f.batch >= 1, "redraft-demo: --batch ", f.batch, " must be at least 1");
  REDRAFT_REQUIRE(f.repeat >= 1, "redraft-demo: --repeat ", f.repeat, " must be at least 1");
  REDRAFT_REQUIRE(f.temperature >= 0.0f, "redraft-demo: --temperature ", f.temperature,
                  " must be >= 0");
  REDRAFT_REQUIRE(f.drafter == "head" || f.drafter == "lookup" || f.drafter == "suffix" ||
                      f.drafter == "hybrid" || f.drafter == "hybrid-suffix",
                  "redraft-demo: unknown drafter '", f.drafter,
                  "' (head, lookup, suffix, hybrid, hybrid-suffix)");
  REDRAFT_REQUIRE(f.lookup_beams >= 0, "redraft-demo: --lookup-beams ", f.lookup_beams,
                  " must be >= 0");
  // The shipped KJV pair (tools/train_target.py + redraft-distill; docs/results.md).
  if (f.target_dir.empty() && f.draft_dir.empty() && !f.untrained && !f.builtin) {
    const std::filesystem::path data = demo_data_dir();
    if (std::filesystem::exists(data / "models" / "kjv-target" / "config.json") &&
        std::filesystem::exists(data / "draft_heads" / "kjv" / "config.json")) {
      f.target_dir = (data / "models" / "kjv-target").string();
      f.draft_dir = (data / "draft_heads" / "kjv").string();
      f.kjv = true;
    }
  }
#ifdef REDRAFT_DEMO_DRAFT_DIR
  // The distilled head shipped for the built-in target (redraft-distill; docs/distill.md).
  if (f.draft_dir.empty() && f.target_dir.empty() && !f.untrained) {
    if (std::filesystem::exists(std::filesystem::path(REDRAFT_DEMO_DRAFT_DIR) / "config.json"))
      f.draft_dir = REDRAFT_DEMO_DRAFT_DIR;
    else
      std::printf("note: no distilled head at %s, using the untrained head\n",
                  REDRAFT_DEMO_DRAFT_DIR);
  }
#endif
  return f;
}

verifier parse_verifier(const demo_flags& f) {
  const std::string n =
      f.verifier_name.empty() ? (f.temperature > 0 ? "lossless" : "greedy") : f.verifier_name;
  if (n == "greedy") return verifier::greedy;
  if (n == "lossless") return verifier::lossless;
  if (n == "redrafter") return verifier::redrafter;
  if (n == "typical") return verifier::typical;
  detail::throw_error("redraft-demo: unknown verifier '", n,
                      "' (greedy, lossless, redrafter, typical)");
}

const char* const prompts[] = {
    "In the beginning was the word, ",
    "Speculative decoding drafts several tokens ",
    "The quick brown fox jumps over ",
    "To be, or not to be, that is ",
};

// Prompts for the KJV target: openings of verses in the style it was trained on.
const char* const kjv_prompts[] = {
    "And God said unto Moses, ",
    "Blessed are the poor in spirit: ",
    "The LORD is my shepherd; ",
    "And it came to pass, when the king ",
};

// Bytes as text: printable ASCII as is, everything else as \xNN.
std::string as_text(const std::vector<std::int32_t>& tokens, std::int32_t vocab) {
  std::string out;
  for (std::int32_t t : tokens) {
    if (vocab == 256 && t >= 32 && t < 127) {
      out += static_cast<char>(t);
    } else {
      char buf[16];
      std::snprintf(buf, sizeof buf, vocab == 256 ? "\\x%02x" : "<%d>", t);
      out += buf;
    }
  }
  return out;
}

// Plain and speculative decoding timed over the demo's repeats.
struct timed_runs {
  // The first repeat's speculative result (its tokens are printed), with every later repeat's
  // statistics (steps and per-request counters) added.
  generation_result got;
  double plain_s = 0, spec_s = 0;  // all repeats
  std::int64_t plain_tokens = 0, spec_tokens = 0;
  std::vector<double> speedups;  // per repeat
  bool identical = true;         // every repeat's speculative tokens equal plain decoding's

  void add(const generation_result& b, const generation_result& g) {
    plain_s += b.total_s;
    spec_s += g.total_s;
    plain_tokens += b.total_emitted();
    spec_tokens += g.total_emitted();
    speedups.push_back((static_cast<double>(g.total_emitted()) / g.total_s) /
                       (static_cast<double>(b.total_emitted()) / b.total_s));
    identical &= g.tokens == b.tokens;
    if (speedups.size() == 1) {
      got = g;
      return;
    }
    got.steps.insert(got.steps.end(), g.steps.begin(), g.steps.end());
    for (std::size_t r = 0; r < got.requests.size(); ++r) {
      auto& into = got.requests[r];
      const auto& from = g.requests[r];
      into.steps += from.steps;
      into.emitted += from.emitted - 1;  // the prefill's token is not a step's
      into.drafted += from.drafted;
      into.accepted += from.accepted;
      for (std::size_t d = 0; d < into.accepted_at_depth.size(); ++d)
        into.accepted_at_depth[d] += from.accepted_at_depth[d];
    }
    got.prefill_s += g.prefill_s;
  }
};

int run(const demo_flags& f) {
  // --policy-trace: opened before any work, so a bad path fails with no output.
  std::ofstream trace;
  if (!f.policy_trace.empty()) {
    trace.open(f.policy_trace);
    REDRAFT_REQUIRE(trace.good(), "redraft-demo: --policy-trace '", f.policy_trace,
                    "' cannot be opened for writing");
  }
  const cpu_backend cpu;
  tiny_llama target = f.target_dir.empty()
                          ? tiny_llama::random(redraft::testing::demo_target_config(),
                                               redraft::testing::demo_target_seed, f.batch)
                          : redraft::testing::load_tiny_llama(f.target_dir, f.batch);
  const draft_config dc =
      redraft::testing::demo_draft_config(target.vocab_size(), target.hidden_size());
  draft_head<cpu_backend> head =
      f.draft_dir.empty() ? draft_head<cpu_backend>(cpu, dc) : load_draft_head(cpu, f.draft_dir);
  if (f.draft_dir.empty()) init_draft_head(head, redraft::testing::demo_draft_seed);

  // The requests of repeat `rep` (the same for every repeat unless --prompts-file rotates them).
  const auto make_requests = [&](std::int32_t rep) {
    std::vector<generation_request> out;
    const std::size_t first =
        f.rotate_prompts ? static_cast<std::size_t>(rep) * static_cast<std::size_t>(f.batch) : 0;
    for (std::int32_t r = 0; r < f.batch; ++r) {
      generation_request q;
      const std::string text =
          !f.prompts.empty() ? f.prompts[(first + static_cast<std::size_t>(r)) % f.prompts.size()]
          : f.kjv            ? kjv_prompts[r % 4]
                             : prompts[r % 4];
      for (const char c : text)
        q.prompt.push_back(static_cast<unsigned char>(c) % target.vocab_size());
      q.max_new_tokens = f.max_tokens;
      out.push_back(q);
    }
    return out;
  };
  const std::vector<generation_request> requests = make_requests(0);  // the first repeat's
  const bool hybrid = f.drafter == "hybrid" || f.drafter == "hybrid-suffix";
  decode_options options;
  options.beam_width = hybrid ? f.width + f.lookup_beams : f.width;
  options.beam_length = f.length;
  options.rule = parse_verifier(f);
  options.seed = f.seed;
  options.sampling.temperature = f.temperature > 0 ? f.temperature : 1.0f;
  options.redrafter.temperature = options.sampling.temperature;
  options.typical.temperature = options.sampling.temperature;

  std::printf("target: %s (V %d, H %d), draft head: %s (E %d, N %d)\n",
              f.target_dir.empty() ? "built-in tiny Llama, deterministic random weights"
                                   : f.target_dir.c_str(),
              target.vocab_size(), target.hidden_size(),
              f.draft_dir.empty() ? "untrained (deterministic random init)" : f.draft_dir.c_str(),
              static_cast<int>(head.config().exit_dim),
              static_cast<int>(head.config().num_draft_layers));
  const auto list = [](const std::vector<std::int32_t>& v) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i > 0) out.push_back(',');
      out.append(std::to_string(v[i]));
    }
    return out;
  };
  std::printf("drafter %s, ",
              hybrid ? (f.drafter + " (" + std::to_string(f.width) + " head + " +
                        std::to_string(f.lookup_beams) + " lookup beams" +
                        (f.adaptive ? " as the split of each step's W" : "") +
                        (f.max_nodes > 0 ? ", node cap " + std::to_string(f.max_nodes) : "") + ")")
                           .c_str()
                     : f.drafter.c_str());
  if (f.plain_steps) {
    std::printf("policy plain (every step plain)");
  } else if (f.adaptive) {
    std::printf("policy adaptive (W in {%s} x L in {%s}, or plain steps)",
                list(f.policy.widths).c_str(), list(f.policy.lengths).c_str());
  } else {
    std::printf("policy fixed, W %d, L %d", f.width, f.length);
  }
  std::printf(", batch %d, %d tokens per request, verifier %s, temperature %g\n", f.batch,
              f.max_tokens,
              f.verifier_name.empty() ? (f.temperature > 0 ? "lossless" : "greedy")
                                      : f.verifier_name.c_str(),
              static_cast<double>(f.temperature));
  if (f.rotate_prompts)
    std::printf("prompts: %zu from %s, repeat r decodes prompts %d r .. %d r + %d (cyclically)\n",
                f.prompts.size(), f.prompts_file.c_str(), f.batch, f.batch, f.batch - 1);
  std::printf("\n");

  // Plain decoding, the baseline (greedy when the speculative rule is greedy, else sampling).
  plain_decoder<cpu_backend, tiny_llama> plain(cpu, target);
  decode_options plain_options = options;
  if (options.rule != verifier::greedy) plain_options.rule = verifier::lossless;

  // Both decoders f.repeat times, alternating which runs first: in a fresh process the first
  // run pays for first-touch memory and cold caches, which would favour the second.
  timed_runs runs;
  // before_repeat(rep) runs before each repeat's pair (the trace's run label).
  const auto compare = [&](auto& spec, const auto& before_repeat) {
    for (std::int32_t rep = 0; rep < f.repeat; ++rep) {
      before_repeat(rep);
      const std::vector<generation_request> these = make_requests(rep);
      decode_options o = options, po = plain_options;
      o.seed = po.seed = f.seed + static_cast<std::uint64_t>(rep);
      generation_result b, g;
      if (rep % 2 == 0) {
        b = plain.generate(these, po);
        g = spec.generate(these, o);
      } else {
        g = spec.generate(these, o);
        b = plain.generate(these, po);
      }
      runs.add(b, g);
    }
  };
  const auto no_label = [](std::int32_t) {};
  const auto decode = [&](auto& drafter) {
    using drafter_type = std::remove_reference_t<decltype(drafter)>;
    if (f.plain_steps) {
      speculative_decoder<cpu_backend, tiny_llama, drafter_type, plain_policy> spec(cpu, target,
                                                                                    drafter);
      compare(spec, no_label);
      return;
    }
    const auto print_choices = [](const adaptive_policy& p) {
      const auto& why = p.choice_counts();
      std::printf(
          "policy steps: %lld calibration, %lld exploiting the best estimate, %lld probes\n",
          static_cast<long long>(why[0]), static_cast<long long>(why[1]),
          static_cast<long long>(why[2]));
    };
    if (f.adaptive && !f.policy_trace.empty()) {
      speculative_decoder<cpu_backend, tiny_llama, drafter_type, traced_policy> spec(
          cpu, target, drafter, traced_policy(adaptive_policy(f.policy)));
      compare(spec, [&](std::int32_t rep) { spec.policy().set_run(rep); });
      spec.policy().write_csv(trace);  // after the timed runs
      trace.close();
      REDRAFT_REQUIRE(!trace.fail(), "redraft-demo: writing --policy-trace '", f.policy_trace,
                      "' failed");
      print_choices(spec.policy().inner());
      return;
    }
    if (f.adaptive) {
      speculative_decoder<cpu_backend, tiny_llama, drafter_type, adaptive_policy> spec(
          cpu, target, drafter, adaptive_policy(f.policy));
      compare(spec, no_label);
      print_choices(spec.policy());
      return;
    }
    speculative_decoder<cpu_backend, tiny_llama, drafter_type> spec(cpu, target, drafter);
    compare(spec, no_label);
  };
  draft_head_drafter<cpu_backend> head_drafter(head, target.embedding());
  lookup_drafter<cpu_backend> lookup(cpu, lookup_options{f.ngram, 1, 32});
  suffix_drafter<cpu_backend> suffix(cpu);
  hybrid_options split{f.width, f.lookup_beams, f.max_nodes, f.lookup_first, f.head_length, 0};
  split.second_min_acceptance = f.min_acceptance;
  // Under the adaptive policy the step's W is the hybrid's total beam budget, split in the ratio
  // 4 (the default --width, which --policy adaptive does not take) : --lookup-beams (hybrid_split).
  split.follow_step_width = f.adaptive;
  if (f.drafter == "head") {
    decode(head_drafter);
  } else if (f.drafter == "lookup") {
    decode(lookup);
  } else if (f.drafter == "suffix") {
    decode(suffix);
  } else if (f.drafter == "hybrid") {
    hybrid_drafter<cpu_backend, draft_head_drafter<cpu_backend>, lookup_drafter<cpu_backend>> h(
        cpu, head_drafter, lookup, split);
    decode(h);
  } else {
    hybrid_drafter<cpu_backend, draft_head_drafter<cpu_backend>, suffix_drafter<cpu_backend>> h(
        cpu, head_drafter, suffix, split);
    decode(h);
  }
  const generation_result& got = runs.got;

  if (!f.quiet) {
    for (std::int32_t r = 0; r < f.batch; ++r) {
      std::printf(
          "request %d: \"%s\" + \"%s\"\n", r,
          as_text(requests[static_cast<std::size_t>(r)].prompt, target.vocab_size()).c_str(),
          as_text(got.tokens[static_cast<std::size_t>(r)], target.vocab_size()).c_str());
    }
    std::printf("\n");
  }
  const bool identical = runs.identical;

  std::int64_t steps = 0, emitted = 0;
  std::vector<std::int64_t> at_depth(
      got.requests.empty() ? 0 : got.requests[0].accepted_at_depth.size(), 0);
  for (const auto& s : got.requests) {
    steps += s.steps;
    emitted += s.emitted - 1;  // the prefill's token is not a step's
    for (std::size_t d = 0; d < at_depth.size(); ++d) at_depth[d] += s.accepted_at_depth[d];
  }
  std::printf("tokens per step: %.2f (%lld tokens in %lld request-steps)\n",
              steps ? static_cast<double>(emitted) / static_cast<double>(steps) : 0.0,
              static_cast<long long>(emitted), static_cast<long long>(steps));
  std::int64_t nodes = 0, request_steps = 0;
  for (const auto& s : got.steps) {
    nodes += s.nodes;
    request_steps += s.requests;
  }
  std::printf(
      "nodes per step: %.2f (tree nodes verified per request-step, root included)\n",
      request_steps ? static_cast<double>(nodes) / static_cast<double>(request_steps) : 0.0);
  std::printf("acceptance by depth:");
  for (std::size_t d = 0; d < at_depth.size(); ++d)
    std::printf(" %zu:%.2f", d + 1,
                steps ? static_cast<double>(at_depth[d]) / static_cast<double>(steps) : 0.0);
  std::printf("\n");
  // Rows of the target's verify pass per step (every request's tree): the n of docs/results.md's
  // cost plot.
  std::printf(
      "tree nodes per step: %.2f (rows of one target pass, batch %d)\n",
      got.steps.empty() ? 0.0 : static_cast<double>(nodes) / static_cast<double>(got.steps.size()),
      f.batch);
  // The draft shapes the steps used, most used first ("plain": a plain step).
  std::map<std::string, int> shape_steps;
  for (const auto& s : got.steps)
    ++shape_steps[redraft::traced_policy::name({s.beam_width, s.beam_length})];
  std::vector<std::pair<int, std::string>> by_use;
  for (const auto& [shape, n] : shape_steps) by_use.emplace_back(-n, shape);
  std::sort(by_use.begin(), by_use.end());
  std::printf("shapes (W x L: steps):");
  for (const auto& [n, shape] : by_use) std::printf(" %s:%d", shape.c_str(), -n);
  std::printf("\n");
  step_stats total;
  for (const auto& s : got.steps) {
    total.draft_s += s.draft_s;
    total.tree_s += s.tree_s;
    total.target_s += s.target_s;
    total.verify_s += s.verify_s;
    total.kv_s += s.kv_s;
  }
  const double t = total.total_s() > 0 ? total.total_s() : 1.0;
  std::printf(
      "time split: draft %.1f%%, tree %.1f%%, target %.1f%%, verify %.1f%%, kv %.1f%% (prefill "
      "%.1f ms)\n",
      100 * total.draft_s / t, 100 * total.tree_s / t, 100 * total.target_s / t,
      100 * total.verify_s / t, 100 * total.kv_s / t, 1e3 * got.prefill_s);
  const double plain_rate = static_cast<double>(runs.plain_tokens) / runs.plain_s;
  const double spec_rate = static_cast<double>(runs.spec_tokens) / runs.spec_s;
  std::printf("plain decoding:       %8.1f tokens/s (%.3f s)\n", plain_rate, runs.plain_s);
  std::printf("speculative decoding: %8.1f tokens/s (%.3f s)\n", spec_rate, runs.spec_s);
  if (f.repeat == 1) {
    std::printf("speedup: %.2fx (same model, same run)\n", spec_rate / plain_rate);
  } else {
    std::string each;
    for (const double x : runs.speedups) {
      char buf[16];
      std::snprintf(buf, sizeof buf, " %.2f", x);
      each += buf;
    }
    std::printf("speedup: %.2fx (same model, same run; %d repeats in alternating order, each:%s)\n",
                spec_rate / plain_rate, f.repeat, each.c_str());
  }
  if (options.rule == verifier::greedy)
    std::printf("greedy output identical to plain decoding: %s\n", identical ? "yes" : "NO");
  return options.rule == verifier::greedy && !identical ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
