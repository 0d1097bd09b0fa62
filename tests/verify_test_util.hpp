// tests/verify_test_util.hpp: helpers shared by the verify/ and kv/ tests: uploading host data,
// building trees from parent arrays (not only from beams), random trees and beams.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "redraft/redraft.hpp"

namespace redraft_test {

template <class B, class T>
typename B::template buffer<T> upload(const B& backend, const std::vector<T>& host) {
  auto buf = backend.template allocate<T>(static_cast<redraft::index_t>(host.size()));
  if (!host.empty()) {
    backend.copy_from_host(host.data(), static_cast<redraft::index_t>(host.size()), buf.data());
  }
  return buf;
}

template <class B, class T>
std::vector<T> download(const B& backend, const typename B::template buffer<T>& buf) {
  std::vector<T> host(static_cast<std::size_t>(buf.size()));
  if (!host.empty()) backend.copy_to_host(buf.data(), buf.size(), host.data());
  return host;
}

// One request's tree on the host: parent (-1 at the root) and token per node, packed order.
struct host_tree {
  std::vector<std::int32_t> parent;
  std::vector<std::int32_t> token;
  std::int32_t size() const { return static_cast<std::int32_t>(parent.size()); }
  std::vector<std::int32_t> depth() const {
    std::vector<std::int32_t> d(parent.size(), 0);
    for (std::size_t i = 1; i < parent.size(); ++i)
      d[i] = d[static_cast<std::size_t>(parent[i])] + 1;
    return d;
  }
  std::vector<std::int32_t> children(std::int32_t u) const {
    std::vector<std::int32_t> c;
    for (std::int32_t i = 0; i < size(); ++i)
      if (parent[static_cast<std::size_t>(i)] == u) c.push_back(i);
    return c;
  }
};

// A tree<B> without beams from host trees (one per request).
template <class B>
redraft::tree<B> make_tree(const B& backend, const std::vector<host_tree>& requests) {
  std::vector<std::int32_t> offsets{0}, token, parent, depth;
  for (const host_tree& t : requests) {
    const auto d = t.depth();
    token.insert(token.end(), t.token.begin(), t.token.end());
    parent.insert(parent.end(), t.parent.begin(), t.parent.end());
    depth.insert(depth.end(), d.begin(), d.end());
    offsets.push_back(static_cast<std::int32_t>(token.size()));
  }
  redraft::tree<B> out;
  out.batch = static_cast<std::int32_t>(requests.size());
  out.node_offsets = upload(backend, offsets);
  out.token = upload(backend, token);
  out.parent = upload(backend, parent);
  out.depth = upload(backend, depth);
  out.beam_to_node = backend.template allocate<std::int32_t>(0);
  out.host_node_offsets = offsets;
  return out;
}

// A random tree of n nodes: parent uniform among earlier nodes with depth < max_depth, tokens
// distinct among siblings (a child is skipped when its parent already uses every token).
inline host_tree random_tree(std::mt19937_64& rng, std::int32_t n, std::int32_t vocab,
                             std::int32_t max_depth) {
  host_tree t;
  t.parent.push_back(-1);
  t.token.push_back(static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(vocab)));
  std::vector<std::int32_t> depth{0};
  for (std::int32_t tries = 0; t.size() < n && tries < 20 * n; ++tries) {
    const std::int32_t p = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(t.size()));
    if (depth[static_cast<std::size_t>(p)] >= max_depth) continue;
    std::vector<bool> used(static_cast<std::size_t>(vocab), false);
    for (std::int32_t c : t.children(p))
      used[static_cast<std::size_t>(t.token[static_cast<std::size_t>(c)])] = true;
    std::vector<std::int32_t> free;
    for (std::int32_t v = 0; v < vocab; ++v)
      if (!used[static_cast<std::size_t>(v)]) free.push_back(v);
    if (free.empty()) continue;
    t.parent.push_back(p);
    t.token.push_back(free[rng() % free.size()]);
    depth.push_back(depth[static_cast<std::size_t>(p)] + 1);
  }
  return t;
}

// Random beams [B, W, L] over a small vocabulary (so beams share prefixes), equal roots.
inline std::vector<std::int32_t> random_beams(std::mt19937_64& rng, std::int32_t batch,
                                              std::int32_t width, std::int32_t length,
                                              std::int32_t vocab) {
  std::vector<std::int32_t> beams(static_cast<std::size_t>(batch * width * length));
  for (std::int32_t b = 0; b < batch; ++b) {
    const std::int32_t root = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(vocab));
    for (std::int32_t w = 0; w < width; ++w) {
      for (std::int32_t l = 0; l < length; ++l) {
        beams[static_cast<std::size_t>((b * width + w) * length + l)] =
            l == 0 ? root : static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(vocab));
      }
    }
  }
  return beams;
}

// Random logits [rows, V]: integers in [0, spread) (ties likely) or continuous normals.
inline std::vector<float> random_logits(std::mt19937_64& rng, std::int64_t rows, std::int64_t vocab,
                                        bool with_ties) {
  std::vector<float> x(static_cast<std::size_t>(rows * vocab));
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& v : x) v = with_ties ? static_cast<float>(rng() % 4) : normal(rng);
  return x;
}

// Upper quantile of the chi-square distribution with k degrees of freedom at upper tail z
// standard deviations (Wilson-Hilferty), e.g. z = 4.75 for p = 1e-6.
inline double chi_square_quantile(double k, double z) {
  const double a = 2.0 / (9.0 * k);
  const double c = 1.0 - a + z * std::sqrt(a);
  return k * c * c * c;
}

// G statistic 2 sum O ln(O / E) over cells with E > 0; cells with E == 0 and O > 0 give +inf.
inline double g_statistic(const std::vector<double>& observed,
                          const std::vector<double>& expected) {
  double g = 0.0;
  for (std::size_t i = 0; i < observed.size(); ++i) {
    if (observed[i] == 0.0) continue;
    if (expected[i] <= 0.0) return INFINITY;
    g += 2.0 * observed[i] * std::log(observed[i] / expected[i]);
  }
  return g;
}

// Uniforms [A, draws] as speculative_decoder draws them for a step: row i from the Philox stream
// (seed, request[i], step), request[i] being the request's index in the caller's list.
inline std::vector<float> decoder_uniforms(const std::vector<std::int32_t>& request,
                                           std::uint64_t seed, std::uint32_t step,
                                           std::int64_t draws) {
  std::vector<float> u;
  for (const std::int32_t r : request) {
    const redraft::philox_stream s{seed, static_cast<std::uint32_t>(r), step};
    for (std::int64_t j = 0; j < draws; ++j) u.push_back(s.uniform(static_cast<std::uint64_t>(j)));
  }
  return u;
}

}  // namespace redraft_test
