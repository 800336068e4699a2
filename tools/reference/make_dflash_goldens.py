#!/usr/bin/env python3
"""Goldens for the tiny DFlash drafters, computed with the authors' package (dflash 0.1.0, dflash/model.py).

Writes tests/golden/dflash/<drafter>.gguf (layout: tools/reference/README.md, "Drafter goldens"):
  * oracle traces: the same loop with the drafter's proposals replaced by a fixed rule so that every
    accepted length 1..B occurs (see OracleDraft);
  * draft logits for given context features over several append steps (drafter KV cache grows, is cropped
    back to the committed length after each draft exactly as dflash_generate does);
  * full greedy decode traces of dflash_generate on the tiny target + drafter pair, for several prompts and
    block sizes: committed tokens and the accepted length of every round. Two traces per case:
      - "exact": dflash_generate with the target cache rollback made exact (see below) - what a lossless
        engine must reproduce; its tokens equal the AR greedy tokens (asserted);
      - "raw":   dflash_generate as shipped. With a Qwen3.5 (hybrid) target it is NOT lossless in this
        environment: DynamicCache.crop() rolls back attention KV and conv windows but not the DeltaNet
        recurrent state, so rejected draft tokens stay folded into the state. Kept only to document that.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM

import dflash.model as dm
from dflash.model import DFlashDraftModel

import gguf_golden as gg

# dflash_generate calls torch.cuda.synchronize() when return_stats=True; on a CPU build use a plain clock.
dm._cuda_time = time.perf_counter

PAIRS = {
    # drafter: (target, [(trace name, prompt seed, prompt length, block size, max_new, stop at AR token #)])
    "dflash-b16-l1": ("qwen35-dense-a", [("p0_b16", 11, 9, 16, 64, None), ("p1_b16", 12, 21, 16, 64, None),
                                         ("p1_b5", 12, 21, 5, 64, None)]),
    "dflash-b8-l3": ("qwen35-dense-a", [("p0_b8", 21, 17, 8, 64, None), ("p1_b8_stop", 22, 30, 8, 64, 40),
                                        ("p2_b3", 23, 12, 3, 48, None)]),
    "dflash-b8-l2-moe": ("qwen35moe-a", [("p0_b8", 31, 14, 8, 64, None), ("p1_b8", 32, 25, 8, 64, None)]),
}
# Oracle-draft traces: dflash_generate with the drafter's proposals replaced by a fixed rule (below), so that
# every accepted length 1..B occurs with the real target, exact rollback and feature appending.
# drafter: [(case, prompt seed, prompt length, block size, max_new)]
ORACLE = {
    "dflash-b8-l3": [("oracle_b8", 41, 19, 8, 80)],
    "dflash-b16-l1": [("oracle_b16", 42, 10, 16, 140)],
    "dflash-b8-l2-moe": [("oracle_b8", 43, 15, 8, 80)],
}
# Draft-logit steps: (new context tokens, block length). The last one is a short block like the final
# round of dflash_generate near max_new_tokens.
STEPS = [(11, None), (3, None), (1, None), (None, None), (2, 3)]


def load_pair(root, drafter, target):
    tgt = AutoModelForCausalLM.from_pretrained(os.path.join(root, target), dtype=torch.float32).eval()
    dr = DFlashDraftModel.from_pretrained(os.path.join(root, drafter), dtype=torch.float32).eval()
    return tgt, dr


@torch.inference_mode()
def draft_steps(tgt, dr, seed):
    """Drafter forward over several append steps with one growing cache."""
    g = torch.Generator().manual_seed(seed)
    H = dr.config.hidden_size
    F = H * len(dr.target_layer_ids)
    B = dr.block_size
    cache = dm._make_cache(dr.config)
    committed = 0
    tensors, meta_steps = {}, []
    head = dm._output_head(tgt)
    for s, (n_ctx, blen) in enumerate(STEPS):
        n_ctx = B if n_ctx is None else n_ctx          # "all B accepted": B new context rows
        blen = B if blen is None else blen
        feats = torch.randn((1, n_ctx, F), generator=g)
        anchor = int(torch.randint(0, 474, (1,), generator=g))
        block = torch.full((1, blen), dr.mask_token_id, dtype=torch.long)
        block[0, 0] = anchor
        start = committed + n_ctx                       # position of the block's first row (the anchor)
        positions = torch.arange(committed, start + blen)[None]
        noise = dm._raw_input_embeddings(tgt, block, float(dm._draft_value(dr.config, "input_embedding_scale", 1.0)))
        hidden = dr(target_hidden=feats, noise_embedding=noise, position_ids=positions,
                    past_key_values=cache, use_cache=True)
        logits = dr.compute_logits(hidden, head)
        dm._crop_to(cache, start)
        assert cache.get_seq_length() == start
        committed = start
        tensors[f"step.{s}.features"] = feats[0].numpy()
        tensors[f"step.{s}.tokens"] = block[0].numpy().astype(np.int32)
        tensors[f"step.{s}.positions"] = positions[0].numpy().astype(np.int32)
        tensors[f"step.{s}.hidden"] = hidden[0].numpy()
        tensors[f"step.{s}.logits"] = logits[0].numpy()
        meta_steps.append(n_ctx)
    return tensors, len(STEPS)


class ExactRollback:
    """Makes dflash_generate's target-cache crop exact for hybrid targets.

    Before every target forward that uses a cache, the DeltaNet recurrent states are snapshotted (a forward
    pre-hook). When dflash_generate then crops the target cache to `length` tokens, the crop first goes back
    to the pre-forward length (attention KV and conv windows: transformers' own crop; recurrent states: the
    snapshot), then feeds the kept tokens again. The result is the state that feeding only the accepted
    tokens gives, which is what a lossless speculative loop requires. dflash_generate itself is unchanged."""

    def __init__(self, target):
        self.target = target
        self.replaying = False
        self.snapshot = None
        self.orig_crop = dm._crop_to
        self.handle = target.register_forward_pre_hook(self._pre_hook, with_kwargs=True)

    def _pre_hook(self, module, args, kwargs):
        if self.replaying:
            return
        cache = kwargs.get("past_key_values")
        if cache is None:
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        base = cache.get_seq_length()
        states = {}
        for i, layer in enumerate(cache.layers):
            if hasattr(layer, "recurrent_states") and layer.is_recurrent_states_initialized[0]:
                states[i] = layer.recurrent_states[0].clone()
        self.snapshot = (cache, base, states, ids.clone(), kwargs["position_ids"].clone())

    def crop(self, cache, length):
        snap = self.snapshot
        if snap is None or snap[0] is not cache or length >= cache.get_seq_length():
            return self.orig_crop(cache, length)
        _, base, states, ids, pos = snap
        self.orig_crop(cache, base)
        for i, st in states.items():
            cache.layers[i].recurrent_states[0].copy_(st)
        keep = length - base
        if keep > 0:
            self.replaying = True
            self.target(ids[:, :keep], position_ids=pos[:, :keep], past_key_values=cache, use_cache=True)
            self.replaying = False
        self.snapshot = None
        return self.orig_crop(cache, length)


@torch.inference_mode()
def trace(tgt, dr, prompt, block, max_new, stop, exact):
    if exact:
        rb = ExactRollback(tgt)
        dm._crop_to = rb.crop
    try:
        out = dm.dflash_generate(dr, tgt, prompt, max_new, stop, block_size=block, return_stats=True)
    finally:
        dm._crop_to = _ORIG_CROP
        if exact:
            rb.handle.remove()
    n = prompt.shape[1]
    return out.output_ids[0, n:].numpy().astype(np.int32), np.array(out.acceptance_lengths, dtype=np.int32)


_ORIG_CROP = dm._crop_to


class OracleDraft:
    """Replaces the drafter's proposals in round r (r = 0, 1, ...) by: the AR greedy tokens at the block
    positions for the first n_r = r mod B rows, then (ar + 1) mod V at row n_r + 1 (wrong by construction),
    then the AR tokens again. With exact rollback the round then accepts exactly n_r drafts (produced
    n_r + 1, capped near max_new_tokens). The drafter itself still runs (its cache is exercised)."""

    def __init__(self, dr, ar_full, vocab):
        self.dr, self.ar_full, self.vocab = dr, ar_full, vocab
        self.round = 0
        self.n_correct = []
        self.start = None
        self.h1 = dr.register_forward_pre_hook(self._pre, with_kwargs=True)
        self.orig = dr.compute_logits
        dr.compute_logits = self._logits

    def _pre(self, module, args, kwargs):
        pos = kwargs["position_ids"]
        vs = kwargs["noise_embedding"].shape[1]
        self.start = int(pos[0, -1]) - vs + 1

    def _logits(self, hidden, head):
        n_rows = hidden.shape[1]                       # verify_size - 1
        B = self.dr.block_size
        n = self.round % B
        toks = [int(self.ar_full[self.start + 1 + i]) for i in range(n_rows)]
        if n < n_rows:
            toks[n] = (toks[n] + 1) % self.vocab
        self.n_correct.append(min(n, n_rows))
        self.round += 1
        logits = torch.full((1, n_rows, self.vocab), -1e4)
        for i, t in enumerate(toks):
            logits[0, i, t] = 0.0
        return logits

    def close(self):
        self.h1.remove()
        self.dr.compute_logits = self.orig


@torch.inference_mode()
def ar_greedy(tgt, prompt, max_new):
    # Explicit all-ones attention mask and a pad id outside the prompt range: generate() otherwise derives
    # the mask (and the positions) from pad_token_id and would treat prompt tokens equal to it as padding.
    g = tgt.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=max_new, do_sample=False,
                     eos_token_id=None, pad_token_id=474)
    return g[0, prompt.shape[1]:].numpy().astype(np.int32)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", default=os.path.join(here, "..", "..", "tests", "data", "hf"))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "golden", "dflash"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    summary = {}
    for di, (drafter, (target, cases)) in enumerate(PAIRS.items()):
        tgt, dr = load_pair(os.path.abspath(args.hf), drafter, target)
        tensors, n_steps = draft_steps(tgt, dr, 1000 + di)
        meta = {
            "golden.drafter": drafter,
            "golden.target": target,
            "golden.block_size": int(dr.block_size),
            "golden.mask_token_id": int(dr.mask_token_id),
            "golden.target_layer_ids": [int(x) for x in dr.target_layer_ids],
            "golden.rope_theta": float(dr.config.rope_parameters["rope_theta"]),
            "golden.n_steps": n_steps,
            "golden.traces": [c[0] for c in cases],
            "golden.generator": "dflash 0.1.0 (dflash/model.py), transformers "
                                + __import__("transformers").__version__ + ", torch " + torch.__version__,
        }
        summary[drafter] = {}
        for name, seed, plen, block, max_new, stop_at in cases:
            g = torch.Generator().manual_seed(seed)
            prompt = torch.randint(0, 474, (1, plen), generator=g)
            ar = ar_greedy(tgt, prompt, max_new)
            stop = None if stop_at is None else [int(ar[stop_at])]
            ex_tok, ex_acc = trace(tgt, dr, prompt, block, max_new, stop, exact=True)
            raw_tok, raw_acc = trace(tgt, dr, prompt, block, max_new, stop, exact=False)
            ar_cut = ar[: len(ex_tok)]
            assert (ex_tok == ar_cut).all(), f"{drafter}/{name}: exact trace differs from AR greedy"
            if stop is not None:
                first = int(np.nonzero(ar == stop[0])[0][0])
                assert len(ex_tok) == first + 1, (len(ex_tok), first)
            tensors[f"trace.{name}.prompt"] = prompt[0].numpy().astype(np.int32)
            tensors[f"trace.{name}.ar.tokens"] = ar
            tensors[f"trace.{name}.exact.tokens"] = ex_tok
            tensors[f"trace.{name}.exact.accept"] = ex_acc
            tensors[f"trace.{name}.raw.tokens"] = raw_tok
            tensors[f"trace.{name}.raw.accept"] = raw_acc
            meta[f"golden.trace.{name}.block_size"] = block
            meta[f"golden.trace.{name}.max_new_tokens"] = max_new
            meta[f"golden.trace.{name}.stop_token_ids"] = stop if stop is not None else []
            raw_same = len(raw_tok) == len(ex_tok) and bool((raw_tok == ex_tok).all())
            summary[drafter][name] = {
                "block": block, "rounds": int(len(ex_acc)), "tau": float(ex_acc.mean()),
                "accept_hist": np.bincount(ex_acc, minlength=block + 1)[1:].tolist(),
                "raw_equals_exact": raw_same,
                "raw_first_divergence": None if raw_same else int(np.argmax(
                    raw_tok[: min(len(raw_tok), len(ex_tok))] != ex_tok[: min(len(raw_tok), len(ex_tok))])),
            }
            print(drafter, name, json.dumps(summary[drafter][name]))
        for name, seed, plen, block, max_new in ORACLE.get(drafter, []):
            g = torch.Generator().manual_seed(seed)
            prompt = torch.randint(0, 474, (1, plen), generator=g)
            ar = ar_greedy(tgt, prompt, max_new)
            oracle = OracleDraft(dr, np.concatenate([prompt[0].numpy(), ar]), tgt.config.get_text_config().vocab_size)
            try:
                ex_tok, ex_acc = trace(tgt, dr, prompt, block, max_new, None, exact=True)
            finally:
                oracle.close()
            assert (ex_tok == ar).all(), f"{drafter}/{name}: oracle trace differs from AR greedy"
            tensors[f"trace.{name}.prompt"] = prompt[0].numpy().astype(np.int32)
            tensors[f"trace.{name}.ar.tokens"] = ar
            tensors[f"trace.{name}.exact.tokens"] = ex_tok
            tensors[f"trace.{name}.exact.accept"] = ex_acc
            tensors[f"trace.{name}.oracle.n_correct"] = np.array(oracle.n_correct, dtype=np.int32)
            meta[f"golden.trace.{name}.block_size"] = block
            meta[f"golden.trace.{name}.max_new_tokens"] = max_new
            meta[f"golden.trace.{name}.stop_token_ids"] = []
            meta[f"golden.trace.{name}.oracle"] = "cycle"
            meta["golden.traces"] = meta["golden.traces"] + [name]
            summary[drafter][name] = {"block": block, "rounds": int(len(ex_acc)), "tau": float(ex_acc.mean()),
                                      "accept_hist": np.bincount(ex_acc, minlength=block + 1)[1:].tolist()}
            print(drafter, name, json.dumps(summary[drafter][name]))
        gg.write(os.path.join(out_dir, drafter + ".gguf"), meta, tensors)
    with open(os.path.join(out_dir, "stats.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
