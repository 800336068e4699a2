#!/usr/bin/env python3
"""Cross-check `dflash gen-data` output against transformers (the reference target):
  * each sequence's response is the HF model's greedy continuation of its prompt (HF generate, T = 0)
  * features.bin rows equal dflash.model.extract_context_feature(hidden_states, layer_ids) of one HF
    forward over the whole sequence (fp16 storage: compared with a relative tolerance)
Usage: check_engine_data.py --target work/seed/hf --data GEN_DIR [--limit 8]
Exit status 1 on any mismatch, so it can gate a training run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import read_json, set_threads  # noqa: E402
from gen_data import load_dataset  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--feature-tol", type=float, default=2e-3, help="max |d| / max |ref| per sequence")
    args = ap.parse_args()
    set_threads(args.threads)
    import torch
    from dflash.model import extract_context_feature
    from transformers import Qwen3_5ForCausalLM

    model = Qwen3_5ForCausalLM.from_pretrained(str(args.target), dtype=torch.float32).eval()
    toks, idx = load_dataset(args.data)
    meta_path = args.data / "features.json"
    meta = read_json(meta_path) if meta_path.exists() else None
    feats = None
    if meta:
        total = int(idx[-1, 0] + idx[-1, 1])
        feats = np.memmap(args.data / "features.bin", dtype=np.float16, mode="r", shape=(total, meta["width"]))
    bad = 0
    for i in range(min(args.limit, len(idx))):
        off, n, plen = (int(v) for v in idx[i])
        seq = np.asarray(toks[off: off + n], dtype=np.int64)
        with torch.no_grad():
            gen = model.generate(torch.from_numpy(seq[:plen])[None], max_new_tokens=n - plen, do_sample=False,
                                 use_cache=True, eos_token_id=None, pad_token_id=0).numpy()[0]
        same = np.array_equal(gen[:n], seq)
        first_diff = int(np.argmax(gen[:n] != seq)) if not same else -1
        line = f"seq {i}: {n - plen} response tokens, greedy {'identical' if same else f'differs at {first_diff}'}"
        bad += not same
        if feats is not None:
            with torch.no_grad():
                out = model(input_ids=torch.from_numpy(seq)[None], output_hidden_states=True, use_cache=False)
            ref = extract_context_feature(out.hidden_states, list(meta["target_layer_ids"]))[0].numpy()
            got = np.asarray(feats[off: off + n], dtype=np.float32)
            rel = float(np.abs(got - ref).max() / max(1e-12, np.abs(ref).max()))
            line += f", features max rel {rel:.2e}"
            bad += rel > args.feature_tol
        print(line, flush=True)
    print("check_engine_data: " + ("OK" if bad == 0 else f"{bad} MISMATCHES"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
