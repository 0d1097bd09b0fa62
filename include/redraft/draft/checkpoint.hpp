// redraft/draft/checkpoint.hpp: loading and saving a draft head (Apple / Hugging Face layout).
//
// A checkpoint is a directory:
//
//   config.json         {"vocab_size": V, "hidden_size": H, "exit_dim": E, "num_draft_layers": N,
//                        "rnn": true, "recurrence": "silu", "logit_top_k": 50,
//                        "logit_mask_value": -50000.0}
//   model.safetensors   the weights under their PyTorch names, [out, in] layouts:
//                         input_proj.weight [E, 2H], input_proj.bias [E]   (only when E != 2H)
//                         lm_head.{i}.linear.weight [E, E], lm_head.{i}.linear.bias [E], i < N
//                         lm_head.{N}.weight [V, E]
//                         rnn_u.weight [H, H], rnn_u.bias [H], rnn_w.weight [H, H]
//                                                          (not for recurrence running_sum)
//
// config.json fields: vocab_size, hidden_size, exit_dim, num_draft_layers are required. `rnn` is
// Apple's flag (true: the recurrent weights exist, false: the running sum); `recurrence` is
// redraft's refinement ("silu", "linear", "running_sum"); when absent it follows `rnn` (true ->
// silu, Apple's trained form), and when both are present they must agree. logit_top_k (50) and
// logit_mask_value (-50000) are optional. Other fields (Hugging Face adds many) are ignored.
//
// Loading validates the config, then that every expected tensor is present with the expected
// shape, that no unexpected tensor is present, and that dtypes are F32, F16 or BF16; every problem
// is a redraft::error naming the file, the tensor and the values. Host code (files), producing a
// head in any backend's memory.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/draft/draft_config.hpp"
#include "redraft/draft/draft_head.hpp"
#include "redraft/draft/safetensors.hpp"

namespace redraft {

// The config.json object of a draft head.
inline nlohmann::json draft_config_to_json(const draft_config& config) {
  return nlohmann::json{
      {"vocab_size", config.vocab_size},   {"hidden_size", config.hidden_size},
      {"exit_dim", config.exit_dim},       {"num_draft_layers", config.num_draft_layers},
      {"rnn", config.has_rnn_weights()},   {"recurrence", recurrence_name(config.recurrence)},
      {"logit_top_k", config.logit_top_k}, {"logit_mask_value", config.logit_mask_value}};
}

// Parses a config.json object (see the file comment); `source` names it in errors.
inline draft_config draft_config_from_json(const nlohmann::json& j,
                                           const std::string& source = "config.json") {
  REDRAFT_REQUIRE(j.is_object(), "load_draft_head: ", source, " is not a JSON object");
  const auto integer = [&](const char* field, bool required, std::int64_t fallback) {
    if (!j.contains(field)) {
      REDRAFT_REQUIRE(!required, "load_draft_head: ", source, " has no field '", field, "'");
      return fallback;
    }
    const nlohmann::json& v = j.at(field);
    // NOTE: a float is accepted when it holds an integer; its range is checked before the
    // conversion (a double outside int64 converted to int64 is undefined behaviour), and an
    // unsigned value above INT64_MAX is refused rather than wrapped.
    const bool float_integer = v.is_number_float() && std::abs(v.get<double>()) < 0x1p62 &&
                               v.get<double>() == std::trunc(v.get<double>());
    const bool in_range = v.is_number_unsigned() ? v.get<std::uint64_t>() <= std::uint64_t{1} << 62
                                                 : v.is_number_integer() || float_integer;
    REDRAFT_REQUIRE(in_range, "load_draft_head: ", source, ": field '", field, "' = ", v.dump(),
                    " is not an integer (or is beyond 2^62)");
    return float_integer ? static_cast<std::int64_t>(v.get<double>()) : v.get<std::int64_t>();
  };
  draft_config config;
  config.vocab_size = integer("vocab_size", true, 0);
  config.hidden_size = integer("hidden_size", true, 0);
  config.exit_dim = integer("exit_dim", true, 0);
  config.num_draft_layers = integer("num_draft_layers", true, 0);
  config.logit_top_k = integer("logit_top_k", false, 50);
  if (j.contains("logit_mask_value")) {
    REDRAFT_REQUIRE(j.at("logit_mask_value").is_number(), "load_draft_head: ", source,
                    ": field 'logit_mask_value' = ", j.at("logit_mask_value").dump(),
                    " is not a number");
    config.logit_mask_value = j.at("logit_mask_value").get<float>();
  }
  bool rnn = true;
  if (j.contains("rnn")) {
    const nlohmann::json& v = j.at("rnn");
    REDRAFT_REQUIRE(v.is_boolean() || v.is_number_integer(), "load_draft_head: ", source,
                    ": field 'rnn' = ", v.dump(), " is not a bool");
    rnn = v.is_boolean() ? v.get<bool>() : v.get<std::int64_t>() != 0;
  }
  config.recurrence = rnn ? recurrence::silu : recurrence::running_sum;
  if (j.contains("recurrence")) {
    REDRAFT_REQUIRE(j.at("recurrence").is_string(), "load_draft_head: ", source,
                    ": field 'recurrence' is not a string");
    const std::string name = j.at("recurrence").get<std::string>();
    try {
      config.recurrence = parse_recurrence(name);
    } catch (const error& e) {
      detail::throw_error("load_draft_head: ", source, ": ", e.what());
    }
    REDRAFT_REQUIRE(!j.contains("rnn") || rnn == config.has_rnn_weights(),
                    "load_draft_head: ", source, ": 'rnn' is ", rnn ? "true" : "false",
                    " but 'recurrence' is '", name,
                    "' (rnn true goes with silu or linear, false with running_sum)");
  }
  const std::string where = "load_draft_head: " + source;
  config.validate(where.c_str());
  return config;
}

// The tensors a head of this config has, with their shapes, in parameter order.
inline std::vector<std::pair<std::string, std::vector<std::int64_t>>> draft_head_tensor_shapes(
    const draft_config& c) {
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> out;
  if (c.has_input_proj()) {
    out.push_back({"input_proj.weight", {c.exit_dim, 2 * c.hidden_size}});
    out.push_back({"input_proj.bias", {c.exit_dim}});
  }
  for (std::int64_t i = 0; i < c.num_draft_layers; ++i) {
    out.push_back({"lm_head." + std::to_string(i) + ".linear.weight", {c.exit_dim, c.exit_dim}});
    out.push_back({"lm_head." + std::to_string(i) + ".linear.bias", {c.exit_dim}});
  }
  out.push_back(
      {"lm_head." + std::to_string(c.num_draft_layers) + ".weight", {c.vocab_size, c.exit_dim}});
  if (c.has_rnn_weights()) {
    out.push_back({"rnn_u.weight", {c.hidden_size, c.hidden_size}});
    out.push_back({"rnn_u.bias", {c.hidden_size}});
    out.push_back({"rnn_w.weight", {c.hidden_size, c.hidden_size}});
  }
  return out;
}

namespace detail {

inline std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

}  // namespace detail

// Builds a head from named host tensors (as read from model.safetensors or a golden case).
// Validates before it allocates: every expected name present with its exact shape, no extra
// names, dtypes F32/F16/BF16. `source` names the origin in errors. `format`: the head's weight
// format (draft_head.hpp); by default the one the tensors store (stored_weight_format), so an
// F16 checkpoint stays F16 in memory and its values are kept exactly.
template <Backend B>
draft_head<B> make_draft_head(B backend, const draft_config& config,
                              const std::map<std::string, tensor_data>& tensors,
                              const std::string& source = "tensors",
                              std::optional<weight_format> format = std::nullopt) {
  config.validate("make_draft_head");
  const auto expected = draft_head_tensor_shapes(config);
  for (const auto& [name, shape] : expected) {
    const auto it = tensors.find(name);
    if (it == tensors.end()) {
      std::string hint;
      if (name.rfind("input_proj", 0) == 0)
        hint = " (exit_dim " + std::to_string(config.exit_dim) + " != 2 * hidden_size " +
               std::to_string(2 * config.hidden_size) + ", so the head needs an input projection)";
      if (name.rfind("rnn_", 0) == 0)
        hint = std::string(" (recurrence '") + recurrence_name(config.recurrence) +
               "' needs the recurrent weights; use running_sum / rnn false for a head without)";
      detail::throw_error("load_draft_head: ", source, ": tensor '", name, "' ",
                          detail::shape_text(shape), " is missing", hint);
    }
    const tensor_data& t = it->second;
    REDRAFT_REQUIRE(t.shape == shape, "load_draft_head: ", source, ": tensor '", name,
                    "' has shape ", detail::shape_text(t.shape), " but the config (V ",
                    config.vocab_size, ", H ", config.hidden_size, ", E ", config.exit_dim, ", N ",
                    config.num_draft_layers, ") needs ", detail::shape_text(shape));
    REDRAFT_REQUIRE(t.stored_dtype == "F32" || t.stored_dtype == "F16" || t.stored_dtype == "BF16",
                    "load_draft_head: ", source, ": tensor '", name, "' has dtype ", t.stored_dtype,
                    " (F32, F16 or BF16 expected)");
    REDRAFT_REQUIRE(static_cast<std::int64_t>(t.values.size()) == t.element_count(),
                    "load_draft_head: ", source, ": tensor '", name, "' has ", t.values.size(),
                    " values for shape ", detail::shape_text(t.shape));
  }
  for (const auto& [name, t] : tensors) {
    bool known = false;
    for (const auto& e : expected) known = known || e.first == name;
    if (known) continue;
    std::string hint;
    if (name.rfind("input_proj", 0) == 0)
      hint = " (exit_dim " + std::to_string(config.exit_dim) +
             " == 2 * hidden_size, so the head has no input projection)";
    else if (name.rfind("rnn_", 0) == 0)
      hint = " (recurrence running_sum / rnn false has no recurrent weights)";
    else if (name.rfind("lm_head.", 0) == 0)
      hint = " (num_draft_layers is " + std::to_string(config.num_draft_layers) + ")";
    detail::throw_error("load_draft_head: ", source, ": unexpected tensor '", name, "' ",
                        detail::shape_text(t.shape), hint);
  }
  draft_head<B> head(std::move(backend), config, format.value_or(stored_weight_format(tensors)));
  for (const auto& [name, shape] : expected) head.set_parameter(name, tensors.at(name).values);
  return head;
}

// The head's weights as named host tensors (stored_dtype "F32").
template <Backend B>
std::map<std::string, tensor_data> draft_head_tensors(const draft_head<B>& head) {
  std::map<std::string, tensor_data> out;
  for (const std::string& name : head.parameter_names()) {
    out[name] = tensor_data{head.parameter_shape(name), head.get_parameter(name), "F32"};
  }
  return out;
}

// Loads a checkpoint directory (config.json + model.safetensors) into backend memory, weight
// matrices in `format` (default: as the checkpoint stores them; see make_draft_head).
template <Backend B>
draft_head<B> load_draft_head(B backend, const std::filesystem::path& directory,
                              std::optional<weight_format> format = std::nullopt) {
  const std::filesystem::path config_path = directory / "config.json";
  const std::filesystem::path weights_path = directory / "model.safetensors";
  std::ifstream in(config_path);
  REDRAFT_REQUIRE(in.good(), "load_draft_head: cannot open ", config_path.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    detail::throw_error("load_draft_head: ", config_path.string(), " is not valid JSON (", e.what(),
                        ")");
  }
  const draft_config config = draft_config_from_json(j, config_path.string());
  return make_draft_head(std::move(backend), config, read_safetensors(weights_path),
                         weights_path.string(), format);
}

// Saves a head as a checkpoint directory (created if missing), weights stored as `dtype`.
template <Backend B>
void save_draft_head(const draft_head<B>& head, const std::filesystem::path& directory,
                     safetensors_dtype dtype = safetensors_dtype::f32) {
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  REDRAFT_REQUIRE(!ec, "save_draft_head: cannot create ", directory.string(), " (", ec.message(),
                  ")");
  write_safetensors(directory / "model.safetensors", draft_head_tensors(head), dtype,
                    {{"format", "pt"}});
  std::ofstream out(directory / "config.json");
  REDRAFT_REQUIRE(out.good(), "save_draft_head: cannot write ",
                  (directory / "config.json").string());
  out << draft_config_to_json(head.config()).dump(2) << "\n";
  REDRAFT_REQUIRE(out.good(), "save_draft_head: writing ", (directory / "config.json").string(),
                  " failed");
}

}  // namespace redraft
