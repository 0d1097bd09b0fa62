// redraft/step/run_step.hpp: the one place where an entry point picks a backend's fused kernel
// (clause 10 of core/backend.hpp) or the generic loop.
//
// A step struct (step/greedy.hpp, lossless.hpp, typical.hpp, redrafter.hpp, packed_mask.hpp) is
// the complete, public argument list of one data-parallel step: a trivially copyable functor with
// count() invocations. run_step(backend, s) calls backend.run_fused(s) when the backend offers it
// for that struct, and backend.for_each_index(s.count(), s) otherwise; the two have the same
// effect (the clause's requirement), so callers never branch on the backend.
#pragma once

#include "redraft/core/backend.hpp"

namespace redraft::step {

template <Backend B, class Step>
void run_step(const B& backend, const Step& s) {
  if constexpr (backend_has_fused_v<B, Step>) {
    if (s.count() > 0) backend.run_fused(s);
  } else {
    backend.for_each_index(s.count(), s);
  }
}

}  // namespace redraft::step
