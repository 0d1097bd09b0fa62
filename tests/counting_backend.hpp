// tests/counting_backend.hpp: a backend wrapper that counts every allocation, transfer, copy,
// fill and synchronisation of the backend it wraps (the work itself runs on the base), for tests
// that prove a code path makes none (verify/deferred.hpp, loop/capturable_step.hpp).
#pragma once

#include <memory>

#include "redraft/core/view.hpp"

namespace redraft_test {

struct counters {
  int allocations = 0, to_host = 0, from_host = 0, copies = 0, fills = 0, synchronizations = 0;
  int total() const {
    return allocations + to_host + from_host + copies + fills + synchronizations;
  }
};

// Base with every allocation, transfer, fill and synchronisation counted. Copies of the wrapper
// share the counters; the base's optional members (fused kernels, clause 8) are inherited.
template <class Base>
struct counting_backend : Base {
  std::shared_ptr<counters> count = std::make_shared<counters>();

  template <class T>
  typename Base::template buffer<T> allocate(redraft::index_t n) const {
    ++count->allocations;
    return Base::template allocate<T>(n);
  }
  template <class T>
  void copy_to_host(const T* s, redraft::index_t n, T* d) const {
    ++count->to_host;
    Base::copy_to_host(s, n, d);
  }
  template <class T>
  void copy_from_host(const T* s, redraft::index_t n, T* d) const {
    ++count->from_host;
    Base::copy_from_host(s, n, d);
  }
  template <class T>
  void copy(const T* s, redraft::index_t n, T* d) const {
    ++count->copies;
    Base::copy(s, n, d);
  }
  template <class T>
  void fill(T* d, redraft::index_t n, T v) const {
    ++count->fills;
    Base::fill(d, n, v);
  }
  void synchronize() const {
    ++count->synchronizations;
    Base::synchronize();
  }
};

}  // namespace redraft_test
