// redraft/core/backend.hpp: the Backend concept, the contract every backend satisfies.
//
// A backend is a cheap, copyable handle to where work runs (the CPU; a CUDA stream plus a
// scratch allocator). Generic algorithms in draft/, tree/, verify/, kv/ are written once against
// this contract. A backend may also run a hot step fused (clause 10); the public entry point
// prefers it when present and otherwise runs the generic code.
//
// The contract, for a type B and a value `b` of it:
//
//  1. Handle. B is std::copyable; copies refer to the same place of execution.
//  2. Buffers. `typename B::template buffer<T>` is an owning, movable array of T in the backend's
//     memory space, for at least T in {float, int32_t, uint32_t, uint8_t (masks), int64_t (mask
//     offsets)}, with `data()` (T*, const T* when const) and `size()` (index_t).
//     `b.template allocate<T>(n)` returns a buffer of n elements (contents unspecified).
//  3. Transfers. `b.copy_to_host(src, n, dst)` copies n elements from backend memory to host
//     memory; `b.copy_from_host(src, n, dst)` the reverse; `b.copy(src, n, dst)` within the
//     backend. `b.fill(dst, n, value)` sets n elements. Transfers may be asynchronous with respect
//     to the host except copy_to_host, which returns when the host data is ready.
//  4. Ordering. `b.synchronize()` waits for all work issued on b. Work issued on one handle runs
//     in issue order.
//  5. Parallel loop. `b.for_each_index(n, f)` calls f(i) once for every i in [0, n), in any order
//     and possibly concurrently; f is a trivially copyable REDRAFT_HOST_DEVICE functor that
//     touches only backend memory through views.
//  6. Dense math. `b.matmul(x, w, bias, act, y)`: y[M, N] = act(x[M, K] * w[N, K]^T + bias[N]),
//     w in PyTorch's [out, in] layout, bias nullable, act one of activation::{none, silu}.
//     y may not alias x or w.
//  7. Row primitives, over matrix views [rows, cols] in backend memory:
//       b.row_max(x, out[rows]), b.row_sum(x, out[rows]),
//       b.log_softmax(x, y)          y = x - max - log(sum(exp(x - max))), rowwise; y may alias x,
//       b.row_argmax(x, out[rows])   int32, ties to the lower index,
//       b.row_top_k(x, k, values[rows, k], indices[rows, k])
//                                    sorted descending, ties to the lower index,
//       b.inclusive_scan(in[n], out[n])   int32 prefix sums, out may alias in,
//       b.gather_rows(x[rows, cols], index[m], y[m, cols])   y[i] = x[index[i]].
//  8. Optional: memory visibility. `B::memory_is_host_accessible` (a static constexpr bool) says
//     whether host code may dereference backend pointers directly (true for the CPU and Thrust's
//     host systems, false for CUDA). When absent it is taken as false. Generic code never relies
//     on it for correctness (host reads always go through copy_to_host); entry points use it only
//     to pick a host-side fast path, e.g. build_tree runs the sequential trie on host-accessible
//     memory and the data-parallel build_tree_parallel elsewhere. Read it through
//     redraft::backend_memory_is_host_accessible_v<B>.
//  9. Optional: half-precision weights. For W in {float16, bfloat16} (core/half.hpp), a backend
//     may offer `b.matmul(x, w, bias, act, y)` with w a matrix_view<const W>, the same product
//     as clause 6 with each weight converted exactly to float as it is read and float
//     accumulation, together with `typename B::template buffer<W>` (clause 2's interface). Users
//     such as the draft head then keep W weights in backend memory (half the bytes to stream per
//     product); on a backend without it they keep the same values in float buffers. Detect it
//     through redraft::backend_has_half_matmul_v<B, W>. The CPU backend offers it; the Thrust
//     and CUDA backends do not (yet). A backend whose W products are slower than its float
//     products (converting each weight costs more than streaming twice the bytes) may say so
//     with `template <class W> static constexpr bool prefers_half_weights`; users then keep
//     float buffers there as well. Read through redraft::backend_prefers_half_weights_v<B, W>
//     (clause 9 offered and not declined). The CPU backend declines F16 on builds without a
//     hardware F16 conversion (baseline x86-64: the SSE2 path of cpu/simd.hpp).
// 10. Optional: fused steps. The hot data-parallel steps are public argument structs in step/
//     (namespace redraft::step): greedy_walk<T>, lossless_walk<T>, typical_walk<T>,
//     redrafter_walk<T>, redrafter_rows<T> (T the logits' element type) and packed_mask_rows.
//     Each is a trivially copyable REDRAFT_HOST_DEVICE functor with `s.count()` invocations
//     (clause 5's f). A backend may offer `b.run_fused(s)` for any of them (an overload per
//     struct); it must have the effect of `b.for_each_index(s.count(), s)`: the same outputs,
//     bit for bit, with any work split it likes (e.g. CUDA: one block per request, the row
//     reductions block-wide through the step's own partial/combine helpers, step/row_ops.hpp).
//     Entry points reach it only through step::run_step, which calls run_fused when present
//     (and s.count() > 0) and for_each_index otherwise. Detect it through
//     redraft::backend_has_fused_v<B, S>. The Thrust and CUDA backends offer all six.
// 11. Optional: packed weights. For W = float and each W of clause 9 it offers, a backend may
//     offer `typename B::template packed_matrix<W>`, a movable weight matrix [N, K] in a layout
//     of the backend's choosing (e.g. the CPU's column panels, cpu/packed_matmul.hpp), with
//     `rows()` (N) and `cols()` (K); `b.pack(w)` builds one from a matrix_view<const W> w [N, K]
//     in backend memory; `b.unpack(p, w)` writes it back into a matrix_view<W> w [N, K]; and
//     `b.matmul(x, p, bias, act, y)` is clause 6's product with the packed weights. Each output
//     is the same function of its row of x whatever M is, so a row's result does not depend on
//     the batch; its bits may differ from clause 6's (another order of summation). Users that
//     multiply by the same weights at every step (the draft head, hence beam search) pack once
//     when the weights are set and keep only the packed copy. Detect it through
//     redraft::backend_has_packed_matmul_v<B, W>. The CPU backend offers it; the Thrust and CUDA
//     backends do not.
//
// Buffer lifetime (clauses 2 and 4): destroying a buffer, or assigning over it, is ordered after
// the work already issued on the handle that allocated it. Work that uses the buffer completes
// before its memory is reused (the CPU and Thrust's host systems run work before returning; CUDA
// frees with cudaFreeAsync on the handle's stream), so a scratch buffer may go out of scope right
// after the last call that uses it, with no synchronize() first.
//
// Violations of clauses 2-7 found at compile time fail the concept check, which the backend
// headers assert right after each class (`static_assert(redraft::Backend<cpu_backend>)`).
#pragma once

#include <concepts>
#include <cstdint>

#include "redraft/core/half.hpp"
#include "redraft/core/view.hpp"

namespace redraft {

enum class activation { none, silu };

namespace detail {

template <class B, class T>
concept backend_buffer_of = requires(B b, typename B::template buffer<T> buf,
                                     const typename B::template buffer<T> cbuf, index_t n, T* p,
                                     const T* cp, T value) {
  { b.template allocate<T>(n) } -> std::same_as<typename B::template buffer<T>>;
  { buf.data() } -> std::same_as<T*>;
  { cbuf.data() } -> std::same_as<const T*>;
  { cbuf.size() } -> std::convertible_to<index_t>;
  requires std::movable<typename B::template buffer<T>>;
  b.copy_to_host(cp, n, p);
  b.copy_from_host(cp, n, p);
  b.copy(cp, n, p);
  b.fill(p, n, value);
};

// A functor type used only to probe clause 5.
struct probe_functor {
  REDRAFT_HOST_DEVICE void operator()(index_t) const {}
};

}  // namespace detail

template <class B>
concept Backend = std::copyable<B> && detail::backend_buffer_of<B, float> &&
    detail::backend_buffer_of<B, std::int32_t> && detail::backend_buffer_of<B, std::uint32_t> &&
    detail::backend_buffer_of<B, std::uint8_t> && detail::backend_buffer_of<B, std::int64_t> &&
    requires(B b, index_t n, matrix_view<const float> x, matrix_view<float> y, vector_view<float> v,
             vector_view<std::int32_t> iv, vector_view<const std::int32_t> civ,
             matrix_view<std::int32_t> im, const float* bias, int k) {
  b.synchronize();
  b.for_each_index(n, detail::probe_functor{});
  b.matmul(x, x, bias, activation::silu, y);
  b.row_max(x, v);
  b.row_sum(x, v);
  b.log_softmax(x, y);
  b.row_argmax(x, iv);
  b.row_top_k(x, k, y, im);
  b.inclusive_scan(civ, iv);
  b.gather_rows(x, civ, y);
};

// Clause 8: true iff B declares `static constexpr bool memory_is_host_accessible = true`.
template <class B>
inline constexpr bool backend_memory_is_host_accessible_v = [] {
  if constexpr (requires { B::memory_is_host_accessible; }) {
    return static_cast<bool>(B::memory_is_host_accessible);
  } else {
    return false;
  }
}();

// Clause 9: true iff B offers matmul with matrix_view<const W> weights and buffers of W.
template <class B, class W>
inline constexpr bool backend_has_half_matmul_v =
    (std::same_as<W, float16> ||
     std::same_as<W, bfloat16>)&&requires(B b, matrix_view<const float> x, matrix_view<const W> w,
                                          matrix_view<float> y, const float* bias) {
  b.matmul(x, w, bias, activation::none, y);
  requires detail::backend_buffer_of<B, W>;
};

// Clause 9, as users holding weights read it: true iff B multiplies W weights (above) and does
// not decline them with B::prefers_half_weights<W> = false.
template <class B, class W>
inline constexpr bool backend_prefers_half_weights_v = [] {
  if constexpr (!backend_has_half_matmul_v<B, W>) {
    return false;
  } else if constexpr (requires { B::template prefers_half_weights<W>; }) {
    return static_cast<bool>(B::template prefers_half_weights<W>);
  } else {
    return true;
  }
}();

// Clause 11: true iff B offers packed_matrix<W> with pack, unpack and its matmul.
namespace detail {
template <class B, class W>
concept backend_packed_matrix_of = requires {
  typename B::template packed_matrix<W>;
};
// NOTE: checked only once the type exists (the conjunction below): clang 14 reports a missing
// packed_matrix named in a requires-expression's parameters as a hard error.
template <class B, class W>
concept backend_packed_matmul = backend_packed_matrix_of<B, W> &&
    requires(const B& b, matrix_view<const float> x, matrix_view<const W> w, matrix_view<W> w_out,
             const typename B::template packed_matrix<W>& p, matrix_view<float> y,
             const float* bias) {
  { b.pack(w) } -> std::same_as<typename B::template packed_matrix<W>>;
  b.unpack(p, w_out);
  b.matmul(x, p, bias, activation::none, y);
  { p.rows() } -> std::convertible_to<index_t>;
  { p.cols() } -> std::convertible_to<index_t>;
};
}  // namespace detail
template <class B, class W>
inline constexpr bool backend_has_packed_matmul_v = detail::backend_packed_matmul<B, W>;

// Clause 10: true iff B offers run_fused for the step struct S.
template <class B, class S>
inline constexpr bool backend_has_fused_v = requires(const B& b, const S& s) {
  b.run_fused(s);
};

}  // namespace redraft
