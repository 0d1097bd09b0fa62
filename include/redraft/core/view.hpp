// redraft/core/view.hpp: non-owning, row-major, rank-N views with shapes.
//
// A view is a pointer plus extents; it never owns memory and is trivially copyable, so it can be
// captured by value in functors passed to Backend::for_each_index (and into CUDA kernels).
// Element (i0, i1, ..., iN-1) lives at data[((i0 * e1 + i1) * e2 + ...) + iN-1].
#pragma once

#include <cstdint>
#include <type_traits>

#include "redraft/core/macros.hpp"

namespace redraft {

using index_t = std::int64_t;

template <class T, int Rank>
class view {
  static_assert(Rank >= 1, "a view has at least one dimension");

 public:
  using value_type = T;
  static constexpr int rank = Rank;

  REDRAFT_HOST_DEVICE constexpr view() : data_(nullptr), extents_{} {}

  // view(p, e0, e1, ...): exactly Rank extents.
  template <class... Extents>
  requires(sizeof...(Extents) == Rank && (std::is_integral_v<Extents> && ...)) REDRAFT_HOST_DEVICE
      constexpr view(T* data, Extents... extents)
      : data_(data), extents_{static_cast<index_t>(extents)...} {}

  // A view of T converts to a view of const T.
  template <class U>
  requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>) REDRAFT_HOST_DEVICE
      constexpr view(const view<U, Rank>& other)
      : data_(other.data()), extents_{} {
    for (int d = 0; d < Rank; ++d) extents_[d] = other.extent(d);
  }

  REDRAFT_HOST_DEVICE constexpr T* data() const { return data_; }
  REDRAFT_HOST_DEVICE constexpr index_t extent(int d) const { return extents_[d]; }
  REDRAFT_HOST_DEVICE constexpr index_t size() const {
    index_t n = 1;
    for (int d = 0; d < Rank; ++d) n *= extents_[d];
    return n;
  }
  REDRAFT_HOST_DEVICE constexpr bool empty() const { return size() == 0; }

  template <class... Indices>
  requires(sizeof...(Indices) == Rank) REDRAFT_HOST_DEVICE constexpr T& operator()(
      Indices... indices) const {
    const index_t idx[Rank] = {static_cast<index_t>(indices)...};
    index_t offset = 0;
    for (int d = 0; d < Rank; ++d) offset = offset * extents_[d] + idx[d];
    return data_[offset];
  }

  // Flat element access, ignoring the shape.
  REDRAFT_HOST_DEVICE constexpr T& operator[](index_t flat) const { return data_[flat]; }

  // The sub-view at index i of the leading dimension: shape [e1, ..., eN-1].
  REDRAFT_HOST_DEVICE constexpr view<T, Rank - 1> slice(index_t i) const requires(Rank > 1) {
    view<T, Rank - 1> out;
    index_t inner = 1;
    for (int d = 1; d < Rank; ++d) inner *= extents_[d];
    out.reset(data_ + i * inner, extents_ + 1);
    return out;
  }

  // Low-level: repoint this view (used by slice()).
  REDRAFT_HOST_DEVICE constexpr void reset(T* data, const index_t* extents) {
    data_ = data;
    for (int d = 0; d < Rank; ++d) extents_[d] = extents[d];
  }

 private:
  T* data_;
  index_t extents_[Rank];
};

template <class T>
using vector_view = view<T, 1>;
template <class T>
using matrix_view = view<T, 2>;

}  // namespace redraft
