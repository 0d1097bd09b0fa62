#!/usr/bin/env bash
# Quick start, command 2: installs missing dependencies, builds everything, runs the whole test
# suite (unit tests, conformance over tests/data/golden, consumer-project tests).
#   REDRAFT_WERROR=ON: warnings in the project's own targets are errors (.ci/run sets it; a user's
#     build never fails because a compiler warns)
#   REDRAFT_ARCH_CHECK=1: also compile the binaries for x86-64-v4 (AVX-512) and x86-64-v3 (AVX2)
#     with warnings as errors (scripts/check_arch.sh; .ci/run sets it)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build=${REDRAFT_BUILD_DIR:-build}
launcher=()  # ccache, when installed, makes rebuilds after a pull cheap
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DREDRAFT_WERROR="${REDRAFT_WERROR:-OFF}" "${launcher[@]}"
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"

# The Python package (python/, docs/python.md) and its pytest suite, on Debian's PyTorch
# (scripts/python_tests.sh installs what it needs). REDRAFT_PYTHON=off skips it.
if [ "${REDRAFT_PYTHON:-on}" != off ]; then
  bash scripts/python_tests.sh
fi

if [ "${REDRAFT_ARCH_CHECK:-0}" = 1 ]; then
  bash scripts/deps.sh clang
  bash scripts/check_arch.sh
fi

# Phase 2 (docs/reliability.md): the tests again under AddressSanitizer + UndefinedBehaviorSanitizer
# (CMakePresets.json `asan`, clang), then every libFuzzer target for a bounded time (fuzz/run.sh).
#   REDRAFT_SANITIZE=lean (default, CI): the test executables below, without [slow] test cases
#   REDRAFT_SANITIZE=full: every test executable and test case; REDRAFT_SANITIZE=off: skip phase 2
#   REDRAFT_FUZZ_SECONDS=N: seconds per fuzz target (default 20; 0 skips fuzzing)
sanitize=${REDRAFT_SANITIZE:-lean}
if [ "$sanitize" != off ]; then
  bash scripts/deps.sh clang libclang-rt-14-dev
  asan_build=${REDRAFT_ASAN_BUILD_DIR:-build-asan}
  cmake --preset asan -B "$asan_build" > /dev/null
  if [ "$sanitize" = full ]; then
    cmake --build "$asan_build" -j "$(nproc)"
    tests=("$asan_build"/tests/redraft_test_*)
    filter=()
  else
    lean=(tree verify_greedy verify_lossless kv draft_safetensors draft_checkpoint plain_decoder
          loop_e2e hardening fuzz_replay)
    cmake --build "$asan_build" -j "$(nproc)" --target redraft-conformance "${lean[@]/#/redraft_test_}"
    tests=("${lean[@]/#/$asan_build/tests/redraft_test_}")
    filter=("~[slow]")
  fi
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_logged() {  # runs "$@", prints its last line, or its whole log on failure
    local log=$asan_build/$(basename "$1").log
    if ! "$@" > "$log" 2>&1; then cat "$log"; echo "FAILED under asan+ubsan: $*"; exit 1; fi
    echo "asan+ubsan $(basename "$1"): $(grep -v '^$' "$log" | tail -n 1)"
  }
  for t in "${tests[@]}"; do
    [ -x "$t" ] && run_logged "$t" "${filter[@]}"
  done
  run_logged "$asan_build"/tools/redraft-conformance tests/data/golden
  if [ "${REDRAFT_FUZZ_SECONDS:-20}" != 0 ]; then
    bash fuzz/run.sh
  fi
fi
