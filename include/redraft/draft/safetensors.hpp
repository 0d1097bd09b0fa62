// redraft/draft/safetensors.hpp: reader and writer of the safetensors checkpoint format.
//
// Host-only code (files, std::vector); generic, not specific to the draft head: any model's
// named float tensors can be stored with it.
//
// The format (a fact, as published with the Hugging Face `safetensors` project):
//
//   bytes [0, 8)          N, the header length, an unsigned 64-bit little-endian integer
//   bytes [8, 8 + N)      a UTF-8 JSON object: for every tensor
//                           "name": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin,
//                           end]}
//                         and optionally "__metadata__": {"key": "string value", ...}
//   bytes [8 + N, EOF)    the data buffer; a tensor's bytes are [begin, end) relative to its start,
//                         little-endian, row-major
//
// Reading converts F32, F16, BF16 (and F64) to float; every other dtype is an error. The reader
// checks everything before it trusts it: the header length against the file size, the JSON, each
// entry's fields, that end - begin equals prod(shape) * sizeof(dtype), that ranges stay inside the
// data buffer, do not overlap, and cover it without holes (as the reference implementation
// requires), and that no name appears twice. Every malformed input throws redraft::error naming
// the file and the tensor or field; nothing crashes and nothing is read out of bounds.
//
// Writing stores F32 by default, or F16 / BF16 (round to nearest, ties to even). Tensors are laid
// out in name order; the header is padded with spaces to a multiple of 8 bytes so the data is
// 8-byte aligned.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"

namespace redraft {

// One tensor as read from (or to be written to) a safetensors file.
struct tensor_data {
  std::vector<std::int64_t> shape;   // [d0, d1, ...]; empty for a scalar
  std::vector<float> values;         // [prod(shape)], row-major
  std::string stored_dtype = "F32";  // the dtype in the file ("F32", "F16", "BF16", "F64")

  // prod(shape) (1 for a scalar).
  std::int64_t element_count() const {
    std::int64_t n = 1;
    for (const std::int64_t d : shape) n *= d;
    return n;
  }
};

// Storage types the writer offers.
enum class safetensors_dtype { f32, f16, bf16 };

// The weight format a model's tensors store its weight matrices (the 2-D tensors) in: F16 or BF16
// when every matrix has that dtype, else F32 (a mix, F32 or F64 tensors).
inline weight_format stored_weight_format(const std::map<std::string, tensor_data>& tensors) {
  std::string common;
  for (const auto& [name, t] : tensors) {
    if (t.shape.size() != 2) continue;
    if (common.empty()) common = t.stored_dtype;
    if (common != t.stored_dtype) return weight_format::f32;
  }
  return common == "F16"    ? weight_format::f16
         : common == "BF16" ? weight_format::bf16
                            : weight_format::f32;
}

// A whole file: its tensors by name and the optional "__metadata__" string map.
struct safetensors_file {
  std::map<std::string, tensor_data> tensors;
  std::map<std::string, std::string> metadata;
};

namespace detail {

inline std::uint64_t read_u64_le(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

inline void write_u64_le(std::uint64_t v, unsigned char* p) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>((v >> (8 * i)) & 0xffu);
}

// Bytes per element of a dtype the reader converts, 0 for a dtype it does not know.
inline std::int64_t safetensors_dtype_size(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F16" || dtype == "BF16") return 2;
  if (dtype == "F64") return 8;
  return 0;
}

// NOTE: the reference implementation refuses headers above 100 MB; so do we, so that a corrupt
// length cannot make us allocate gigabytes before the JSON is even looked at.
inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

// One validated header entry.
struct safetensors_entry {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // relative to the data buffer
};

// Header phase 1: the JSON object. Duplicate keys are legal JSON but nlohmann keeps only the
// last one, silently; a parser callback sees every key of the top-level object and catches them.
inline nlohmann::json parse_safetensors_json(const char* header, std::size_t header_size,
                                             const std::string& source) {
  using json = nlohmann::json;
  std::set<std::string> seen;
  std::string duplicate;
  const json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1) {
      const std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json parsed;
  try {
    parsed = json::parse(header, header + header_size, on_event);
  } catch (const json::exception& e) {
    throw_error("read_safetensors: ", source, ": the header is not valid JSON (", e.what(), ")");
  }
  REDRAFT_REQUIRE(duplicate.empty(), "read_safetensors: ", source, ": tensor '", duplicate,
                  "' appears twice in the header");
  REDRAFT_REQUIRE(parsed.is_object(), "read_safetensors: ", source,
                  ": the header is not a JSON object");
  return parsed;
}

// Header phase 2a: the string-to-string __metadata__ object into `metadata`.
inline void read_safetensors_metadata(const nlohmann::json& value, const std::string& source,
                                      std::map<std::string, std::string>& metadata) {
  REDRAFT_REQUIRE(value.is_object(), "read_safetensors: ", source,
                  ": __metadata__ is not an object");
  for (auto m = value.begin(); m != value.end(); ++m) {
    REDRAFT_REQUIRE(m.value().is_string(), "read_safetensors: ", source, ": __metadata__ '",
                    m.key(), "' is not a string");
    metadata[m.key()] = m.value().get<std::string>();
  }
}

// The element count of a shape (entry.shape filled from it), saturating.
// NOTE: a lying shape must not overflow the size computation: the product saturates at
// 2^59 elements (2^62 bytes at most, far beyond any data buffer), and a zero extent
// anywhere makes the tensor empty whatever the other extents are.
inline std::uint64_t safetensors_element_count(const nlohmann::json& shape,
                                               const std::string& where, safetensors_entry& entry) {
  constexpr std::uint64_t saturated = std::uint64_t{1} << 59;
  std::uint64_t count = 1;
  bool has_zero = false;
  for (const nlohmann::json& d : shape) {
    REDRAFT_REQUIRE(d.is_number_unsigned() || (d.is_number_integer() && d.get<std::int64_t>() >= 0),
                    where, ": shape entry ", d.dump(), " is not a non-negative integer");
    const std::uint64_t extent = d.get<std::uint64_t>();
    REDRAFT_REQUIRE(extent <= saturated, where, ": shape entry ", extent, " is too large");
    entry.shape.push_back(static_cast<std::int64_t>(extent));
    if (extent == 0)
      has_zero = true;
    else
      count = count > saturated / extent ? saturated : count * extent;
  }
  return has_zero ? 0 : count;
}

// Header phase 2b: one tensor's entry, its fields checked against a data buffer of data_size
// bytes.
inline safetensors_entry parse_safetensors_entry(const std::string& name,
                                                 const nlohmann::json& value,
                                                 std::uint64_t data_size,
                                                 const std::string& source) {
  const std::string where = "read_safetensors: " + source + ": tensor '" + name + "'";
  REDRAFT_REQUIRE(value.is_object(), where, " is not an object");
  REDRAFT_REQUIRE(value.contains("dtype") && value.at("dtype").is_string(), where,
                  " has no string field 'dtype'");
  REDRAFT_REQUIRE(value.contains("shape") && value.at("shape").is_array(), where,
                  " has no array field 'shape'");
  REDRAFT_REQUIRE(value.contains("data_offsets") && value.at("data_offsets").is_array() &&
                      value.at("data_offsets").size() == 2,
                  where, " has no field 'data_offsets' of two integers");
  safetensors_entry entry;
  entry.name = name;
  entry.dtype = value.at("dtype").get<std::string>();
  const std::int64_t element_size = safetensors_dtype_size(entry.dtype);
  REDRAFT_REQUIRE(element_size > 0, where, " has dtype '", entry.dtype,
                  "', which is not supported (F32, F16, BF16, F64)");
  const std::uint64_t count = safetensors_element_count(value.at("shape"), where, entry);
  for (int i = 0; i < 2; ++i) {
    const nlohmann::json& o = value.at("data_offsets")[static_cast<std::size_t>(i)];
    REDRAFT_REQUIRE(o.is_number_unsigned() || (o.is_number_integer() && o.get<std::int64_t>() >= 0),
                    where, ": data_offsets[", i, "] = ", o.dump(),
                    " is not a non-negative integer");
  }
  entry.begin = value.at("data_offsets")[0].get<std::uint64_t>();
  entry.end = value.at("data_offsets")[1].get<std::uint64_t>();
  REDRAFT_REQUIRE(entry.begin <= entry.end, where, ": data_offsets [", entry.begin, ", ", entry.end,
                  "] are reversed");
  REDRAFT_REQUIRE(entry.end <= data_size, where, ": data_offsets [", entry.begin, ", ", entry.end,
                  "] run past the end of the data buffer (", data_size, " bytes)");
  const std::uint64_t expected = count * static_cast<std::uint64_t>(element_size);
  REDRAFT_REQUIRE(entry.end - entry.begin == expected, where, ": shape ", value.at("shape").dump(),
                  " of ", entry.dtype, " needs ", expected, " bytes but data_offsets [",
                  entry.begin, ", ", entry.end, "] span ", entry.end - entry.begin);
  return entry;
}

// Header phase 3: the entries sorted by begin offset must tile the data buffer exactly: no
// overlap, no gap, nothing left over.
inline void check_safetensors_tiling(std::vector<safetensors_entry>& entries,
                                     std::uint64_t data_size, const std::string& source) {
  std::sort(entries.begin(), entries.end(),
            [](const safetensors_entry& a, const safetensors_entry& b) {
              return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
            });
  std::uint64_t covered = 0;
  for (const safetensors_entry& e : entries) {
    REDRAFT_REQUIRE(e.begin >= covered, "read_safetensors: ", source, ": tensor '", e.name,
                    "' data_offsets [", e.begin, ", ", e.end,
                    "] overlap the previous tensor, which ends at ", covered);
    REDRAFT_REQUIRE(e.begin == covered, "read_safetensors: ", source, ": bytes [", covered, ", ",
                    e.begin, ") of the data buffer belong to no tensor (before tensor '", e.name,
                    "')");
    covered = e.end;
  }
  REDRAFT_REQUIRE(covered == data_size, "read_safetensors: ", source, ": the data buffer has ",
                  data_size, " bytes but the tensors cover only ", covered);
}

// Parses and validates the JSON header against a data buffer of data_size bytes.
// `source` names the file in messages. Entries come back sorted by begin offset.
inline std::vector<safetensors_entry> parse_safetensors_header(
    const char* header, std::size_t header_size, std::uint64_t data_size, const std::string& source,
    std::map<std::string, std::string>& metadata) {
  const nlohmann::json parsed = parse_safetensors_json(header, header_size, source);
  std::vector<safetensors_entry> entries;
  for (auto it = parsed.begin(); it != parsed.end(); ++it) {
    if (it.key() == "__metadata__")
      read_safetensors_metadata(it.value(), source, metadata);
    else
      entries.push_back(parse_safetensors_entry(it.key(), it.value(), data_size, source));
  }
  check_safetensors_tiling(entries, data_size, source);
  return entries;
}

// Converts one tensor's little-endian bytes to floats.
inline tensor_data convert_safetensors_entry(const safetensors_entry& entry,
                                             const unsigned char* bytes) {
  tensor_data out;
  out.shape = entry.shape;
  out.stored_dtype = entry.dtype;
  const std::size_t size = static_cast<std::size_t>(safetensors_dtype_size(entry.dtype));
  const std::size_t count = static_cast<std::size_t>(entry.end - entry.begin) / size;
  out.values.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const unsigned char* p = bytes + i * size;
    if (entry.dtype == "F32") {
      const std::uint32_t v =
          static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
          (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
      out.values[i] = std::bit_cast<float>(v);
    } else if (entry.dtype == "F16") {
      out.values[i] = f16_to_float(static_cast<std::uint16_t>(p[0] | (p[1] << 8)));
    } else if (entry.dtype == "BF16") {
      out.values[i] = bf16_to_float(static_cast<std::uint16_t>(p[0] | (p[1] << 8)));
    } else {  // F64
      out.values[i] = static_cast<float>(std::bit_cast<double>(read_u64_le(p)));
    }
  }
  return out;
}

}  // namespace detail

// Parses a whole safetensors image held in memory. `source` names it in error messages.
//   bytes [size] -> tensors by name (converted to float) and metadata.
// Throws redraft::error on any malformed input (see the file comment). O(size).
inline safetensors_file parse_safetensors(const unsigned char* bytes, std::size_t size,
                                          const std::string& source = "<memory>") {
  REDRAFT_REQUIRE(size >= 8, "read_safetensors: ", source, ": ", size,
                  " bytes is too short for the 8-byte header length");
  const std::uint64_t header_size = detail::read_u64_le(bytes);
  REDRAFT_REQUIRE(header_size <= detail::safetensors_max_header, "read_safetensors: ", source,
                  ": header length ", header_size, " exceeds the 100 MB limit");
  REDRAFT_REQUIRE(header_size <= size - 8, "read_safetensors: ", source, ": header length ",
                  header_size, " runs past the end of the file (", size, " bytes)");
  safetensors_file out;
  const std::uint64_t data_size = size - 8 - header_size;
  const std::vector<detail::safetensors_entry> entries = detail::parse_safetensors_header(
      reinterpret_cast<const char*>(bytes + 8), static_cast<std::size_t>(header_size), data_size,
      source, out.metadata);
  const unsigned char* data = bytes + 8 + header_size;
  for (const detail::safetensors_entry& e : entries) {
    out.tensors.emplace(e.name, detail::convert_safetensors_entry(e, data + e.begin));
  }
  return out;
}

// Reads a safetensors file: tensors by name, converted to float, plus its metadata.
// Reads the header first and each tensor's bytes on their own, so peak memory is the converted
// tensors plus one tensor's raw bytes. Throws redraft::error on I/O failure or malformed input.
inline safetensors_file read_safetensors_file(const std::filesystem::path& path) {
  const std::string source = path.string();
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  REDRAFT_REQUIRE(!ec, "read_safetensors: cannot open ", source, " (", ec.message(), ")");
  std::ifstream in(path, std::ios::binary);
  REDRAFT_REQUIRE(in.good(), "read_safetensors: cannot open ", source);
  REDRAFT_REQUIRE(size >= 8, "read_safetensors: ", source, ": ", size,
                  " bytes is too short for the 8-byte header length");
  unsigned char length_bytes[8];
  in.read(reinterpret_cast<char*>(length_bytes), 8);
  REDRAFT_REQUIRE(in.good(), "read_safetensors: ", source, ": cannot read the header length");
  const std::uint64_t header_size = detail::read_u64_le(length_bytes);
  REDRAFT_REQUIRE(header_size <= detail::safetensors_max_header, "read_safetensors: ", source,
                  ": header length ", header_size, " exceeds the 100 MB limit");
  REDRAFT_REQUIRE(header_size <= size - 8, "read_safetensors: ", source, ": header length ",
                  header_size, " runs past the end of the file (", size, " bytes)");
  std::string header(static_cast<std::size_t>(header_size), '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_size));
  REDRAFT_REQUIRE(in.good() || header_size == 0, "read_safetensors: ", source,
                  ": cannot read the header");
  safetensors_file out;
  const std::uint64_t data_start = 8 + header_size;
  const std::vector<detail::safetensors_entry> entries = detail::parse_safetensors_header(
      header.data(), header.size(), size - data_start, source, out.metadata);
  std::vector<unsigned char> raw;
  for (const detail::safetensors_entry& e : entries) {
    raw.resize(static_cast<std::size_t>(e.end - e.begin));
    in.clear();
    in.seekg(static_cast<std::streamoff>(data_start + e.begin));
    if (!raw.empty())
      in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
    REDRAFT_REQUIRE(in.good(), "read_safetensors: ", source, ": cannot read the bytes of tensor '",
                    e.name, "'");
    out.tensors.emplace(e.name, detail::convert_safetensors_entry(e, raw.data()));
  }
  return out;
}

// Reads the tensors of a safetensors file (see read_safetensors_file).
inline std::map<std::string, tensor_data> read_safetensors(const std::filesystem::path& path) {
  return read_safetensors_file(path).tensors;
}

// Serialises tensors to a safetensors image in memory, stored as `dtype`. Validates first that
// every tensor's values fill its shape and that no name is empty or "__metadata__".
inline std::vector<unsigned char> serialize_safetensors(
    const std::map<std::string, tensor_data>& tensors,
    safetensors_dtype dtype = safetensors_dtype::f32,
    const std::map<std::string, std::string>& metadata = {}) {
  for (const auto& [name, t] : tensors) {
    REDRAFT_REQUIRE(!name.empty() && name != "__metadata__", "write_safetensors: tensor name '",
                    name, "' is reserved or empty");
    std::int64_t count = 1;
    for (const std::int64_t d : t.shape) {
      REDRAFT_REQUIRE(d >= 0, "write_safetensors: tensor '", name, "' has negative extent ", d);
      count *= d;
    }
    REDRAFT_REQUIRE(static_cast<std::int64_t>(t.values.size()) == count,
                    "write_safetensors: tensor '", name, "' has ", t.values.size(),
                    " values but its shape holds ", count);
  }
  const char* dtype_name = dtype == safetensors_dtype::f32   ? "F32"
                           : dtype == safetensors_dtype::f16 ? "F16"
                                                             : "BF16";
  const std::uint64_t element_size = dtype == safetensors_dtype::f32 ? 4 : 2;
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const std::uint64_t bytes = t.values.size() * element_size;
    header[name] = {
        {"dtype", dtype_name}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::vector<unsigned char> out(8 + text.size() + offset);
  detail::write_u64_le(text.size(), out.data());
  std::memcpy(out.data() + 8, text.data(), text.size());
  unsigned char* p = out.data() + 8 + text.size();
  for (const auto& [name, t] : tensors) {
    for (const float v : t.values) {
      if (dtype == safetensors_dtype::f32) {
        const std::uint32_t bits = std::bit_cast<std::uint32_t>(v);
        for (int i = 0; i < 4; ++i) *p++ = static_cast<unsigned char>((bits >> (8 * i)) & 0xffu);
      } else {
        const std::uint16_t bits =
            dtype == safetensors_dtype::f16 ? detail::float_to_f16(v) : detail::float_to_bf16(v);
        *p++ = static_cast<unsigned char>(bits & 0xffu);
        *p++ = static_cast<unsigned char>(bits >> 8);
      }
    }
  }
  return out;
}

// Writes tensors to a safetensors file (see serialize_safetensors). Throws redraft::error when
// the file cannot be written.
inline void write_safetensors(const std::filesystem::path& path,
                              const std::map<std::string, tensor_data>& tensors,
                              safetensors_dtype dtype = safetensors_dtype::f32,
                              const std::map<std::string, std::string>& metadata = {}) {
  const std::vector<unsigned char> bytes = serialize_safetensors(tensors, dtype, metadata);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REDRAFT_REQUIRE(out.good(), "write_safetensors: cannot open ", path.string(), " for writing");
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  REDRAFT_REQUIRE(out.good(), "write_safetensors: writing ", path.string(), " failed");
}

}  // namespace redraft
