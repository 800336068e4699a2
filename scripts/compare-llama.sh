#!/usr/bin/env bash
# Verify cost c(B) of dflash next to llama.cpp's on the same GGUF, same machine, same run.
#
#   scripts/compare-llama.sh MODEL.gguf [LLAMA_BIN_DIR]
#
# LLAMA_BIN_DIR holds llama-bench (a CPU build of llama.cpp; default $LLAMA_BIN or /work/llama-fork/build/bin).
# On an AMX CPU build llama.cpp with clang: a GCC 12 build's AMX kernel dies with SIGILL on batches > 1
# (tools/reference/README.md).
# Env: THREADS (default 2), BLOCKS (default 1,2,4,8,16), REPS (default 5), NGEN (decode tokens, default 32).
#
# c(B) = time of one forward of B tokens / time of one decoded token. llama.cpp: avg time of its
# "pp B" test (prompt of B tokens at depth 0) over its "tg NGEN" time per token; dflash: `dflash bench`
# (B tokens verified after a short prefill, all accepted). Decode tok/s of both is printed as well.
set -euo pipefail
model=${1:?usage: scripts/compare-llama.sh MODEL.gguf [LLAMA_BIN_DIR]}
bin=${2:-${LLAMA_BIN:-/work/llama-fork/build/bin}}
threads=${THREADS:-2}
blocks=${BLOCKS:-1,2,4,8,16}
reps=${REPS:-5}
ngen=${NGEN:-32}
here=$(cd "$(dirname "$0")/.." && pwd)
dflash=${DFLASH:-$here/build/bin/dflash}

[ -f "$model" ] || { echo "compare-llama: no such model file: $model" >&2; exit 2; }
[ -x "$bin/llama-bench" ] || {
  echo "compare-llama: $bin/llama-bench not found; build llama.cpp (CPU) and pass its bin directory" >&2; exit 2; }
[ -x "$dflash" ] || { echo "compare-llama: $dflash not found; run 'make build' first" >&2; exit 2; }

echo "model: $model   threads: $threads   blocks: $blocks" >&2
llama_err=$(mktemp)
trap 'rm -f "$llama_err"' EXIT
llama_csv=$(LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$bin/llama-bench" -m "$model" -p "$blocks" -n "$ngen" -r "$reps" -t "$threads" -o csv 2>"$llama_err" || true)
if [ "$(printf '%s\n' "$llama_csv" | wc -l)" -lt 2 ]; then
  # e.g. `dflash synth` files carry no tokenizer, and llama.cpp refuses a model without tokenizer.ggml.model.
  echo "compare-llama: llama-bench produced no results (it refuses files without tokenizer.ggml.model, such as dflash synth output; rerun it with -v to see why); its last messages:" >&2
  grep -i -E "error|fail" "$llama_err" | tail -n 3 >&2
  exit 1
fi
ours=$("$dflash" bench -m "$model" --blocks "$blocks" -t "$threads" --reps "$reps" -n "$ngen" \
  --no-bandwidth --json 2>/dev/null | tail -n 1)

# llama-bench CSV: columns n_prompt, n_gen, avg_ns located by header name.
echo "$llama_csv" | awk -F'","|^"|"$' -v ours="$ours" -v blocks="$blocks" '
  NR == 1 { gsub(/"/, ""); n = split($0, h, ","); for (i = 1; i <= n; i++) col[h[i]] = i + 1; next }
  { p = $col["n_prompt"]; g = $col["n_gen"]; ns = $col["avg_ns"];
    if (g > 0) tg_ns = ns / g; else pp_ns[p] = ns }
  END {
    if (!tg_ns) { print "compare-llama: llama-bench printed no tg result" > "/dev/stderr"; exit 1 }
    match(ours, /"decode_tok_s":[0-9.e+-]+/); dec = substr(ours, RSTART + 15, RLENGTH - 15)
    printf "%-6s %14s %14s\n", "", "llama.cpp", "dflash"
    printf "%-6s %14.2f %14.2f\n", "tok/s", 1e9 / tg_ns, dec
    nb = split(blocks, B, ",")
    for (i = 1; i <= nb; i++) {
      b = B[i]
      key = "\"" b "\":{\"c\":"
      at = index(ours, key); c = "-"
      if (at) { rest = substr(ours, at + length(key)); match(rest, /^[0-9.e+-]+/); c = sprintf("%.2f", substr(rest, 1, RLENGTH)) }
      printf "c(%s)%s %14s %14s\n", b, (b < 10 ? "  " : " "), (b in pp_ns) ? sprintf("%.2f", pp_ns[b] / tg_ns) : "-", c
    }
  }'
