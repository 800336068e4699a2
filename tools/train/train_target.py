#!/usr/bin/env python3
"""Causal-LM training of the Qwen3.5-architecture target (transformers Qwen3_5ForCausalLM), on CPU.

Packed windows of the token stream (data.py), AdamW (betas 0.9/0.95, weight decay on matrices only),
linear warm-up + cosine decay to --min-lr-frac, grad-norm clip 1.0, fp32 (or --autocast bf16).
Resumable: RUN/state.pt holds model + optimiser + step + data cursor + RNG and is rewritten atomically
every --ckpt-every steps, on --max-minutes and at the end; rerunning the same command continues.
RUN/log.csv gets one row per --log-every steps (train loss) and per --eval-every (held-out loss).
RUN/hf/ is the HF export (config.json + model.safetensors + tokenizer files), refreshed at each checkpoint.

Start from scratch with --preset seed, or from a grown model with --init-from work/grown/hf.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK, Budget, CsvLog, atomic_torch_save, cosine_lr, param_count, read_json, \
    rng_state, set_rng_state, set_threads, write_json  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens.json")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="run directory (state.pt, log.csv, hf/)")
    ap.add_argument("--preset", default=None, help="model_configs preset for a fresh model (seed, grown, toy-*)")
    ap.add_argument("--init-from", type=Path, default=None, help="HF dir to start from (e.g. grow.py output)")
    ap.add_argument("--tokenizer", type=Path, default=WORK / "tokenizer")
    ap.add_argument("--corpus", type=Path, default=WORK / "corpus")
    ap.add_argument("--tokens", type=Path, default=WORK / "tokens")
    ap.add_argument("--max-train-mb", type=float, default=0.0, help="encode only this much training text (0 = all)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="sequences per micro-batch")
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per optimiser step")
    ap.add_argument("--total-steps", type=int, required=True, help="length of the lr schedule")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-windows", type=int, default=32)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop cleanly (checkpoint) after this long")
    ap.add_argument("--max-steps-this-run", type=int, default=0, help="stop after this many steps (benchmarks)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--start-window", type=int, default=0,
                    help="fresh run only: skip this many windows of the seeded order (a second phase started "
                         "--init-from an earlier run continues its data instead of repeating it)")
    return ap.parse_args(argv)


def build_model(args):
    import torch
    from transformers import Qwen3_5ForCausalLM

    from model_configs import target_config

    if args.init_from:
        model = Qwen3_5ForCausalLM.from_pretrained(str(args.init_from), dtype=torch.float32)
    else:
        if not args.preset:
            raise SystemExit("train_target: give --preset (fresh model) or --init-from (HF dir)")
        specials = read_json(args.tokenizer / "special_tokens.json")
        vocab = read_json(args.tokenizer / "tokenizer.json")
        vocab_size = len(vocab["model"]["vocab"]) + len(vocab["added_tokens"])
        torch.manual_seed(args.seed)
        model = Qwen3_5ForCausalLM(target_config(args.preset, vocab_size, specials))
    model.config.use_cache = False
    return model


def make_optimizer(model, args):
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # matrices decay; norms, biases, A_log, dt_bias and the (tied) embedding do not
        (decay if p.ndim >= 2 and "embed_tokens" not in name else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def lm_loss(model, batch, autocast: str):
    import torch
    import torch.nn.functional as F

    x = batch[:, :-1]
    y = batch[:, 1:]
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast == "bf16" else torch.autocast("cpu", enabled=False)
    with ctx:
        logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


def evaluate(model, windows, autocast: str, batch: int) -> float:
    import torch

    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            b = torch.from_numpy(windows[i:i + batch])
            tot += lm_loss(model, b, autocast).item() * len(b)
            n += len(b)
    model.train()
    return tot / max(1, n)


def export_hf(model, args) -> None:
    out = args.out / "hf"
    tmp = args.out / "hf.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    for f in TOKENIZER_FILES:
        if (args.tokenizer / f).exists():
            shutil.copy2(args.tokenizer / f, tmp / f)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    import numpy as np
    import torch

    from data import Windows, encode_corpus, fixed_windows, load_tokens

    args.out.mkdir(parents=True, exist_ok=True)
    meta = encode_corpus(args.corpus, args.tokenizer, args.tokens, args.max_train_mb)
    train = Windows(load_tokens(args.tokens / "train.bin"), args.seq_len, args.seed)
    held = fixed_windows(load_tokens(args.tokens / "heldout.bin"), args.seq_len, args.eval_windows)

    state_path = args.out / "state.pt"
    state = torch.load(state_path, weights_only=False) if state_path.exists() else None
    if state is not None:
        # The model shape comes from the checkpoint's config, never from (possibly changed) flags.
        from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

        model = Qwen3_5ForCausalLM(Qwen3_5TextConfig.from_dict(state["config"]))
        model.load_state_dict(state["model"])
        model.config.use_cache = False
    else:
        model = build_model(args)
    model.train()
    opt = make_optimizer(model, args)
    step = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        train.load_state(state["data"])
        set_rng_state(state["rng"])
        print(f"train_target: resumed at step {step} (epoch {train.epoch}, window {train.cursor}/{train.n})")
    else:
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        train.cursor = args.start_window % train.n
        train.epoch = args.start_window // train.n
    n_params = param_count(model)
    write_json(args.out / "run.json", {"args": {k: str(v) for k, v in vars(args).items()}, "params": n_params,
                                       "train_tokens": meta["train"]["tokens"], "windows": train.n})
    log = CsvLog(args.out / "log.csv", ["step", "tokens", "lr", "loss", "heldout_loss", "tok_per_s",
                                        "elapsed_s", "grad_norm"])
    tokens_per_step = args.batch * args.accum * args.seq_len
    print(f"train_target: {n_params / 1e6:.2f} M params, {meta['train']['tokens'] / 1e6:.1f} M train tokens, "
          f"{tokens_per_step} tokens/step, steps {step}->{args.total_steps}, threads {torch.get_num_threads()}")

    def checkpoint():
        atomic_torch_save({"model": model.state_dict(), "config": model.config.to_dict(),
                           "optimizer": opt.state_dict(), "step": step, "data": train.state(),
                           "rng": rng_state(), "args": vars(args)}, state_path)
        export_hf(model, args)

    budget = Budget(args.max_minutes)
    t_last, tok_last, run_steps = time.time(), 0, 0
    loss_acc, n_acc = 0.0, 0
    if step == 0:
        log.row(step=0, tokens=0, lr=0, heldout_loss=f"{evaluate(model, held, args.autocast, args.batch):.4f}",
                elapsed_s=f"{budget.elapsed():.0f}")
    stopped_early = False
    while step < args.total_steps:
        lr = cosine_lr(step, args.total_steps, args.lr, args.warmup, args.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        for _ in range(args.accum):
            batch = torch.from_numpy(train.next_batch(args.batch))
            loss = lm_loss(model, batch, args.autocast)
            (loss / args.accum).backward()
            loss_acc += loss.item()
            n_acc += 1
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip).item()
        if not math.isfinite(gn):
            raise SystemExit(f"train_target: non-finite grad norm at step {step}; lower --lr")
        opt.step()
        step += 1
        run_steps += 1
        tok_last += tokens_per_step
        if step % args.log_every == 0 or step == args.total_steps:
            now = time.time()
            ev = ""
            if step % args.eval_every == 0 or step == args.total_steps:
                ev = f"{evaluate(model, held, args.autocast, args.batch):.4f}"
            log.row(step=step, tokens=step * tokens_per_step, lr=f"{lr:.3e}", loss=f"{loss_acc / n_acc:.4f}",
                    heldout_loss=ev, tok_per_s=f"{tok_last / (now - t_last):.1f}",
                    elapsed_s=f"{budget.elapsed():.0f}", grad_norm=f"{gn:.3f}")
            print(f"step {step:6d} lr {lr:.2e} loss {loss_acc / n_acc:.4f} {('held ' + ev) if ev else ''} "
                  f"{tok_last / (now - t_last):.0f} tok/s", flush=True)
            loss_acc, n_acc, t_last, tok_last = 0.0, 0, time.time(), 0
        if step % args.ckpt_every == 0:
            checkpoint()
        if budget.expired() or (args.max_steps_this_run and run_steps >= args.max_steps_this_run):
            stopped_early = step < args.total_steps
            break
    checkpoint()
    print(f"train_target: {'paused' if stopped_early else 'done'} at step {step}; state {state_path}; "
          f"HF export {args.out / 'hf'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
