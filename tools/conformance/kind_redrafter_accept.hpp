// tools/conformance/kind_redrafter_accept.hpp: the `redrafter_accept` case kind.
#pragma once

#include "golden_format.hpp"

namespace redraft::conformance {

inline case_result run_redrafter_accept(const json&) { return case_result::skip("kind redrafter_accept is not implemented yet"); }

}  // namespace redraft::conformance
