// fuzz/fuzz_input.hpp: turning a fuzzer's byte string into structured, bounded arguments.
//
// Every fuzz target (fuzz/fuzz_<target>.hpp) is a plain function
//   outcome fuzz_<target>(const std::uint8_t* data, std::size_t size)
// that decodes its arguments with byte_reader, calls the library, and checks the contract:
//   * a malformed argument throws redraft::error (any other exception escaping is a finding:
//     libFuzzer reports it as a crash through std::terminate);
//   * a call that returns produces output satisfying the invariants the target checks
//     (FUZZ_CHECK aborts with a message otherwise);
//   * an in-place entry point that throws leaves its buffer unchanged.
// The same functions run under libFuzzer (fuzz/<target>.cpp, built by fuzz/run.sh) and replay
// the seed corpora and the regression inputs in the Catch2 suite (tests/test_fuzz_replay.cpp).
// The outcome they return says what each stage did (accepted, or refused with which message):
// libFuzzer ignores it, the replay test checks it against each stored input's expected outcome.
// Sizes are bounded here, by the decoder, so that a fuzz input cannot ask for gigabytes.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <vector>

namespace redraft_fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: fuzz invariant violated: %s\n", file, line, what);
  std::abort();
}

#define FUZZ_CHECK(condition) \
  ((condition) ? static_cast<void>(0) : ::redraft_fuzz::fail(__FILE__, __LINE__, #condition))

// What a fuzz target did with one input, one line per stage it reached, in order:
// "<stage>: ok" when the library accepted the arguments (and the output passed the checks), or
// "<stage>: refused: <the redraft::error message>".
struct outcome {
  std::vector<std::string> stages;

  void ok(const char* stage) { stages.push_back(std::string(stage) + ": ok"); }
  void refused(const char* stage, const std::exception& e) {
    stages.push_back(std::string(stage) + ": refused: " + e.what());
  }
};

// Reads bounded values off the front of the input; past the end every read returns 0 bytes.
class byte_reader {
 public:
  byte_reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  std::size_t remaining() const { return pos_ < size_ ? size_ - pos_ : 0; }

  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(byte()) << (8 * i);
    return v;
  }
  // An integer in [lo, hi] (hi - lo < 2^32).
  std::int64_t range(std::int64_t lo, std::int64_t hi) {
    const std::uint64_t span = static_cast<std::uint64_t>(hi - lo) + 1;
    const std::uint64_t raw = span <= 256     ? byte()
                              : span <= 65536 ? (byte() | (byte() << 8))
                                              : u32();
    return lo + static_cast<std::int64_t>(raw % span);
  }
  bool flag() { return (byte() & 1) != 0; }

  // A float that is often hostile: NaN, +-inf, +-FLT_MAX, subnormals, huge, tiny, or raw bits.
  float hostile_float() {
    static constexpr float palette[] = {0.0f,
                                        -0.0f,
                                        1.0f,
                                        -1.0f,
                                        0.5f,
                                        2.0f,
                                        -50000.0f,
                                        1e30f,
                                        -1e30f,
                                        1e-30f,
                                        std::numeric_limits<float>::max(),
                                        -std::numeric_limits<float>::max(),
                                        std::numeric_limits<float>::denorm_min(),
                                        std::numeric_limits<float>::min(),
                                        std::numeric_limits<float>::infinity(),
                                        -std::numeric_limits<float>::infinity(),
                                        std::numeric_limits<float>::quiet_NaN(),
                                        3.0f,
                                        -3.0f,
                                        10.0f};
    constexpr unsigned n = sizeof(palette) / sizeof(palette[0]);
    const std::uint8_t pick = byte();
    if (pick < 2 * n) return palette[pick % n];
    if (pick < 200) return static_cast<float>(static_cast<int>(byte()) - 128) / 16.0f;  // ordinary
    const std::uint32_t bits = u32();
    float x;
    std::memcpy(&x, &bits, sizeof(x));
    return x;
  }
  // A positive-ish parameter: temperatures, thresholds, probabilities (hostile half of the time).
  float hostile_parameter() {
    static constexpr float palette[] = {1.0f,
                                        0.5f,
                                        2.0f,
                                        0.7f,
                                        1e-3f,
                                        1e-10f,
                                        1e-30f,
                                        1e-38f,
                                        2.9e-39f,
                                        1e-45f,
                                        1e10f,
                                        1e30f,
                                        std::numeric_limits<float>::max(),
                                        std::numeric_limits<float>::infinity(),
                                        std::numeric_limits<float>::quiet_NaN(),
                                        0.0f,
                                        -1.0f,
                                        0.99999994f,
                                        0.09f,
                                        0.3f};
    constexpr unsigned n = sizeof(palette) / sizeof(palette[0]);
    const std::uint8_t pick = byte();
    if (pick < 8 * n) return palette[pick % n];
    const std::uint32_t bits = u32();
    float x;
    std::memcpy(&x, &bits, sizeof(x));
    return x;
  }

  // The rest of the input as bytes.
  std::vector<std::uint8_t> rest() {
    std::vector<std::uint8_t> out(data_ + (pos_ < size_ ? pos_ : size_), data_ + size_);
    pos_ = size_;
    return out;
  }
  std::vector<std::uint8_t> take(std::size_t n) {
    const std::size_t k = n < remaining() ? n : remaining();
    std::vector<std::uint8_t> out(data_ + pos_, data_ + pos_ + k);
    pos_ += k;
    return out;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

}  // namespace redraft_fuzz
