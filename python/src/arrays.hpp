// python/src/arrays.hpp: arrays across the Python boundary without copies.
//
// In: any CPU array that speaks DLPack or the buffer protocol (NumPy, PyTorch CPU tensors, ...)
// arrives as an nb::ndarray; in_view checks its device, dtype, rank, extents and C-contiguity and
// returns a redraft view of the caller's own memory. Every failed check throws redraft::error,
// which the module turns into ValueError, so a wrong dtype reads like any other bad argument.
//
// Out: results computed into a backend buffer are moved into a heap object owned by a capsule;
// the returned NumPy array is a view of that memory and frees it when the last reference goes.
// Fields of a bound C++ object (a tree, an acceptance) are returned as read-only arrays whose
// owner is the Python object itself, so they stay valid as long as anyone holds them.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/view.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/draft_head.hpp"

// NOTE: draft_head holds move-only buffers in a std::vector, so std::is_copy_constructible is
// true but the copy does not compile; nanobind must move it instead.
template <>
struct nanobind::detail::is_copy_constructible<redraft::draft_head<redraft::cpu_backend>>
    : std::false_type {};

// The 16-bit logits types as DLPack dtypes: IEEE half is (Float, 16), bfloat16 is (Bfloat, 16), so
// a torch.float16 / torch.bfloat16 tensor (or a NumPy float16 array) is viewed in place.
template <>
struct nanobind::detail::dtype_traits<redraft::half> {
  static constexpr dlpack::dtype value{static_cast<std::uint8_t>(dlpack::dtype_code::Float), 16, 1};
  static constexpr auto name = const_name("float16");
};
template <>
struct nanobind::detail::dtype_traits<redraft::bfloat16> {
  static constexpr dlpack::dtype value{static_cast<std::uint8_t>(dlpack::dtype_code::Bfloat), 16,
                                       1};
  static constexpr auto name = const_name("bfloat16");
};

namespace redraft::python {

namespace nb = nanobind;

// Input arrays: any dtype, any device (checked here, not by nanobind, so the message is ours).
using in_array = nb::ndarray<nb::ro>;
// Arrays written in place (logits processing, KV caches).
using inout_array = nb::ndarray<>;
using backend = cpu_backend;

template <class T>
using out_array = nb::ndarray<nb::numpy, T>;
template <class T>
using ro_array = nb::ndarray<nb::numpy, const T>;

inline std::string dtype_name(nb::dlpack::dtype d) {
  const char* kind = "?";
  switch (static_cast<nb::dlpack::dtype_code>(d.code)) {
    case nb::dlpack::dtype_code::Int:
      kind = "int";
      break;
    case nb::dlpack::dtype_code::UInt:
      kind = "uint";
      break;
    case nb::dlpack::dtype_code::Float:
      kind = "float";
      break;
    case nb::dlpack::dtype_code::Bfloat:
      kind = "bfloat";
      break;
    case nb::dlpack::dtype_code::Complex:
      kind = "complex";
      break;
    case nb::dlpack::dtype_code::Bool:
      kind = "bool";
      break;
    default:
      break;  // the float8 / float6 / float4 codes: named by their bit width only
  }
  return std::string(kind) + std::to_string(d.bits);
}

template <class T>
std::string dtype_name() {
  return dtype_name(nb::dtype<T>());
}

template <class A>
std::string shape_text(const A& a) {
  std::string s = "[";
  for (std::size_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + "]";
}

// Checks `a` (argument `name` of `fn`, documented shape `dims`, e.g. "[B, W, L]") and returns a
// view of its memory. extents[d] >= 0 must match; -1 accepts any extent.
template <class T, int Rank, class A>
view<T, Rank> checked_view(const A& a, const char* fn, const char* name, const char* dims,
                           std::array<index_t, Rank> extents = {}, bool any_extent = true) {
  REDRAFT_REQUIRE(a.device_type() == nb::device::cpu::value, fn, ": ", name,
                  " must be a CPU array (got DLPack device type ", a.device_type(), ")");
  REDRAFT_REQUIRE(a.dtype() == nb::dtype<std::remove_const_t<T>>(), fn, ": ", name, " has dtype ",
                  dtype_name(a.dtype()), " but must be ", dtype_name<std::remove_const_t<T>>());
  REDRAFT_REQUIRE(a.ndim() == static_cast<std::size_t>(Rank), fn, ": ", name, " has shape ",
                  shape_text(a), " but must have ", Rank, " dimensions ", dims);
  index_t expected_stride = 1;
  for (int d = Rank - 1; d >= 0; --d) {
    const index_t e = static_cast<index_t>(a.shape(static_cast<std::size_t>(d)));
    if (!any_extent) {
      REDRAFT_REQUIRE(
          extents[static_cast<std::size_t>(d)] < 0 || e == extents[static_cast<std::size_t>(d)], fn,
          ": ", name, " has shape ", shape_text(a), " but must be ", dims, " with dimension ", d,
          " = ", extents[static_cast<std::size_t>(d)]);
    }
    // NOTE: strides of extent-1 dimensions are irrelevant (PyTorch may report anything).
    REDRAFT_REQUIRE(e <= 1 || a.stride(static_cast<std::size_t>(d)) == expected_stride, fn, ": ",
                    name, " ", shape_text(a),
                    " is not C-contiguous (row-major); pass "
                    "np.ascontiguousarray(x) or x.contiguous()");
    expected_stride *= e;
  }
  view<T, Rank> v;
  std::array<index_t, Rank> ext{};
  for (int d = 0; d < Rank; ++d)
    ext[static_cast<std::size_t>(d)] = static_cast<index_t>(a.shape(static_cast<std::size_t>(d)));
  v.reset(static_cast<T*>(const_cast<void*>(static_cast<const void*>(a.data()))), ext.data());
  return v;
}

// A read-only view of an input array.
template <class T, int Rank>
view<const T, Rank> in_view(const in_array& a, const char* fn, const char* name, const char* dims) {
  return checked_view<const T, Rank>(a, fn, name, dims);
}

// The same with required extents (-1: any).
template <class T, int Rank>
view<const T, Rank> in_view(const in_array& a, const char* fn, const char* name, const char* dims,
                            std::array<index_t, Rank> extents) {
  return checked_view<const T, Rank>(a, fn, name, dims, extents, false);
}

// A writable view of an array modified in place.
template <class T, int Rank>
view<T, Rank> inout_view(const inout_array& a, const char* fn, const char* name, const char* dims) {
  return checked_view<T, Rank>(a, fn, name, dims);
}

// Moves `owned` (anything with data()) to the heap and returns a NumPy array over its memory that
// frees it when collected.
template <class T, class Storage>
out_array<T> own(Storage&& owned, std::initializer_list<std::size_t> shape) {
  auto* heap = new Storage(std::move(owned));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<Storage*>(p); });
  return out_array<T>(heap->data(), shape.size(), shape.begin(), owner);
}

template <class T>
out_array<T> own(host_buffer<T>&& b, std::initializer_list<std::size_t> shape) {
  return own<T, host_buffer<T>>(std::move(b), shape);
}

template <class T>
out_array<T> own(std::vector<T>&& v, std::initializer_list<std::size_t> shape) {
  return own<T, std::vector<T>>(std::move(v), shape);
}

// A read-only array over memory owned by the Python object `owner` (a bound C++ object).
template <class T>
ro_array<T> borrowed(const T* data, std::initializer_list<std::size_t> shape, nb::handle owner) {
  return ro_array<T>(data, shape.size(), shape.begin(), owner);
}

// Logits rows in the caller's element type: float32, float16 or bfloat16, viewed without a copy
// or a conversion pass (every verifier and logits op is templated on the row element).
template <class T>
using rows_of =
    std::variant<matrix_view<T>,
                 matrix_view<std::conditional_t<std::is_const_v<T>, const half, half>>,
                 matrix_view<std::conditional_t<std::is_const_v<T>, const bfloat16, bfloat16>>>;

// A view of a [rows, V] logits array of any of the three element types (T: float or const float).
template <class T, class A>
rows_of<T> logits_rows(const A& a, const char* fn, const char* name, const char* dims) {
  using h = std::conditional_t<std::is_const_v<T>, const half, half>;
  using bf = std::conditional_t<std::is_const_v<T>, const bfloat16, bfloat16>;
  const auto d = a.dtype();
  if (d == nb::dtype<half>()) return checked_view<h, 2>(a, fn, name, dims);
  if (d == nb::dtype<bfloat16>()) return checked_view<bf, 2>(a, fn, name, dims);
  REDRAFT_REQUIRE(d == nb::dtype<float>(), fn, ": ", name, " has dtype ", dtype_name(d),
                  " but must be float32, float16 or bfloat16");
  return checked_view<T, 2>(a, fn, name, dims);
}

template <class T>
std::vector<T> to_vector(const view<const T, 1>& v) {
  return std::vector<T>(v.data(), v.data() + v.size());
}

}  // namespace redraft::python
