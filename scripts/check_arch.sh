#!/usr/bin/env bash
# Compiles (does not run) the project's binaries with warnings as errors for CPUs other than this
# one, so a machine without AVX-512 still catches warnings that only AVX-512 code paths raise (and
# the reverse). Each configuration is a separate build directory under build-arch/.
#
#   bash scripts/check_arch.sh                    # g++ x86-64-v4, g++ x86-64-v3, clang++ x86-64-v4
#   REDRAFT_ARCH_CHECKS="g++:x86-64-v4" bash scripts/check_arch.sh
#
# x86-64-v4 is AVX-512 (F, BW, CD, DQ, VL); x86-64-v3 is AVX2 + FMA. What is compiled: the examples
# (the demo), the tools (conformance, distillation) and the benchmarks: between them they instantiate
# every Eigen product and reduction the library uses.
set -euo pipefail
cd "$(dirname "$0")/.."
checks=(${REDRAFT_ARCH_CHECKS:-g++:x86-64-v4 g++:x86-64-v3 clang++:x86-64-v4})
for check in "${checks[@]}"; do
  cxx=${check%%:*}
  arch=${check#*:}
  dir=build-arch/$(basename "$cxx")-$arch
  launcher=()
  command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_CXX_FLAGS="-march=$arch" -DREDRAFT_NATIVE_ARCH=OFF -DREDRAFT_WERROR=ON \
    -DREDRAFT_BUILD_TESTS=OFF -DREDRAFT_ENABLE_CUDA=OFF -DREDRAFT_INSTALL=OFF "${launcher[@]}" > /dev/null
  start=$SECONDS
  if ! cmake --build "$dir" -j "$(nproc)" > "$dir/build.log" 2>&1; then
    grep -E 'error|warning' "$dir/build.log" | sort | uniq -c | sort -rn | head -40
    echo "check_arch: $cxx -march=$arch FAILED (log: $dir/build.log)"
    exit 1
  fi
  echo "check_arch: $cxx -march=$arch: compiled with warnings as errors ($((SECONDS - start)) s)"
done
