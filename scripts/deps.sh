#!/usr/bin/env bash
# Installs the Debian packages redraft builds with, only those missing. Idempotent; uses sudo
# only when not root. Extra package names given as arguments are installed too (scripts/test.sh
# asks for clang and its sanitizer / libFuzzer runtimes this way).
set -euo pipefail
packages=(cmake g++ make python3 libeigen3-dev catch2 nlohmann-json3-dev libbenchmark-dev clang-format-14 "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
