// fuzz/fuzz_golden.hpp: the conformance runner's golden-format reader and case kinds
// (tools/conformance/), on arbitrary JSON.
//
// Input: a JSON document (the bytes of a would-be golden case file). The runner's contract
// (tools/conformance/main.cpp): a case either runs and passes / fails / is skipped, or is
// reported as unreadable through a std::exception; nothing crashes, nothing reads out of bounds.
#pragma once

#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>

#include "../tools/conformance/golden_format.hpp"
#include "../tools/conformance/kind_beam_search.hpp"
#include "../tools/conformance/kind_drafter_loss.hpp"
#include "../tools/conformance/kind_greedy_accept.hpp"
#include "../tools/conformance/kind_pack.hpp"
#include "../tools/conformance/kind_redrafter_accept.hpp"
#include "fuzz_input.hpp"
#include "redraft/cpu/cpu_backend.hpp"

namespace redraft_fuzz {

inline outcome fuzz_golden(const std::uint8_t* data, std::size_t size) {
  namespace rc = redraft::conformance;
  using B = redraft::cpu_backend;
  const rc::json c = rc::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  outcome out;
  if (c.is_discarded()) {
    out.stages.push_back("json: not JSON");
    return out;
  }
  try {
    // As tools/conformance/main.cpp dispatches a case.
    REDRAFT_REQUIRE(c.is_object() && c.contains("kind") && c.at("kind").is_string(),
                    "no string field 'kind'");
    REDRAFT_REQUIRE(c.contains("inputs") && c.contains("expected"),
                    "needs 'inputs' and 'expected'");
    const std::string kind = c.at("kind").get<std::string>();
    rc::case_result r;
    if (kind == "pack")
      r = rc::run_pack<B>(c);
    else if (kind == "beam_search")
      r = rc::run_beam_search<B>(c);
    else if (kind == "greedy_accept")
      r = rc::run_greedy_accept<B>(c);
    else if (kind == "redrafter_accept")
      r = rc::run_redrafter_accept<B>(c);
    else if (kind == "drafter_loss")
      r = rc::run_drafter_loss(c);
    else {
      out.stages.push_back("case: unknown kind");
      return out;
    }
    FUZZ_CHECK(r.outcome == rc::case_result::status::pass || !r.message.empty());
    out.stages.push_back(r.outcome == rc::case_result::status::pass ? "case: pass"
                                                                    : "case: " + r.message);
  } catch (const std::exception& e) {
    // Reported by the runner as UNREADABLE with the message.
    out.refused("case", e);
  }
  return out;
}

}  // namespace redraft_fuzz
