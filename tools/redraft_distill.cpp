// redraft-distill: knowledge distillation of a ReDrafter draft head for a target model, on the CPU.
//
//   redraft-distill --out DIR [--target DIR] [--prompts FILE] [--steps N] [--lr X] [--next-n N]
//                   [--loss ce|kl] [--batch N] [--seed S] [--resume] ...   (--help for all)
//
// 1. loads the target (default: redraft-demo's built-in reference model) and the prompts (one per
//    line of FILE, or the built-in default prompts); holds out every --holdout-th prompt for
//    evaluation;
// 2. the target writes its own continuations (greedy + sampled) and a chain pass records its
//    hidden states (and, for --loss kl, its distributions) at every position;
// 3. trains the head (AdamW, warmup + cosine) with progress lines, checkpoints to DIR
//    (config.json + model.safetensors load in `redraft-demo --draft DIR`; optimizer.safetensors +
//    trainer_state.json let --resume continue bit-identically);
// 4. prints top-1 accuracy per future step on the training and held-out data before and after,
//    and where the time went.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/testing/demo_models.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/testing/tiny_llama_io.hpp"
#include "redraft/train/distill_batch.hpp"
#include "redraft/train/distill_data.hpp"
#include "redraft/train/distill_trainer.hpp"

namespace {

using namespace redraft;
using redraft::testing::tiny_llama;

struct flags {
  std::string target_dir, prompts_file, out_dir;
  bool resume = false, quiet = false;
  distill_options train;
  distill_data_options data;
  std::int32_t holdout = 8;
  std::int64_t exit_dim = 0, layers = 2;  // 0: 2H
  std::string recurrence_name = "silu";
};

void usage() {
  std::printf(
      "usage: redraft-distill --out DIR [options]\n"
      "target and data:\n"
      "  --target DIR          target checkpoint (Llama layout); default: redraft-demo's built-in "
      "model\n"
      "  --prompts FILE        training prompts, one per line (bytes -> tokens); default: built-in "
      "prompts\n"
      "  --holdout K           hold out every K-th prompt for evaluation (default 8; 0: none)\n"
      "  --continuation N      tokens the target writes per prompt (default 128)\n"
      "  --samples N           sampled continuations per prompt, besides the greedy one (default "
      "3)\n"
      "  --temperature T       temperature of the samples (default 1: draws from p_target)\n"
      "  --slots N             sequences the target runs at once (default 16)\n"
      "draft head:\n"
      "  --exit-dim E          width of the residual blocks (default 2H: no input projection)\n"
      "  --layers N            residual blocks (default 2)\n"
      "  --recurrence R        silu | linear | running_sum (default silu)\n"
      "training:\n"
      "  --out DIR             checkpoint directory (required)\n"
      "  --resume              continue from the checkpoint in --out (same options and data)\n"
      "  --steps N             optimizer steps (default 2000)\n"
      "  --batch N             positions per step (default 64)\n"
      "  --lr X                peak learning rate (default 1e-3)\n"
      "  --warmup N            warmup steps (default 100)\n"
      "  --min-lr-ratio X      final learning rate / peak (default 0.1)\n"
      "  --weight-decay X      AdamW weight decay of the weights (default 0.01)\n"
      "  --clip X              gradient clipping norm (default 1; 0 disables)\n"
      "  --next-n N            future tokens trained per position (default 4 = beam length 5 - 1)\n"
      "  --loss ce|kl          Apple's multi-step cross-entropy (default) or KL(p_target || q)\n"
      "  --step-weights a,b,.. per-step loss weights (default all 1)\n"
      "  --top-k-warp          train on the head's top-k-warped distribution (default off)\n"
      "  --seed S              init of the head and batch draws (default 7, redraft-demo's "
      "untrained head)\n"
      "  --checkpoint-every N  steps between checkpoints (default 500; the last step always "
      "saves)\n"
      "  --log-every N         steps between progress lines (default 100)\n"
      "  --quiet               no progress lines\n");
}

flags parse(int argc, char** argv) {
  flags f;
  f.train.seed = redraft::testing::demo_draft_seed;
  f.train.optimizer.total_steps = 2000;
  f.train.checkpoint_every = 500;
  f.data.continuation_tokens = 128;
  f.data.samples_per_prompt = 3;
  f.data.slots = 16;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      REDRAFT_REQUIRE(i + 1 < argc, "redraft-distill: ", a, " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else if (a == "--target") {
      f.target_dir = value();
    } else if (a == "--prompts") {
      f.prompts_file = value();
    } else if (a == "--holdout") {
      f.holdout = std::stoi(value());
    } else if (a == "--continuation") {
      f.data.continuation_tokens = std::stoi(value());
    } else if (a == "--samples") {
      f.data.samples_per_prompt = std::stoi(value());
    } else if (a == "--temperature") {
      f.data.sampling.temperature = std::stof(value());
    } else if (a == "--slots") {
      f.data.slots = std::stoi(value());
    } else if (a == "--exit-dim") {
      f.exit_dim = std::stoll(value());
    } else if (a == "--layers") {
      f.layers = std::stoll(value());
    } else if (a == "--recurrence") {
      f.recurrence_name = value();
    } else if (a == "--out") {
      f.out_dir = value();
    } else if (a == "--resume") {
      f.resume = true;
    } else if (a == "--steps") {
      f.train.optimizer.total_steps = std::stoll(value());
    } else if (a == "--batch") {
      f.train.batch = std::stoi(value());
    } else if (a == "--lr") {
      f.train.optimizer.learning_rate = std::stod(value());
    } else if (a == "--warmup") {
      f.train.optimizer.warmup_steps = std::stoll(value());
    } else if (a == "--min-lr-ratio") {
      f.train.optimizer.min_learning_rate_ratio = std::stod(value());
    } else if (a == "--weight-decay") {
      f.train.optimizer.weight_decay = std::stod(value());
    } else if (a == "--clip") {
      f.train.optimizer.clip_norm = std::stod(value());
    } else if (a == "--next-n") {
      f.train.next_n = std::stoi(value());
    } else if (a == "--loss") {
      f.train.loss.kind = parse_distill_loss(value());
    } else if (a == "--step-weights") {
      std::stringstream in(value());
      std::string item;
      while (std::getline(in, item, ',')) f.train.loss.step_weight.push_back(std::stod(item));
    } else if (a == "--top-k-warp") {
      f.train.loss.top_k_warp = true;
    } else if (a == "--seed") {
      f.train.seed = std::stoull(value());
    } else if (a == "--checkpoint-every") {
      f.train.checkpoint_every = std::stoll(value());
    } else if (a == "--log-every") {
      f.train.log_every = std::stoll(value());
    } else if (a == "--quiet") {
      f.quiet = true;
    } else {
      detail::throw_error("redraft-distill: unknown option '", a, "' (see --help)");
    }
  }
  REDRAFT_REQUIRE(!f.out_dir.empty(), "redraft-distill: --out DIR is required (see --help)");
  REDRAFT_REQUIRE(f.holdout >= 0, "redraft-distill: --holdout ", f.holdout, " is negative");
  f.data.keep_distributions = f.train.loss.kind == distill_loss_kind::kl;
  f.train.validate();
  return f;
}

void print_accuracy(const char* what, const distill_loss_stats& s) {
  std::printf("  %-28s loss %8.4f  top-1 by future step:", what, s.loss);
  for (std::size_t i = 0; i < s.counted.size(); ++i) std::printf(" %zu:%.3f", i + 1, s.accuracy(i));
  std::printf("  (%lld positions)\n", static_cast<long long>(s.counted.empty() ? 0 : s.counted[0]));
}

int run(const flags& f) {
  using clock = std::chrono::steady_clock;
  tiny_llama target = f.target_dir.empty()
                          ? tiny_llama::random(redraft::testing::demo_target_config(),
                                               redraft::testing::demo_target_seed, f.data.slots)
                          : redraft::testing::load_tiny_llama(f.target_dir, f.data.slots);
  std::vector<std::vector<std::int32_t>> prompts =
      f.prompts_file.empty() ? default_prompts(target.vocab_size())
                             : load_prompt_file(f.prompts_file, target.vocab_size());
  std::vector<std::vector<std::int32_t>> train_prompts, eval_prompts;
  for (std::size_t p = 0; p < prompts.size(); ++p) {
    const bool held =
        f.holdout > 0 && prompts.size() > 1 && (p + 1) % static_cast<std::size_t>(f.holdout) == 0;
    (held ? eval_prompts : train_prompts).push_back(prompts[p]);
  }
  draft_config dc = redraft::testing::demo_draft_config(target.vocab_size(), target.hidden_size());
  if (f.exit_dim > 0) dc.exit_dim = f.exit_dim;
  dc.num_draft_layers = f.layers;
  dc.recurrence = parse_recurrence(f.recurrence_name);

  std::printf(
      "target: %s (V %d, H %d)\n",
      f.target_dir.empty() ? "built-in reference model (redraft-demo's)" : f.target_dir.c_str(),
      target.vocab_size(), target.hidden_size());
  std::printf("draft head: E %lld, N %lld, recurrence %s, top-k %lld\n",
              static_cast<long long>(dc.exit_dim), static_cast<long long>(dc.num_draft_layers),
              recurrence_name(dc.recurrence), static_cast<long long>(dc.logit_top_k));
  std::printf(
      "prompts: %zu for training, %zu held out; per prompt %s%d sampled (T %.2f) continuations of "
      "%d tokens\n",
      train_prompts.size(), eval_prompts.size(), f.data.greedy ? "1 greedy + " : "",
      f.data.samples_per_prompt, static_cast<double>(f.data.sampling.temperature),
      f.data.continuation_tokens);

  auto t0 = clock::now();
  const distill_dataset data = generate_distill_data(target, train_prompts, f.data);
  distill_data_options eval_options = f.data;
  eval_options.samples_per_prompt = 0;
  const distill_dataset eval = eval_prompts.empty()
                                   ? distill_dataset{}
                                   : generate_distill_data(target, eval_prompts, eval_options);
  const double data_s = std::chrono::duration<double>(clock::now() - t0).count();
  std::printf(
      "data: %zu sequences, %lld target-written tokens (+ %zu held-out sequences) in %.1f s (%.0f "
      "tokens/s)\n",
      data.sequences.size(), static_cast<long long>(data.generated_tokens()), eval.sequences.size(),
      data_s, static_cast<double>(data.generated_tokens() + eval.generated_tokens()) / data_s);

  distill_trainer trainer(data, dc, f.train);
  if (f.resume) {
    trainer.resume(f.out_dir);
    std::printf("resumed from %s at step %lld\n", f.out_dir.c_str(),
                static_cast<long long>(trainer.step()));
  }
  std::printf(
      "training: %lld steps x %d positions x next_n %d, loss %s, lr %g, %lld training "
      "positions\n\n",
      static_cast<long long>(f.train.optimizer.total_steps), f.train.batch, f.train.next_n,
      distill_loss_name(f.train.loss.kind), f.train.optimizer.learning_rate,
      static_cast<long long>(trainer.positions()));
  const distill_loss_stats train_before = trainer.evaluate(data);
  const distill_loss_stats eval_before =
      eval.sequences.empty() ? distill_loss_stats{} : trainer.evaluate(eval);

  const auto report = [&](const distill_progress& p) {
    if (f.quiet) return;
    std::printf("step %6lld/%lld  loss %8.4f  top-1", static_cast<long long>(p.step),
                static_cast<long long>(p.total_steps), p.loss);
    for (const double a : p.accuracy) std::printf(" %.3f", a);
    std::printf("  lr %.2e  |g| %.3f  %.0f positions/s  %.0f tokens/s\n", p.learning_rate,
                p.grad_norm, p.positions_per_s, p.tokens_per_s);
    std::fflush(stdout);
  };
  trainer.train(f.out_dir, report);

  std::printf("\n%s (step %lld): checkpoint in %s\n", f.resume ? "done" : "done",
              static_cast<long long>(trainer.step()), f.out_dir.c_str());
  print_accuracy(f.resume ? "training data, at resume:" : "training data, untrained:",
                 train_before);
  print_accuracy("training data, distilled:", trainer.evaluate(data));
  if (!eval.sequences.empty()) {
    print_accuracy(f.resume ? "held-out prompts, at resume:" : "held-out prompts, untrained:",
                   eval_before);
    print_accuracy("held-out prompts, distilled:", trainer.evaluate(eval));
  }
  const distill_timing& t = trainer.timing();
  const double total = t.total_s > 0 ? t.total_s : 1.0;
  std::printf(
      "time: data %.1f s; training %.1f s = forward %.0f%%, loss %.0f%%, backward %.0f%%, "
      "optimizer %.0f%%, "
      "batches %.0f%%, checkpoints %.0f%%\n",
      data_s, t.total_s, 100 * t.head.forward_s / total, 100 * t.head.loss_s / total,
      100 * t.head.backward_s / total, 100 * t.optimizer_s / total, 100 * t.batch_s / total,
      100 * t.checkpoint_s / total);
  return 0;
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
