#!/usr/bin/env python3
"""Small, honest throughput measurements for planning (random-weight models of the real shapes).

  --what train    target training steps (fwd + bwd + AdamW), tokens/s, at --preset seed|grown
  --what gen      target greedy generation with HF generate (KV/DeltaNet cache), new tokens/s, --batch prompts
  --what drafter  drafter training steps against a frozen target (features computed online or cached)
Each prints one JSON line (appended to --log if given) with wall-clock and process-CPU-time rates. Run
nice'd; on a shared machine the wall rates are lower bounds, and the per-CPU-second rates (process time,
all threads) are the better planning number: wall rate on an idle machine ~ cpu rate x threads x
parallel efficiency. The first step is warm-up and not timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import param_count, set_threads  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", choices=["train", "gen", "drafter"], required=True)
    ap.add_argument("--preset", default="seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--layers", type=int, default=3, help="drafter layers")
    ap.add_argument("--num-anchors", type=int, default=64)
    ap.add_argument("--cached-features", action="store_true", help="drafter: exclude the target forward")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--log", type=Path, default=None)
    args = ap.parse_args()

    set_threads(args.threads)
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import Qwen3_5ForCausalLM

    from model_configs import drafter_config, target_config

    torch.manual_seed(0)
    specials = {"<|endoftext|>": args.vocab - 27, "<|im_end|>": args.vocab - 25, "<|mask|>": args.vocab - 1}
    model = Qwen3_5ForCausalLM(target_config(args.preset, args.vocab, specials))
    res = {"what": args.what, "preset": args.preset, "params_M": round(param_count(model) / 1e6, 2),
           "threads": torch.get_num_threads()}
    ids = torch.randint(0, args.vocab - 27, (args.batch, args.seq_len + 1))
    if args.what == "train":
        model.train()
        model.config.use_cache = False
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        times, cpu = [], []
        for s in range(args.steps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast == "bf16" else \
                torch.autocast("cpu", enabled=False)
            with ctx:
                logits = model(input_ids=ids[:, :-1], use_cache=False).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if s:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        tok = args.batch * args.seq_len
        res.update(batch=args.batch, seq_len=args.seq_len, autocast=args.autocast,
                   sec_per_step=round(float(np.median(times)), 2), tok_per_s=round(tok / float(np.median(times)), 1),
                   cpu_sec_per_step=round(float(np.median(cpu)), 2),
                   tok_per_cpu_s=round(tok / float(np.median(cpu)), 1))
    elif args.what == "gen":
        model.eval()
        prompt = ids[:, :64]
        eot = specials["<|endoftext|>"]
        with torch.no_grad():
            model.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=eot)  # warm-up
            t0, c0 = time.perf_counter(), time.process_time()
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new_tokens,
                                 min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=eot)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
        n = (out.shape[1] - prompt.shape[1]) * args.batch
        res.update(batch=args.batch, new_tokens=args.new_tokens, tok_per_s=round(n / dt, 1),
                   tok_per_cpu_s=round(n / dc, 1), prompt_len=64)
    else:
        from dflash.model import DFlashDraftModel, extract_context_feature

        from train_drafter import drafter_loss

        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        B = 16
        dcfg = drafter_config(model.config, args.layers, specials["<|mask|>"], B)
        drafter = DFlashDraftModel(dcfg).float().train()
        opt = torch.optim.AdamW(drafter.parameters(), lr=1e-4)
        weights = torch.exp(-torch.arange(B - 1, dtype=torch.float32) / 7.0)
        rng = np.random.default_rng(0)
        tokens = ids[0, : args.seq_len].numpy()

        class A:  # the subset of train_drafter's args drafter_loss reads
            block_size = B
            num_anchors = args.num_anchors

        with torch.no_grad():
            t0, c0 = time.perf_counter(), time.process_time()
            out = model(input_ids=torch.from_numpy(tokens)[None], output_hidden_states=True, use_cache=False)
            feats = extract_context_feature(out.hidden_states, drafter.target_layer_ids)[0]
            t_feat, c_feat = time.perf_counter() - t0, time.process_time() - c0
        times, cpu = [], []
        for s in range(args.steps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            loss, nb, _ = drafter_loss(drafter, model, feats, tokens, 0, A, specials["<|mask|>"], rng, weights)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(drafter.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if s:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        step = float(np.median(times))
        cstep = float(np.median(cpu))
        res.update(drafter_layers=args.layers, drafter_params_M=round(param_count(drafter) / 1e6, 2),
                   seq_len=args.seq_len, anchors=args.num_anchors, sec_per_seq_step=round(step, 2),
                   sec_target_features_per_seq=round(t_feat, 2),
                   blocks_per_s=round(args.num_anchors / step, 1),
                   seqs_per_s_cached=round(1 / step, 3), seqs_per_s_online=round(1 / (step + t_feat), 3),
                   cpu_sec_per_seq_step=round(cstep, 2), cpu_sec_target_features_per_seq=round(c_feat, 2))
    line = json.dumps(res)
    print(line)
    if args.log:
        with open(args.log, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
