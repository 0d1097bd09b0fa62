// redraft/core/aligned_allocator.hpp: a std::allocator that aligns every allocation to 64 bytes.
//
// Why: vectorised reductions (Eigen's, and any SIMD loop that peels to an aligned address) sum in
// an order that depends on the address where a row starts. With malloc's 16-byte alignment, the
// same computation on two buffers that landed at different addresses can differ in the last bit,
// which breaks bit-identity (dense vs packed masks, a resumed training run). When every host
// buffer starts on a 64-byte boundary (one cache line, the widest SIMD register: AVX-512), row r
// of a buffer has the same alignment in every run, so results are reproducible for any -march.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace redraft {

inline constexpr std::size_t buffer_alignment = 64;  // bytes

template <class T>
struct aligned_allocator {
  using value_type = T;

  aligned_allocator() noexcept = default;
  template <class U>
  aligned_allocator(const aligned_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{buffer_alignment}));
  }
  void deallocate(T* p, std::size_t) noexcept {
    ::operator delete (p, std::align_val_t{buffer_alignment});
  }

  template <class U>
  bool operator==(const aligned_allocator<U>&) const noexcept {
    return true;
  }
};

// A std::vector whose data() is 64-byte aligned (see above).
template <class T>
using aligned_vector = std::vector<T, aligned_allocator<T>>;

}  // namespace redraft
