#!/usr/bin/env bash
# The GPU check of the CUDA backend in one go, with a time limit (docs/cuda.md, "Running on a
# GPU"): builds the CUDA test and bench_cuda for this GPU's architecture only, runs the CUDA test
# (every CUDA output against the CPU backend, float / half / bfloat16 logits), then bench_cuda at
# the shapes docs/cuda.md reports. Everything it prints also goes to $OUT (default
# <build>/gpu_check): gpu.txt (the GPU), build.log, test.log, bench.json / bench.txt.
#
#   scripts/gpu_check.sh [build-dir]        (default build-gpu)
#   REDRAFT_GPU_CHECK_SECONDS=N             total limit, default 540 (the build takes most of it)
#   REDRAFT_GPU_CHECK_BENCH=quick|full      quick (default): the report's shapes only
#
# Exit status: 0 when the tests pass and the benchmarks ran; the tests' status when they failed
# (the benchmarks still run); 124 when the limit was hit.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
limit=${REDRAFT_GPU_CHECK_SECONDS:-540}
out=${OUT:-$build/gpu_check}
mkdir -p "$out"
deadline=$(( $(date +%s) + limit ))
left() { echo $(( deadline - $(date +%s) )); }

nvidia-smi --query-gpu=name,compute_cap,memory.total,clocks.max.sm,driver_version --format=csv \
  | tee "$out/gpu.txt"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
lscpu | grep 'Model name' >> "$out/gpu.txt" || true

echo "== build (sm_$arch), $(left) s left"
timeout "$(left)" bash -c "
  cmake -S . -B '$build' -DCMAKE_BUILD_TYPE=Release -DREDRAFT_ENABLE_CUDA=ON \
    -DREDRAFT_CUDA_TEST_ARCHITECTURES=$arch -DREDRAFT_CUDA_BENCH_ARCHITECTURES=$arch \
    -DCMAKE_CUDA_ARCHITECTURES=$arch &&
  cmake --build '$build' -j \"\$(nproc)\" --target redraft_cuda_tests bench_cuda
" > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 124; }

echo "== CUDA tests, $(left) s left"
status=0
timeout "$(left)" ctest --test-dir "$build" -R '^cuda_' --output-on-failure 2>&1 | tee "$out/test.log" \
  || { status=$?; echo "== CUDA tests FAILED (status $status); benchmarks still run"; }

# The issue's shapes: tree + masks at B 64, W 16 (L 5); greedy / lossless / typical verify at
# B 64, W 16 and B 1, W 16 (n = 65 nodes), V 32000 and 128256; beam search at H 1024, E 2048,
# N 2, V 32000 against its GEMM floor.
quick='BM_cuda_tree_masks/(1|64)/16/|BM_cuda_verify_(greedy|lossless|lossless_bf16|typical)/(1|64)/16/(32000|128256)/|BM_cuda_beam_search(_gemm_floor)?/(1|64)/(4|16)/32000/2/'
filter=$quick
[ "${REDRAFT_GPU_CHECK_BENCH:-quick}" = full ] && filter='.'
echo "== bench_cuda, $(left) s left"
timeout "$(left)" "$build/bench/bench_cuda" --benchmark_filter="$filter" \
  --benchmark_min_time=0.05 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/bench.json" --benchmark_out_format=json 2>&1 | tee "$out/bench.txt"
echo "== done, $(left) s left; results in $out"
exit "$status"
