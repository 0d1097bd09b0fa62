// python/src/bind_draft.cpp: the draft head (checkpoint directories), its beam search, and the
// distillation losses.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <optional>
#include <string>

#include "arrays.hpp"
#include "bindings.hpp"
#include "redraft/draft/beam_search.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/draft_head.hpp"
#include "redraft/train/distill_loss.hpp"
#include "redraft/train/drafter_loss.hpp"

namespace redraft::python {

using head_t = draft_head<backend>;

namespace {

template <class T>
nb::list to_list(const std::vector<T>& v) {
  nb::list l;
  for (const T& x : v) l.append(x);
  return l;
}

}  // namespace

void bind_draft(nb::module_& m) {
  nb::class_<head_t>(
      m, "DraftHead",
      "A ReDrafter draft head in memory (V vocabulary, H the target's hidden size, E the "
      "residual width, N residual blocks). Load one with DraftHead.load(directory).")
      .def_static(
          "load",
          [](const std::string& directory) { return load_draft_head(backend{}, directory); },
          nb::arg("directory"),
          "DraftHead.load(directory) -> DraftHead: reads config.json + model.safetensors (the "
          "Apple / Hugging Face layout), checking every name, shape and dtype.")
      .def(
          "save",
          [](const head_t& h, const std::string& directory) { save_draft_head(h, directory); },
          nb::arg("directory"), "Writes config.json + model.safetensors (float32) into directory.")
      .def_prop_ro(
          "vocab_size", [](const head_t& h) { return h.config().vocab_size; }, "V")
      .def_prop_ro(
          "hidden_size", [](const head_t& h) { return h.config().hidden_size; }, "H")
      .def_prop_ro(
          "exit_dim", [](const head_t& h) { return h.config().exit_dim; }, "E")
      .def_prop_ro(
          "num_draft_layers", [](const head_t& h) { return h.config().num_draft_layers; }, "N")
      .def_prop_ro(
          "recurrence",
          [](const head_t& h) { return std::string(recurrence_name(h.config().recurrence)); })
      .def_prop_ro("logit_top_k", [](const head_t& h) { return h.config().logit_top_k; })
      .def_prop_ro("logit_mask_value", [](const head_t& h) { return h.config().logit_mask_value; })
      .def("parameter_names", &head_t::parameter_names,
           "PyTorch names of the weights, in a fixed order.")
      .def(
          "get_parameter",
          [](const head_t& h, const std::string& name) {
            std::vector<float> values = h.get_parameter(name);
            const auto& shape = h.parameter_shape(name);
            if (shape.size() == 1) return own(std::move(values), {std::size_t(shape[0])});
            return own(std::move(values), {std::size_t(shape[0]), std::size_t(shape[1])});
          },
          nb::arg("name"),
          "A copy of one weight, in its PyTorch shape ([out, in] or [out]), float32.")
      .def(
          "set_parameter",
          [](head_t& h, const std::string& name, const in_array& values) {
            const char* fn = "DraftHead.set_parameter";
            const auto& shape = h.parameter_shape(name);
            if (shape.size() == 1) {
              const auto v = in_view<float, 1>(values, fn, "values", "[out]", {shape[0]});
              h.set_parameter(name, v.data(), v.size());
            } else {
              const auto v =
                  in_view<float, 2>(values, fn, "values", "[out, in]", {shape[0], shape[1]});
              h.set_parameter(name, v.data(), v.size());
            }
          },
          nb::arg("name"), nb::arg("values"),
          "Overwrites one weight with a contiguous float32 array of its shape.");

  m.def(
      "beam_search",
      [](const head_t& head, const in_array& hidden, const in_array& root_tokens,
         const in_array& embedding, index_t beam_width, index_t beam_length, bool want_log_probs) {
        const char* fn = "beam_search";
        beam_search_result<backend> r =
            beam_search(head, in_view<float, 2>(hidden, fn, "hidden", "[B, H]"),
                        in_view<std::int32_t, 1>(root_tokens, fn, "root_tokens", "[B]"),
                        in_view<float, 2>(embedding, fn, "embedding", "[V, H]"), beam_width,
                        beam_length, beam_search_options{want_log_probs});
        const std::size_t b = std::size_t(r.batch), w = std::size_t(r.beam_width),
                          l = std::size_t(r.beam_length), v = std::size_t(r.vocab_size);
        nb::object log_probs = nb::none();
        if (want_log_probs) log_probs = nb::cast(own(std::move(r.log_probs), {b, w, l - 1, v}));
        return nb::make_tuple(own(std::move(r.beams), {b, w, l}), own(std::move(r.scores), {b, w}),
                              log_probs);
      },
      nb::arg("head"), nb::arg("hidden"), nb::arg("root_tokens"), nb::arg("embedding"),
      nb::arg("beam_width"), nb::arg("beam_length"), nb::arg("want_log_probs") = false,
      "beam_search(head, hidden [B, H] float32, root_tokens [B] int32, embedding [V, H] float32, "
      "beam_width W, "
      "beam_length L, want_log_probs=False)\n"
      "  -> (beams [B, W, L] int32, scores [B, W] float32, log_probs [B, W, L-1, V] float32 or "
      "None)\n\n"
      "hidden: the target's post-final-norm hidden state at each request's last accepted token; "
      "embedding: "
      "the target's input embedding table. Beams are best first, column 0 the root token.");

  // ---- distillation losses ----
  m.def(
      "drafter_cross_entropy",
      [](const in_array& logits, const in_array& labels, std::int32_t ignore_index,
         const std::optional<in_array>& step_weight, bool want_grad) {
        const char* fn = "drafter_cross_entropy";
        const auto z = in_view<float, 4>(logits, fn, "logits", "[next_n, B, T, V]");
        const auto y = in_view<std::int32_t, 2>(labels, fn, "labels", "[B, T]");
        vector_view<const float> w;
        if (step_weight) w = in_view<float, 1>(*step_weight, fn, "step_weight", "[next_n]");
        host_buffer<float> grad(want_grad ? z.size() : 0);
        view<float, 4> g;
        if (want_grad)
          g = view<float, 4>(grad.data(), z.extent(0), z.extent(1), z.extent(2), z.extent(3));
        drafter_loss_result r = drafter_cross_entropy(z, y, ignore_index, w, g);
        nb::dict out;
        out["loss"] = r.loss;
        out["step_loss"] = to_list(r.step_loss);
        out["counted"] = to_list(r.counted);
        out["correct"] = to_list(r.correct);
        out["grad"] = want_grad
                          ? nb::cast(own(std::move(grad),
                                         {std::size_t(z.extent(0)), std::size_t(z.extent(1)),
                                          std::size_t(z.extent(2)), std::size_t(z.extent(3))}))
                          : nb::none();
        return out;
      },
      nb::arg("logits"), nb::arg("labels"), nb::arg("ignore_index") = -100,
      nb::arg("step_weight") = nb::none(), nb::arg("want_grad") = false,
      "drafter_cross_entropy(logits [next_n, B, T, V] float32, labels [B, T] int32, "
      "ignore_index=-100, "
      "step_weight=None ([next_n] float32), want_grad=False) -> dict\n\n"
      "Apple's multi-step loss: step i at position t predicts labels[b, t + i + 2]. Returns loss, "
      "step_loss "
      "[next_n], counted [next_n], correct [next_n] (top-1 hits) and grad ([next_n, B, T, V] d "
      "loss / d "
      "logits, or None).");

  m.def(
      "distill_loss",
      [](const in_array& logits, const in_array& labels, const std::string& kind,
         const std::optional<in_array>& target_log_probs, const std::vector<double>& step_weight,
         bool top_k_warp, std::int32_t logit_top_k, float logit_mask_value,
         std::int32_t ignore_index, bool want_grad) {
        const char* fn = "distill_loss";
        const auto z = in_view<float, 2>(logits, fn, "logits", "[next_n * M, V]");
        const auto y = in_view<std::int32_t, 2>(labels, fn, "labels", "[M, next_n]");
        const index_t m_rows = y.extent(0), next_n = y.extent(1), vocab = z.extent(1);
        REDRAFT_REQUIRE(z.extent(0) == next_n * m_rows, fn, ": logits has ", z.extent(0),
                        " rows but labels [", m_rows, ", ", next_n,
                        "] imply next_n * M = ", next_n * m_rows);
        const float* p = nullptr;
        if (target_log_probs) {
          p = in_view<float, 3>(*target_log_probs, fn, "target_log_probs", "[M, next_n, V]",
                                {m_rows, next_n, vocab})
                  .data();
        }
        draft_config config;
        config.vocab_size = vocab;
        config.logit_top_k = logit_top_k;
        config.logit_mask_value = logit_mask_value;
        distill_loss_options options{parse_distill_loss(kind), step_weight, top_k_warp,
                                     ignore_index};
        host_buffer<float> grad(want_grad ? z.size() : 0);
        distill_loss_stats r = multi_step_loss<float>(z.data(), m_rows, next_n, y.data(), p, config,
                                                      options, want_grad ? grad.data() : nullptr);
        nb::dict out;
        out["loss"] = r.loss;
        out["step_loss"] = to_list(r.step_loss);
        out["counted"] = to_list(r.counted);
        out["correct"] = to_list(r.correct);
        out["grad"] =
            want_grad
                ? nb::cast(own(std::move(grad), {std::size_t(z.extent(0)), std::size_t(vocab)}))
                : nb::none();
        return out;
      },
      nb::arg("logits"), nb::arg("labels"), nb::arg("kind") = "ce",
      nb::arg("target_log_probs") = nb::none(), nb::arg("step_weight") = std::vector<double>{},
      nb::arg("top_k_warp") = false, nb::arg("logit_top_k") = 50,
      nb::arg("logit_mask_value") = -50000.0f, nb::arg("ignore_index") = -100,
      nb::arg("want_grad") = false,
      "distill_loss(logits [next_n * M, V] float32 (step-major: row i * M + m), labels [M, next_n] "
      "int32, "
      "kind='ce'|'kl', target_log_probs=None ([M, next_n, V] float32, needed by 'kl'), "
      "step_weight=[], "
      "top_k_warp=False, logit_top_k=50, logit_mask_value=-50000, ignore_index=-100, "
      "want_grad=False) -> dict\n\n"
      "The distillation loss of the draft head: cross-entropy on the target's tokens or "
      "KL(p_target || "
      "q_draft). Returns loss, step_loss, counted, correct and grad ([next_n * M, V] or None).");
}

}  // namespace redraft::python
