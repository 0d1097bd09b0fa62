// tools/conformance/golden_format.hpp: reading and comparing cases in the golden format
// (tests/data/golden/README.md): {"kind", "description", "inputs", "expected"}, tensors as
// {"shape": [...], "dtype": "f32" | "i32" | "u32", "data": [flat, row-major]}.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "redraft/core/error.hpp"

namespace redraft::conformance {

using json = nlohmann::json;

template <class T>
struct tensor {
  std::vector<std::int64_t> shape;
  std::vector<T> data;

  std::int64_t dim(std::size_t d) const { return shape.at(d); }
};

template <class T>
constexpr const char* dtype_name() {
  if constexpr (std::is_same_v<T, float>) return "f32";
  if constexpr (std::is_same_v<T, std::int32_t>) return "i32";
  return "u32";
}

// Converts a JSON number to T, refusing (redraft::error) what T cannot hold: a float or an
// out-of-range integer read as an integer type (converting those would be undefined behaviour
// or wrap silently). Floats read as float may be any number (too large ones become +-inf).
template <class T>
T number_as(const json& v, const std::string& what) {
  REDRAFT_REQUIRE(v.is_number(), what, ": ", v.dump(), " is not a number");
  if constexpr (std::is_floating_point_v<T>) {
    return v.get<T>();
  } else {
    bool fits = false;
    if (v.is_number_unsigned()) {
      fits = v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<T>::max());
    } else if (v.is_number_integer()) {
      const std::int64_t x = v.get<std::int64_t>();
      fits = x >= static_cast<std::int64_t>(std::numeric_limits<T>::min()) &&
             x <= static_cast<std::int64_t>(std::numeric_limits<T>::max());
    }
    REDRAFT_REQUIRE(fits, what, ": ", v.dump(), " is not an integer in [",
                    +std::numeric_limits<T>::min(), ", ", +std::numeric_limits<T>::max(), "]");
    return static_cast<T>(v.get<std::int64_t>());
  }
}

// Reads tensor `name` from object `parent` ("inputs" or "expected"); throws redraft::error
// naming the field when it is missing, has the wrong dtype, or its data does not fill its shape.
template <class T>
tensor<T> read_tensor(const json& parent, const std::string& name) {
  REDRAFT_REQUIRE(parent.is_object() && parent.contains(name), "missing tensor '", name, "'");
  const json& t = parent.at(name);
  REDRAFT_REQUIRE(t.is_object() && t.contains("shape") && t.contains("dtype") && t.contains("data"),
                  "tensor '", name, "' needs shape, dtype and data");
  REDRAFT_REQUIRE(t.at("dtype").is_string(), "tensor '", name, "': dtype is not a string");
  const std::string dtype = t.at("dtype").get<std::string>();
  // f32 tensors may be read as i32 only if asked; ints read as the requested type otherwise.
  REDRAFT_REQUIRE(dtype == dtype_name<T>() || (std::is_same_v<T, float> && dtype != "f32" &&
                                               (dtype == "i32" || dtype == "u32")),
                  "tensor '", name, "' has dtype ", dtype, ", expected ", dtype_name<T>());
  tensor<T> out;
  std::int64_t count = 1;
  REDRAFT_REQUIRE(t.at("shape").is_array(), "tensor '", name, "': shape is not an array");
  for (const json& d : t.at("shape")) {
    REDRAFT_REQUIRE(d.is_number_integer() && d.get<std::int64_t>() >= 0 &&
                        d.get<std::int64_t>() < (std::int64_t{1} << 31),
                    "tensor '", name, "': shape entry ", d.dump(), " is not a valid extent");
    out.shape.push_back(d.get<std::int64_t>());
    count *= out.shape.back();
    REDRAFT_REQUIRE(count < (std::int64_t{1} << 34), "tensor '", name, "' is too large");
  }
  const json& data = t.at("data");
  REDRAFT_REQUIRE(data.is_array() && static_cast<std::int64_t>(data.size()) == count, "tensor '",
                  name, "': data has ", data.is_array() ? data.size() : 0,
                  " elements but the shape holds ", count);
  out.data.reserve(static_cast<std::size_t>(count));
  for (const json& v : data) out.data.push_back(number_as<T>(v, "tensor '" + name + "': element"));
  return out;
}

template <class T>
T read_scalar(const json& parent, const std::string& name) {
  REDRAFT_REQUIRE(parent.is_object() && parent.contains(name), "missing scalar '", name, "'");
  const json& v = parent.at(name);
  if constexpr (std::is_same_v<T, bool>) {
    REDRAFT_REQUIRE(v.is_boolean() || v.is_number_integer(), "'", name, "' is not a bool");
    return v.is_boolean() ? v.get<bool>() : v.get<std::int64_t>() != 0;
  } else {
    return number_as<T>(v, "'" + name + "'");
  }
}

// Result of one case.
struct case_result {
  enum class status { pass, fail, skip } outcome = status::pass;
  std::string message;  // first mismatch for a failure, the reason for a skip

  static case_result pass() { return {}; }
  static case_result fail(std::string why) { return {status::fail, std::move(why)}; }
  static case_result skip(std::string why) { return {status::skip, std::move(why)}; }
};

// Exact comparison of an integer field; returns the first mismatch as text.
template <class T>
std::optional<std::string> compare_exact(const std::string& field, const tensor<T>& expected,
                                         const std::vector<T>& actual) {
  if (expected.data.size() != actual.size()) {
    std::ostringstream os;
    os << field << ": expected " << expected.data.size() << " elements, got " << actual.size();
    return os.str();
  }
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (expected.data[i] != actual[i]) {
      std::ostringstream os;
      os << field << "[" << i << "]: expected " << expected.data[i] << ", got " << actual[i];
      return os.str();
    }
  }
  return std::nullopt;
}

// Float comparison: |a - e| <= rel * max(1, |e|) (relative, with an absolute floor of rel near 0).
inline std::optional<std::string> compare_close(const std::string& field,
                                                const tensor<float>& expected,
                                                const std::vector<float>& actual,
                                                double rel = 1e-4) {
  if (expected.data.size() != actual.size()) {
    std::ostringstream os;
    os << field << ": expected " << expected.data.size() << " elements, got " << actual.size();
    return os.str();
  }
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double e = expected.data[i], a = actual[i];
    if (!(std::abs(a - e) <= rel * std::max(1.0, std::abs(e)))) {
      std::ostringstream os;
      os.precision(9);
      os << field << "[" << i << "]: expected " << e << ", got " << a;
      return os.str();
    }
  }
  return std::nullopt;
}

}  // namespace redraft::conformance
