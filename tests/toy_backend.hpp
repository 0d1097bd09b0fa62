// tests/toy_backend.hpp: a from-scratch backend in plain loops, written only from the numbered
// contract in core/backend.hpp. It proves the contract is implementable without Eigen, and,
// since it offers no fused members, it runs every algorithm's generic path in the typed tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "redraft/core/backend.hpp"
#include "redraft/core/view.hpp"

namespace redraft_test {

using redraft::index_t;
using redraft::matrix_view;
using redraft::vector_view;

template <class T>
class toy_buffer {
 public:
  explicit toy_buffer(index_t n = 0) : v_(static_cast<std::size_t>(n)) {}
  T* data() { return v_.data(); }
  const T* data() const { return v_.data(); }
  index_t size() const { return static_cast<index_t>(v_.size()); }

 private:
  std::vector<T> v_;
};

struct toy_backend {
  template <class T>
  using buffer = toy_buffer<T>;
  static constexpr bool memory_is_host_accessible = true;

  template <class T>
  buffer<T> allocate(index_t n) const {
    return buffer<T>(n);
  }
  template <class T>
  void copy_to_host(const T* s, index_t n, T* d) const {
    std::copy(s, s + n, d);
  }
  template <class T>
  void copy_from_host(const T* s, index_t n, T* d) const {
    std::copy(s, s + n, d);
  }
  template <class T>
  void copy(const T* s, index_t n, T* d) const {
    std::copy(s, s + n, d);
  }
  template <class T>
  void fill(T* d, index_t n, T v) const {
    std::fill(d, d + n, v);
  }
  void synchronize() const {}

  // Runs indices in reverse, so an algorithm that silently depends on order shows it.
  template <class F>
  void for_each_index(index_t n, F f) const {
    for (index_t i = n; i-- > 0;) f(i);
  }

  void matmul(matrix_view<const float> x, matrix_view<const float> w, const float* bias,
              redraft::activation act, matrix_view<float> y) const {
    for (index_t i = 0; i < x.extent(0); ++i)
      for (index_t j = 0; j < w.extent(0); ++j) {
        double acc = bias ? bias[j] : 0.0;
        for (index_t k = 0; k < x.extent(1); ++k) acc += double(x(i, k)) * w(j, k);
        if (act == redraft::activation::silu) acc = acc / (1.0 + std::exp(-acc));
        y(i, j) = static_cast<float>(acc);
      }
  }
  void row_max(matrix_view<const float> x, vector_view<float> out) const {
    for (index_t r = 0; r < x.extent(0); ++r) {
      float m = -std::numeric_limits<float>::infinity();
      for (index_t c = 0; c < x.extent(1); ++c) m = std::max(m, x(r, c));
      out[r] = m;
    }
  }
  void row_sum(matrix_view<const float> x, vector_view<float> out) const {
    for (index_t r = 0; r < x.extent(0); ++r) {
      double s = 0;
      for (index_t c = 0; c < x.extent(1); ++c) s += x(r, c);
      out[r] = static_cast<float>(s);
    }
  }
  void log_softmax(matrix_view<const float> x, matrix_view<float> y) const {
    for (index_t r = 0; r < x.extent(0); ++r) {
      float m = -std::numeric_limits<float>::infinity();
      for (index_t c = 0; c < x.extent(1); ++c) m = std::max(m, x(r, c));
      double s = 0;
      for (index_t c = 0; c < x.extent(1); ++c) s += std::exp(double(x(r, c)) - m);
      const float ls = static_cast<float>(std::log(s));
      for (index_t c = 0; c < x.extent(1); ++c) y(r, c) = (x(r, c) - m) - ls;
    }
  }
  void row_argmax(matrix_view<const float> x, vector_view<std::int32_t> out) const {
    for (index_t r = 0; r < x.extent(0); ++r) {
      index_t best = 0;
      for (index_t c = 1; c < x.extent(1); ++c)
        if (x(r, c) > x(r, best)) best = c;
      out[r] = static_cast<std::int32_t>(best);
    }
  }
  void row_top_k(matrix_view<const float> x, int k, matrix_view<float> values,
                 matrix_view<std::int32_t> indices) const {
    for (index_t r = 0; r < x.extent(0); ++r) {
      std::vector<std::int32_t> order(static_cast<std::size_t>(x.extent(1)));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](std::int32_t a, std::int32_t b) { return x(r, a) > x(r, b); });
      for (int j = 0; j < k; ++j) {
        indices(r, j) = order[static_cast<std::size_t>(j)];
        values(r, j) = x(r, order[static_cast<std::size_t>(j)]);
      }
    }
  }
  void inclusive_scan(vector_view<const std::int32_t> in, vector_view<std::int32_t> out) const {
    std::int32_t s = 0;
    for (index_t i = 0; i < in.extent(0); ++i) out[i] = (s += in[i]);
  }
  void gather_rows(matrix_view<const float> x, vector_view<const std::int32_t> rows,
                   matrix_view<float> y) const {
    for (index_t i = 0; i < rows.extent(0); ++i)
      for (index_t c = 0; c < x.extent(1); ++c) y(i, c) = x(rows[i], c);
  }
};

static_assert(redraft::Backend<toy_backend>);

}  // namespace redraft_test
