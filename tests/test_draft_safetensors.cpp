// Tests of the safetensors reader/writer: round trips, a hand-made file, f16/bf16 conversions,
// and fuzz-style malformed inputs that must all throw redraft::error (never crash).
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "redraft/draft/safetensors.hpp"

namespace {

using redraft::safetensors_dtype;
using redraft::tensor_data;

std::map<std::string, tensor_data> small_tensors() {
  std::map<std::string, tensor_data> t;
  t["a.weight"] = {{2, 3}, {1.f, -2.f, 3.5f, 0.f, -0.f, 1e-3f}, "F32"};
  t["b"] = {{4}, {0.25f, 8.f, -16.f, 1024.f}, "F32"};
  t["scalar"] = {{}, {3.f}, "F32"};
  t["empty"] = {{0, 5}, {}, "F32"};
  return t;
}

// A file image built by hand from the format's description, independent of the writer.
std::vector<unsigned char> image(const std::string& header,
                                 const std::vector<unsigned char>& data) {
  // NOTE: sized once and filled by index (g++ 12 reports a false array-bounds error on insert).
  std::vector<unsigned char> out(8 + header.size() + data.size());
  redraft::detail::write_u64_le(header.size(), out.data());
  for (std::size_t i = 0; i < header.size(); ++i)
    out[8 + i] = static_cast<unsigned char>(header[i]);
  for (std::size_t i = 0; i < data.size(); ++i) out[8 + header.size() + i] = data[i];
  return out;
}

std::vector<unsigned char> f32_bytes(std::vector<float> values) {
  std::vector<unsigned char> out;
  for (float v : values) {
    const auto bits = std::bit_cast<std::uint32_t>(v);
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<unsigned char>(bits >> (8 * i)));
  }
  return out;
}

void require_throws(const std::vector<unsigned char>& bytes, const std::string& fragment) {
  CAPTURE(fragment);
  try {
    redraft::parse_safetensors(bytes.data(), bytes.size(), "case");
    FAIL("no error thrown");
  } catch (const redraft::error& e) {
    CAPTURE(e.what());
    CHECK(std::string(e.what()).find(fragment) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("safetensors: round trip in memory and on disk, every dtype", "[safetensors]") {
  const auto tensors = small_tensors();
  const auto dtype =
      GENERATE(safetensors_dtype::f32, safetensors_dtype::f16, safetensors_dtype::bf16);
  CAPTURE(static_cast<int>(dtype));
  const auto bytes = redraft::serialize_safetensors(tensors, dtype, {{"format", "pt"}});
  REQUIRE(redraft::detail::read_u64_le(bytes.data()) % 8 == 0);
  const auto parsed = redraft::parse_safetensors(bytes.data(), bytes.size());
  CHECK(parsed.metadata.at("format") == "pt");
  REQUIRE(parsed.tensors.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    CAPTURE(name);
    const tensor_data& got = parsed.tensors.at(name);
    CHECK(got.shape == t.shape);
    CHECK(got.stored_dtype == (dtype == safetensors_dtype::f32   ? "F32"
                               : dtype == safetensors_dtype::f16 ? "F16"
                                                                 : "BF16"));
    REQUIRE(got.values.size() == t.values.size());
    for (std::size_t i = 0; i < t.values.size(); ++i) {
      // Every test value except 1e-3 is exact in all three formats.
      const double tol = t.values[i] == 1e-3f ? 1e-5 : 0.0;
      CHECK(std::abs(got.values[i] - t.values[i]) <= tol);
      CHECK(std::signbit(got.values[i]) == std::signbit(t.values[i]));
    }
  }
  const auto path = std::filesystem::temp_directory_path() / "redraft_test_safetensors.safetensors";
  redraft::write_safetensors(path, tensors, dtype);
  const auto from_disk = redraft::read_safetensors(path);
  for (const auto& [name, t] : parsed.tensors) CHECK(from_disk.at(name).values == t.values);
  std::filesystem::remove(path);
}

TEST_CASE("safetensors: reads a hand-made file", "[safetensors]") {
  // Tensors listed out of offset order and with padding spaces, as other writers may do.
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                             R"("h":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},)"
                             R"("g":{"dtype":"BF16","shape":[1],"data_offsets":[2,4]}}   )";
  std::vector<unsigned char> data = {0x00, 0x3c, 0x80, 0xbf};  // f16 1.0, bf16 -1.0
  const auto w = f32_bytes({2.5f, -7.f});
  data.insert(data.end(), w.begin(), w.end());
  const auto bytes = image(header, data);
  const auto parsed = redraft::parse_safetensors(bytes.data(), bytes.size());
  CHECK(parsed.tensors.at("h").values == std::vector<float>{1.f});
  CHECK(parsed.tensors.at("g").values == std::vector<float>{-1.f});
  CHECK(parsed.tensors.at("w").values == std::vector<float>{2.5f, -7.f});
  CHECK(parsed.tensors.at("w").shape == std::vector<std::int64_t>{2});
}

TEST_CASE("safetensors: f16 and bf16 conversions are exact / round to nearest even",
          "[safetensors]") {
  using redraft::detail::bf16_to_float;
  using redraft::detail::f16_to_float;
  using redraft::detail::float_to_bf16;
  using redraft::detail::float_to_f16;
  // Every finite half converts to float and back to the same bits; reference value in double.
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float f = f16_to_float(bits);
    const std::uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) {
      CHECK((m == 0 ? std::isinf(f) : std::isnan(f)));
      continue;
    }
    const double magnitude =
        e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, int(e) - 15);
    const double expected = (h & 0x8000) ? -magnitude : magnitude;
    CAPTURE(h);
    REQUIRE(double(f) == expected);
    REQUIRE(float_to_f16(f) == bits);
  }
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = bf16_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) continue;
    REQUIRE(float_to_bf16(f) == h);
  }
  // Rounding: halfway cases go to even; brute force over random floats against a double reference.
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    if (std::isnan(f)) continue;
    CAPTURE(f);
    // Reference f16 rounding: the nearest half of the two neighbours, ties to the even one.
    const std::uint16_t r = float_to_f16(f);
    const double got = f16_to_float(r);
    if (std::abs(double(f)) >= 65520.0) {
      CHECK(std::isinf(got));
      continue;
    }
    // The result is no farther from f than either neighbouring bit pattern (a neighbour that
    // wraps to NaN, past zero, does not count).
    const auto no_closer = [f](double result, double neighbour) {
      return std::isnan(neighbour) || std::abs(result - f) <= std::abs(neighbour - f);
    };
    CHECK(no_closer(got, f16_to_float(static_cast<std::uint16_t>(r - 1))));
    CHECK(no_closer(got, f16_to_float(static_cast<std::uint16_t>(r + 1))));
    const std::uint16_t rb = float_to_bf16(f);
    const double gb = bf16_to_float(rb);
    if (!std::isinf(gb)) {
      CHECK(no_closer(gb, bf16_to_float(static_cast<std::uint16_t>(rb + 1))));
      CHECK(no_closer(gb, bf16_to_float(static_cast<std::uint16_t>(rb - 1))));
    }
  }
  CHECK(float_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);      // tie -> even (down)
  CHECK(float_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);  // tie -> even (up)
  CHECK(float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
  CHECK(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
  CHECK(float_to_f16(std::ldexp(1.0f, -25)) == 0x0000);  // tie at half the smallest subnormal
  CHECK(float_to_f16(std::ldexp(1.5f, -25)) == 0x0001);
}

TEST_CASE("safetensors: truncation at every byte offset throws", "[safetensors][fuzz]") {
  const auto bytes = redraft::serialize_safetensors(small_tensors());
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    CAPTURE(cut);
    CHECK_THROWS_AS(redraft::parse_safetensors(bytes.data(), cut), redraft::error);
  }
  // And the same through the file reader.
  const auto path = std::filesystem::temp_directory_path() / "redraft_test_truncated.safetensors";
  for (std::size_t cut :
       {std::size_t{0}, std::size_t{5}, std::size_t{8}, std::size_t{20}, bytes.size() - 1}) {
    CAPTURE(cut);
    {
      std::ofstream out(path, std::ios::binary);
      out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(cut));
    }
    CHECK_THROWS_AS(redraft::read_safetensors(path), redraft::error);
  }
  std::filesystem::remove(path);
  CHECK_THROWS_AS(redraft::read_safetensors(path), redraft::error);  // missing file
}

TEST_CASE("safetensors: corrupting header bytes never crashes", "[safetensors][fuzz]") {
  const auto original = redraft::serialize_safetensors(small_tensors());
  const std::size_t header_end = 8 + redraft::detail::read_u64_le(original.data());
  std::mt19937 rng(12345);
  int thrown = 0, accepted = 0;
  for (std::size_t pos = 0; pos < header_end; ++pos) {
    for (int trial = 0; trial < 4; ++trial) {
      auto bytes = original;
      bytes[pos] = static_cast<unsigned char>(rng());
      CAPTURE(pos, int(bytes[pos]));
      try {
        redraft::parse_safetensors(bytes.data(), bytes.size());
        ++accepted;  // e.g. a changed digit of a value that still adds up, or a renamed tensor
      } catch (const redraft::error&) {
        ++thrown;
      }
    }
  }
  CHECK(thrown > 0);
  CHECK(accepted < thrown);
}

TEST_CASE("safetensors: malformed headers throw naming the problem", "[safetensors]") {
  const auto data8 = f32_bytes({1.f, 2.f});
  require_throws(image(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", data8),
                 "not valid JSON");
  require_throws(image(R"([1,2])", {}), "not a JSON object");
  require_throws(image(R"({"x":{"dtype":"I8","shape":[8],"data_offsets":[0,8]}})", data8),
                 "tensor 'x' has dtype 'I8'");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8),
                 "tensor 'x': shape [3] of F32 needs 12 bytes");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", data8),
                 "run past the end");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data8),
                 "reversed");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                       data8),
                 "overlap");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("y":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                       data8),
                 "overlap");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data8),
                 "belong to no tensor");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data8),
                 "cover only 4");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                       data8),
                 "tensor 'x' appears twice");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8),
                 "not a non-negative integer");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", data8),
                 "not a non-negative integer");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],)"
                       R"("data_offsets":[0,8]}})",
                       data8),
                 "tensor 'x'");
  require_throws(image(R"({"x":{"dtype":"F32","shape":[2]}})", data8), "data_offsets");
  require_throws(image(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", data8), "dtype");
  require_throws(image(R"({"x":[1]})", data8), "tensor 'x' is not an object");
  require_throws(image(R"({"__metadata__":{"a":1}})", {}), "__metadata__ 'a'");
  // Header length beyond the file, and absurdly large.
  auto bytes = image("{}", {});
  redraft::detail::write_u64_le(1000, bytes.data());
  require_throws(bytes, "runs past the end of the file");
  redraft::detail::write_u64_le(~std::uint64_t{0}, bytes.data());
  require_throws(bytes, "exceeds");
  // Empty file, and a valid empty one.
  require_throws({}, "too short");
  const auto empty = image("{}", {});
  CHECK(redraft::parse_safetensors(empty.data(), empty.size()).tensors.empty());
}

TEST_CASE("safetensors: the writer validates its input", "[safetensors]") {
  std::map<std::string, tensor_data> bad;
  bad["x"] = {{2, 2}, {1.f, 2.f, 3.f}, "F32"};
  CHECK_THROWS_WITH(redraft::serialize_safetensors(bad),
                    Catch::Contains("tensor 'x' has 3 values but its shape holds 4"));
  std::map<std::string, tensor_data> reserved;
  reserved["__metadata__"] = {{1}, {1.f}, "F32"};
  CHECK_THROWS_AS(redraft::serialize_safetensors(reserved), redraft::error);
  CHECK_THROWS_AS(redraft::write_safetensors("/nonexistent-dir/x.safetensors", small_tensors()),
                  redraft::error);
}
