// python/src/module.cpp: the redraft._redraft extension module.
//
// redraft::error becomes ValueError with the same message; every other C++ exception keeps
// nanobind's default mapping.
#include <nanobind/nanobind.h>

#include <cstdint>
#include <exception>

#include "arrays.hpp"
#include "bindings.hpp"
#include "redraft/core/error.hpp"
#include "redraft/cpu/simd.hpp"

namespace nb = nanobind;

NB_MODULE(_redraft, m) {
  m.doc() = "redraft: ReDrafter-style speculative decoding components over NumPy / PyTorch arrays";
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const redraft::error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  // For tests of the zero-copy claim: the address the C++ side reads for an input array.
  m.def(
      "_data_address",
      [](const redraft::python::in_array& a) { return reinterpret_cast<std::uintptr_t>(a.data()); },
      nb::arg("array"), "The address of an input array's first element as the C++ side sees it.");
  // The CPU product kernels' instruction set, chosen when the extension was compiled
  // (REDRAFT_NATIVE_ARCH in python/CMakeLists.txt): "avx512", "avx2", "sse2" or "portable".
  m.attr("_simd_isa") = redraft::detail::simd_isa::name;
  redraft::python::bind_tree(m);
  redraft::python::bind_verify(m);
  redraft::python::bind_draft(m);
  redraft::python::bind_policy(m);
  redraft::python::bind_loop(m);
}
