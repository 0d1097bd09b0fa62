#!/usr/bin/env bash
# The GPU check of the CUDA backend in one go, with a time limit (docs/cuda.md, "Running on a
# GPU"): builds the CUDA test and bench_cuda for this GPU's architecture only, runs the CUDA test
# (every CUDA output against the CPU backend, float / half / bfloat16 logits), then bench_cuda at
# the shapes docs/cuda.md reports. Everything it prints also goes to $OUT (default
# <build>/gpu_check): gpu.txt (the GPU), build.log, cases.txt (one line per test case), test.log,
# bench.json / bench.txt, memcheck.txt / memcheck.log, ncu.txt.
#
#   scripts/gpu_check.sh [build-dir]        (default build-gpu)
#   REDRAFT_GPU_CHECK_SECONDS=N             total limit, default 540 (the build takes most of it)
#   REDRAFT_GPU_CHECK_BENCH=quick|full      quick (default): the report's shapes only
#   REDRAFT_GPU_CHECK_MEMCHECK=N            then run each test case under compute-sanitizer
#                                           memcheck, N seconds at most, within the total limit
#                                           (default 0: not run)
#   REDRAFT_GPU_CHECK_NCU=1                 then time each kernel of a few shapes' timed calls
#                                           under ncu (ncu.txt)
#   REDRAFT_GPU_CHECK_PREBUILT=1            skip the build: run the binaries already in
#                                           <build-dir> (built on another machine with nvcc for
#                                           this GPU's architecture and copied here, so device
#                                           time goes to the tests rather than to nvcc)
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
# A timeout for the next command: the seconds left, at least 1 (timeout 0 would mean no limit).
limit_left() { local l; l=$(left); echo $(( l > 0 ? l : 1 )); }

nvidia-smi --query-gpu=name,compute_cap,memory.total,clocks.max.sm,driver_version --format=csv \
  | tee "$out/gpu.txt"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
lscpu | grep 'Model name' >> "$out/gpu.txt" || true

if [ "${REDRAFT_GPU_CHECK_PREBUILT:-0}" = 1 ]; then
  echo "== prebuilt binaries in $build (no build), $(left) s left"
  for bin in "$build/tests/cuda/redraft_cuda_tests" "$build/bench/bench_cuda"; do
    [ -x "$bin" ] || { echo "REDRAFT_GPU_CHECK_PREBUILT=1 but $bin is missing"; exit 2; }
  done
  cuobjdump --list-elf "$build/tests/cuda/redraft_cuda_tests" 2>/dev/null | head -3 || true
else
  echo "== build (sm_$arch), $(left) s left"
  timeout "$(left)" bash -c "
    cmake -S . -B '$build' -DCMAKE_BUILD_TYPE=Release -DREDRAFT_ENABLE_CUDA=ON \
      -DREDRAFT_CUDA_TEST_ARCHITECTURES=$arch -DREDRAFT_CUDA_BENCH_ARCHITECTURES=$arch \
      -DCMAKE_CUDA_ARCHITECTURES=$arch &&
    cmake --build '$build' -j \"\$(nproc)\" --target redraft_cuda_tests bench_cuda
  " > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 124; }
fi

# Each test case runs in its own process, so a case that crashes (a signal ends the whole Catch2
# run) does not hide the cases after it. The binary is run directly, not through CTest, so a
# prebuilt build directory copied from another machine (whose CTest files name that machine's
# paths) runs too. cases.txt: exit status, seconds, name (0 passed, 1 failed, >= 128 a signal).
tests=$build/tests/cuda/redraft_cuda_tests
names=$(mktemp)
# Catch2 reads commas in a test spec as separators: escape them. (Catch2 2.x's listing exits with
# the number of names it listed.)
{ "$tests" --list-test-names-only || true; } | grep -v -e '^$' -e 'matching test' | sed 's/,/\\,/g' > "$names"
echo "== CUDA tests, $(wc -l < "$names") cases, $(left) s left"
status=0
: > "$out/cases.txt"
: > "$out/test.log"
while IFS= read -r name; do
  begin=$(date +%s%N)
  rc=0
  timeout "$(limit_left)" "$tests" "$name" >> "$out/test.log" 2>&1 || rc=$?
  printf '%s\t%.2f s\t%s\n' "$rc" "$(( $(date +%s%N) - begin ))e-9" "$name" | tee -a "$out/cases.txt"
  if [ "$rc" != 0 ]; then status=$rc; fi
done < "$names"
if [ "$status" != 0 ]; then
  echo "== CUDA tests FAILED (last failing status $status; details in test.log); benchmarks still run"
  grep -B2 -A12 'FAILED' "$out/test.log" | head -80 || true
fi

# The issue's shapes: tree + masks at B 64, W 16 (L 5); greedy / lossless / typical verify at
# B 64, W 16 and B 1, W 16 (n = 65 nodes), V 32000 and 128256; beam search at H 1024, E 2048,
# N 2, V 32000 against its GEMM floor.
quick='BM_cuda_tree_masks/(1|64)/16/|BM_cuda_verify_(greedy|lossless|lossless_bf16|typical)/(1|64)/16/(32000|128256)/|BM_cuda_beam_search(_gemm_floor)?/(1|64)/(4|16)/32000/2/'
filter=$quick
[ "${REDRAFT_GPU_CHECK_BENCH:-quick}" = full ] && filter='.'
echo "== bench_cuda, $(left) s left"
timeout "$(limit_left)" "$build/bench/bench_cuda" --benchmark_filter="$filter" \
  --benchmark_min_time=0.05 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/bench.json" --benchmark_out_format=json 2>&1 | tee "$out/bench.txt" \
  || echo "== bench_cuda ended with status $?"

# Optional: compute-sanitizer memcheck, case by case, for at most REDRAFT_GPU_CHECK_MEMCHECK
# seconds (0, the default, skips it) and within the total limit. memcheck.txt: status, error
# summary, name; memcheck.log: the report of each case with errors.
memcheck_cap=${REDRAFT_GPU_CHECK_MEMCHECK:-0}
if [ "$memcheck_cap" != 0 ]; then
  echo "== memcheck, at most $memcheck_cap s"
  memcheck_end=$(( $(date +%s) + memcheck_cap ))
  (( memcheck_end < deadline )) || memcheck_end=$deadline
  case_log=$(mktemp)
  : > "$out/memcheck.txt"
  while IFS= read -r name; do
    budget=$(( memcheck_end - $(date +%s) ))
    [ "$budget" -gt 5 ] || break
    rc=0
    timeout "$budget" compute-sanitizer --tool memcheck --print-limit 5 "$tests" "$name" \
      > "$case_log" 2>&1 || rc=$?
    summary=$(grep -m1 'ERROR SUMMARY' "$case_log" || echo 'no summary (cut off)')
    printf '%s\t%s\t%s\n' "$rc" "$summary" "$name" | tee -a "$out/memcheck.txt"
    if ! grep -q 'ERROR SUMMARY: 0 errors' "$case_log"; then
      { echo "=== $name"; head -c 20000 "$case_log"; } >> "$out/memcheck.log"
    fi
  done < "$names"
  rm -f "$case_log"
fi

# Optional: the kernels of the timed calls of a few reported shapes under Nsight Compute
# (REDRAFT_GPU_CHECK_NCU=1): one table per shape in ncu.txt (tools/ncu_kernels.py: launches, time
# and share per kernel, kernel time per call), to set against bench.txt's event-timed wall time.
# bench_cuda marks each timed call as the NVTX range redraft_timed, so the set-up is left out.
if [ "${REDRAFT_GPU_CHECK_NCU:-0}" = 1 ]; then
  : > "$out/ncu.txt"
  for shape in BM_cuda_tree_masks/64/16/ BM_cuda_verify_greedy/1/16/128256/ \
               BM_cuda_verify_lossless/1/16/128256/ BM_cuda_beam_search/1/4/32000/2/; do
    [ "$(left)" -gt 10 ] || { echo "== ncu: out of time before $shape" | tee -a "$out/ncu.txt"; break; }
    csv=$(mktemp)
    run=$(mktemp)
    rc=0
    timeout "$(limit_left)" ncu --clock-control none --nvtx --nvtx-include 'redraft_timed/' \
      --metrics gpu__time_duration.sum --csv --print-units base \
      "$build/bench/bench_cuda" --benchmark_filter="^$shape" --benchmark_min_time=0.001 \
      --benchmark_out="$run" --benchmark_out_format=json > "$csv" 2>&1 || rc=$?
    calls=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["benchmarks"][0]["iterations"])' "$run" 2>/dev/null || echo "")
    {
      echo "== $shape (ncu status $rc, ${calls:-?} timed calls)"
      python3 tools/ncu_kernels.py "$csv" ${calls:+--calls "$calls"} 2>&1 || tail -5 "$csv"
    } | tee -a "$out/ncu.txt"
    rm -f "$csv" "$run"
  done
fi

echo "== done, $(left) s left; results in $out"
exit "$status"
