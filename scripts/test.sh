#!/usr/bin/env bash
# Quick start, command 2: installs missing dependencies, builds everything, runs the whole test
# suite (unit tests, conformance over tests/data/golden, consumer-project tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build=${REDRAFT_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
