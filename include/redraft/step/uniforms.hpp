// redraft/step/uniforms.hpp: where the sampling steps get their uniforms: Philox (seed, request,
// step) or a caller matrix. The host validation of caller uniforms is verify/uniforms.hpp's.
#pragma once

#include <cstdint>

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

}  // namespace redraft
