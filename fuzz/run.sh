#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined) and runs each for a
# bounded time on a copy of its seed corpus (fuzz/corpus/<target>/), then prints the executions
# each achieved. Exit status non-zero on any finding (crash, sanitizer report, leak, timeout).
#
#   bash fuzz/run.sh [target ...]          targets: checkpoint tree verify kv golden (default all)
#   REDRAFT_FUZZ_SECONDS=300 bash fuzz/run.sh verify     longer runs (default 20 s per target)
#   REDRAFT_FUZZ_BUILD_DIR=...                           build dir (default build-fuzz)
#   REDRAFT_FUZZ_JOBS=N                                  targets built / run at once (default nproc)
#
# A finding leaves its input in $build/artifacts/<target>-crash-<sha1>; reproduce it with
#   $build/fuzz_<target> $build/artifacts/<target>-crash-<sha1>
# then add it under tests/data/fuzz_regressions/<target>/ (replayed by tests/test_fuzz_replay.cpp).
# The grown corpus stays in $build/corpus/<target>/ between runs (only the seeds are in git).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${REDRAFT_FUZZ_BUILD_DIR:-build-fuzz}
seconds=${REDRAFT_FUZZ_SECONDS:-20}
jobs=${REDRAFT_FUZZ_JOBS:-$(nproc)}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(checkpoint tree verify kv golden)
cxx=${REDRAFT_FUZZ_CXX:-clang++}
command -v "$cxx" >/dev/null || { echo "fuzz/run.sh: $cxx not found (Debian: clang libclang-rt-14-dev)"; exit 1; }
mkdir -p "$build/artifacts"

flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -Iinclude -isystem /usr/include/eigen3)
build_one() {  # rebuilds only when a header or the source is newer than the binary
  local t=$1 bin=$build/fuzz_$1
  if [ ! -x "$bin" ] || [ -n "$(find include fuzz tools/conformance -newer "$bin" -name '*.hpp' -o -newer "$bin" -name '*.cpp' | head -1)" ]; then
    "$cxx" "${flags[@]}" "fuzz/$t.cpp" -o "$bin.tmp" && mv "$bin.tmp" "$bin"
  fi
}
run_one() {
  local t=$1 corpus=$build/corpus/$1
  mkdir -p "$corpus"
  cp -n fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  # -rss_limit_mb / -malloc_limit_mb: an input that makes the library allocate > 2 GB is a finding.
  "$build/fuzz_$t" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
      > "$build/$t.log" 2>&1
}
export -f build_one run_one
export build seconds cxx
export flags_str="${flags[*]}"

start=$(date +%s)
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'flags=($flags_str); build_one {}' 
built=$(date +%s)
status=0
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {} || { echo "fuzz target {} FAILED (log: $build/{}.log)"; exit 1; }' || status=1
finished=$(date +%s)

echo "fuzz: built in $((built - start)) s, ran ${seconds} s per target ($jobs at a time) in $((finished - built)) s"
for t in "${targets[@]}"; do
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/$t.log" | grep -o '[0-9]*$' || true)
  cov=$(grep -o 'cov: [0-9]*' "$build/$t.log" | tail -1 || true)
  printf '  %-11s %12s executions  %s  corpus %s files\n' "$t" "${runs:-?}" "$cov" "$(ls "$build/corpus/$t" | wc -l)"
  if grep -qE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error|SUMMARY: ' "$build/$t.log"; then
    status=1
    grep -m3 -E 'ERROR|runtime error|SUMMARY|invariant' "$build/$t.log" | sed 's/^/      /'
  fi
done
exit $status
