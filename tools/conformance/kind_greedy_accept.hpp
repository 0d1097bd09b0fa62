// tools/conformance/kind_greedy_accept.hpp: the `greedy_accept` case kind.
#pragma once

#include "golden_format.hpp"

namespace redraft::conformance {

inline case_result run_greedy_accept(const json&) { return case_result::skip("kind greedy_accept is not implemented yet"); }

}  // namespace redraft::conformance
