// redraft/testing/simulated_cost.hpp: a simulated clock and a target and drafter that advance it
// by known costs, with a drafter of known acceptance, for deterministic tests of speculation
// policies (no wall-clock time anywhere).
//
//   simulated_clock     a DecodeClock whose copies share one time, advanced explicitly
//   costed_target<M>    forwards a TargetModel; each verify of n nodes over C committed tokens
//                       (all requests together) advances the clock by a + b n + k C seconds
//                       (prefill by a + b * prompt tokens)
//   profile_drafter     proposes W beams against the synthetic target's greedy continuation:
//                       each beam matches it for the first k tokens, with
//                       P(k >= d) = alpha_1 ... alpha_d (independent across beams), then leaves it
//                       with a token no other beam has at that depth; drafting W beams of L
//                       tokens for A requests advances the clock by (L - 1)(c0 + c1 W A).
// With greedy verification a step of shape (W, L) therefore accepts
//   P(accepted >= d) = 1 - (1 - s_d)^W,   s_d = alpha_1 ... alpha_d
// drafted tokens, and profile_expected_nodes() gives its expected tree size, so a test can
// compute every shape's expected tokens per second exactly and compare a policy's choice.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "redraft/core/error.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/loop/drafter.hpp"
#include "redraft/loop/target_model.hpp"
#include "redraft/testing/synthetic_target.hpp"

namespace redraft::testing {

class simulated_clock {
 public:
  double now() const { return *seconds_; }
  void advance(double seconds) { *seconds_ += seconds; }

 private:
  std::shared_ptr<double> seconds_ = std::make_shared<double>(0.0);
};

// verify cost a + b n + k C, C the tokens committed before the pass (all requests together):
// the attention over the cache, read once per request whatever its tree.
struct linear_cost {
  double a = 0, b = 0, k = 0;
  double operator()(double n, double context = 0) const { return a + b * n + k * context; }
};

template <TargetModel M>
class costed_target {
 public:
  using backend_type = typename M::backend_type;
  costed_target(M& inner, simulated_clock clock, linear_cost cost)
      : inner_(inner), clock_(clock), cost_(cost) {}

  std::int32_t vocab_size() const { return inner_.vocab_size(); }
  std::int32_t hidden_size() const { return inner_.hidden_size(); }
  std::int32_t max_context() const { return inner_.max_context(); }
  matrix_view<const float> embedding() const { return inner_.embedding(); }
  decltype(auto) backend() { return inner_.backend(); }
  model_output prefill(const prefill_input& in) {
    clock_.advance(cost_(static_cast<double>(in.tokens.extent(0))));
    return inner_.prefill(in);
  }
  model_output verify(const verify_input& in) {
    const index_t requests = in.slots.extent(0);
    // C: each request's first node is its root, at position = its committed length (the
    // positions are host memory on the CPU backend, the only one these tests run on).
    double context = 0;
    if (cost_.k != 0)
      for (index_t r = 0; r < requests; ++r) context += in.positions[in.host_node_offsets[r]];
    clock_.advance(
        cost_(requests == 0 ? 0.0 : static_cast<double>(in.host_node_offsets[requests]), context));
    return inner_.verify(in);
  }
  void commit(const kv_plan& plan) { inner_.commit(plan); }

  void set_cost(linear_cost cost) { cost_ = cost; }
  M& inner() { return inner_; }

 private:
  M& inner_;
  simulated_clock clock_;
  linear_cost cost_;
};

class profile_drafter {
 public:
  // alpha [D]: alpha[d - 1] = P(a beam matches at depth d | it matched at depth d - 1).
  profile_drafter(const synthetic_target& target, std::vector<double> alpha, std::uint64_t seed,
                  simulated_clock clock, double c0, double c1)
      : target_(target), seed_(seed), clock_(clock), c0_(c0), c1_(c1) {
    set_profile(std::move(alpha));
  }

  // The draft cost (L - 1)(c0 + c1 W A) from now on (a machine that slows down).
  void set_cost(double c0, double c1) {
    c0_ = c0;
    c1_ = c1;
  }
  void set_profile(std::vector<double> alpha) {
    for (std::size_t d = 0; d < alpha.size(); ++d)
      REDRAFT_REQUIRE(alpha[d] >= 0.0 && alpha[d] <= 1.0, "profile_drafter: alpha[", d,
                      "] = ", alpha[d], " is not a probability");
    alpha_ = std::move(alpha);
  }

  draft_output<cpu_backend> draft(const draft_input& in) {
    const std::int32_t requests = static_cast<std::int32_t>(in.roots.extent(0));
    const std::int32_t width = in.beam_width, length = in.beam_length, vocab = target_.vocab_size();
    REDRAFT_REQUIRE(length - 1 <= static_cast<std::int32_t>(alpha_.size()),
                    "profile_drafter: beam_length ", length, " needs ", length - 1,
                    " depths of alpha, the profile has ", alpha_.size());
    REDRAFT_REQUIRE(!in.want_log_probs,
                    "profile_drafter: log-probs (verifier::redrafter) are not supported");
    REDRAFT_REQUIRE(width + 1 < vocab, "profile_drafter: beam_width ", width,
                    " needs a vocabulary over ", width + 1);
    clock_.advance((length - 1) * (c0_ + c1_ * width * requests));
    draft_output<cpu_backend> out;
    out.beams = host_buffer<std::int32_t>(static_cast<index_t>(requests) * width * length);
    for (std::int32_t r = 0; r < requests; ++r) {
      // The target's greedy continuation of committed tokens + root.
      std::vector<std::int32_t> seq = target_.committed(in.slots[r]);
      seq.push_back(in.roots[r]);
      std::vector<std::int32_t> greedy;
      for (std::int32_t l = 1; l < length; ++l) {
        const auto p = target_.next_distribution(seq);
        std::int32_t best = 0;
        for (std::int32_t v = 1; v < vocab; ++v)
          if (p[static_cast<std::size_t>(v)] > p[static_cast<std::size_t>(best)]) best = v;
        greedy.push_back(best);
        seq.push_back(best);
      }
      const philox_stream s{seed_, static_cast<std::uint32_t>(in.slots[r]), calls_};
      for (std::int32_t w = 0; w < width; ++w) {
        std::int32_t* beam = out.beams.data() + (static_cast<index_t>(r) * width + w) * length;
        beam[0] = in.roots[r];
        bool matching = true;
        for (std::int32_t l = 1; l < length; ++l) {
          const double u =
              s.uniform(static_cast<std::uint64_t>(w) * 64u + static_cast<std::uint64_t>(l));
          matching = matching && u < alpha_[static_cast<std::size_t>(l - 1)];
          const std::int32_t g = greedy[static_cast<std::size_t>(l - 1)];
          beam[l] = matching ? g : (g + 1 + w) % vocab;  // off the path: a token unique to beam w
        }
      }
    }
    ++calls_;
    return out;
  }

 private:
  const synthetic_target& target_;
  std::vector<double> alpha_;
  std::uint64_t seed_;
  simulated_clock clock_;
  double c0_, c1_;
  std::uint32_t calls_ = 0;
};

// P(accepted >= d) for a profile_drafter of width W: 1 - (1 - s_d)^W, d = 1 .. depths.
inline std::vector<double> profile_acceptance(const std::vector<double>& alpha, std::int32_t width,
                                              std::int32_t depths) {
  std::vector<double> q;
  double s = 1.0;
  for (std::int32_t d = 1; d <= depths; ++d) {
    s *= alpha[static_cast<std::size_t>(d - 1)];
    q.push_back(1.0 - std::pow(1.0 - s, width));
  }
  return q;
}

// Expected tree nodes per request for a profile_drafter of shape (W, L): beam w shares
// min(k_w, max_{v<w} k_v) positions with earlier beams, so it adds
// (L - 1) - sum_d s_d (1 - (1 - s_d)^w) nodes in expectation.
inline double profile_expected_nodes(const std::vector<double>& alpha, std::int32_t width,
                                     std::int32_t length) {
  double nodes = 1.0, s = 1.0;
  std::vector<double> sd;
  for (std::int32_t d = 1; d < length; ++d)
    sd.push_back(s *= alpha[static_cast<std::size_t>(d - 1)]);
  for (std::int32_t w = 0; w < width; ++w) {
    double shared = 0;
    for (const double x : sd) shared += x * (1.0 - std::pow(1.0 - x, w));
    nodes += (length - 1) - shared;
  }
  return nodes;
}

}  // namespace redraft::testing
