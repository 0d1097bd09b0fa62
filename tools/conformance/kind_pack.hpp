// tools/conformance/kind_pack.hpp: the `pack` case kind.
#pragma once

#include "golden_format.hpp"

namespace redraft::conformance {

inline case_result run_pack(const json&) { return case_result::skip("kind pack is not implemented yet"); }

}  // namespace redraft::conformance
