// redraft/verify/uniforms.hpp: where a sampling verifier's uniforms come from.
//
// Either the core Philox stream keyed by (seed, request = batch index b, step), or a matrix of
// caller-supplied uniforms [B, max_draws] in backend memory. Both are indexed the same way:
// draw(b, i) is request b's i-th uniform, and each verifier documents its draw-index layout
// (e.g. verify_lossless uses 2*depth for the child choice and 2*depth+1 for the residual draw),
// so a caller can reproduce a Philox run by passing the same numbers explicitly.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/view.hpp"
#include "redraft/step/uniforms.hpp"

namespace redraft {

namespace detail {

// Host-side validation of caller-supplied uniforms: shape [batch, >= draws] and every value in
// [0, 1). Copies the matrix to the host (it is tiny: B * max_draws floats).
template <class B>
void check_uniforms(const B& backend, const char* fn, const uniform_source& u, index_t batch,
                    index_t draws) {
  if (!u.from_caller()) return;
  REDRAFT_REQUIRE(u.rows() == batch, fn, ": uniforms has ", u.rows(), " rows but the batch has ",
                  batch, " requests");
  REDRAFT_REQUIRE(u.columns() >= draws, fn, ": uniforms has ", u.columns(),
                  " columns but this tree needs ", draws, " draws per request");
  std::vector<float> host(static_cast<std::size_t>(u.rows() * u.columns()));
  if (!host.empty()) backend.copy_to_host(u.caller_data(), u.rows() * u.columns(), host.data());
  for (index_t b = 0; b < u.rows(); ++b) {
    for (index_t i = 0; i < u.columns(); ++i) {
      const float x = host[static_cast<std::size_t>(b * u.columns() + i)];
      REDRAFT_REQUIRE(x >= 0.0f && x < 1.0f, fn, ": uniforms[", b, ", ", i, "] = ", x,
                      " is outside [0, 1)");
    }
  }
}

}  // namespace detail
}  // namespace redraft
