// tools/conformance/kind_beam_search.hpp: the `beam_search` case kind (draft head + beam search).
//
// Builds the draft head from inputs.config and inputs.weights through the checkpoint validation
// (make_draft_head), runs beam_search on the CPU backend with log-probs requested, and compares
// beams exactly, log_probs and beam_scores within a relative 1e-4.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "backend_io.hpp"
#include "golden_format.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/beam_search.hpp"
#include "redraft/draft/checkpoint.hpp"

namespace redraft::conformance {

template <class B>
case_result run_beam_search(const json& c) {
  const json& in = c.at("inputs");
  const json& ex = c.at("expected");
  REDRAFT_REQUIRE(in.contains("config") && in.contains("weights") && in.at("weights").is_object(),
                  "beam_search: inputs need 'config' and an object 'weights'");
  const draft_config config = draft_config_from_json(in.at("config"), "inputs.config");
  std::map<std::string, tensor_data> weights;
  for (auto it = in.at("weights").begin(); it != in.at("weights").end(); ++it) {
    tensor<float> t = read_tensor<float>(in.at("weights"), it.key());
    weights[it.key()] = tensor_data{t.shape, std::move(t.data), "F32"};
  }
  const tensor<float> embedding = read_tensor<float>(in, "embedding");
  const tensor<float> hidden = read_tensor<float>(in, "prompt_state");
  const tensor<std::int32_t> roots = read_tensor<std::int32_t>(in, "init_token");
  const auto width = read_scalar<std::int64_t>(in, "beam_width");
  const auto length = read_scalar<std::int64_t>(in, "beam_length");
  REDRAFT_REQUIRE(
      embedding.shape.size() == 2 && hidden.shape.size() == 2 && roots.shape.size() == 1,
      "beam_search: embedding and prompt_state must be matrices, init_token a vector");

  B backend;
  const draft_head<B> head = make_draft_head(backend, config, weights, "inputs.weights");
  const auto hidden_buffer = upload(backend, hidden.data);
  const auto root_buffer = upload(backend, roots.data);
  const auto embedding_buffer = upload(backend, embedding.data);
  const auto result = beam_search(
      head, matrix_view<const float>(hidden_buffer.data(), hidden.dim(0), hidden.dim(1)),
      vector_view<const std::int32_t>(root_buffer.data(), roots.dim(0)),
      matrix_view<const float>(embedding_buffer.data(), embedding.dim(0), embedding.dim(1)), width,
      length, beam_search_options{.want_log_probs = true});

  const std::vector<std::int32_t> beams = download(backend, result.beams);
  const std::vector<float> scores = download(backend, result.scores);
  const std::vector<float> log_probs = download(backend, result.log_probs);
  if (auto m = compare_exact("beams", read_tensor<std::int32_t>(ex, "beams"), beams)) {
    return case_result::fail(*m);
  }
  if (auto m = compare_close("beam_scores", read_tensor<float>(ex, "beam_scores"), scores)) {
    return case_result::fail(*m);
  }
  if (auto m = compare_close("log_probs", read_tensor<float>(ex, "log_probs"), log_probs)) {
    return case_result::fail(*m);
  }
  return case_result::pass();
}

}  // namespace redraft::conformance
