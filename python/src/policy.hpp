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
#include <unordered_set>

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
      detail::throw_error("SpeculativeDecoder: policy '", name,
                          "' is not 'fixed', 'plain' or an AdaptivePolicy instance");
    }
    detail::throw_error("SpeculativeDecoder: policy ", nb::cast<std::string>(nb::repr(policy)),
                        " (", nb::cast<std::string>(nb::type_name(policy.type())),
                        ") is not 'fixed', 'plain' or an AdaptivePolicy instance");
  }

  // The AdaptivePolicy this call uses, or nullptr.
  adaptive_policy* adaptive() const { return adaptive_; }

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

// Marks an AdaptivePolicy as in use for one generate() call. NOTE: a policy's observe() reads what
// its choose() left for the step (the choice, the shape, whether the step ran cold), so two calls
// that interleave (threads whose decoders share one policy while torch releases the GIL inside a
// forward pass, or an on_token callback that calls generate() again) would charge one call's steps
// to the other's choices. The second call fails instead. Only touched with the GIL held.
class policy_in_use {
 public:
  explicit policy_in_use(const call_policy& policy) : adaptive_(policy.adaptive()) {
    if (adaptive_ == nullptr) return;
    REDRAFT_REQUIRE(busy().insert(adaptive_).second,
                    "SpeculativeDecoder.generate: the AdaptivePolicy is in use by another "
                    "generate() call (another thread, or a callback of this call); give each "
                    "decoder that runs at the same time its own policy (policy.copy())");
  }
  ~policy_in_use() {
    if (adaptive_ != nullptr) busy().erase(adaptive_);
  }
  policy_in_use(const policy_in_use&) = delete;
  policy_in_use& operator=(const policy_in_use&) = delete;

 private:
  static std::unordered_set<const adaptive_policy*>& busy() {
    static std::unordered_set<const adaptive_policy*> in_use;
    return in_use;
  }
  const adaptive_policy* adaptive_;
};

}  // namespace redraft::python
