#!/usr/bin/env bash
# Quick start, command 1: installs missing dependencies, builds and runs the main demo.
# Extra arguments are passed to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build=${REDRAFT_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)" --target redraft-demo
"$build/examples/redraft-demo" "$@"
