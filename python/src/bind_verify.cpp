// python/src/bind_verify.cpp: the four verifiers, logits processing and KV compaction plans.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <optional>
#include <span>
#include <variant>

#include "arrays.hpp"
#include "bindings.hpp"
#include "redraft/kv/compaction.hpp"
#include "redraft/verify/greedy.hpp"
#include "redraft/verify/logits_processing.hpp"
#include "redraft/verify/lossless.hpp"
#include "redraft/verify/redrafter.hpp"
#include "redraft/verify/typical.hpp"

namespace redraft::python {

using tree_t = tree<backend>;
using acceptance_t = acceptance<backend>;

namespace {

// Caller uniforms [B, draws] when given, else Philox (seed, request, step).
uniform_source uniforms_of(const std::optional<in_array>& u, const char* fn, std::uint64_t seed,
                           std::uint32_t step) {
  if (!u) return philox_uniforms{seed, step};
  return in_view<float, 2>(*u, fn, "uniforms", "[B, draws]");
}

// The target's logits [n_total, V] as float32, float16 or bfloat16 rows.
rows_of<const float> logits_of(const in_array& a, const char* fn) {
  return logits_rows<const float>(a, fn, "logits", "[n_total, V]");
}

// Logits modified in place, [rows, V], any of the three element types.
rows_of<float> inout_logits(const inout_array& a, const char* fn) {
  return logits_rows<float>(a, fn, "logits", "[rows, V]");
}

#define REDRAFT_UNIFORMS_DOC                                                                      \
  "uniforms: None (Philox stream (seed, request b, step)) or caller uniforms [B, draws] float32 " \
  "in [0, 1)."

}  // namespace

void bind_verify(nb::module_& m) {
  nb::class_<acceptance_t>(
      m, "Acceptance",
      "A verifier's decision per request (B requests, path length L):\n"
      "  accepted_len   [B] int32     drafted tokens accepted, 0 .. L-1\n"
      "  best_beam      [B] int32     lowest beam through the accepted path (-1: tree without "
      "beams)\n"
      "  accepted_nodes [B, L] int32  request-local nodes of root + accepted path, -1 padded\n"
      "  emitted_tokens [B, L] int32  accepted drafted tokens then the next token, -1 padded\n"
      "  next_token     [B] int32     the target's token after the path: next step's root\n"
      "  hidden_row     [B] int32     global packed row whose hidden state feeds the drafter next\n"
      "Arrays are read-only views of the result's own memory.")
      .def_ro("batch", &acceptance_t::batch, "B")
      .def_ro("path_length", &acceptance_t::path_length, "L")
      .def_prop_ro("accepted_len",
                   [](const acceptance_t& a) {
                     return borrowed(a.accepted_len.data(), {std::size_t(a.batch)}, nb::find(&a));
                   })
      .def_prop_ro("best_beam",
                   [](const acceptance_t& a) {
                     return borrowed(a.best_beam.data(), {std::size_t(a.batch)}, nb::find(&a));
                   })
      .def_prop_ro("accepted_nodes",
                   [](const acceptance_t& a) {
                     return borrowed(a.accepted_nodes.data(),
                                     {std::size_t(a.batch), std::size_t(a.path_length)},
                                     nb::find(&a));
                   })
      .def_prop_ro("emitted_tokens",
                   [](const acceptance_t& a) {
                     return borrowed(a.emitted_tokens.data(),
                                     {std::size_t(a.batch), std::size_t(a.path_length)},
                                     nb::find(&a));
                   })
      .def_prop_ro("next_token",
                   [](const acceptance_t& a) {
                     return borrowed(a.next_token.data(), {std::size_t(a.batch)}, nb::find(&a));
                   })
      .def_prop_ro("hidden_row",
                   [](const acceptance_t& a) {
                     return borrowed(a.hidden_row.data(), {std::size_t(a.batch)}, nb::find(&a));
                   })
      .def(
          "emitted",
          [](const acceptance_t& a, std::int32_t b) {
            REDRAFT_REQUIRE(b >= 0 && b < a.batch, "Acceptance.emitted: request ", b,
                            " is outside [0, ", a.batch, ")");
            const std::int32_t* row =
                a.emitted_tokens.data() + static_cast<index_t>(b) * a.path_length;
            return std::vector<std::int32_t>(row, row + a.accepted_len[b] + 1);
          },
          nb::arg("request"), "The accepted_len + 1 emitted tokens of request b, as a list.");

  // ---- verifiers ----
  m.def(
      "verify_greedy",
      [](const tree_t& t, const in_array& logits) {
        return std::visit([&](auto z) { return verify_greedy(backend{}, t, z); },
                          logits_of(logits, "verify_greedy"));
      },
      nb::arg("tree"), nb::arg("logits"),
      "verify_greedy(tree, logits [n_total, V] float32/float16/bfloat16) -> Acceptance\n\n"
      "Walks from each root, descending into the child whose token is the target's argmax. "
      "Speculative greedy output equals plain greedy decoding.");

  m.def(
      "verify_lossless",
      [](const tree_t& t, const in_array& logits, float temperature, std::int32_t top_k,
         float top_p, std::uint64_t seed, std::uint32_t step,
         const std::optional<in_array>& uniforms) {
        const char* fn = "verify_lossless";
        const sampling_params params{temperature, top_k, top_p};
        const uniform_source u = uniforms_of(uniforms, fn, seed, step);
        return std::visit([&](auto z) { return verify_lossless(backend{}, t, z, params, u); },
                          logits_of(logits, fn));
      },
      nb::arg("tree"), nb::arg("logits"), nb::arg("temperature") = 1.0f, nb::arg("top_k") = 0,
      nb::arg("top_p") = 1.0f, nb::arg("seed") = 0, nb::arg("step") = 0,
      nb::arg("uniforms") = nb::none(),
      ("verify_lossless(tree, logits [n_total, V] float32/float16/bfloat16, temperature=1, "
       "top_k=0, top_p=1, "
       "seed=0, step=0, uniforms=None) -> Acceptance\n\n"
       "Lossless tree sampling: the output law equals sampling the target (after temperature, "
       "top-k, top-p). Draws 2 per depth: uniforms [B, >= 2 L].\n" REDRAFT_UNIFORMS_DOC));

  m.def(
      "verify_redrafter",
      [](const tree_t& t, const in_array& logits, const in_array& draft_log_probs,
         float temperature, std::int32_t logit_top_k, float logit_mask_value, std::uint64_t seed,
         std::uint32_t step, const std::optional<in_array>& uniforms) {
        const char* fn = "verify_redrafter";
        const auto q = in_view<float, 4>(draft_log_probs, fn, "draft_log_probs", "[B, W, L-1, V]");
        const redrafter_params params{temperature, logit_top_k, logit_mask_value};
        const uniform_source u = uniforms_of(uniforms, fn, seed, step);
        return std::visit([&](auto z) { return verify_redrafter(backend{}, t, z, q, params, u); },
                          logits_of(logits, fn));
      },
      nb::arg("tree"), nb::arg("logits"), nb::arg("draft_log_probs"), nb::arg("temperature") = 1.0f,
      nb::arg("logit_top_k") = 50, nb::arg("logit_mask_value") = -50000.0f, nb::arg("seed") = 0,
      nb::arg("step") = 0, nb::arg("uniforms") = nb::none(),
      ("verify_redrafter(tree, logits [n_total, V], draft_log_probs [B, W, L-1, V], "
       "temperature=1, logit_top_k=50, logit_mask_value=-50000, seed=0, step=0, uniforms=None) "
       "-> Acceptance\n\n"
       "Apple's rule (u < P/Q per beam position, residual relu(P - Q)); not distribution-"
       "preserving. tree must come from build_tree. uniforms [B, >= W (L-1) + "
       "1].\n" REDRAFT_UNIFORMS_DOC));

  m.def(
      "verify_typical",
      [](const tree_t& t, const in_array& logits, float temperature, float epsilon, float delta,
         bool sample_next_token, std::uint64_t seed, std::uint32_t step,
         const std::optional<in_array>& uniforms) {
        const char* fn = "verify_typical";
        const typical_params params{temperature, epsilon, delta, sample_next_token};
        const uniform_source u = uniforms_of(uniforms, fn, seed, step);
        return std::visit([&](auto z) { return verify_typical(backend{}, t, z, params, u); },
                          logits_of(logits, fn));
      },
      nb::arg("tree"), nb::arg("logits"), nb::arg("temperature") = 1.0f, nb::arg("epsilon") = 0.09f,
      nb::arg("delta") = 0.3f, nb::arg("sample_next_token") = false, nb::arg("seed") = 0,
      nb::arg("step") = 0, nb::arg("uniforms") = nb::none(),
      ("verify_typical(tree, logits [n_total, V], temperature=1, epsilon=0.09, delta=0.3, "
       "sample_next_token=False, seed=0, step=0, uniforms=None) -> Acceptance\n\n"
       "Medusa's typical acceptance: lossy, opt-in. uniforms [B, >= 1] (only with "
       "sample_next_token).\n" REDRAFT_UNIFORMS_DOC));

  // ---- logits processing (in place on the caller's array, or into a new one) ----
  m.def(
      "apply_temperature",
      [](const inout_array& logits, float temperature) {
        std::visit([&](auto z) { apply_temperature(backend{}, z, temperature); },
                   inout_logits(logits, "apply_temperature"));
      },
      nb::arg("logits"), nb::arg("temperature"),
      "apply_temperature(logits [rows, V] float32/float16/bfloat16, temperature) -> None: logits "
      "/= T in place.");
  m.def(
      "apply_top_k",
      [](const inout_array& logits, std::int32_t k, float mask_value) {
        std::visit([&](auto z) { apply_top_k(backend{}, z, k, mask_value); },
                   inout_logits(logits, "apply_top_k"));
      },
      nb::arg("logits"), nb::arg("k"), nb::arg("mask_value") = -HUGE_VALF,
      "apply_top_k(logits [rows, V] float32/float16/bfloat16, k, mask_value=-inf) -> None\n\n"
      "In place: logits strictly below the row's k-th largest become mask_value (ties kept).");
  m.def(
      "warp_top_k",
      [](const inout_array& logits, std::int32_t k, float mask_value) {
        std::visit([&](auto z) { warp_top_k(backend{}, z, k, mask_value); },
                   inout_logits(logits, "warp_top_k"));
      },
      nb::arg("logits"), nb::arg("k") = 50, nb::arg("mask_value") = -50000.0f,
      "warp_top_k(logits [rows, V] float32/float16/bfloat16, k=50, mask_value=-50000) -> None: "
      "ReDrafter's warp, in "
      "place.");
  m.def(
      "apply_top_p",
      [](const inout_array& logits, float p, float mask_value) {
        std::visit([&](auto z) { apply_top_p(backend{}, z, p, mask_value); },
                   inout_logits(logits, "apply_top_p"));
      },
      nb::arg("logits"), nb::arg("p"), nb::arg("mask_value") = -HUGE_VALF,
      "apply_top_p(logits [rows, V] float32/float16/bfloat16, p, mask_value=-inf) -> None\n\n"
      "In place: keeps the smallest most-probable set whose softmax mass reaches p.");
  m.def(
      "to_log_probs",
      [](const in_array& logits) {
        return std::visit(
            [](auto in) {
              host_buffer<float> out(in.size());
              to_log_probs(backend{}, in,
                           matrix_view<float>(out.data(), in.extent(0), in.extent(1)));
              return own(std::move(out), {std::size_t(in.extent(0)), std::size_t(in.extent(1))});
            },
            logits_rows<const float>(logits, "to_log_probs", "logits", "[rows, V]"));
      },
      nb::arg("logits"),
      "to_log_probs(logits [rows, V] float32/float16/bfloat16) -> [rows, V] float32: rowwise "
      "log_softmax.");
  m.def(
      "to_probs",
      [](const in_array& logits) {
        return std::visit(
            [](auto in) {
              host_buffer<float> out(in.size());
              to_probs(backend{}, in, matrix_view<float>(out.data(), in.extent(0), in.extent(1)));
              return own(std::move(out), {std::size_t(in.extent(0)), std::size_t(in.extent(1))});
            },
            logits_rows<const float>(logits, "to_probs", "logits", "[rows, V]"));
      },
      nb::arg("logits"),
      "to_probs(logits [rows, V] float32/float16/bfloat16) -> [rows, V] float32: rowwise softmax.");

  // ---- KV plans ----
  nb::class_<kv_plan>(
      m, "KVPlan",
      "Which KV entries each request keeps after verification (R requests, n_keep "
      "entries), as int32 arrays:\n"
      "  offsets     [R + 1]   request r's entries are offsets[r] .. offsets[r + 1]\n"
      "  slot        [R]       the request's KV slot\n"
      "  source_node [n_keep]  request-local packed node to keep, root first\n"
      "  destination [n_keep]  absolute cache position it moves to (committed + i)\n"
      "The tree's pending KV of node i sits at committed + i before the move.")
      .def(nb::init<>())
      .def_prop_ro("num_requests", &kv_plan::num_requests)
      .def_prop_ro("offsets",
                   [](const kv_plan& p) {
                     return borrowed(p.offsets.data(), {p.offsets.size()}, nb::find(&p));
                   })
      .def_prop_ro(
          "slot",
          [](const kv_plan& p) { return borrowed(p.slot.data(), {p.slot.size()}, nb::find(&p)); })
      .def_prop_ro("source_node",
                   [](const kv_plan& p) {
                     return borrowed(p.source_node.data(), {p.source_node.size()}, nb::find(&p));
                   })
      .def_prop_ro("destination", [](const kv_plan& p) {
        return borrowed(p.destination.data(), {p.destination.size()}, nb::find(&p));
      });

  m.def(
      "make_kv_plan",
      [](const acceptance_t& a, const in_array& slots, const in_array& committed_lengths) {
        const char* fn = "make_kv_plan";
        const auto s = in_view<std::int32_t, 1>(slots, fn, "slots", "[B]");
        const auto c = in_view<std::int32_t, 1>(committed_lengths, fn, "committed_lengths", "[B]");
        return make_kv_plan(backend{}, a,
                            std::span<const std::int32_t>(s.data(), std::size_t(s.size())),
                            std::span<const std::int32_t>(c.data(), std::size_t(c.size())));
      },
      nb::arg("acceptance"), nb::arg("slots"), nb::arg("committed_lengths"),
      "make_kv_plan(acceptance, slots [B] int32, committed_lengths [B] int32) -> KVPlan\n\n"
      "Keeps the root and the accepted nodes of each request, moved to committed_lengths[b] + i.");

  m.def(
      "apply_kv_plan",
      [](const kv_plan& plan, const inout_array& cache) {
        apply_kv_plan(backend{}, plan,
                      inout_view<float, 6>(cache, "apply_kv_plan", "cache",
                                           "[slots, layers, 2, heads, max_len, head_dim]"));
      },
      nb::arg("plan"), nb::arg("cache"),
      "apply_kv_plan(plan, cache [slots, layers, 2, heads, max_len, head_dim] float32) -> None\n\n"
      "Moves each kept entry, in place, from committed + source_node to its destination.");
}

}  // namespace redraft::python
