#!/usr/bin/env bash
# The main job (`make run`): DFlash generation with the model pair the repository ships (models/, a
# 110 M-parameter Qwen3.5-architecture target and its DFlash drafter, trained by tools/train) on a
# held-out code prompt. Prints the text, then plain decoding vs DFlash on the same prompt in the same
# run: tok/s, speed-up, mean accepted length τ, and whether the two outputs are identical.
set -euo pipefail
build="${1:-build}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/models/dflash-demo-110m-Q8_0.gguf"
draft="$root/models/dflash-demo-110m-drafter-Q8_0.gguf"
for f in "$target" "$draft"; do
  if [ ! -s "$f" ]; then
    echo "run-demo: $f is missing; it is committed with the repository (git lfs is not used) -" \
         "check out the full tree (git checkout -- models/)" >&2
    exit 1
  fi
done
threads="${DFLASH_THREADS:-$(nproc)}"
[ "$threads" -gt 2 ] && threads=2  # the figures in models/README.md are for 2 threads
echo "== DFlash on the embedded pair: $(basename "$target") + $(basename "$draft"), $threads threads"
echo
# A held-out prompt (bench/prompts/code.txt: signatures + docstrings the models never saw).
prompt="$(printf '%b' "$(sed -n 4p "$root/bench/prompts/code.txt")")"$'\n'
DFLASH_LOG=error "$build/bin/dflash" run -m "$target" -md "$draft" -p "$prompt" -n 160 -t "$threads" --compare
echo
echo "== the same prompt, block size chosen per round from measured costs and acceptance (--adaptive)"
DFLASH_LOG=error "$build/bin/dflash" run -m "$target" -md "$draft" -p "$prompt" -n 160 -t "$threads" --compare \
  --adaptive -q 2>&1 | tail -n 1
echo "== the same prompt, n-gram lookup drafting from the prompt and output, no drafter model (--lookup 3 --adaptive)"
DFLASH_LOG=error "$build/bin/dflash" run -m "$target" -p "$prompt" -n 160 -t "$threads" --compare \
  --lookup 3 --adaptive -q 2>&1 | tail -n 1
echo "== the same prompt, DFlash + lookup: full 3-gram matches draft by lookup, other rounds by the drafter, each kind with its own adaptive policy (--lookup 3 --lookup-hybrid --adaptive)"
DFLASH_LOG=error "$build/bin/dflash" run -m "$target" -md "$draft" -p "$prompt" -n 160 -t "$threads" --compare \
  --lookup 3 --lookup-hybrid --adaptive -q 2>&1 | tail -n 1
echo
echo "(On a CPU a 16-token verify costs several decodes — 'dflash bench -m $(basename "$target")' prints c(B) —"
echo " so DFlash pays only when τ exceeds that cost; models/README.md has this pair's τ and the per-block table.)"
