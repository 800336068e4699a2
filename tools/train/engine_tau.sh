#!/bin/bash
# τ of the engine's DFlash loop (T = 0) on the prompts of a gen-data directory: for each of the first N prompts,
# `dflash run --tokens PROMPT -n GEN --block-size B` with the shipped pair (or TARGET / DRAFT), then the overall
# tokens per round (Σ tokens / Σ rounds). The model card's "measured by the engine" figure:
#
#   tools/train/engine_tau.sh tools/train/work/pair-gen-heldout [N=8] [GEN=255] [B=16]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
data="${1:?usage: engine_tau.sh GEN_DATA_DIR [N] [GEN] [B]}"
n="${2:-8}" gen="${3:-255}" block="${4:-16}"
P="${PYTHON:-$root/tools/reference/.venv/bin/python}"
D="${DFLASH:-$root/build/bin/dflash}"
target="${TARGET:-$root/models/dflash-demo-110m-Q8_0.gguf}"
draft="${DRAFT:-$root/models/dflash-demo-110m-drafter-Q8_0.gguf}"
"$P" - "$data" "$n" <<'PY' |
import sys, numpy as np
d, n = sys.argv[1], int(sys.argv[2])
t = np.fromfile(f"{d}/prompts/tokens.bin", dtype="<u2")
ix = np.fromfile(f"{d}/prompts/index.bin", dtype="<i8").reshape(-1, 3)
for off, ln, pl in ix[:n]:
    print(",".join(map(str, t[off:off + pl])))
PY
while read -r ids; do
  DFLASH_LOG=error "$D" run -m "$target" -md "$draft" --tokens "$ids" -n "$gen" --block-size "$block" -t "${THREADS:-2}" -q 2>&1 |
    grep -o "tau [0-9.]* over [0-9]*"
done | awk '{print; t += $2 * $4; r += $4} END {if (r) printf "overall tau %.2f over %d rounds\n", t / r, r}'
