// tools/conformance/kind_beam_search.hpp: the `beam_search` case kind.
#pragma once

#include "golden_format.hpp"

namespace redraft::conformance {

inline case_result run_beam_search(const json&) { return case_result::skip("kind beam_search is not implemented yet"); }

}  // namespace redraft::conformance
