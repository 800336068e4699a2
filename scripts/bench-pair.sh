#!/usr/bin/env bash
# The speed table of models/README.md: plain decoding vs DFlash on the shipped pair, in one process per row
# (`dflash bench` pair mode, T = 0, held-out prompts of bench/prompts/): the drafter's block (16), fixed
# blocks 2/4/8 and the adaptive policy, n-gram lookup drafting (no drafter; block 16 and adaptive), DFlash +
# lookup (full 3-gram matches draft by lookup, the other rounds by the drafter; block B and adaptive), with τ
# for each, and whether every output equals plain decoding. The adaptive columns also give what their
# drafting rounds cost against plain decoding in the same rounds, as a share of their decode time
# (`adaptive_drafting_loss`; negative: what drafting saved).
#
#   scripts/bench-pair.sh [N_PREDICT]        (needs jq: apt-get install jq)
#
# Rows: code prompts; prose prompts; code prompts in the chat template; code prompts with both models at
# Q4_K_M (quantised from the Q8_0 files into $TMPDIR on the fly). Env: THREADS (2), BUILD (build),
# TARGET / DRAFT (another pair), LIMIT (only the first LIMIT prompts of each file; 0 = all), REPS (runs of every
# configuration per prompt, interleaved, fastest counts: 3; `dflash bench --pair-reps`).
# JSON of every row goes to ${OUT:-bench-pair.jsonl}.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-96}"
threads="${THREADS:-2}"
dflash="$root/${BUILD:-build}/bin/dflash"
out="${OUT:-bench-pair.jsonl}"
target="${TARGET:-$root/models/dflash-demo-110m-Q8_0.gguf}"
draft="${DRAFT:-$root/models/dflash-demo-110m-drafter-Q8_0.gguf}"
command -v jq >/dev/null || { echo "bench-pair: jq is needed (apt-get install jq)" >&2; exit 2; }
[ -x "$dflash" ] || { echo "bench-pair: $dflash not found; run 'make build' first" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
DFLASH_LOG=error "$dflash" quantize "$target" "$tmp/t-q4km.gguf" Q4_K_M --allow-requantize >/dev/null
DFLASH_LOG=error "$dflash" quantize "$draft" "$tmp/d-q4km.gguf" Q4_K_M --allow-requantize >/dev/null
: > "$out"
limit="${LIMIT:-0}"
reps="${REPS:-3}"
row() {  # name, target, draft, prompts, extra args
  local name="$1" t="$2" d="$3" p="$4"; shift 4
  if [ "$limit" -gt 0 ]; then head -n "$limit" "$p" > "$tmp/prompts.txt"; p="$tmp/prompts.txt"; fi
  echo "bench-pair: $name ..." >&2
  DFLASH_LOG=error "$dflash" bench -m "$t" -md "$d" --prompts "$p" -n "$n" -t "$threads" \
    --pair-blocks 2,4,8 --adaptive --lookup 3 --pair-reps "$reps" --json "$@" | tail -n 1 | jq -c --arg name "$name" '. + {row: $name}' >> "$out"
}
row "code, Q8_0" "$target" "$draft" "$root/bench/prompts/code.txt"
row "prose, Q8_0" "$target" "$draft" "$root/bench/prompts/prose.txt"
row "code, chat template, Q8_0" "$target" "$draft" "$root/bench/prompts/code.txt" --chat --no-think
row "code, Q4_K_M" "$tmp/t-q4km.gguf" "$tmp/d-q4km.gguf" "$root/bench/prompts/code.txt"
echo "| prompts ($( [ "$limit" -gt 0 ] && echo "first $limit, " )$n new tokens each, $threads threads, best of $reps) | AR tok/s | DFlash at the drafter's block B: tok/s (speed-up, τ) | B=8 | B=4 | B=2 | adaptive | lookup B=16 | lookup adaptive | DFlash+lookup B | DFlash+lookup adaptive | identical |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
jq -r '"| \(.row) | \(.ar_tok_s*10|round/10) | B=\(.block_size): \(.dflash_tok_s*10|round/10) (\(.speedup*100|round/100)×, τ \(.tau*100|round/100)) | " +
  ([("8","4","2") as $b | "\(.fixed_block_tok_s[$b]*10|round/10) (τ \(.fixed_block_tau[$b]*100|round/100))"] | join(" | ")) +
  " | \(.adaptive_tok_s*10|round/10) (τ \(.adaptive_tau*100|round/100), drafting \(.adaptive_drafting_loss*1000|round/10) %)" +
  " | \(.lookup_tok_s*10|round/10) (τ \(.lookup_tau*100|round/100)) | \(.lookup_adaptive_tok_s*10|round/10) (τ \(.lookup_adaptive_tau*100|round/100))" +
  " | \(.hybrid_tok_s*10|round/10) (τ \(.hybrid_tau*100|round/100)) | \(.hybrid_adaptive_tok_s*10|round/10) (τ \(.hybrid_adaptive_tau*100|round/100), drafting \(.hybrid_adaptive_drafting_loss*1000|round/10) %) | \(.identical) |"' "$out"
