// python/src/policy.hpp: the speculation policy of one SpeculativeDecoder.generate() call.
//
// SpeculativeDecoder(..., policy=...) takes "fixed" (DecodeOptions' W and L every step, the
// library default), "plain" (every step plain: no drafting) or an AdaptivePolicy. The C++ decoder
// is built anew for every generate() call (its drafter and target wrap that call's Python
// objects), while an AdaptivePolicy must outlive the call: what it measured (verify costs per node
// count, acceptance per depth, its probe budget) carries over to the next call, as in a server.
// call_policy is the SpeculationPolicy the decoder owns for one call; for an AdaptivePolicy it
// forwards to the Python-owned object, which the SpeculativeDecoder keeps referenced.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <string>

#include "redraft/core/error.hpp"
#include "redraft/loop/adaptive_policy.hpp"
#include "redraft/loop/speculation_policy.hpp"

namespace redraft::python {

class call_policy {
 public:
  // policy: "fixed", "plain" or an AdaptivePolicy (nanobind handle); anything else is an error
  // that names what was given.
  static call_policy of(nanobind::handle policy) {
    namespace nb = nanobind;
    call_policy p;
    if (nb::try_cast(policy, p.adaptive_, false) && p.adaptive_ != nullptr) return p;
    p.adaptive_ = nullptr;
    std::string name;
    if (nb::try_cast(policy, name, false)) {
      if (name == "fixed") return p;
      if (name == "plain") {
        p.plain_ = true;
        return p;
      }
    } else {
      name = nb::cast<std::string>(nb::repr(policy));
    }
    detail::throw_error("SpeculativeDecoder: policy '", name,
                        "' is not 'fixed', 'plain' or an AdaptivePolicy");
  }

  std::int32_t start(const decode_options& options) {
    if (adaptive_) return adaptive_->start(options);
    return plain_ ? plain_policy{}.start(options) : fixed_policy{}.start(options);
  }
  draft_shape choose(const step_context& ctx) {
    if (adaptive_) return adaptive_->choose(ctx);
    return plain_ ? draft_shape::plain() : fixed_policy{}.choose(ctx);
  }
  void observe(const step_report& report) {
    if (adaptive_) adaptive_->observe(report);
  }
  bool needs_reports() const { return adaptive_ != nullptr && adaptive_->needs_reports(); }

 private:
  call_policy() = default;
  adaptive_policy* adaptive_ = nullptr;  // owned by Python, outlives the call
  bool plain_ = false;
};

static_assert(SpeculationPolicy<call_policy>);

}  // namespace redraft::python
