// python/src/bind_policy.cpp: AdaptivePolicy, the adaptive speculation policy
// (loop/adaptive_policy.hpp) as a Python object. SpeculativeDecoder(..., policy=AdaptivePolicy())
// asks it for every step's draft shape and keeps it across generate() calls
// (python/src/policy.hpp).
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "redraft/loop/adaptive_policy.hpp"

namespace redraft::python {

namespace nb = nanobind;

namespace {

std::string list_repr(const std::vector<std::int32_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

void bind_policy(nb::module_& m) {
  const adaptive_policy_config d;  // the defaults, so the Python signature cannot drift from C++
  nb::class_<adaptive_policy>(
      m, "AdaptivePolicy",
      "AdaptivePolicy(widths=[1, 2, 4, 8, 16], lengths=[2, 3, 4, 5, 6], allow_plain=True, ...)\n\n"
      "Chooses every step's draft shape W x L from the candidates (or a plain step, nothing "
      "drafted, when allow_plain) to maximise expected emitted tokens per second: verify costs "
      "measured online per node count, the drafting cost, and the acceptance per depth and beam "
      "rank, all decayed so they follow drift. A few probes of other shapes keep the estimates "
      "fresh, paid from a budget; with plain steps allowed a tree must beat plain decoding by "
      "plain_margin. Pass it as SpeculativeDecoder(..., policy=p); it keeps what it measured "
      "across generate() calls and across decoders that share it. Greedy output stays equal to "
      "plain greedy decoding and lossless sampling stays lossless whatever it picks. The drafter "
      "must accept any beam_width and beam_length among the candidates. Every keyword is a field "
      "of the C++ adaptive_policy_config (docs/loop.md explains the estimator).")
      .def(
          "__init__",
          [](adaptive_policy* p, std::vector<std::int32_t> widths,
             std::vector<std::int32_t> lengths, bool allow_plain, double decay,
             double explore_fraction, std::int32_t explore_steps, double confidence,
             double cost_confidence, double explore_free_fraction, double explore_gain_share,
             double explore_free_steps, double explore_free_trials, double plain_margin,
             double speed_smoothing, double token_floor_sigmas) {
            adaptive_policy_config c;
            c.widths = std::move(widths);
            c.lengths = std::move(lengths);
            c.allow_plain = allow_plain;
            c.decay = decay;
            c.explore_fraction = explore_fraction;
            c.explore_steps = explore_steps;
            c.confidence = confidence;
            c.cost_confidence = cost_confidence;
            c.explore_free_fraction = explore_free_fraction;
            c.explore_gain_share = explore_gain_share;
            c.explore_free_steps = explore_free_steps;
            c.explore_free_trials = explore_free_trials;
            c.plain_margin = plain_margin;
            c.speed_smoothing = speed_smoothing;
            c.token_floor_sigmas = token_floor_sigmas;
            // The C++ constructor checks every field; its errors name the C++ class, which a
            // Python caller never wrote, so they are re-raised under the Python class's name.
            try {
              new (p) adaptive_policy(std::move(c));
            } catch (const redraft::error& e) {
              std::string message = e.what();
              const std::string cpp_name = "adaptive_policy";
              if (message.starts_with(cpp_name))
                message.replace(0, cpp_name.size(), "AdaptivePolicy");
              throw nb::value_error(message.c_str());
            }
          },
          nb::kw_only(), nb::arg("widths") = d.widths, nb::arg("lengths") = d.lengths,
          nb::arg("allow_plain") = d.allow_plain, nb::arg("decay") = d.decay,
          nb::arg("explore_fraction") = d.explore_fraction,
          nb::arg("explore_steps") = d.explore_steps, nb::arg("confidence") = d.confidence,
          nb::arg("cost_confidence") = d.cost_confidence,
          nb::arg("explore_free_fraction") = d.explore_free_fraction,
          nb::arg("explore_gain_share") = d.explore_gain_share,
          nb::arg("explore_free_steps") = d.explore_free_steps,
          nb::arg("explore_free_trials") = d.explore_free_trials,
          nb::arg("plain_margin") = d.plain_margin, nb::arg("speed_smoothing") = d.speed_smoothing,
          nb::arg("token_floor_sigmas") = d.token_floor_sigmas)
      .def_prop_ro(
          "widths", [](const adaptive_policy& p) { return p.config().widths; },
          "candidate beam widths W, ascending")
      .def_prop_ro(
          "lengths", [](const adaptive_policy& p) { return p.config().lengths; },
          "candidate beam lengths L (root included), ascending")
      .def_prop_ro(
          "allow_plain", [](const adaptive_policy& p) { return p.config().allow_plain; },
          "whether plain steps (nothing drafted) are candidates")
      .def_prop_ro(
          "plain_margin", [](const adaptive_policy& p) { return p.config().plain_margin; },
          "the fraction by which a tree must beat plain decoding to be exploited")
      .def_prop_ro(
          "choice_counts",
          [](const adaptive_policy& p) {
            nb::dict out;
            const auto& counts = p.choice_counts();
            for (const policy_choice c :
                 {policy_choice::calibrate, policy_choice::exploit, policy_choice::probe})
              out[policy_choice_name(c)] = counts[static_cast<std::size_t>(c)];
            return out;
          },
          "steps chosen so far, by reason: {'calibrate': 3 once per policy (plain, the "
          "narrowest-longest tree, plain), 'exploit': the best estimate, 'probe': another shape "
          "that might beat it}")
      .def_prop_ro(
          "last_choice",
          [](const adaptive_policy& p) { return policy_choice_name(p.last_choice()); },
          "why the last step's shape was chosen: 'calibrate', 'exploit' or 'probe'")
      .def_prop_ro("elapsed_s", &adaptive_policy::elapsed_s, "decoding time observed (all steps)")
      .def_prop_ro("gain_s", &adaptive_policy::gain_s,
                   "time the calibration and exploiting steps saved against plain decoding "
                   "(estimated, signed)")
      .def_prop_ro("probe_loss_s", &adaptive_policy::probe_loss_s,
                   "what the probes were charged against the best shape of their moment (signed)")
      .def_prop_ro("probe_allowance", &adaptive_policy::probe_allowance,
                   "what probes may lose in all so far (probe_loss_s counts against it)")
      .def_prop_ro("speed", &adaptive_policy::speed,
                   "the machine-speed factor the stored costs are multiplied by")
      .def(
          "verify_cost",
          [](const adaptive_policy& p, double nodes) { return p.verify_cost(nodes); },
          nb::arg("nodes"),
          "verify_cost(nodes) -> seconds: the estimated cost of everything but drafting for a "
          "step of that many packed tree nodes (all requests), at the last step's context")
      .def(
          "copy", [](const adaptive_policy& p) { return adaptive_policy(p); },
          "An independent copy with everything measured so far (seeds another decoder).")
      .def("__copy__", [](const adaptive_policy& p) { return adaptive_policy(p); })
      .def(
          "__deepcopy__", [](const adaptive_policy& p, nb::handle) { return adaptive_policy(p); },
          nb::arg("memo"))
      .def("__repr__", [](const adaptive_policy& p) {
        const auto& counts = p.choice_counts();
        return "AdaptivePolicy(widths=" + list_repr(p.config().widths) +
               ", lengths=" + list_repr(p.config().lengths) +
               ", allow_plain=" + (p.config().allow_plain ? "True" : "False") + "; " +
               std::to_string(counts[0] + counts[1] + counts[2]) + " steps chosen)";
      });
}

}  // namespace redraft::python
