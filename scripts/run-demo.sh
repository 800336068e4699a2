#!/usr/bin/env bash
# The main job. Until the trained embedded model pair lands (issue 12), it runs the whole DFlash path
# on the tiny reference pair of the test suite (random weights: the text is noise and the drafter
# accepts little, but every stage runs: GGUF loading, tokenizer, drafter, verify, rollback), plain
# decoding and DFlash on the same prompt, and checks that both outputs are identical.
set -euo pipefail
build="${1:-build}"
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -f "$build/demo.gguf" ]; then cmake --build "$build" --target demo_gguf; fi
echo "== dflash info (a GGUF the build writes; first lines)"
"$build/bin/dflash" info "$build/demo.gguf" | sed -n 1,12p
echo
echo "== DFlash vs plain decoding on the tiny reference pair (random weights)"
DFLASH_LOG=error "$build/bin/dflash" run \
  -m "$root/tests/data/gguf/qwen35-dense-a.gguf" -md "$root/tests/data/gguf/dflash-b8-l3.gguf" \
  -p "def fibonacci(n):" -n 64 --compare
