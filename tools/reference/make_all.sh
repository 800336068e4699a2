#!/usr/bin/env bash
# Recreates every reference artefact: tiny HF checkpoints, their GGUFs (converted by the llama.cpp fork's
# own convert_hf_to_gguf.py) and the transformers / dflash goldens. See tools/reference/README.md.
#   tools/reference/make_all.sh [LLAMA_FORK_DIR]     (default /work/llama-fork; a checkout of
#   spiritbuun/buun-llama-cpp 1c4788192 - only its convert_hf_to_gguf.py and gguf-py are used)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
fork="${1:-/work/llama-fork}"
py="${DFLASH_REF_PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py=/work/main/tools/reference/.venv/bin/python
hf="$root/tests/data/hf"
out="$root/tests/data/gguf"
export PYTHONHASHSEED=0

"$py" "$here/make_tiny_models.py" --out "$hf"

mkdir -p "$out"
conv() {  # conv HF_NAME OUTTYPE OUT_NAME
  "$py" "$here/convert_with_fork.py" "$fork" "$hf/$1" --outtype "$2" --outfile "$out/$3.gguf" > "$out/.$3.log" 2>&1 \
    || { cat "$out/.$3.log"; exit 1; }
  rm -f "$out/.$3.log"
}
conv qwen35-dense-a f32 qwen35-dense-a
conv qwen35-dense-a f16 qwen35-dense-a-f16
conv qwen35-dense-vl f32 qwen35-dense-vl
conv qwen35-dense-odd-bf16 bf16 qwen35-dense-odd-bf16
conv qwen35moe-a f32 qwen35moe-a
conv dflash-b16-l1 f32 dflash-b16-l1
conv dflash-b8-l3 f32 dflash-b8-l3
conv dflash-b8-l2-moe f32 dflash-b8-l2-moe

(cd "$here" && "$py" make_goldens.py --hf "$hf" --out "$root/tests/golden/qwen35")
(cd "$here" && "$py" make_dflash_goldens.py --hf "$hf" --out "$root/tests/golden/dflash")
(cd "$here" && "$py" make_dflash_long_golden.py --hf "$hf" --out "$root/tests/golden/dflash")
du -sh "$hf" "$out" "$root/tests/golden/qwen35" "$root/tests/golden/dflash"
