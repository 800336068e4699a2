#!/bin/bash
# From a trained seed target to the shipped pair under models/: grow → convert → quantise the target,
# engine-made drafter data (dflash gen-data with features), drafter training, convert → quantise the
# drafter, then the pair benchmark. Each stage is skipped when its output exists, and the two long ones
# (gen-data, train_drafter) resume themselves, so rerunning the same command continues after a stop.
#
#   tools/train/build_pair.sh SEED_HF_DIR            (from anywhere; the engine must be built: make build)
#
# Knobs (environment): THREADS (2), SEQS (1600 train prompts), GEN (256 new tokens each), LAYERS (3),
# EPOCHS (8), DRAFT_MINUTES (80, train_drafter --max-minutes), BF16 (1: --bf16 autocast), NAME (dflash-demo-110m).
# The shipped drafter (session 6) is these defaults: ~26 min of gen-data, 80 min of training on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seed="$(cd "${1:?usage: build_pair.sh SEED_HF_DIR}" && pwd)"
P="${PYTHON:-$root/tools/reference/.venv/bin/python}"
D="${DFLASH:-$root/build/bin/dflash}"
W="${DFLASH_TRAIN_WORK:-$here/work}"
THREADS=${THREADS:-2} SEQS=${SEQS:-1600} GEN=${GEN:-256} LAYERS=${LAYERS:-3} EPOCHS=${EPOCHS:-8}
DRAFT_MINUTES=${DRAFT_MINUTES:-80} NAME=${NAME:-dflash-demo-110m} BF16=${BF16:-1}
target="$root/models/$NAME-Q8_0.gguf"
draft="$root/models/$NAME-drafter-Q8_0.gguf"
cd "$here"
mkdir -p "$root/models" "$W"
say() { echo "== $(date +%H:%M:%S) $*"; }

if [ ! -f "$W/pair-grown/model.safetensors" ]; then
  say "grow $seed"
  "$P" grow.py --seed-model "$seed" --preset grown --out "$W/pair-grown" --noise 1e-3 --threads "$THREADS"
fi
if [ ! -f "$target" ]; then
  say "convert + quantise the target"
  "$D" convert "$W/pair-grown" "$W/pair-target-f32.gguf" --outtype f32 --force
  "$D" quantize "$W/pair-target-f32.gguf" "$target" Q8_0
fi
# The corpus token stream the prompts are cut from (deterministic; a fresh checkout has none). The first
# 60 MB of training text, as for the shipped drafter's data (prompts are drawn by seeded index from it).
if [ ! -f "$W/tokens/train.bin" ]; then
  say "corpus + token stream"
  "$P" corpus.py --out "$W/corpus"
  "$P" -c "from pathlib import Path; from data import encode_corpus; encode_corpus(Path('$W/corpus'), Path('$seed'), Path('$W/tokens'), 60.0)"
fi
# Prompts come from the corpus token stream (train split for training, held-out split for evaluation);
# the target's greedy continuations and its hidden states at the drafter's layers come from the engine.
layers=$("$P" -c "from dflash.model import build_target_layer_ids as f; print(','.join(map(str, f(16, $LAYERS))))")
for split in train heldout; do
  out="$W/pair-gen-$split"; n=$SEQS
  [ "$split" = heldout ] && n=32
  [ -f "$out/prompts/index.bin" ] || "$P" gen_data.py --prompts-only --tokenizer-dir "$W/pair-grown" \
      --tokens "$W/tokens" --split "$split" --out "$out/prompts" --num-seqs "$n" --gen-len "$GEN"
  say "gen-data $split ($n prompts, features at layers $layers)"
  "$D" gen-data -m "$target" --prompts "$out/prompts" -o "$out" -n "$GEN" --features "$layers" -t "$THREADS" --parallel 16
done
say "train the drafter ($LAYERS layers, $EPOCHS epochs, at most $DRAFT_MINUTES min this run)"
"$P" train_drafter.py --target "$target" --data "$W/pair-gen-train" --heldout-data "$W/pair-gen-heldout" \
  --out "$W/pair-drafter" --layers "$LAYERS" --num-anchors 64 --epochs "$EPOCHS" --seqs-per-step 4 \
  --threads "$THREADS" --max-minutes "$DRAFT_MINUTES" $([ "$BF16" = 1 ] && echo --bf16) | tee "$W/pair-drafter.out"
# A paused drafter is still a usable checkpoint: it is converted and benchmarked, and the message says so.
grep -q "train_drafter: done" "$W/pair-drafter.out" ||
  echo "build_pair: the drafter paused before the end of its schedule; rerun the same command to continue it"
say "convert + quantise the drafter"
"$D" convert "$W/pair-drafter/hf" "$W/pair-drafter-f32.gguf" --outtype f32 --tokenizer-from "$W/pair-grown" --force
"$D" quantize "$W/pair-drafter-f32.gguf" "$draft" Q8_0 --force
say "bench"
"$D" bench -m "$target" -md "$draft" --prompts "$root/bench/prompts/code.txt" --pair-blocks 4,8,16 --adaptive -t "$THREADS"
