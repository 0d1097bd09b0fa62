// redraft/testing/tiny_llama_io.hpp: the tiny Llama's checkpoint in Hugging Face's layout.
//
// A checkpoint is a directory holding
//   config.json         LlamaConfig fields: vocab_size, hidden_size, num_hidden_layers,
//                       num_attention_heads, num_key_value_heads (= num_attention_heads),
//                       head_dim, intermediate_size, max_position_embeddings, rope_theta,
//                       rms_norm_eps, tie_word_embeddings (+ model_type "llama", architectures,
//                       hidden_act "silu", no biases, no rope_scaling)
//   model.safetensors   LlamaForCausalLM tensor names, [out, in] row-major:
//                         model.embed_tokens.weight                         [V, H]
//                         model.layers.{i}.input_layernorm.weight           [H]
//                         model.layers.{i}.self_attn.{q,k,v}_proj.weight    [D, H]
//                         model.layers.{i}.self_attn.o_proj.weight          [H, D]
//                         model.layers.{i}.post_attention_layernorm.weight  [H]
//                         model.layers.{i}.mlp.{gate,up}_proj.weight        [I, H]
//                         model.layers.{i}.mlp.down_proj.weight             [H, I]
//                         model.norm.weight                                 [H]
//                         lm_head.weight                                    [V, H] (untied only)
// so a checkpoint saved here loads in transformers' LlamaForCausalLM.from_pretrained, and a small
// float Llama checkpoint without grouped-query attention or RoPE scaling loads here.
// Host code (files).
#pragma once

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/draft/safetensors.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/testing/tiny_llama_weights.hpp"

namespace redraft::testing {

namespace detail {

// The shortest decimal that reads back as the same float (so 1e-5f is written "1e-05", not
// 9.99999974737875e-06), as a JSON number.
inline nlohmann::json float_to_json(float value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return nlohmann::json::parse(std::string(buffer, result.ptr));
}

}  // namespace detail

// The config.json object of a configuration.
inline nlohmann::json tiny_llama_config_to_json(const tiny_llama_config& c) {
  return nlohmann::json{{"architectures", {"LlamaForCausalLM"}},
                        {"model_type", "llama"},
                        {"torch_dtype", "float32"},
                        {"hidden_act", "silu"},
                        {"attention_bias", false},
                        {"mlp_bias", false},
                        {"rope_scaling", nullptr},
                        {"vocab_size", c.vocab_size},
                        {"hidden_size", c.hidden_size},
                        {"num_hidden_layers", c.num_layers},
                        {"num_attention_heads", c.num_heads},
                        {"num_key_value_heads", c.num_heads},
                        {"head_dim", c.head_dim},
                        {"intermediate_size", c.intermediate_size},
                        {"max_position_embeddings", c.max_context},
                        {"rope_theta", detail::float_to_json(c.rope_theta)},
                        {"rms_norm_eps", detail::float_to_json(c.rms_norm_eps)},
                        {"tie_word_embeddings", c.tie_word_embeddings}};
}

// Parses a config.json object; `source` names it in errors. Required: vocab_size, hidden_size,
// num_hidden_layers, num_attention_heads, intermediate_size, max_position_embeddings. Defaults as
// in transformers' LlamaConfig: head_dim = hidden_size / num_attention_heads, rope_theta 10000,
// rms_norm_eps 1e-6, tie_word_embeddings false. Throws redraft::error naming the field for a
// missing or mistyped field, and for what the model does not implement (num_key_value_heads !=
// num_attention_heads, hidden_act other than silu, biases, rope_scaling).
inline tiny_llama_config tiny_llama_config_from_json(const nlohmann::json& j,
                                                     const std::string& source = "config.json") {
  const char* fn = "load_tiny_llama";
  REDRAFT_REQUIRE(j.is_object(), fn, ": ", source, " is not a JSON object");
  const auto integer = [&](const char* field) -> std::int32_t {
    REDRAFT_REQUIRE(j.contains(field), fn, ": ", source, " has no \"", field, "\"");
    REDRAFT_REQUIRE(j.at(field).is_number_integer(), fn, ": ", source, ": \"", field,
                    "\" is not an integer (", j.at(field).dump(), ")");
    return j.at(field).get<std::int32_t>();
  };
  const auto number = [&](const char* field, float fallback) -> float {
    if (!j.contains(field)) return fallback;
    REDRAFT_REQUIRE(j.at(field).is_number(), fn, ": ", source, ": \"", field,
                    "\" is not a number (", j.at(field).dump(), ")");
    return j.at(field).get<float>();
  };
  tiny_llama_config c;
  c.vocab_size = integer("vocab_size");
  c.hidden_size = integer("hidden_size");
  c.num_layers = integer("num_hidden_layers");
  c.num_heads = integer("num_attention_heads");
  c.intermediate_size = integer("intermediate_size");
  c.max_context = integer("max_position_embeddings");
  REDRAFT_REQUIRE(c.num_heads >= 1, fn, ": ", source, ": num_attention_heads ", c.num_heads,
                  " must be at least 1");
  c.head_dim = j.contains("head_dim") && !j.at("head_dim").is_null() ? integer("head_dim")
                                                                     : c.hidden_size / c.num_heads;
  if (j.contains("num_key_value_heads") && !j.at("num_key_value_heads").is_null()) {
    const std::int32_t kv_heads = integer("num_key_value_heads");
    REDRAFT_REQUIRE(kv_heads == c.num_heads, fn, ": ", source, ": num_key_value_heads ", kv_heads,
                    " differs from num_attention_heads ", c.num_heads,
                    " (grouped-query attention is not implemented)");
  }
  c.rope_theta = number("rope_theta", 10000.0f);
  c.rms_norm_eps = number("rms_norm_eps", 1e-6f);
  c.tie_word_embeddings = false;
  if (j.contains("tie_word_embeddings")) {
    REDRAFT_REQUIRE(j.at("tie_word_embeddings").is_boolean(), fn, ": ", source,
                    ": \"tie_word_embeddings\" is not a boolean");
    c.tie_word_embeddings = j.at("tie_word_embeddings").get<bool>();
  }
  if (j.contains("hidden_act")) {
    REDRAFT_REQUIRE(j.at("hidden_act") == "silu", fn, ": ", source, ": hidden_act ",
                    j.at("hidden_act").dump(), " is not implemented (only \"silu\")");
  }
  for (const char* flag : {"attention_bias", "mlp_bias"}) {
    REDRAFT_REQUIRE(!j.contains(flag) || j.at(flag) == false, fn, ": ", source, ": ", flag,
                    " is set but the model has no biases");
  }
  REDRAFT_REQUIRE(!j.contains("rope_scaling") || j.at("rope_scaling").is_null(), fn, ": ", source,
                  ": rope_scaling ", j.contains("rope_scaling") ? j.at("rope_scaling").dump() : "",
                  " is not implemented");
  check_config(fn, c);
  return c;
}

// The weights as named tensors in HF's names and shapes (lm_head.weight only when untied).
inline std::map<std::string, tensor_data> tiny_llama_tensors(const tiny_llama_config& c,
                                                             const tiny_llama_weights& w) {
  check_weights("save_tiny_llama", c, w);
  const std::int64_t v = c.vocab_size, h = c.hidden_size, d = c.attention_width(),
                     i = c.intermediate_size;
  std::map<std::string, tensor_data> out;
  const auto put = [&out](const std::string& name, std::vector<std::int64_t> shape,
                          const std::vector<float>& values) {
    tensor_data t;
    t.shape = std::move(shape);
    t.values = values;
    out.emplace(name, std::move(t));
  };
  put("model.embed_tokens.weight", {v, h}, w.embed_tokens);
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const auto& lw = w.layers[l];
    put(p + "input_layernorm.weight", {h}, lw.input_layernorm);
    put(p + "self_attn.q_proj.weight", {d, h}, lw.q_proj);
    put(p + "self_attn.k_proj.weight", {d, h}, lw.k_proj);
    put(p + "self_attn.v_proj.weight", {d, h}, lw.v_proj);
    put(p + "self_attn.o_proj.weight", {h, d}, lw.o_proj);
    put(p + "post_attention_layernorm.weight", {h}, lw.post_attention_layernorm);
    put(p + "mlp.gate_proj.weight", {i, h}, lw.gate_proj);
    put(p + "mlp.up_proj.weight", {i, h}, lw.up_proj);
    put(p + "mlp.down_proj.weight", {h, i}, lw.down_proj);
  }
  put("model.norm.weight", {h}, w.norm);
  if (!c.tie_word_embeddings) put("lm_head.weight", {v, h}, w.lm_head);
  return out;
}

// Builds weights from named tensors; `source` names the file in errors. Every expected tensor
// must be present with its exact shape; an unexpected tensor is an error (naming it), except
// HF's derived "model.layers.{i}.self_attn.rotary_emb.inv_freq" buffers and, with tied
// embeddings, an "lm_head.weight" equal to the embedding table (some exporters write both).
inline tiny_llama_weights tiny_llama_weights_from_tensors(
    const tiny_llama_config& c, std::map<std::string, tensor_data> tensors,
    const std::string& source = "model.safetensors") {
  const char* fn = "load_tiny_llama";
  check_config(fn, c);
  const std::int64_t v = c.vocab_size, h = c.hidden_size, d = c.attention_width(),
                     i = c.intermediate_size;
  const auto take = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    const auto it = tensors.find(name);
    REDRAFT_REQUIRE(it != tensors.end(), fn, ": ", source, " has no tensor '", name, "'");
    if (it->second.shape != shape) {
      std::string got, want;
      for (const std::int64_t e : it->second.shape)
        got += (got.empty() ? "" : ", ") + std::to_string(e);
      for (const std::int64_t e : shape) want += (want.empty() ? "" : ", ") + std::to_string(e);
      ::redraft::detail::throw_error(fn, ": ", source, ": tensor '", name, "' has shape [", got,
                                     "] but the configuration implies [", want, "]");
    }
    std::vector<float> values = std::move(it->second.values);
    tensors.erase(it);
    return values;
  };
  tiny_llama_weights w;
  w.embed_tokens = take("model.embed_tokens.weight", {v, h});
  for (std::int32_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tiny_llama_layer_weights lw;
    lw.input_layernorm = take(p + "input_layernorm.weight", {h});
    lw.q_proj = take(p + "self_attn.q_proj.weight", {d, h});
    lw.k_proj = take(p + "self_attn.k_proj.weight", {d, h});
    lw.v_proj = take(p + "self_attn.v_proj.weight", {d, h});
    lw.o_proj = take(p + "self_attn.o_proj.weight", {h, d});
    lw.post_attention_layernorm = take(p + "post_attention_layernorm.weight", {h});
    lw.gate_proj = take(p + "mlp.gate_proj.weight", {i, h});
    lw.up_proj = take(p + "mlp.up_proj.weight", {i, h});
    lw.down_proj = take(p + "mlp.down_proj.weight", {h, i});
    tensors.erase(p + "self_attn.rotary_emb.inv_freq");
    w.layers.push_back(std::move(lw));
  }
  w.norm = take("model.norm.weight", {h});
  if (c.tie_word_embeddings) {
    const auto it = tensors.find("lm_head.weight");
    if (it != tensors.end()) {
      REDRAFT_REQUIRE(
          it->second.values == w.embed_tokens, fn, ": ", source,
          ": tie_word_embeddings is set but lm_head.weight differs from model.embed_tokens.weight");
      tensors.erase(it);
    }
  } else {
    w.lm_head = take("lm_head.weight", {v, h});
  }
  REDRAFT_REQUIRE(tensors.empty(), fn, ": ", source, ": unexpected tensor '",
                  tensors.empty() ? std::string() : tensors.begin()->first, "' (", tensors.size(),
                  " unexpected in all)");
  return w;
}

// save_tiny_llama(directory, config, weights[, dtype]): writes directory/config.json and
// directory/model.safetensors (F32 unless dtype says otherwise), creating the directory.
// Throws redraft::error when the weights do not match the configuration or a file cannot be
// written.
inline void save_tiny_llama(const std::filesystem::path& directory, const tiny_llama_config& config,
                            const tiny_llama_weights& weights,
                            safetensors_dtype dtype = safetensors_dtype::f32) {
  const auto tensors = tiny_llama_tensors(config, weights);
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  REDRAFT_REQUIRE(!ec, "save_tiny_llama: cannot create ", directory.string(), " (", ec.message(),
                  ")");
  write_safetensors(directory / "model.safetensors", tensors, dtype, {{"format", "pt"}});
  std::ofstream out(directory / "config.json", std::ios::trunc);
  REDRAFT_REQUIRE(out.good(), "save_tiny_llama: cannot open ", (directory / "config.json").string(),
                  " for writing");
  out << tiny_llama_config_to_json(config).dump(2) << "\n";
  out.close();
  REDRAFT_REQUIRE(out.good(), "save_tiny_llama: writing ", (directory / "config.json").string(),
                  " failed");
}

inline void save_tiny_llama(const std::filesystem::path& directory, const tiny_llama& model,
                            safetensors_dtype dtype = safetensors_dtype::f32) {
  save_tiny_llama(directory, model.config(), model.weights(), dtype);
}

// Reads directory/config.json into a configuration (see tiny_llama_config_from_json).
inline tiny_llama_config load_tiny_llama_config(const std::filesystem::path& directory) {
  const std::filesystem::path path = directory / "config.json";
  std::ifstream in(path);
  REDRAFT_REQUIRE(in.good(), "load_tiny_llama: cannot open ", path.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    ::redraft::detail::throw_error("load_tiny_llama: ", path.string(),
                                   " is not valid JSON: ", e.what());
  }
  return tiny_llama_config_from_json(j, path.string());
}

// load_tiny_llama(directory, num_slots, format): the model of a checkpoint directory
// (config.json + model.safetensors; F32, F16, BF16 or F64 tensors). `format`: the projection
// matrices' format (tiny_llama's constructor); by default the one the checkpoint stores
// (stored_weight_format), so an F16 checkpoint is kept in F16 with its exact values. Throws
// redraft::error naming the file and field or tensor for anything missing, malformed or
// unsupported.
inline tiny_llama load_tiny_llama(const std::filesystem::path& directory,
                                  std::int32_t num_slots = 1,
                                  std::optional<weight_format> format = std::nullopt) {
  const tiny_llama_config config = load_tiny_llama_config(directory);
  const std::filesystem::path weights_path = directory / "model.safetensors";
  const auto tensors = read_safetensors(weights_path);
  tiny_llama_weights weights =
      tiny_llama_weights_from_tensors(config, tensors, weights_path.string());
  return tiny_llama(config, std::move(weights), num_slots,
                    format.value_or(stored_weight_format(tensors)));
}

}  // namespace redraft::testing
