// redraft/train/head_parameters.hpp: the draft head's parameters as one flat host array, for
// training.
//
// Training needs the weights, their gradients and the optimizer's moments in one identical
// layout so the optimizer is a loop over a flat array. head_parameters<T> keeps every tensor of
// a draft head (draft_head.hpp names, PyTorch [out, in] layouts, draft_head's parameter order)
// back to back in one 64-byte aligned vector, and hands out Eigen maps of each. T is float for
// training and double for the finite-difference gradient checks.
//
// Conversions to and from draft_head<B> go through get_parameter / set_parameter (host copies),
// so trained weights load into any backend's head. Host code only (CPU training).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>
#include "redraft/core/aligned_allocator.hpp"
#include "redraft/cpu/eigen.hpp"

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/draft_config.hpp"
#include "redraft/draft/draft_head.hpp"

namespace redraft {

// Row-major dynamic matrix / column vector of the training math.
template <class T>
using train_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using train_vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

// One tensor of the flat array.
struct head_tensor {
  std::string name;                 // PyTorch name, e.g. "rnn_w.weight"
  std::vector<std::int64_t> shape;  // [out, in] or [out]
  std::int64_t offset = 0;          // first element in the flat array
  std::int64_t count = 0;           // prod(shape)
  bool is_weight() const { return shape.size() == 2; }
};

template <class T>
class head_parameters {
 public:
  using matrix_map = Eigen::Map<train_matrix<T>>;
  using const_matrix_map = Eigen::Map<const train_matrix<T>>;
  using vector_map = Eigen::Map<train_vector<T>>;
  using const_vector_map = Eigen::Map<const train_vector<T>>;

  head_parameters() = default;

  // All parameters of a head of this config, zero. Throws redraft::error for an invalid config.
  explicit head_parameters(const draft_config& config) : config_(config) {
    config_.validate("head_parameters");
    std::int64_t offset = 0;
    for (auto& [name, shape] : draft_head_tensor_shapes(config_)) {
      std::int64_t count = 1;
      for (const std::int64_t d : shape) count *= d;
      tensors_.push_back(head_tensor{name, shape, offset, count});
      offset += count;
    }
    values_.assign(static_cast<std::size_t>(offset), T(0));
    const auto index = [&](const std::string& name) {
      for (std::size_t i = 0; i < tensors_.size(); ++i)
        if (tensors_[i].name == name) return i;
      return std::size_t(-1);
    };
    input_proj_weight_ = index("input_proj.weight");
    input_proj_bias_ = index("input_proj.bias");
    for (std::int64_t i = 0; i < config_.num_draft_layers; ++i) {
      block_weight_.push_back(index("lm_head." + std::to_string(i) + ".linear.weight"));
      block_bias_.push_back(index("lm_head." + std::to_string(i) + ".linear.bias"));
    }
    lm_head_ = index("lm_head." + std::to_string(config_.num_draft_layers) + ".weight");
    rnn_w_ = index("rnn_w.weight");
    rnn_u_ = index("rnn_u.weight");
    rnn_u_bias_ = index("rnn_u.bias");
  }

  const draft_config& config() const { return config_; }
  const std::vector<head_tensor>& tensors() const { return tensors_; }
  // The flat array [size()] (tensors back to back in tensors() order).
  aligned_vector<T>& values() { return values_; }
  const aligned_vector<T>& values() const { return values_; }
  std::int64_t size() const { return static_cast<std::int64_t>(values_.size()); }
  void set_zero() { std::fill(values_.begin(), values_.end(), T(0)); }

  // The tensor called `name`; throws redraft::error if the head has none.
  const head_tensor& tensor(const std::string& name) const {
    for (const head_tensor& t : tensors_)
      if (t.name == name) return t;
    detail::throw_error("head_parameters: the draft head has no parameter '", name, "'");
  }

  // ---- Eigen views of the tensors (weights [out, in], biases [out]) ----
  matrix_map input_proj_weight() { return weight(input_proj_weight_); }
  vector_map input_proj_bias() { return bias(input_proj_bias_); }
  matrix_map block_weight(std::int64_t i) {
    return weight(block_weight_[static_cast<std::size_t>(i)]);
  }
  vector_map block_bias(std::int64_t i) { return bias(block_bias_[static_cast<std::size_t>(i)]); }
  matrix_map lm_head() { return weight(lm_head_); }
  matrix_map rnn_w() { return weight(rnn_w_); }
  matrix_map rnn_u() { return weight(rnn_u_); }
  vector_map rnn_u_bias() { return bias(rnn_u_bias_); }
  const_matrix_map input_proj_weight() const { return weight(input_proj_weight_); }
  const_vector_map input_proj_bias() const { return bias(input_proj_bias_); }
  const_matrix_map block_weight(std::int64_t i) const {
    return weight(block_weight_[static_cast<std::size_t>(i)]);
  }
  const_vector_map block_bias(std::int64_t i) const {
    return bias(block_bias_[static_cast<std::size_t>(i)]);
  }
  const_matrix_map lm_head() const { return weight(lm_head_); }
  const_matrix_map rnn_w() const { return weight(rnn_w_); }
  const_matrix_map rnn_u() const { return weight(rnn_u_); }
  const_vector_map rnn_u_bias() const { return bias(rnn_u_bias_); }

 private:
  matrix_map weight(std::size_t i) {
    const head_tensor& t = tensors_[i];
    return matrix_map(values_.data() + t.offset, t.shape[0], t.shape[1]);
  }
  const_matrix_map weight(std::size_t i) const {
    const head_tensor& t = tensors_[i];
    return const_matrix_map(values_.data() + t.offset, t.shape[0], t.shape[1]);
  }
  vector_map bias(std::size_t i) {
    const head_tensor& t = tensors_[i];
    return vector_map(values_.data() + t.offset, t.shape[0]);
  }
  const_vector_map bias(std::size_t i) const {
    const head_tensor& t = tensors_[i];
    return const_vector_map(values_.data() + t.offset, t.shape[0]);
  }

  draft_config config_;
  std::vector<head_tensor> tensors_;
  aligned_vector<T> values_;  // 64-byte aligned: results do not depend on where it landed
  std::size_t input_proj_weight_ = 0, input_proj_bias_ = 0, lm_head_ = 0, rnn_w_ = 0, rnn_u_ = 0,
              rnn_u_bias_ = 0;
  std::vector<std::size_t> block_weight_, block_bias_;
};

// The parameters of `head` (host copies, converted to T). O(parameters).
template <class T, Backend B>
head_parameters<T> parameters_from_head(const draft_head<B>& head) {
  head_parameters<T> out(head.config());
  for (const head_tensor& t : out.tensors()) {
    const std::vector<float> values = head.get_parameter(t.name);
    for (std::int64_t i = 0; i < t.count; ++i)
      out.values()[static_cast<std::size_t>(t.offset + i)] =
          static_cast<T>(values[static_cast<std::size_t>(i)]);
  }
  return out;
}

// A draft_head<B> holding `params` (rounded to float). O(parameters).
template <Backend B, class T>
draft_head<B> head_from_parameters(B backend, const head_parameters<T>& params) {
  draft_head<B> head(std::move(backend), params.config());
  std::vector<float> values;
  for (const head_tensor& t : params.tensors()) {
    values.resize(static_cast<std::size_t>(t.count));
    for (std::int64_t i = 0; i < t.count; ++i)
      values[static_cast<std::size_t>(i)] =
          static_cast<float>(params.values()[static_cast<std::size_t>(t.offset + i)]);
    head.set_parameter(t.name, values);
  }
  return head;
}

}  // namespace redraft
