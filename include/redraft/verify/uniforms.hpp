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
#include "redraft/core/philox.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

// Philox uniforms: request b of the batch draws from philox_stream{seed, b, step}.
struct philox_uniforms {
  std::uint64_t seed = 0;
  std::uint32_t step = 0;
};

// A trivially copyable source of uniforms for functors; implicitly built from either form.
class uniform_source {
 public:
  uniform_source(philox_uniforms p) : seed_(p.seed), step_(p.step) {}  // NOLINT: implicit
  // uniforms [B, max_draws] in backend memory, values in [0, 1).
  uniform_source(matrix_view<const float> uniforms)  // NOLINT: implicit
      : caller_(uniforms.data()), rows_(uniforms.extent(0)), columns_(uniforms.extent(1)) {}
  uniform_source(matrix_view<float> uniforms)  // NOLINT: implicit
      : uniform_source(matrix_view<const float>(uniforms)) {}

  REDRAFT_HOST_DEVICE bool from_caller() const { return caller_ != nullptr; }
  REDRAFT_HOST_DEVICE index_t rows() const { return rows_; }
  REDRAFT_HOST_DEVICE index_t columns() const { return columns_; }
  REDRAFT_HOST_DEVICE const float* caller_data() const { return caller_; }

  // Uniform number `index` of request b, in [0, 1).
  REDRAFT_HOST_DEVICE float draw(std::int32_t b, index_t index) const {
    if (caller_ != nullptr) return caller_[static_cast<index_t>(b) * columns_ + index];
    return philox_stream{seed_, static_cast<std::uint32_t>(b), step_}.uniform(
        static_cast<std::uint64_t>(index));
  }

 private:
  const float* caller_ = nullptr;
  index_t rows_ = 0;
  index_t columns_ = 0;
  std::uint64_t seed_ = 0;
  std::uint32_t step_ = 0;
};

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
