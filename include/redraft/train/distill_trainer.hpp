// redraft/train/distill_trainer.hpp: knowledge distillation of a draft head on the CPU.
//
// The trainer owns the head's parameters (float, host), the AdamW state, and a read-only
// reference to a distill_dataset (train/distill_data.hpp). One step:
//
//   1. draw `batch` training positions uniformly (with replacement) from Philox stream
//      (seed, 0xBA7C, step) — a pure function of (seed, step), so a resumed run draws the same
//      batches as an uninterrupted one;
//   2. assemble them: h_t, the teacher-forced inputs x_{t+1+i}, labels x_{t+2+i} (counted only
//      when that token is a target-generated one, i.e. not part of the prompt, and inside the
//      sequence), and for kl the target's log p at position t+1+i;
//   3. draft_head_loss (forward + hand-written backward, train/head_gradient.hpp);
//   4. a non-finite loss or gradient stops training with redraft::error, leaving the last
//      checkpoint untouched;
//   5. adamw_update (warmup + cosine, clipping, train/adamw.hpp);
//   6. every checkpoint_every steps and at the last step: save a checkpoint.
//
// A checkpoint is a directory in the draft-head layout plus the optimizer sidecar:
//   config.json, model.safetensors   save_draft_head (loads in redraft-demo --draft DIR)
//   optimizer.safetensors            AdamW moments "m.<name>", "v.<name>" (F32, exact)
//   trainer_state.json               step, the training options, the data fingerprint
// Files are written to DIR/.staging and renamed into DIR, trainer_state.json last. Resuming
// checks the config against the data, the options and the data fingerprint against the saved
// ones, and continues bit-identically (weights and moments are stored exactly as F32).
//
// Deterministic for fixed (data, config, options): single-threaded Eigen, fixed batch order.
// Host code.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/draft_init.hpp"
#include "redraft/draft/safetensors.hpp"
#include "redraft/train/adamw.hpp"
#include "redraft/train/distill_batch.hpp"
#include "redraft/train/distill_data.hpp"
#include "redraft/train/distill_loss.hpp"
#include "redraft/train/head_gradient.hpp"
#include "redraft/train/head_parameters.hpp"

namespace redraft {

struct distill_options {
  std::int32_t next_n = 4;    // future steps trained per position (the beam length - 1 it serves)
  distill_loss_options loss;  // kind (ce / kl), step weights, top-k warp
  std::int32_t batch = 64;    // positions per step
  adamw_options optimizer;    // learning rate schedule; optimizer.total_steps = training steps
  std::uint64_t seed = 0;     // init of the head (init_draft_head) and the batch draws
  std::int64_t checkpoint_every = 0;  // 0: only at the last step
  std::int64_t log_every = 100;       // progress callback period in steps

  // Throws redraft::error naming the first bad field.
  void validate() const {
    REDRAFT_REQUIRE(next_n >= 1, "distill: next_n ", next_n, " must be at least 1");
    REDRAFT_REQUIRE(batch >= 1, "distill: batch ", batch, " must be at least 1");
    REDRAFT_REQUIRE(
        loss.step_weight.empty() || static_cast<std::int32_t>(loss.step_weight.size()) == next_n,
        "distill: ", loss.step_weight.size(), " step weights given for next_n ", next_n);
    REDRAFT_REQUIRE(checkpoint_every >= 0 && log_every >= 0, "distill: checkpoint_every ",
                    checkpoint_every, " and log_every ", log_every, " must be >= 0");
    optimizer.validate("distill");
  }
};

// What the progress callback receives every log_every steps (means over the steps since the
// previous report).
struct distill_progress {
  std::int64_t step = 0, total_steps = 0;
  double loss = 0.0;
  std::vector<double> accuracy;  // [next_n] top-1 accuracy of each future step
  double learning_rate = 0.0, grad_norm = 0.0;
  double positions_per_s = 0.0;  // training positions per second (each runs next_n steps)
  double tokens_per_s = 0.0;     // counted predictions (labels) per second
};
using distill_progress_callback = std::function<void(const distill_progress&)>;

// Where the time of train() went, in seconds.
struct distill_timing {
  double batch_s = 0.0;       // drawing and assembling batches
  head_gradient_timing head;  // forward, loss, backward
  double optimizer_s = 0.0;   // clipping + AdamW
  double checkpoint_s = 0.0;  // writing checkpoints
  double total_s = 0.0;
};

namespace detail {

inline nlohmann::json distill_options_to_json(const distill_options& o) {
  return nlohmann::json{{"next_n", o.next_n},
                        {"loss", distill_loss_name(o.loss.kind)},
                        {"step_weight", o.loss.step_weight},
                        {"top_k_warp", o.loss.top_k_warp},
                        {"batch", o.batch},
                        {"seed", o.seed},
                        {"learning_rate", o.optimizer.learning_rate},
                        {"min_learning_rate_ratio", o.optimizer.min_learning_rate_ratio},
                        {"warmup_steps", o.optimizer.warmup_steps},
                        {"total_steps", o.optimizer.total_steps},
                        {"beta1", o.optimizer.beta1},
                        {"beta2", o.optimizer.beta2},
                        {"epsilon", o.optimizer.epsilon},
                        {"weight_decay", o.optimizer.weight_decay},
                        {"clip_norm", o.optimizer.clip_norm}};
}

}  // namespace detail

class distill_trainer {
 public:
  // A trainer of a head of `config` on `data` (which must outlive it), starting from
  // init_draft_head(seed). Throws redraft::error when the config's V / H differ from the data's
  // target, the data holds no sequence or no training position, kl is asked of data without
  // distributions, or an option is invalid.
  distill_trainer(const distill_dataset& data, const draft_config& config,
                  const distill_options& options)
      : data_(data), options_(options), params_(config), grad_(config) {
    constexpr const char* fn = "distill_trainer";
    options_.validate();
    config.validate(fn);
    REDRAFT_REQUIRE(!data.sequences.empty(), fn,
                    ": the training data holds no sequence (empty prompt set?)");
    REDRAFT_REQUIRE(config.vocab_size == data.vocab_size && config.hidden_size == data.hidden_size,
                    fn, ": the draft head has vocab_size ", config.vocab_size, " and hidden_size ",
                    config.hidden_size, " but the target model has ", data.vocab_size, " and ",
                    data.hidden_size);
    REDRAFT_REQUIRE(options_.loss.kind != distill_loss_kind::kl || data.has_distributions(), fn,
                    ": the kl loss needs the target's distributions (generate the data with "
                    "keep_distributions)");
    anchors_ = distill_positions(data);
    REDRAFT_REQUIRE(!anchors_.empty(), fn,
                    ": no training position: every sequence needs at least 2 tokens after "
                    "its prompt's last-but-one token");
    draft_head<cpu_backend> head(cpu_backend{}, config);
    init_draft_head(head, options_.seed);
    params_ = parameters_from_head<float>(head);
  }

  std::int64_t step() const { return state_.step; }
  const distill_options& options() const { return options_; }
  const head_parameters<float>& parameters() const { return params_; }
  const distill_timing& timing() const { return timing_; }
  std::int64_t positions() const { return static_cast<std::int64_t>(anchors_.size()); }
  // The current head on the CPU backend.
  draft_head<cpu_backend> head() const { return head_from_parameters(cpu_backend{}, params_); }

  // Continues from the checkpoint in `dir` (see the file comment). Throws redraft::error when a
  // file is missing or malformed, the head's config differs from this trainer's, an option
  // differs from the saved one, or the data fingerprint differs.
  void resume(const std::filesystem::path& dir) {
    constexpr const char* fn = "distill_trainer::resume";
    const std::filesystem::path state_path = dir / "trainer_state.json";
    std::ifstream in(state_path);
    REDRAFT_REQUIRE(in.good(), fn, ": cannot open ", state_path.string(),
                    " (not a checkpoint of redraft-distill?)");
    nlohmann::json state;
    try {
      state = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      detail::throw_error(fn, ": ", state_path.string(), " is not valid JSON (", e.what(), ")");
    }
    const draft_head<cpu_backend> head = load_draft_head(cpu_backend{}, dir);
    const draft_config& c = head.config();
    REDRAFT_REQUIRE(c.vocab_size == data_.vocab_size && c.hidden_size == data_.hidden_size, fn,
                    ": the checkpoint in ", dir.string(), " has vocab_size ", c.vocab_size,
                    " and hidden_size ", c.hidden_size, " but the target model has ",
                    data_.vocab_size, " and ", data_.hidden_size);
    REDRAFT_REQUIRE(c == params_.config(), fn, ": the checkpoint's head config ",
                    draft_config_to_json(c).dump(), " differs from the trainer's ",
                    draft_config_to_json(params_.config()).dump());
    const nlohmann::json want = detail::distill_options_to_json(options_);
    REDRAFT_REQUIRE(
        state.contains("options") && state.contains("step") && state.contains("data_fingerprint"),
        fn, ": ", state_path.string(), " lacks options, step or data_fingerprint");
    for (const auto& [key, value] : want.items()) {
      const nlohmann::json& saved =
          state["options"].contains(key) ? state["options"][key] : nlohmann::json();
      REDRAFT_REQUIRE(saved == value, fn, ": option ", key, " is ", value.dump(),
                      " but the checkpoint was trained with ", saved.dump(),
                      " (resume with the same options)");
    }
    REDRAFT_REQUIRE(state["data_fingerprint"].get<std::string>() == fingerprint_text(), fn,
                    ": the training data differs from the checkpoint's (fingerprint ",
                    fingerprint_text(), " vs ", state["data_fingerprint"].get<std::string>(),
                    "): same target, prompts and data options needed");
    const std::int64_t step = state["step"].get<std::int64_t>();
    const safetensors_file opt = read_safetensors_file(dir / "optimizer.safetensors");
    REDRAFT_REQUIRE(opt.metadata.count("step") && opt.metadata.at("step") == std::to_string(step),
                    fn, ": optimizer.safetensors is of step ",
                    opt.metadata.count("step") ? opt.metadata.at("step") : "?",
                    " but trainer_state.json of step ", step, " (an interrupted save?)");
    adamw_state s;
    s.step = step;
    s.m.assign(params_.values().size(), 0.0f);
    s.v.assign(params_.values().size(), 0.0f);
    for (const head_tensor& t : params_.tensors()) {
      for (const char* moment : {"m.", "v."}) {
        const std::string name = moment + t.name;
        const auto it = opt.tensors.find(name);
        REDRAFT_REQUIRE(it != opt.tensors.end() && it->second.element_count() == t.count, fn,
                        ": optimizer.safetensors lacks '", name, "' with ", t.count, " values");
        std::copy(it->second.values.begin(), it->second.values.end(),
                  (moment[0] == 'm' ? s.m : s.v).begin() + t.offset);
      }
    }
    params_ = parameters_from_head<float>(head);
    state_ = std::move(s);
  }

  // Writes a checkpoint of the current state to `dir` (created if missing).
  void save_checkpoint(const std::filesystem::path& dir) const {
    const std::filesystem::path staging = dir / ".staging";
    save_draft_head(head(), staging);
    std::map<std::string, tensor_data> moments;
    for (const head_tensor& t : params_.tensors()) {
      const auto slice = [&](const std::vector<float>& v) {
        return std::vector<float>(v.begin() + t.offset, v.begin() + t.offset + t.count);
      };
      const std::vector<float> zeros(static_cast<std::size_t>(t.count), 0.0f);
      moments["m." + t.name] =
          tensor_data{t.shape, state_.m.empty() ? zeros : slice(state_.m), "F32"};
      moments["v." + t.name] =
          tensor_data{t.shape, state_.v.empty() ? zeros : slice(state_.v), "F32"};
    }
    write_safetensors(staging / "optimizer.safetensors", moments, safetensors_dtype::f32,
                      {{"step", std::to_string(state_.step)}});
    {
      std::ofstream out(staging / "trainer_state.json");
      REDRAFT_REQUIRE(out.good(), "distill_trainer::save_checkpoint: cannot write ",
                      (staging / "trainer_state.json").string());
      const nlohmann::json j{{"step", state_.step},
                             {"options", detail::distill_options_to_json(options_)},
                             {"data_fingerprint", fingerprint_text()},
                             {"data_sequences", data_.sequences.size()},
                             {"training_positions", anchors_.size()}};
      out << j.dump(2) << "\n";
      REDRAFT_REQUIRE(out.good(),
                      "distill_trainer::save_checkpoint: writing trainer_state.json failed");
    }
    for (const char* name :
         {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"}) {
      std::error_code ec;
      std::filesystem::rename(staging / name, dir / name, ec);
      REDRAFT_REQUIRE(!ec, "distill_trainer::save_checkpoint: cannot move ",
                      (staging / name).string(), " to ", dir.string(), " (", ec.message(), ")");
    }
    std::filesystem::remove_all(staging);
  }

  // Trains up to step `until_step` (default: options.optimizer.total_steps), writing checkpoints
  // to `out_dir` (none if empty) every checkpoint_every steps and at the last step. Calls
  // `progress` every log_every steps and at the last step. Throws redraft::error when the loss or
  // the gradient becomes non-finite (the last checkpoint in out_dir stays as it was).
  void train(const std::filesystem::path& out_dir, const distill_progress_callback& progress = {},
             std::int64_t until_step = -1) {
    using clock = std::chrono::steady_clock;
    const std::int64_t total = options_.optimizer.total_steps;
    const std::int64_t stop = until_step < 0 ? total : std::min(until_step, total);
    const auto run_start = clock::now();
    distill_batch b;
    std::vector<std::int64_t> which(static_cast<std::size_t>(options_.batch));
    distill_loss_stats window;
    double window_grad = 0.0, window_lr = 0.0;
    std::int64_t window_steps = 0;
    auto window_start = clock::now();
    while (state_.step < stop) {
      const std::int64_t k = state_.step;
      auto t0 = clock::now();
      const philox_stream draws{options_.seed, 0xBA7Cu, static_cast<std::uint32_t>(k)};
      for (std::size_t r = 0; r < which.size(); ++r) {
        const std::uint64_t bits =
            (static_cast<std::uint64_t>(draws.bits(2 * r)) << 32) | draws.bits(2 * r + 1);
        which[r] = static_cast<std::int64_t>(bits % anchors_.size());
      }
      assemble_distill_batch(data_, anchors_, which, options_.next_n, options_.loss, b);
      timing_.batch_s += std::chrono::duration<double>(clock::now() - t0).count();
      const distill_loss_stats stats = draft_head_loss(params_, data_.embedding_view(), b,
                                                       options_.loss, &grad_, ws_, &timing_.head);
      t0 = clock::now();
      bool finite = std::isfinite(stats.loss);
      for (const float g : grad_.values()) finite = finite && std::isfinite(g);
      if (!finite) {
        detail::throw_error("distill: the loss became non-finite (", stats.loss, ") at step ",
                            k + 1, "; training stopped. ",
                            out_dir.empty()
                                ? std::string("No checkpoint directory was given.")
                                : "The last good checkpoint in " + out_dir.string() + " is kept.",
                            " Try a lower learning rate (--lr).");
      }
      const adamw_update_info info = adamw_update(params_, grad_, state_, options_.optimizer);
      timing_.optimizer_s += std::chrono::duration<double>(clock::now() - t0).count();
      window.merge(stats);
      window_grad += info.grad_norm;
      window_lr = info.learning_rate;
      ++window_steps;
      const bool last = state_.step == total || state_.step == stop;
      if (!out_dir.empty() &&
          ((options_.checkpoint_every > 0 && state_.step % options_.checkpoint_every == 0) ||
           state_.step == total)) {
        t0 = clock::now();
        save_checkpoint(out_dir);
        timing_.checkpoint_s += std::chrono::duration<double>(clock::now() - t0).count();
      }
      if (progress && ((options_.log_every > 0 && state_.step % options_.log_every == 0) || last)) {
        const double seconds = std::chrono::duration<double>(clock::now() - window_start).count();
        distill_progress p;
        p.step = state_.step;
        p.total_steps = total;
        double loss = 0.0;
        std::int64_t labels = 0;
        for (std::size_t i = 0; i < window.step_loss.size(); ++i) {
          const double w = options_.loss.step_weight.empty() ? 1.0 : options_.loss.step_weight[i];
          loss += w * window.step_loss[i];
          p.accuracy.push_back(window.accuracy(i));
          labels += window.counted[i];
        }
        p.loss = loss;
        p.learning_rate = window_lr;
        p.grad_norm = window_grad / static_cast<double>(window_steps);
        p.positions_per_s = static_cast<double>(window_steps * options_.batch) / seconds;
        p.tokens_per_s = static_cast<double>(labels) / seconds;
        progress(p);
        window = distill_loss_stats{};
        window_grad = 0.0;
        window_steps = 0;
        window_start = clock::now();
      }
    }
    timing_.total_s += std::chrono::duration<double>(clock::now() - run_start).count();
  }

  // The loss and top-1 accuracy per future step of the current head over every training
  // position of `data` (see evaluate_draft_head).
  distill_loss_stats evaluate(const distill_dataset& data) const {
    return evaluate_draft_head(params_, data, options_.next_n, options_.loss, options_.batch);
  }

 private:
  std::string fingerprint_text() const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(data_.fingerprint()));
    return buf;
  }

  const distill_dataset& data_;
  distill_options options_;
  head_parameters<float> params_, grad_;
  adamw_state state_;
  std::vector<distill_position> anchors_;
  head_workspace<float> ws_;
  distill_timing timing_;
};

}  // namespace redraft
