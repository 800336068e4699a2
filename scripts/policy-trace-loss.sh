#!/usr/bin/env bash
# What the adaptive policy's drafting rounds cost where plain decoding is best, from a per-round trace:
# every drafting round's time minus what plain decoding would have taken for the tokens it committed
# (the median plain round of the trace each). Host speed drifts cancel (both sides come from the same
# rounds), unlike a tok/s ratio between two configurations of `dflash bench`, which moves by ±5 % here
# even between two identical ones.
#
#   DFLASH_LOG=debug build/bin/dflash bench -m T.gguf -md D.gguf --prompts P.txt --adaptive ... 2> trace.txt
#   scripts/policy-trace-loss.sh trace.txt
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 TRACE (stderr of a DFLASH_LOG=debug run)" >&2; exit 2; }
rounds="$(grep 'policy round' "$1" | sed 's/.*policy round [0-9]*: block \([0-9]*\), \([0-9]*\) accepted, \([0-9.]*\) ms/\1 \2 \3/')"
[ -n "$rounds" ] || { echo "$1: no 'policy round' lines (run with DFLASH_LOG=debug and --adaptive)" >&2; exit 1; }
med="$(awk '$1 == 1 {print $3}' <<<"$rounds" | sort -g | awk '{a[NR] = $1} END {print NR ? a[int((NR + 1) / 2)] : 0}')"
awk -v med="$med" '{ if ($1 == 1) { tp += $3; np++ } else { td += $3; tok += $2 + 1; nd++ } }
  END { printf "plain: %d rounds, median %.3f ms, %.1f ms in all\n", np, med, tp;
        printf "drafting: %d rounds, %.1f ms for %d tokens (plain decoding: %.1f ms)\n", nd, td, tok, tok * med;
        printf "drafting loss: %.1f ms = %.2f %% of the decode time\n", td - tok * med, 100 * (td - tok * med) / (tp + td) }' <<<"$rounds"
