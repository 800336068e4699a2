#!/bin/bash
# End-to-end smoke test of the training pipeline at toy scale (tiny corpus slice, tiny models, few steps).
# Every stage of the real pipeline runs once, including a pause + resume of target training and of data
# generation, and the two unit tests. Usage: tools/train/smoke.sh   (from anywhere; ~2.5 min CPU)
set -euo pipefail
cd "$(dirname "$0")"
P=${PYTHON:-/work/main/tools/reference/.venv/bin/python}
W=work/smoke
rm -rf "$W"
mkdir -p "$W"
export OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1
run() {
  echo "+ $*"
  if ! nice -n 19 "$P" "$@" > "$W/last.log" 2>&1; then
    cat "$W/last.log"; echo "smoke: FAILED: $*"; exit 1
  fi
  grep -v -E "Warning|warn\(|^\s*$" "$W/last.log" | tail -n 4 || true
}
t0=$(date +%s)

run corpus.py --out $W/corpus --max-docs 60 --no-prompts
run train_tokenizer.py --corpus $W/corpus --out $W/tokenizer --vocab-size 1024 --max-mb 2
T="--tokenizer $W/tokenizer --corpus $W/corpus --tokens $W/tokens --max-train-mb 1 --seq-len 64 --batch 4 \
   --eval-windows 8 --log-every 5 --eval-every 10 --ckpt-every 10"
# seed: 20 steps, interrupted after 10 and resumed with the same command
run train_target.py --out $W/seed --preset toy-seed $T --total-steps 20 --warmup 4 --max-steps-this-run 10
run train_target.py --out $W/seed --preset toy-seed $T --total-steps 20 --warmup 4
run grow.py --seed-model $W/seed/hf --preset toy-grown --out $W/grown --noise 1e-3
run train_target.py --out $W/grown_train --init-from $W/grown $T --total-steps 10 --warmup 2 --lr 3e-4
G="--target $W/grown_train/hf --tokens $W/tokens --prompt-min 16 --prompt-max 24 --gen-len 40 --batch 4"
run gen_data.py $G --out $W/gen --num-seqs 4
run gen_data.py $G --out $W/gen --num-seqs 8          # resumes after the first 4
run gen_data.py $G --out $W/gen_heldout --split heldout --num-seqs 4
run train_drafter.py --target $W/grown_train/hf --data $W/gen --heldout-data $W/gen_heldout --out $W/drafter \
    --layers 2 --num-anchors 8 --epochs 2 --seqs-per-step 2 --log-every 2 --eval-every 4 --ckpt-every 4
run eval_pair.py --target $W/grown_train/hf --drafter $W/drafter/hf --limit 1 --max-new-tokens 24 \
    --out $W/eval.json
run -m unittest test_grow test_drafter_batch

# checks: every stage left its output, resumed runs reached their totals, the HF exports load
test -s $W/corpus/manifest.json && test -s $W/tokenizer/tokenizer.json
grep -q '^20,' $W/seed/log.csv && grep -q '^10,' $W/grown_train/log.csv
test "$(stat -c %s $W/gen/index.bin)" = $((8 * 24))
test -s $W/drafter/hf/model.safetensors && test -s $W/drafter/hf/config.json && test -s $W/eval.json
"$P" - <<EOF
import json
c = json.load(open("$W/drafter/hf/config.json"))
assert c["architectures"] == ["DFlashDraftModel"] and c["dflash_config"]["block_size"] == 16, c
g = json.load(open("$W/grown_train/hf/config.json"))
assert g["architectures"] == ["Qwen3_5ForCausalLM"] and g["num_hidden_layers"] == 8 and g["tie_word_embeddings"], g
e = json.load(open("$W/eval.json"))
assert all(v["identical_to_ar"].split("/")[0] == v["identical_to_ar"].split("/")[1] for v in e.values()), e
print("smoke: outputs OK:", json.dumps(e))
EOF
echo "smoke: PASS in $(( $(date +%s) - t0 ))s"
