// Algorithms that take only a TargetModel run their work on the model's backend
// (TargetModel clause 6), never on a backend they construct themselves.
//
// tagged_backend is the CPU backend with an instance id: every call it serves is counted as the
// model's own (id == the id handed to the model) or foreign (any other id, e.g. 0 for a
// default-constructed handle). On CUDA a foreign handle is a different stream, unordered with the
// model's work; here it is a count that must stay 0.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "redraft/redraft.hpp"
#include "redraft/testing/tiny_llama.hpp"
#include "redraft/train/distill_data.hpp"

using namespace redraft;
using redraft::testing::tiny_llama;

// A named namespace: clang counts memory_is_host_accessible of a class with internal linkage as
// an unused variable (it is read only in backend_memory_is_host_accessible_v's constant).
namespace target_backend_test {

constexpr int model_backend_id = 7;

struct backend_calls {
  std::int64_t own = 0;      // calls on a handle with the model's id
  std::int64_t foreign = 0;  // calls on any other handle
};
backend_calls calls;

class tagged_backend {
 public:
  template <class T>
  using buffer = cpu_backend::buffer<T>;
  static constexpr bool memory_is_host_accessible = true;

  tagged_backend() = default;  // id 0: a handle nobody handed out
  explicit tagged_backend(int id) : id_(id) {}

  template <class T>
  buffer<T> allocate(index_t n) const {
    note();
    return inner_.allocate<T>(n);
  }
  template <class T>
  void copy_to_host(const T* src, index_t n, T* dst) const {
    note();
    inner_.copy_to_host(src, n, dst);
  }
  template <class T>
  void copy_from_host(const T* src, index_t n, T* dst) const {
    note();
    inner_.copy_from_host(src, n, dst);
  }
  template <class T>
  void copy(const T* src, index_t n, T* dst) const {
    note();
    inner_.copy(src, n, dst);
  }
  template <class T>
  void fill(T* dst, index_t n, T value) const {
    note();
    inner_.fill(dst, n, value);
  }
  void synchronize() const { note(); }
  template <class F>
  void for_each_index(index_t n, F f) const {
    note();
    inner_.for_each_index(n, f);
  }
  void matmul(matrix_view<const float> x, matrix_view<const float> w, const float* bias,
              activation act, matrix_view<float> y) const {
    note();
    inner_.matmul(x, w, bias, act, y);
  }
  void row_max(matrix_view<const float> x, vector_view<float> out) const {
    note();
    inner_.row_max(x, out);
  }
  void row_sum(matrix_view<const float> x, vector_view<float> out) const {
    note();
    inner_.row_sum(x, out);
  }
  void log_softmax(matrix_view<const float> x, matrix_view<float> y) const {
    note();
    inner_.log_softmax(x, y);
  }
  void row_argmax(matrix_view<const float> x, vector_view<std::int32_t> out) const {
    note();
    inner_.row_argmax(x, out);
  }
  void row_top_k(matrix_view<const float> x, int k, matrix_view<float> values,
                 matrix_view<std::int32_t> indices) const {
    note();
    inner_.row_top_k(x, k, values, indices);
  }
  void inclusive_scan(vector_view<const std::int32_t> in, vector_view<std::int32_t> out) const {
    note();
    inner_.inclusive_scan(in, out);
  }
  void gather_rows(matrix_view<const float> x, vector_view<const std::int32_t> rows,
                   matrix_view<float> y) const {
    note();
    inner_.gather_rows(x, rows, y);
  }

 private:
  void note() const { ++(id_ == model_backend_id ? calls.own : calls.foreign); }

  int id_ = 0;
  cpu_backend inner_;
};
static_assert(Backend<tagged_backend>);

// tiny_llama (host memory) behind a TargetModel whose backend is the tagged handle with the
// model's id.
class tagged_target {
 public:
  using backend_type = tagged_backend;

  explicit tagged_target(tiny_llama& inner) : inner_(inner) {}

  std::int32_t vocab_size() const { return inner_.vocab_size(); }
  std::int32_t hidden_size() const { return inner_.hidden_size(); }
  std::int32_t max_context() const { return inner_.max_context(); }
  matrix_view<const float> embedding() const { return inner_.embedding(); }
  tagged_backend& backend() { return backend_; }
  model_output prefill(const prefill_input& in) { return inner_.prefill(in); }
  model_output verify(const verify_input& in) { return inner_.verify(in); }
  void commit(const kv_plan& plan) { inner_.commit(plan); }

 private:
  tiny_llama& inner_;
  tagged_backend backend_{model_backend_id};
};
static_assert(TargetModel<tagged_target>);

// A target whose backend() returns by value: not a TargetModel (clause 6 asks for a reference).
struct by_value_target : tagged_target {
  using tagged_target::tagged_target;
  tagged_backend backend() { return tagged_backend{model_backend_id}; }
};
static_assert(!TargetModel<by_value_target>);

testing::tiny_llama_config small_config() {
  testing::tiny_llama_config c;
  c.vocab_size = 48;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.head_dim = 8;
  c.max_context = 96;
  return c;
}

std::vector<generation_request> two_requests() {
  return {generation_request{{3, 1, 4}, 10, -1, -1}, generation_request{{15, 9}, 7, -1, -1}};
}

}  // namespace target_backend_test

using namespace target_backend_test;

TEST_CASE("plain_decode issues every backend call on the model's backend", "[loop][backend]") {
  const auto rule = GENERATE(verifier::greedy, verifier::lossless);
  CAPTURE(static_cast<int>(rule));
  decode_options options;
  options.rule = rule;
  options.seed = 11;
  tiny_llama reference = tiny_llama::random(small_config(), 3, 2);
  const generation_result expected = plain_decode(reference, two_requests(), options);

  tiny_llama inner = tiny_llama::random(small_config(), 3, 2);
  tagged_target model(inner);
  calls = {};
  const generation_result got = plain_decode(model, two_requests(), options);
  CHECK(calls.foreign == 0);
  CHECK(calls.own > 0);
  CHECK(got.tokens == expected.tokens);
}

TEST_CASE("the backend check catches a decoder on a handle of its own", "[loop][backend]") {
  // What plain_decode did before TargetModel::backend(): a default-constructed handle.
  tiny_llama inner = tiny_llama::random(small_config(), 3, 2);
  tagged_target model(inner);
  calls = {};
  plain_decoder<tagged_backend, tagged_target>(tagged_backend{}, model).generate(two_requests());
  CHECK(calls.foreign > 0);
}

TEST_CASE("generate_distill_data issues every backend call on the model's backend",
          "[train][backend]") {
  distill_data_options options;
  options.continuation_tokens = 6;
  options.samples_per_prompt = 1;
  options.keep_distributions = true;
  options.slots = 2;
  options.seed = 5;
  const std::vector<std::vector<std::int32_t>> prompts{{1, 2, 3}, {7}, {20, 21}};
  tiny_llama reference = tiny_llama::random(small_config(), 9, 2);
  const distill_dataset expected = generate_distill_data(reference, prompts, options);

  tiny_llama inner = tiny_llama::random(small_config(), 9, 2);
  tagged_target model(inner);
  calls = {};
  const distill_dataset got = generate_distill_data(model, prompts, options);
  CHECK(calls.foreign == 0);
  CHECK(calls.own > 0);
  REQUIRE(got.sequences.size() == expected.sequences.size());
  CHECK(got.embedding == expected.embedding);
  for (std::size_t i = 0; i < got.sequences.size(); ++i) {
    CAPTURE(i);
    CHECK(got.sequences[i].tokens == expected.sequences[i].tokens);
    CHECK(got.sequences[i].hidden == expected.sequences[i].hidden);
    CHECK(got.sequences[i].log_probs == expected.sequences[i].log_probs);
  }
}
