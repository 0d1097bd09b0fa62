#!/usr/bin/env bash
# Checks that every C++ / CUDA source of the project is formatted by .clang-format, with the
# clang-format the project pins (14, Debian's clang-format package), so formatting cannot drift.
#   tools/check_format.sh [CLANG_FORMAT]        check (exit 1 and list the files that differ)
#   tools/check_format.sh --fix [CLANG_FORMAT]  rewrite them in place
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fix=0
if [ "${1:-}" = "--fix" ]; then fix=1; shift; fi
clang_format=${1:-clang-format-14}
command -v "$clang_format" > /dev/null || { echo "error: $clang_format not found (apt-get install clang-format)"; exit 1; }

mapfile -t files < <(cd "$root" && find include tests examples bench tools fuzz python/src \
  -type f \( -name '*.hpp' -o -name '*.cpp' -o -name '*.cuh' -o -name '*.cu' -o -name '*.h' \) \
  -not -path 'tests/data/*' 2> /dev/null | LC_ALL=C sort)
if [ "$fix" = 1 ]; then
  (cd "$root" && "$clang_format" -i --style=file "${files[@]}")
  echo "check_format: formatted ${#files[@]} files"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  (cd "$root" && "$clang_format" --style=file --dry-run -Werror "$f" > /dev/null 2>&1) || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  printf '%s\n' "${bad[@]}"
  echo "check_format: ${#bad[@]} of ${#files[@]} files differ from .clang-format (fix: tools/check_format.sh --fix)"
  exit 1
fi
echo "check_format: ${#files[@]} files formatted"
