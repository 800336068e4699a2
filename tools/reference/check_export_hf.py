#!/usr/bin/env python3
"""By-hand check of `dflash export-hf` with the DFlash authors' own class (dflash 0.1.0).

For each tiny drafter fixture: export tests/data/gguf/<drafter>.gguf with the dflash binary, load the
export and the original (tests/data/hf/<drafter>/) with DFlashDraftModel.from_pretrained, and compare
  * the state dicts (names, shapes, values: bit-identical expected, the GGUFs are F32 like the originals),
  * draft logits: the same context features, block tokens (anchor + mask tokens, target embeddings) and
    positions through both drafters, then the target's lm_head (the authors' compute_logits),
  * a short dflash_generate run with the real tiny target: same tokens and acceptance lengths.
Nothing here is needed by the C++ build or tests; it is the Python-side confirmation that the exported
directory is what the authors' code (and so vLLM / SGLang, which read the same layout) expect.

Usage: tools/reference/.venv/bin/python tools/reference/check_export_hf.py [--dflash build/bin/dflash]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM

import dflash.model as dm
from dflash.model import DFlashDraftModel

dm._cuda_time = time.perf_counter  # dflash_generate(return_stats=True) assumes CUDA

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PAIRS = {"dflash-b16-l1": "qwen35-dense-a", "dflash-b8-l3": "qwen35-dense-a", "dflash-b8-l2-moe": "qwen35moe-a"}
TARGET_LAYERS = {"qwen35-dense-a": 6, "qwen35moe-a": 4}


def draft_logits(drafter, target, features, block_ids, positions):
    emb = target.get_input_embeddings().weight
    noise = torch.nn.functional.embedding(block_ids, emb)
    hidden = drafter(target_hidden=features, noise_embedding=noise, position_ids=positions, use_cache=False)
    return drafter.compute_logits(hidden, dm._output_head(target))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dflash", default=os.path.join(ROOT, "build", "bin", "dflash"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, tname in PAIRS.items():
            out = os.path.join(tmp, name)
            cmd = [args.dflash, "export-hf", "-q", os.path.join(ROOT, "tests", "data", "gguf", name + ".gguf"), out,
                   "--num-target-layers", str(TARGET_LAYERS[tname])]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            orig_dir = os.path.join(ROOT, "tests", "data", "hf", name)
            orig = DFlashDraftModel.from_pretrained(orig_dir, dtype=torch.float32).eval()
            exp = DFlashDraftModel.from_pretrained(out, dtype=torch.float32).eval()
            target = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "tests", "data", "hf", tname),
                                                          dtype=torch.float32).eval()

            so, se = orig.state_dict(), exp.state_dict()
            same_names = sorted(so) == sorted(se)
            max_w = max((so[k] - se[k]).abs().max().item() for k in so) if same_names else float("nan")
            attrs = {a: (getattr(orig, a), getattr(exp, a)) for a in ("target_layer_ids", "mask_token_id", "block_size")}

            n_ctx, b = 13, orig.block_size
            feats = torch.randn(1, n_ctx, len(orig.target_layer_ids) * orig.config.hidden_size)
            block = torch.full((1, b), orig.mask_token_id, dtype=torch.long)
            block[0, 0] = 17
            pos = torch.arange(n_ctx + b).unsqueeze(0)
            with torch.inference_mode():
                lo = draft_logits(orig, target, feats, block, pos)
                le = draft_logits(exp, target, feats, block, pos)
            max_l = (lo - le).abs().max().item()

            prompt = torch.randint(0, 474, (1, 12))
            with torch.inference_mode():
                go = dm.dflash_generate(orig, target, prompt, 24, None, block_size=b, return_stats=True)
                ge = dm.dflash_generate(exp, target, prompt, 24, None, block_size=b, return_stats=True)
            same_gen = torch.equal(go.output_ids, ge.output_ids) and go.acceptance_lengths == ge.acceptance_lengths

            cfg = json.load(open(os.path.join(out, "config.json")))
            good = same_names and max_w == 0.0 and max_l == 0.0 and same_gen
            ok &= good
            print(f"{name}: {len(se)} tensors, names {'same' if same_names else 'DIFFER'}, max |dW| {max_w:g}, "
                  f"draft logits [{b} x {lo.shape[-1]}] max |d| {max_l:g}, dflash_generate tokens+acceptance "
                  f"{'identical' if same_gen else 'DIFFER'} ({go.acceptance_lengths}); "
                  f"attrs orig/export {attrs}; exported theta {cfg['rope_parameters']['rope_theta']:g}"
                  f" -> {'OK' if good else 'MISMATCH'}")
    print("ALL OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
