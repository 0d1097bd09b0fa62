// bench/stream_read.hpp: the memory floor the product benchmarks compare against.
//
// stream_read(p, bytes) reads every byte once (64-bit integer sums, which the compiler
// vectorises: no float reassociation is needed), as a product that reads each weight once would.
// BM_stream_read reports the rate in bytes_per_second (GB/s) over a buffer far larger than the
// caches; the component benchmarks time stream_read over their own weight bytes in the same
// iterations to report a same-run "floor_ratio".
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <ctime>
#include <vector>

namespace redraft_bench {

// NOTE: CPU time of this thread, not wall time: the benchmark machines are shared.
inline double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

inline std::uint64_t stream_read(const void* p, std::size_t bytes) {
  const auto* words = static_cast<const std::uint64_t*>(p);
  const std::size_t n = bytes / 8;
  std::uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += words[i];
    s1 += words[i + 1];
    s2 += words[i + 2];
    s3 += words[i + 3];
  }
  for (; i < n; ++i) s0 += words[i];
  return s0 + s1 + s2 + s3;
}

// A buffer of `bytes` non-zero bytes (so the pages are really allocated).
inline std::vector<std::uint64_t> stream_buffer(std::size_t bytes) {
  return std::vector<std::uint64_t>(bytes / 8 + 1, 0x0101010101010101ull);
}

// Streams a 512 MB buffer: bytes_per_second is the memory floor of this machine's one core.
inline void BM_stream_read(benchmark::State& state) {
  static const std::vector<std::uint64_t> buffer = stream_buffer(std::size_t{512} << 20);
  const std::size_t bytes = buffer.size() * 8;
  for (auto _ : state) benchmark::DoNotOptimize(stream_read(buffer.data(), bytes));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(bytes));
}

}  // namespace redraft_bench
