// python/src/bind_loop.cpp: the speculative decoding loop (loop/speculative_decoder.hpp) over a
// target model and a drafter written in Python.
//
// py_target models the C++ TargetModel concept by calling a Python object's methods (the
// protocol is documented in redraft/__init__.py and docs/python.md); the logits and hidden states
// it returns are read in place through DLPack / the buffer protocol and kept referenced until the
// next call, which is exactly the lifetime TargetModel promises for its views. The small per-step
// inputs handed to Python (tree arrays, masks, plans) are copies the callee may keep.
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "arrays.hpp"
#include "bindings.hpp"
#include "policy.hpp"
#include "redraft/loop/draft_head_drafter.hpp"
#include "redraft/loop/speculative_decoder.hpp"

namespace redraft::python {

namespace {

template <class T>
out_array<T> copy_of(const T* data, std::size_t n) {
  return own(std::vector<T>(data, data + n), {n});
}

std::string python_type_name(nb::handle h) {
  return nb::cast<std::string>(nb::type_name(h.type()));
}

// The per-step input of TargetModel::verify, as the Python target receives it (all copies).
struct verify_batch {
  nb::object slots, node_offsets, tokens, parents, depths, positions;
  nb::object dense_mask, dense_offsets, packed_mask;
};

// TargetModel over a Python object (see the file comment).
class py_target {
 public:
  using backend_type = python::backend;  // qualified: backend() below is a member

  explicit py_target(nb::handle target) : target_(nb::borrow(target)) {
    const char* fn = "SpeculativeDecoder";
    vocab_ = int_attribute("vocab_size");
    hidden_ = int_attribute("hidden_size");
    max_context_ = int_attribute("max_context");
    embedding_ = array_of(target_.attr("embedding")(), "embedding()");
    embedding_view_ = checked_view<const float, 2>(embedding_, fn, "the target's embedding()",
                                                   "[V, H]", {vocab_, hidden_}, false);
  }

  std::int32_t vocab_size() const { return vocab_; }
  std::int32_t hidden_size() const { return hidden_; }
  std::int32_t max_context() const { return max_context_; }
  matrix_view<const float> embedding() const { return embedding_view_; }

  model_output prefill(const prefill_input& in) {
    const std::size_t r = std::size_t(in.slots.size());
    nb::object out = target_.attr("prefill")(
        copy_of(in.slots.data(), r), copy_of(in.token_offsets.data(), r + 1),
        copy_of(in.tokens.data(), std::size_t(in.tokens.size())));
    return keep(out, "prefill");
  }

  model_output verify(const verify_input& in) {
    const std::size_t r = std::size_t(in.slots.size());
    const std::size_t n = std::size_t(in.host_node_offsets[index_t(r)]);
    verify_batch b;
    b.slots = nb::cast(copy_of(in.slots.data(), r));
    b.node_offsets = nb::cast(copy_of(in.host_node_offsets.data(), r + 1));
    b.tokens = nb::cast(copy_of(in.tree.token, n));
    b.parents = nb::cast(copy_of(in.tree.parent, n));
    b.depths = nb::cast(copy_of(in.tree.depth, n));
    b.positions = nb::cast(copy_of(in.positions.data(), n));
    b.dense_mask = b.dense_offsets = b.packed_mask = nb::none();
    if (in.dense_mask != nullptr) {
      b.dense_offsets = nb::cast(copy_of(in.dense_offsets, r + 1));
      b.dense_mask = nb::cast(copy_of(in.dense_mask, std::size_t(in.dense_offsets[r])));
    }
    if (in.packed_mask != nullptr) {
      const std::size_t w = std::size_t(in.packed_words_per_row);
      b.packed_mask =
          nb::cast(own(std::vector<std::uint32_t>(in.packed_mask, in.packed_mask + n * w), {n, w}));
    }
    return keep(target_.attr("verify")(b), "verify");
  }

  void commit(const kv_plan& plan) { target_.attr("commit")(plan); }
  backend_type& backend() { return backend_; }

 private:
  std::int32_t int_attribute(const char* name) {
    nb::object a = target_.attr(name);
    if (PyCallable_Check(a.ptr())) a = a();
    return nb::cast<std::int32_t>(a);
  }

  static in_array array_of(nb::handle h, const char* what) {
    in_array a;
    REDRAFT_REQUIRE(nb::try_cast(h, a, false), "SpeculativeDecoder: the target's ", what,
                    " returned a ", python_type_name(h),
                    ", not an array (NumPy, PyTorch or any DLPack / buffer-protocol "
                    "array)");
    return a;
  }

  // Holds (logits, hidden) until the next call and returns views of them.
  model_output keep(nb::handle out, const char* call) {
    REDRAFT_REQUIRE(nb::isinstance<nb::tuple>(out) && nb::len(out) == 2,
                    "SpeculativeDecoder: the target's ", call,
                    " must return a tuple (logits [rows, V], hidden [rows, H]), got a ",
                    python_type_name(out));
    const std::string what = std::string(call) + "()";
    logits_ = array_of(out[0], what.c_str());
    hidden_state_ = array_of(out[1], what.c_str());
    const std::string ln = "the logits of the target's " + what,
                      hn = "the hidden states of the target's " + what;
    return model_output{
        checked_view<const float, 2>(logits_, "SpeculativeDecoder", ln.c_str(), "[rows, V]"),
        checked_view<const float, 2>(hidden_state_, "SpeculativeDecoder", hn.c_str(), "[rows, H]")};
  }

  nb::object target_;
  backend_type backend_;
  std::int32_t vocab_ = 0, hidden_ = 0, max_context_ = 0;
  in_array embedding_, logits_, hidden_state_;
  matrix_view<const float> embedding_view_;
};

// Drafter over a Python object with draft(hidden, roots, slots, beam_width, beam_length,
// want_log_probs) -> beams [R, W, L] int32, or (beams, log_probs [R, W, L-1, V] float32).
class py_drafter {
 public:
  explicit py_drafter(nb::handle drafter) : drafter_(nb::borrow(drafter)) {}

  draft_output<backend> draft(const draft_input& in) {
    const char* fn = "SpeculativeDecoder";
    const std::size_t r = std::size_t(in.roots.size()), h = std::size_t(in.hidden.extent(1));
    nb::object hidden =
        nb::cast(own(std::vector<float>(in.hidden.data(), in.hidden.data() + r * h), {r, h}));
    nb::object out =
        drafter_.attr("draft")(hidden, copy_of(in.roots.data(), r), copy_of(in.slots.data(), r),
                               in.beam_width, in.beam_length, in.want_log_probs);
    nb::object beams_obj = out, log_probs_obj = nb::none();
    if (nb::isinstance<nb::tuple>(out)) {
      REDRAFT_REQUIRE(nb::len(out) == 2, fn, ": the drafter's draft() returned a tuple of ",
                      nb::len(out), " items, expected (beams, log_probs)");
      beams_obj = out[0];
      log_probs_obj = out[1];
    }
    in_array beams;
    REDRAFT_REQUIRE(nb::try_cast(beams_obj, beams, false), fn,
                    ": the drafter's draft() returned a ", python_type_name(beams_obj),
                    ", not an int32 array [R, W, L]");
    const auto bv =
        checked_view<const std::int32_t, 3>(beams, fn, "the drafter's beams", "[R, W, L]",
                                            {index_t(r), in.beam_width, in.beam_length}, false);
    draft_output<backend> d;
    d.beams = host_buffer<std::int32_t>(bv.size());
    std::copy(bv.data(), bv.data() + bv.size(), d.beams.data());
    if (in.want_log_probs) {
      in_array lp;
      REDRAFT_REQUIRE(
          !log_probs_obj.is_none() && nb::try_cast(log_probs_obj, lp, false), fn,
          ": the verifier needs the drafter's log_probs [R, W, L-1, V]; draft() must return "
          "(beams, log_probs)");
      const auto lv =
          checked_view<const float, 4>(lp, fn, "the drafter's log_probs", "[R, W, L-1, V]");
      d.log_probs = host_buffer<float>(lv.size());
      std::copy(lv.data(), lv.data() + lv.size(), d.log_probs.data());
    }
    return d;
  }

 private:
  nb::object drafter_;
};

verifier parse_verifier(const std::string& s) {
  if (s == "greedy") return verifier::greedy;
  if (s == "lossless") return verifier::lossless;
  if (s == "redrafter") return verifier::redrafter;
  if (s == "typical") return verifier::typical;
  detail::throw_error("DecodeOptions: verifier '", s,
                      "' is not one of greedy, lossless, redrafter, typical");
}
const char* verifier_name(verifier v) {
  switch (v) {
    case verifier::greedy:
      return "greedy";
    case verifier::lossless:
      return "lossless";
    case verifier::redrafter:
      return "redrafter";
    case verifier::typical:
      return "typical";
  }
  return "?";
}
tree_mask_format parse_masks(const std::string& s) {
  if (s == "dense") return tree_mask_format::dense;
  if (s == "packed") return tree_mask_format::packed;
  if (s == "both") return tree_mask_format::both;
  detail::throw_error("DecodeOptions: masks '", s, "' is not one of dense, packed, both");
}
const char* masks_name(tree_mask_format f) {
  return f == tree_mask_format::dense ? "dense" : f == tree_mask_format::packed ? "packed" : "both";
}

std::vector<std::int32_t> prompt_of(nb::handle p, std::size_t r) {
  nb::object list = nb::hasattr(p, "tolist") ? p.attr("tolist")() : nb::borrow(p);
  std::vector<std::int32_t> out;
  REDRAFT_REQUIRE(nb::try_cast(list, out, true), "SpeculativeDecoder.generate: prompts[", r,
                  "] is a ", python_type_name(p), ", not a sequence of token ids");
  return out;
}

// SpeculativeDecoder(target, drafter, options, policy): see the class docstring.
class py_speculative_decoder {
 public:
  py_speculative_decoder(nb::object target, nb::object drafter, decode_options options,
                         nb::object policy)
      : target_(std::move(target)),
        drafter_(std::move(drafter)),
        options_(options),
        policy_(std::move(policy)) {
    call_policy::of(policy_);  // a policy that is not one fails here, not at the first generate()
  }

  generation_result generate(nb::handle prompts, nb::handle max_new_tokens, std::int32_t eos_token,
                             const std::optional<std::vector<std::int32_t>>& slots,
                             const std::optional<nb::callable>& on_token) {
    const char* fn = "SpeculativeDecoder.generate";
    std::vector<generation_request> requests;
    const std::size_t n = nb::len(prompts);
    std::vector<std::int32_t> limits;
    if (nb::isinstance<nb::int_>(max_new_tokens)) {
      limits.assign(n, nb::cast<std::int32_t>(max_new_tokens));
    } else {
      REDRAFT_REQUIRE(nb::try_cast(max_new_tokens, limits, true) && limits.size() == n, fn,
                      ": max_new_tokens must be an int or a list of ", n, " ints");
    }
    REDRAFT_REQUIRE(!slots || slots->size() == n, fn, ": slots has ", slots ? slots->size() : 0,
                    " entries but ", n, " prompts were given");
    std::size_t r = 0;
    for (nb::handle p : prompts) {
      generation_request q;
      q.prompt = prompt_of(p, r);
      q.max_new_tokens = limits[r];
      q.eos_token = eos_token;
      q.slot = slots ? (*slots)[r] : -1;
      requests.push_back(std::move(q));
      ++r;
    }
    token_callback callback;
    if (on_token) {
      nb::callable f = *on_token;
      callback = [f](std::int32_t request, std::int32_t token) { f(request, token); };
    }
    py_target model(target_);
    head_t* head = nullptr;
    if (nb::try_cast(drafter_, head, false) && head != nullptr) {
      REDRAFT_REQUIRE(head->config().vocab_size == model.vocab_size() &&
                          head->config().hidden_size == model.hidden_size(),
                      fn, ": the draft head has vocab_size ", head->config().vocab_size,
                      " and hidden_size ", head->config().hidden_size, " but the target has ",
                      model.vocab_size(), " and ", model.hidden_size());
      draft_head_drafter<backend> d(*head, model.embedding());
      const call_policy policy = call_policy::of(policy_);
      const policy_in_use in_use(policy);
      return speculative_decoder<backend, py_target, draft_head_drafter<backend>, call_policy>(
                 backend{}, model, d, policy)
          .generate(requests, options_, callback);
    }
    py_drafter d(drafter_);
    const call_policy policy = call_policy::of(policy_);
    const policy_in_use in_use(policy);
    return speculative_decoder<backend, py_target, py_drafter, call_policy>(backend{}, model, d,
                                                                            policy)
        .generate(requests, options_, callback);
  }

  decode_options& options() { return options_; }
  nb::object policy() const { return policy_; }

 private:
  using head_t = draft_head<backend>;
  nb::object target_, drafter_;
  decode_options options_;
  nb::object policy_;  // "fixed", "plain" or an AdaptivePolicy (kept referenced: it outlives calls)
};

static_assert(TargetModel<py_target>);
static_assert(Drafter<py_drafter, backend>);

}  // namespace

void bind_loop(nb::module_& m) {
  nb::class_<verify_batch>(
      m, "VerifyBatch",
      "What SpeculativeDecoder passes to target.verify (R requests, n_total packed "
      "tree nodes; NumPy arrays the target may keep):\n"
      "  slots         [R] int32          the requests' KV slots\n"
      "  node_offsets  [R + 1] int32      request r's nodes are rows node_offsets[r] .. "
      "node_offsets[r + 1]\n"
      "  tokens        [n_total] int32    token of every packed node (node 0 of a "
      "request is its root)\n"
      "  parents       [n_total] int32    request-local parent, -1 at the root\n"
      "  depths        [n_total] int32    distance from the root\n"
      "  positions     [n_total] int32    position id: committed length + depth\n"
      "  dense_mask    [sum_r n_r^2] uint8 or None: request r's ancestor-or-self "
      "mask dense_mask[dense_offsets[r]:dense_offsets[r + 1]].reshape(n_r, n_r)\n"
      "  dense_offsets [R + 1] int64 or None\n"
      "  packed_mask   [n_total, words] uint32 or None: bit j % 32 of word j / 32 "
      "of node i's row = node j is an ancestor-or-self of i")
      .def_ro("slots", &verify_batch::slots)
      .def_ro("node_offsets", &verify_batch::node_offsets)
      .def_ro("tokens", &verify_batch::tokens)
      .def_ro("parents", &verify_batch::parents)
      .def_ro("depths", &verify_batch::depths)
      .def_ro("positions", &verify_batch::positions)
      .def_ro("dense_mask", &verify_batch::dense_mask)
      .def_ro("dense_offsets", &verify_batch::dense_offsets)
      .def_ro("packed_mask", &verify_batch::packed_mask);

  nb::class_<decode_options>(m, "DecodeOptions",
                             "Options of SpeculativeDecoder (see the constructor).")
      .def(
          "__init__",
          [](decode_options* o, std::int32_t beam_width, std::int32_t beam_length,
             const std::string& rule, float temperature, std::int32_t top_k, float top_p,
             std::uint64_t seed, const std::string& masks, std::int32_t logit_top_k,
             float typical_epsilon, float typical_delta) {
            new (o) decode_options{};
            o->beam_width = beam_width;
            o->beam_length = beam_length;
            o->rule = parse_verifier(rule);
            o->sampling = sampling_params{temperature, top_k, top_p};
            o->redrafter = redrafter_params{temperature, logit_top_k, -50000.0f};
            o->typical = typical_params{temperature, typical_epsilon, typical_delta, false};
            o->seed = seed;
            o->masks = parse_masks(masks);
          },
          nb::arg("beam_width") = 4, nb::arg("beam_length") = 5, nb::arg("verifier") = "greedy",
          nb::arg("temperature") = 1.0f, nb::arg("top_k") = 0, nb::arg("top_p") = 1.0f,
          nb::arg("seed") = 0, nb::arg("masks") = "both", nb::arg("logit_top_k") = 50,
          nb::arg("typical_epsilon") = 0.09f, nb::arg("typical_delta") = 0.3f,
          "DecodeOptions(beam_width=4, beam_length=5, "
          "verifier='greedy'|'lossless'|'redrafter'|'typical', "
          "temperature=1, top_k=0, top_p=1, seed=0, masks='dense'|'packed'|'both', logit_top_k=50 "
          "(redrafter's target warp), typical_epsilon=0.09, typical_delta=0.3)\n\n"
          "W beams of L tokens (root included) per step; the sampling verifiers draw from Philox "
          "(seed, "
          "request, step), so a run is reproducible.")
      .def_rw("beam_width", &decode_options::beam_width)
      .def_rw("beam_length", &decode_options::beam_length)
      .def_rw("seed", &decode_options::seed)
      .def_prop_rw(
          "verifier", [](const decode_options& o) { return std::string(verifier_name(o.rule)); },
          [](decode_options& o, const std::string& s) { o.rule = parse_verifier(s); })
      .def_prop_rw(
          "masks", [](const decode_options& o) { return std::string(masks_name(o.masks)); },
          [](decode_options& o, const std::string& s) { o.masks = parse_masks(s); })
      .def_prop_ro("temperature", [](const decode_options& o) { return o.sampling.temperature; })
      .def_prop_ro("top_k", [](const decode_options& o) { return o.sampling.top_k; })
      .def_prop_ro("top_p", [](const decode_options& o) { return o.sampling.top_p; });

  nb::class_<request_stats>(m, "RequestStats", "Counters of one request.")
      .def_ro("steps", &request_stats::steps,
              "verification steps (the prefill's token is not a step)")
      .def_ro("drafted", &request_stats::drafted, "drafted tokens offered: (L - 1) per step")
      .def_ro("accepted", &request_stats::accepted, "drafted tokens accepted")
      .def_ro("emitted", &request_stats::emitted,
              "tokens emitted, the prefill's first token included")
      .def_ro("accepted_at_depth", &request_stats::accepted_at_depth,
              "[L - 1]: steps in which the token at depth d + 1 was accepted")
      .def_ro("stop_reason", &request_stats::stop_reason, "'eos' or 'max_new_tokens'")
      .def_prop_ro("tokens_per_step", &request_stats::tokens_per_step,
                   "emitted tokens per verification step (the prefill's token excluded)");

  nb::class_<step_stats>(m, "StepStats", "One speculative step: sizes and seconds per phase.")
      .def_ro("requests", &step_stats::requests)
      .def_ro("nodes", &step_stats::nodes, "packed tree nodes verified")
      .def_ro("emitted", &step_stats::emitted)
      .def_ro("beam_width", &step_stats::beam_width, "the step's W (1 on a plain step)")
      .def_ro("beam_length", &step_stats::beam_length,
              "the step's L, root included (1 on a plain step: nothing drafted)")
      .def_ro("draft_s", &step_stats::draft_s)
      .def_ro("tree_s", &step_stats::tree_s)
      .def_ro("target_s", &step_stats::target_s)
      .def_ro("verify_s", &step_stats::verify_s)
      .def_ro("kv_s", &step_stats::kv_s)
      .def_prop_ro("total_s", &step_stats::total_s);

  nb::class_<generation_result>(m, "GenerationResult", "What SpeculativeDecoder.generate returns.")
      .def_ro("tokens", &generation_result::tokens,
              "[R][emitted] the generated tokens of every request")
      .def_ro("requests", &generation_result::requests, "[R] RequestStats")
      .def_ro("steps", &generation_result::steps, "[steps] StepStats")
      .def_ro("prefill_s", &generation_result::prefill_s)
      .def_ro("total_s", &generation_result::total_s)
      .def_prop_ro("total_emitted", &generation_result::total_emitted)
      .def_prop_ro(
          "tokens_per_step",
          [](const generation_result& g) {
            std::int64_t emitted = 0, steps = 0;
            for (const request_stats& s : g.requests) {
              emitted += s.emitted > 0 ? s.emitted - 1 : 0;
              steps += s.steps;
            }
            return steps == 0 ? 0.0 : double(emitted) / double(steps);
          },
          "emitted tokens per request-step over the whole run (prefill tokens excluded)");

  nb::class_<py_speculative_decoder>(
      m, "SpeculativeDecoder",
      "SpeculativeDecoder(target, drafter, options=DecodeOptions(), policy='fixed')\n\n"
      "The speculative decoding loop of the C++ library (prefill, then per step: draft W beams of "
      "L tokens, "
      "merge them into a tree, one target pass over the tree, accept, commit the accepted KV "
      "entries).\n"
      "target: any object with the TargetModel protocol (see redraft.TargetModel).\n"
      "drafter: a DraftHead (it reads the target's embedding()), or any object with\n"
      "  draft(hidden [R, H] float32, roots [R] int32, slots [R] int32, beam_width, beam_length, "
      "want_log_probs) -> beams [R, W, L] int32 (column 0 = roots) or (beams, log_probs [R, W, "
      "L-1, V]).\n"
      "policy: which draft shape each step uses: 'fixed' (options' beam_width and beam_length "
      "every step), 'plain' (every step plain, nothing drafted) or an AdaptivePolicy (chooses W x "
      "L, or a plain step, from measured costs and acceptance; it keeps what it learned across "
      "generate() calls, so keep one decoder or pass the same policy object to the next).")
      .def(nb::init<nb::object, nb::object, decode_options, nb::object>(), nb::arg("target"),
           nb::arg("drafter"), nb::arg("options") = decode_options{},
           nb::arg("policy") = nb::str("fixed"))
      .def_prop_ro("options", &py_speculative_decoder::options, nb::rv_policy::reference_internal)
      .def_prop_ro("policy", &py_speculative_decoder::policy,
                   "'fixed', 'plain' or the AdaptivePolicy the decoder uses")
      .def("generate", &py_speculative_decoder::generate, nb::arg("prompts"),
           nb::arg("max_new_tokens") = 32, nb::arg("eos_token") = -1, nb::arg("slots") = nb::none(),
           nb::arg("on_token") = nb::none(),
           "generate(prompts, max_new_tokens=32, eos_token=-1, slots=None, on_token=None) -> "
           "GenerationResult\n\n"
           "prompts: R sequences of token ids (lists or 1-D arrays, different lengths allowed); "
           "max_new_tokens: "
           "an int or one per prompt; eos_token: stop a request after emitting it (-1: none); "
           "slots: the KV "
           "slot of each request (default: its index); on_token(request, token) is called for "
           "every emitted "
           "token. Under verifier='greedy' the output equals plain greedy decoding of the target.");
}

}  // namespace redraft::python
