#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in build-fuzz and runs one of them.
#   scripts/fuzz.sh [gguf_fuzz|safetensors_fuzz|tokenizer_fuzz|chat_template_fuzz|server_request_fuzz] [seconds]  (default: gguf_fuzz, 600 s)
# The seed corpus is fuzz/corpus/<target>/ (committed); new inputs go to build-fuzz/corpus/<target>/
# and crashes to build-fuzz/crashes/<target>/. Keep a crashing input as a regression test under
# tests/data/gguf/regress/ (or tests/data/safetensors/regress/).
set -euo pipefail
target="${1:-gguf_fuzz}"
seconds="${2:-600}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-fuzz"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DDFLASH_FUZZ=ON -DDFLASH_BUILD_TESTS=OFF -DDFLASH_BUILD_BENCH=OFF
fi
cmake --build "$build" -j 2 --target "$target"
mkdir -p "$build/corpus/$target" "$build/crashes/$target" "$root/fuzz/corpus/$target"
cd "$build/crashes/$target"
exec "$build/bin/$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$build/corpus/$target" "$root/fuzz/corpus/$target"
