// tools/conformance/kind_drafter_loss.hpp: the `drafter_loss` case kind.
#pragma once

#include "golden_format.hpp"

namespace redraft::conformance {

inline case_result run_drafter_loss(const json&) { return case_result::skip("kind drafter_loss is not implemented yet"); }

}  // namespace redraft::conformance
