#!/usr/bin/env python3
"""Long-context drafter golden (> 8192 context tokens), computed with the authors' package (dflash 0.1.0).

Public engines have lost acceptance exactly when the drafter's context passed a fixed buffer size (4096 /
8192 rows). This golden checks that our drafter's draft logits still equal the reference after more than
8192 context rows, at RoPE positions past 8192.

To keep the file small the context features are not stored: they are a pure function of (position t,
feature index i) that both sides compute exactly (integers → float32 values k/128 − 0.99609375, exact in
any float format):
    k = (t * 7919 + i * 104729 + (t * i) % 613) % 256,   f = (k − 127.5) / 128
Steps (one growing drafter cache, cropped back to the committed length after each draft as dflash_generate
does): append 9000 rows then draft a block; append 300 more then draft again.

Writes tests/golden/dflash/long-context.gguf: for each drafter D and step s, `D.step.s.{tokens,positions,
logits}` (logits of the block rows 1..B−1, like dflash_generate uses) and metadata `golden.D.steps` (rows
appended before each step).
"""
import argparse
import os

import numpy as np
import torch
from transformers import AutoModelForCausalLM

import dflash.model as dm
from dflash.model import DFlashDraftModel

import gguf_golden as gg

DRAFTERS = {"dflash-b16-l1": "qwen35-dense-a", "dflash-b8-l3": "qwen35-dense-a"}
STEPS = [9000, 300]


def features(t0, n, F):
    t = np.arange(t0, t0 + n, dtype=np.int64)[:, None]
    i = np.arange(F, dtype=np.int64)[None, :]
    k = (t * 7919 + i * 104729 + (t * i) % 613) % 256
    return ((k.astype(np.float32) - np.float32(127.5)) / np.float32(128.0)).astype(np.float32)


@torch.inference_mode()
def run(root, drafter, target, tensors, meta, seed):
    tgt = AutoModelForCausalLM.from_pretrained(os.path.join(root, target), dtype=torch.float32).eval()
    dr = DFlashDraftModel.from_pretrained(os.path.join(root, drafter), dtype=torch.float32).eval()
    F = dr.config.hidden_size * len(dr.target_layer_ids)
    B = dr.block_size
    head = dm._output_head(tgt)
    cache = dm._make_cache(dr.config)
    g = torch.Generator().manual_seed(seed)
    committed = 0
    for s, n_ctx in enumerate(STEPS):
        feats = torch.from_numpy(features(committed, n_ctx, F))[None]
        anchor = int(torch.randint(0, 474, (1,), generator=g))
        block = torch.full((1, B), dr.mask_token_id, dtype=torch.long)
        block[0, 0] = anchor
        start = committed + n_ctx
        positions = torch.arange(committed, start + B)[None]
        noise = dm._raw_input_embeddings(tgt, block, float(dm._draft_value(dr.config, "input_embedding_scale", 1.0)))
        hidden = dr(target_hidden=feats, noise_embedding=noise, position_ids=positions,
                    past_key_values=cache, use_cache=True)
        logits = dr.compute_logits(hidden, head)
        dm._crop_to(cache, start)
        assert cache.get_seq_length() == start
        committed = start
        pre = f"{drafter}.step.{s}."
        tensors[pre + "tokens"] = block[0].numpy().astype(np.int32)
        tensors[pre + "positions"] = positions[0, -B:].numpy().astype(np.int32)
        tensors[pre + "logits"] = logits[0, 1:].numpy()
        print(drafter, "step", s, "context", start, "argmax", logits[0, 1:].argmax(-1).tolist())
    meta[f"golden.{drafter}.steps"] = list(STEPS)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", default=os.path.join(here, "..", "..", "tests", "data", "hf"))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "golden", "dflash"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tensors, meta = {}, {
        "golden.drafters": list(DRAFTERS),
        "golden.features": "k = (t*7919 + i*104729 + (t*i) % 613) % 256; f = (k - 127.5) / 128",
        "golden.generator": "dflash 0.1.0 (dflash/model.py), transformers "
                            + __import__("transformers").__version__ + ", torch " + torch.__version__,
    }
    for n, (drafter, target) in enumerate(DRAFTERS.items()):
        run(os.path.abspath(args.hf), drafter, target, tensors, meta, 77 + n)
    gg.write(os.path.join(os.path.abspath(args.out), "long-context.gguf"), meta, tensors)


if __name__ == "__main__":
    main()
