// redraft/core/philox.hpp: the Philox4x32-10 counter-based random number generator.
//
// Counter-based means a draw is a pure function of (key, counter): there is no state to carry,
// so every backend (CPU, Thrust host system, CUDA) produces bit-identical uniforms, and tests can
// compare random decisions across backends exactly.
//
// The library's stream convention (used by every sampling entry point that is not handed
// caller-supplied uniforms):
//   key     = { low 32 bits of seed, high 32 bits of seed }
//   counter = { low 32 bits of block, high 32 bits of block, request, step }
// where draw number `index` of the stream (seed, request, step) is lane (index % 4) of
// block (index / 4). A uniform float in [0, 1) keeps the top 24 bits: (x >> 8) * 2^-24.
//
// Algorithm: Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11);
// ten rounds, multipliers 0xD2511F53 / 0xCD9E8D57, Weyl key increments 0x9E3779B9 / 0xBB67AE85.
#pragma once

#include <cstdint>

#include "redraft/core/macros.hpp"

namespace redraft {

struct philox_block {
  std::uint32_t x[4];
};

namespace detail {

REDRAFT_HOST_DEVICE constexpr void mul_hi_lo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                                             std::uint32_t& lo) {
  const std::uint64_t product = static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b);
  hi = static_cast<std::uint32_t>(product >> 32);
  lo = static_cast<std::uint32_t>(product);
}

}  // namespace detail

// One Philox4x32-10 evaluation: 128 random bits for (counter, key).
REDRAFT_HOST_DEVICE constexpr philox_block philox4x32_10(philox_block counter, std::uint32_t key0,
                                                         std::uint32_t key1) {
  constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  philox_block c = counter;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += w0;
      key1 += w1;
    }
    std::uint32_t hi0 = 0, lo0 = 0, hi1 = 0, lo1 = 0;
    detail::mul_hi_lo(m0, c.x[0], hi0, lo0);
    detail::mul_hi_lo(m1, c.x[2], hi1, lo1);
    c = philox_block{{hi1 ^ c.x[1] ^ key0, lo1, hi0 ^ c.x[3] ^ key1, lo0}};
  }
  return c;
}

// Maps 32 random bits to a float in [0, 1) with 24 bits of resolution (exactly representable).
REDRAFT_HOST_DEVICE constexpr float uniform_from_bits(std::uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// A random stream keyed by (seed, request, step); draw(i) is its i-th 32-bit value.
struct philox_stream {
  std::uint64_t seed = 0;
  std::uint32_t request = 0;
  std::uint32_t step = 0;

  REDRAFT_HOST_DEVICE constexpr std::uint32_t bits(std::uint64_t index) const {
    const std::uint64_t block = index / 4;
    const philox_block counter{{static_cast<std::uint32_t>(block),
                                static_cast<std::uint32_t>(block >> 32), request, step}};
    const philox_block out = philox4x32_10(counter, static_cast<std::uint32_t>(seed),
                                           static_cast<std::uint32_t>(seed >> 32));
    return out.x[index % 4];
  }

  // The i-th uniform of the stream, in [0, 1).
  REDRAFT_HOST_DEVICE constexpr float uniform(std::uint64_t index) const {
    return uniform_from_bits(bits(index));
  }
};

}  // namespace redraft
