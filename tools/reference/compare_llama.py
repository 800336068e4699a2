#!/usr/bin/env python3
"""Compare llama.cpp (fork, via llama_check) with the transformers goldens on every tiny target GGUF.

Usage: compare_llama.py LLAMA_CHECK_BINARY [--gguf DIR] [--golden DIR]
Prints, per model: max |logit diff| (whole-prompt batch, incremental path, generated steps), relative to
max |logit|, and whether the 64-token greedy continuation is identical.
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import gguf

MODELS = [("qwen35-dense-a", "qwen35-dense-a"), ("qwen35-dense-a-f16", "qwen35-dense-a"),
          ("qwen35-dense-vl", "qwen35-dense-vl"), ("qwen35-dense-odd-bf16", "qwen35-dense-odd-bf16"),
          ("qwen35moe-a", "qwen35moe-a")]


def load_golden(path):
    r = gguf.GGUFReader(path)
    t = {x.name: np.array(x.data) for x in r.tensors}
    meta = {k: f.contents() for k, f in r.fields.items() if k.startswith("golden.")}
    return t, meta


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--gguf", default=os.path.join(here, "..", "..", "tests", "data", "gguf"))
    ap.add_argument("--golden", default=os.path.join(here, "..", "..", "tests", "golden", "qwen35"))
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for gguf_name, golden_name in MODELS:
            t, meta = load_golden(os.path.join(args.golden, golden_name + ".gguf"))
            prompt = t["prompt"].astype(int).tolist()
            n_gen = int(meta["golden.n_gen"])
            prefix = os.path.join(tmp, gguf_name)
            cmd = [args.binary, os.path.join(args.gguf, gguf_name + ".gguf"), prefix, str(n_gen),
                   str(int(meta["golden.n_prefill"]))] + [str(x) for x in prompt]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                results[gguf_name] = {"error": p.stderr[-2000:]}
                print(gguf_name, "FAILED", p.stderr[-500:])
                continue
            V = t["logits"].shape[1]
            lg = np.fromfile(prefix + ".logits", dtype=np.float32).reshape(-1, V)
            inc = np.fromfile(prefix + ".inc_logits", dtype=np.float32).reshape(-1, V)
            gl = np.fromfile(prefix + ".gen_logits", dtype=np.float32).reshape(-1, V)
            gen = np.loadtxt(prefix + ".gen_tokens", dtype=np.int64).reshape(-1)
            ref_gen = t["gen.tokens"].astype(np.int64)
            scale = float(np.abs(t["logits"]).max())
            same = bool((gen == ref_gen).all())
            first_diff = None if same else int(np.argmax(gen != ref_gen))
            n_cmp = n_gen if same else first_diff  # generated-step logits comparable up to the first divergence
            res = {
                "logits_max_abs_diff": float(np.abs(lg - t["logits"]).max()),
                "inc_logits_max_abs_diff": float(np.abs(inc - t["inc.logits"]).max()),
                "gen_logits_max_abs_diff": float(np.abs(gl[:n_cmp] - t["gen.logits"][:n_cmp]).max()) if n_cmp else None,
                "logit_scale": scale,
                "prompt_argmax_equal": bool((lg.argmax(-1) == t["logits"].argmax(-1)).all()),
                "greedy_64_identical": same,
                "first_divergence": first_diff,
            }
            results[gguf_name] = res
            print(gguf_name, json.dumps(res))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
