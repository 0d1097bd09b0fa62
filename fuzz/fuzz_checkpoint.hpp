// fuzz/fuzz_checkpoint.hpp: the checkpoint reader, config.json + model.safetensors from bytes.
//
// Input layout: u16 little-endian n, then n bytes of config.json text, then the safetensors
// image (everything left). Exercises draft_config_from_json, parse_safetensors and, when both
// parse, make_draft_head on the CPU backend (names, shapes, dtypes validated before allocation).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "fuzz_input.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/safetensors.hpp"

namespace redraft_fuzz {

inline outcome fuzz_checkpoint(const std::uint8_t* data, std::size_t size) {
  outcome out;
  byte_reader in(data, size);
  const std::size_t config_length =
      static_cast<std::size_t>(in.byte()) | (static_cast<std::size_t>(in.byte()) << 8);
  const std::vector<std::uint8_t> config_bytes = in.take(config_length);
  const std::vector<std::uint8_t> weights = in.rest();

  bool config_ok = false;
  redraft::draft_config config;
  try {
    // The parse itself belongs to load_draft_head, which turns a JSON exception into
    // redraft::error; here we call nlohmann directly and only fuzz what redraft does with it.
    const nlohmann::json j = nlohmann::json::parse(config_bytes.begin(), config_bytes.end(),
                                                   nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded()) {
      config = redraft::draft_config_from_json(j, "fuzz/config.json");
      config_ok = true;
      FUZZ_CHECK(config.vocab_size >= 1 && config.hidden_size >= 1 && config.exit_dim >= 1);
      // The expected tensor list of a validated config is small enough to build.
      const auto shapes = redraft::draft_head_tensor_shapes(config);
      FUZZ_CHECK(!shapes.empty());
      out.ok("config");
    }
  } catch (const redraft::error& e) {
    out.refused("config", e);
  }

  bool weights_ok = false;
  redraft::safetensors_file file;
  try {
    file = redraft::parse_safetensors(weights.data(), weights.size(), "fuzz/model.safetensors");
    weights_ok = true;
    for (const auto& [name, t] : file.tensors) {
      FUZZ_CHECK(static_cast<std::int64_t>(t.values.size()) == t.element_count());
    }
    out.ok("safetensors");
  } catch (const redraft::error& e) {
    out.refused("safetensors", e);
  }

  if (config_ok && weights_ok) {
    try {
      const auto head = redraft::make_draft_head(redraft::cpu_backend{}, config, file.tensors,
                                                 "fuzz/model.safetensors");
      // A loaded head round-trips through the writer and the reader.
      const auto bytes = redraft::serialize_safetensors(redraft::draft_head_tensors(head));
      const auto again = redraft::parse_safetensors(bytes.data(), bytes.size());
      FUZZ_CHECK(again.tensors.size() == file.tensors.size());
      out.ok("draft_head");
    } catch (const redraft::error& e) {
      out.refused("draft_head", e);
    }
  }
  return out;
}

}  // namespace redraft_fuzz
