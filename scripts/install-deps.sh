#!/usr/bin/env bash
# Installs the build and test dependencies from Debian 12 packages. Idempotent: does nothing when
# everything is present. Works as root on a fresh machine; uses sudo otherwise.
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev          # libFuzzer and sanitizer runtimes
  libhwy-dev                         # Highway SIMD (runtime dispatch)
  nlohmann-json3-dev libcpp-httplib-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libpcre2-dev libutf8proc-dev       # pre-tokenizer regex, NFC normalisation
  zlib1g-dev                         # tokenizer tests: gzip-compressed corpus and vocab
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
