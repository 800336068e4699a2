#!/usr/bin/env python3
"""Train a DFlash drafter (dflash DFlashDraftModel) against the frozen target - the published recipe.

Per sequence of target-generated data (gen_data.py):
  * target features = hidden_states[id + 1] for id in target_layer_ids (outputs of those decoder layers),
    concatenated -> [S, n_ids * H]; computed once and cached in RUN/features.bin (fp16) unless --no-cache
  * up to --num-anchors distinct anchors a, uniform among positions with loss_mask set and a <= S - B, sorted
  * block per anchor: [token[a], MASK x (B-1)] embedded with the target's embedding, positions a..a+B-1
  * one drafter forward for all blocks: keys = [context features 0..S-1 ; all block rows]; a block's
    queries see context keys k < a and the B rows of their own block (bidirectional), nothing else
  * labels: block row k (1..B-1) -> token[a+k]; loss = sum_k w_k CE_k / sum w_k, w_k = exp(-(k-1)/gamma)
    through the target's (frozen, tied) lm_head
AdamW lr --lr with --warmup-frac linear warm-up then cosine decay, grad clip 1.0, fp32. Only fc,
hidden_norm, the drafter layers and norm train; the target (embedding and lm_head included) is frozen.
Resumable (RUN/state.pt; same command continues); RUN/log.csv has loss, per-position accuracy and the
predicted tau = 1 + sum_k P(rows 1..k all correct) on held-out data (the empirical form of
1 + sum_k prod_{j<=k} p_j with conditional p_j), and tau_harm = 1 / mean(1 / acceptance length) over the
anchors, the better predictor of the decode loop's tokens-per-verify (eval_pair.py --gen-data measures it). RUN/hf/ = config.json + model.safetensors (z-lab layout).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Budget, CsvLog, atomic_torch_save, cosine_lr, param_count, read_json, rng_state, \
    set_rng_state, set_threads, write_json  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=Path, required=True, help="HF dir of the (frozen) target, or its GGUF (features then from dflash gen-data --features)")
    ap.add_argument("--data", type=Path, required=True, help="gen_data.py output for training")
    ap.add_argument("--heldout-data", type=Path, default=None, help="gen_data.py output for evaluation")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--intermediate-size", type=int, default=0, help="drafter FFN width (0 = 2 x hidden)")
    ap.add_argument("--num-anchors", type=int, default=64)
    ap.add_argument("--gamma", type=float, default=0.0, help="loss decay (0 = 7 for B=16, 5 for B=10, 4 for B=8)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--seqs-per-step", type=int, default=4)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--warmup-frac", type=float, default=0.04)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--no-cache", action="store_true", help="compute target features online")
    ap.add_argument("--eval-seqs", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--max-minutes", type=float, default=0.0)
    ap.add_argument("--max-steps-this-run", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--init-from", type=Path, default=None,
                    help="start from this drafter HF checkpoint (e.g. checkpoints/drafter) with a fresh optimiser "
                         "and schedule, instead of random weights; ignored when --out holds a state to resume")
    ap.add_argument("--bf16", action="store_true",
                    help="bf16 autocast for the drafter and LM-head matmuls (weights, optimiser and loss stay fp32); "
                         "about 2x faster on CPUs with AMX or AVX512-BF16")
    return ap.parse_args(argv)


class FeatureStore:
    """Target features per sequence; fp16 cache file filled in index order (resumable)."""

    def __init__(self, target, layer_ids, toks, idx, path: Path | None):
        self.target, self.layer_ids, self.toks, self.idx = target, layer_ids, toks, idx
        self.width = len(layer_ids) * target.config.hidden_size
        self.path = path
        self.mm = None

    @staticmethod
    def compute(target, layer_ids, ids: np.ndarray):
        import torch

        if not hasattr(target, "model"):
            raise SystemExit("train_drafter: features are missing and a GGUF target cannot compute them; run "
                             "`dflash gen-data --features " + ",".join(map(str, layer_ids)) + "` on the data first")

        from dflash.model import extract_context_feature

        with torch.no_grad():
            out = target(input_ids=torch.from_numpy(ids.astype(np.int64))[None], output_hidden_states=True,
                         use_cache=False)
        return extract_context_feature(out.hidden_states, layer_ids)[0]

    def fill(self, budget: Budget) -> bool:
        """Compute missing cached features; returns True when complete."""
        if self.path is None:
            return True
        count_path = self.path.with_suffix(".count")
        done = int(count_path.read_text()) if count_path.exists() else 0
        total_tokens = int(self.idx[-1, 0] + self.idx[-1, 1]) if len(self.idx) else 0
        if done < len(self.idx):
            with open(self.path, "ab"):
                pass
            os.truncate(self.path, int(self.idx[done, 0]) * self.width * 2)
            t0 = time.time()
            with open(self.path, "ab") as f:
                for i in range(done, len(self.idx)):
                    off, n, _ = self.idx[i]
                    feats = self.compute(self.target, self.layer_ids, np.asarray(self.toks[off: off + n]))
                    f.write(feats.to(dtype=__import__("torch").float16).numpy().tobytes())
                    if (i + 1) % 16 == 0 or i + 1 == len(self.idx):
                        f.flush()
                        os.fsync(f.fileno())
                        count_path.write_text(str(i + 1))
                        print(f"features: {i + 1}/{len(self.idx)} sequences "
                              f"({(i + 1 - done) / (time.time() - t0):.2f} seq/s)", flush=True)
                    if budget.expired():
                        f.flush()
                        os.fsync(f.fileno())
                        count_path.write_text(str(i + 1))
                        return False
        self.mm = np.memmap(self.path, dtype=np.float16, mode="r", shape=(total_tokens, self.width))
        return True

    def get(self, i: int):
        import torch

        off, n, _ = self.idx[i]
        if self.mm is not None:
            return torch.from_numpy(np.asarray(self.mm[off: off + n], dtype=np.float32))
        return self.compute(self.target, self.layer_ids, np.asarray(self.toks[off: off + n]))


def engine_features(data: Path, layer_ids, idx: np.ndarray, target) -> Path | None:
    """DATA/features.bin written by `dflash gen-data --features` (complete, same layers) or None."""
    meta_path, feat, count = data / "features.json", data / "features.bin", data / "features.count"
    if not (meta_path.exists() and feat.exists() and count.exists()):
        return None
    meta = read_json(meta_path)
    if list(meta["target_layer_ids"]) != list(layer_ids) or meta["hidden_size"] != target.config.hidden_size:
        raise SystemExit(f"train_drafter: {feat} holds layers {meta['target_layer_ids']} of hidden size "
                         f"{meta['hidden_size']}, the drafter needs {list(layer_ids)} of {target.config.hidden_size}; "
                         f"rerun dflash gen-data --features {','.join(map(str, layer_ids))}")
    total = int(idx[-1, 0] + idx[-1, 1]) if len(idx) else 0
    if int(count.read_text()) != len(idx) or feat.stat().st_size != total * meta["width"] * 2:
        raise SystemExit(f"train_drafter: {feat} is incomplete (interrupted gen-data?): rerun the same "
                         f"dflash gen-data command to finish it")
    print(f"train_drafter: using the engine's features {feat}")
    return feat


def valid_sequences(idx: np.ndarray, block: int) -> np.ndarray:
    """Sequences with >= 2B counted (response) tokens, as in the recipe."""
    counted = idx[:, 1] - idx[:, 2]
    return np.nonzero(counted >= 2 * block)[0]


def build_batch(tokens: np.ndarray, prompt_len: int, block: int, n_anchors: int, mask_id: int,
                rng: np.random.Generator):
    """-> anchors, block token ids [n,B], position ids [S+n*B], bool mask [n*B, S+n*B], labels [n,B-1]."""
    import torch

    S = len(tokens)
    cand = np.arange(max(prompt_len, 0), S - block + 1)
    n = min(n_anchors, len(cand))
    anchors = np.sort(rng.choice(cand, size=n, replace=False))
    a = torch.from_numpy(anchors)
    toks = torch.from_numpy(tokens.astype(np.int64))
    ids = torch.full((n, block), mask_id, dtype=torch.long)
    ids[:, 0] = toks[a]
    pos = torch.cat([torch.arange(S), (a[:, None] + torch.arange(block)).reshape(-1)])
    q_block = torch.arange(n * block) // block
    ctx_visible = torch.arange(S)[None, :] < a.repeat_interleave(block)[:, None]
    own_block = q_block[:, None] == q_block[None, :]
    mask = torch.cat([ctx_visible, own_block], dim=1)
    labels = toks[a[:, None] + torch.arange(1, block)]
    return anchors, ids, pos, mask, labels


def drafter_loss(drafter, target, feats, tokens, prompt_len, args, mask_id, rng, weights):
    """One sequence: weighted loss, number of blocks, per-row correctness [n, B-1]."""
    import torch
    import torch.nn.functional as F

    B = args.block_size
    anchors, ids, pos, mask, labels = build_batch(tokens, prompt_len, B, args.num_anchors, mask_id, rng)
    n = len(anchors)
    emb = F.embedding(ids.reshape(1, -1), target.get_input_embeddings().weight)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        h = drafter(position_ids=pos[None], attention_mask=mask[None, None], noise_embedding=emb,
                    target_hidden=feats[None])
        h = h.reshape(n, B, -1)[:, 1:]  # row 0 is the given anchor token: not scored
        logits = target.lm_head(h)
    logits = logits.float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none").reshape(n, B - 1)
    loss = (ce * weights[None]).sum() / (weights.sum() * n)
    correct = (logits.argmax(-1) == labels)
    return loss, n, correct


def evaluate(drafter, target, store, toks, idx, seqs, args, mask_id, weights):
    import torch

    drafter.eval()
    rng = np.random.default_rng(12345)  # same anchors every evaluation
    tot_loss, tot_blocks = 0.0, 0
    acc = torch.zeros(args.block_size - 1)
    cum = torch.zeros(args.block_size - 1)
    inv_len = 0.0
    with torch.no_grad():
        for i in seqs:
            off, n, plen = idx[i]
            loss, nb, correct = drafter_loss(drafter, target, store.get(i), np.asarray(toks[off: off + n]),
                                             int(plen), args, mask_id, rng, weights)
            tot_loss += loss.item() * nb
            tot_blocks += nb
            acc += correct.float().sum(0)
            prefix = correct.long().cumprod(1)
            cum += prefix.float().sum(0)
            inv_len += (1.0 / (1.0 + prefix.sum(1).float())).sum().item()
    drafter.train()
    acc /= max(1, tot_blocks)
    cum /= max(1, tot_blocks)
    # tau_pred: mean acceptance length over anchor positions (= 1 + sum_k prod_{j<=k} p_j). The decode loop
    # lands on positions with density 1/L (a hard spot costs a whole verify), so its tau is closer to the
    # harmonic mean over positions: tau_harm = 1 / mean(1/L) <= tau_pred.
    return (tot_loss / max(1, tot_blocks), acc, cum, 1.0 + cum.sum().item(),
            tot_blocks / max(inv_len, 1e-9))


def main(argv=None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    import torch
    from dflash.model import DFlashDraftModel
    from transformers import Qwen3_5ForCausalLM, Qwen3Config

    from gen_data import load_dataset
    from model_configs import drafter_config

    B = args.block_size
    gamma = args.gamma or {16: 7.0, 10: 5.0, 8: 4.0}.get(B, 7.0)
    weights = torch.exp(-torch.arange(B - 1, dtype=torch.float32) / gamma)  # k = 1..B-1 -> exp(-(k-1)/gamma)

    if args.target.suffix == ".gguf":
        # The engine's target file: embedding and head dequantized as the engine holds them; the
        # features must then come from `dflash gen-data --features` (checked below).
        from gguf_target import GgufTarget

        target = GgufTarget(args.target)
        specials = target.special_tokens
        if args.no_cache:
            raise SystemExit("train_drafter: a GGUF target needs the engine's features; drop --no-cache")
    else:
        target = Qwen3_5ForCausalLM.from_pretrained(str(args.target), dtype=torch.float32).eval()
        specials = read_json(args.target / "special_tokens.json")
    for p in target.parameters():
        p.requires_grad_(False)
    mask_id = specials["<|mask|>"]

    args.out.mkdir(parents=True, exist_ok=True)
    state_path = args.out / "state.pt"
    state = torch.load(state_path, weights_only=False) if state_path.exists() else None
    if state is not None:
        dcfg = Qwen3Config.from_dict(state["config"])
    else:
        dcfg = drafter_config(target.config, args.layers, mask_id, B, args.intermediate_size or None)
    torch.manual_seed(args.seed)
    if state is None and args.init_from is not None:
        drafter = DFlashDraftModel.from_pretrained(str(args.init_from), dtype=torch.float32)
        dcfg = drafter.config
        print(f"train_drafter: initialised from {args.init_from}")
    else:
        drafter = DFlashDraftModel(dcfg).float()
    drafter.train()
    layer_ids = list(drafter.target_layer_ids)

    toks, idx = load_dataset(args.data)
    train_seqs = valid_sequences(idx, B)
    if len(train_seqs) == 0:
        raise SystemExit(f"train_drafter: no sequence in {args.data} has >= {2 * B} response tokens")
    budget = Budget(args.max_minutes)
    store = FeatureStore(target, layer_ids, toks, idx,
                         None if args.no_cache else engine_features(args.data, layer_ids, idx, target)
                         or args.out / "features.bin")
    if not store.fill(budget):
        print("train_drafter: time budget spent while caching features; rerun the same command to continue")
        return 0
    if args.heldout_data:
        htoks, hidx = load_dataset(args.heldout_data)
        held_seqs = valid_sequences(hidx, B)[: args.eval_seqs]
        hstore = FeatureStore(target, layer_ids, htoks, hidx,
                              None if args.no_cache else engine_features(args.heldout_data, layer_ids, hidx, target)
                              or args.out / "heldout_features.bin")
        if not hstore.fill(budget):
            print("train_drafter: time budget spent while caching features; rerun the same command to continue")
            return 0
    else:  # no held-out set: evaluate on the first training sequences (reported as such)
        htoks, hidx, hstore, held_seqs = toks, idx, store, train_seqs[: args.eval_seqs]

    opt = torch.optim.AdamW([p for p in drafter.parameters() if p.requires_grad], lr=args.lr,
                            betas=(0.9, 0.95), weight_decay=args.weight_decay)
    total_steps = max(1, math.ceil(args.epochs * len(train_seqs) / args.seqs_per_step))
    warmup = max(1, int(args.warmup_frac * total_steps))
    step, epoch, cursor = 0, 0, 0
    if state is not None:
        drafter.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, epoch, cursor = state["step"], state["epoch"], state["cursor"]
        set_rng_state(state["rng"])
        print(f"train_drafter: resumed at step {step}/{total_steps}")
    rng = np.random.default_rng([args.seed, step])
    write_json(args.out / "run.json", {"args": {k: str(v) for k, v in vars(args).items()},
                                       "drafter_params": param_count(drafter), "train_seqs": int(len(train_seqs)),
                                       "total_steps": total_steps, "target_layer_ids": layer_ids, "gamma": gamma})
    fields = ["step", "epoch", "lr", "loss", "heldout_loss", "tau_pred", "tau_harm", "blocks_per_s", "elapsed_s"] + \
             [f"acc{k}" for k in range(1, B)] + [f"cum{k}" for k in range(1, B)]
    log = CsvLog(args.out / "log.csv", fields)
    print(f"train_drafter: drafter {param_count(drafter) / 1e6:.2f} M params, layers {dcfg.num_hidden_layers}, "
          f"target_layer_ids {layer_ids}, {len(train_seqs)} train seqs, {total_steps} steps, gamma {gamma}")

    def export():
        tmp = args.out / "hf.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        drafter.save_pretrained(str(tmp))
        shutil.rmtree(args.out / "hf", ignore_errors=True)
        tmp.rename(args.out / "hf")

    def checkpoint():
        atomic_torch_save({"model": drafter.state_dict(), "config": drafter.config.to_dict(),
                           "optimizer": opt.state_dict(), "step": step, "epoch": epoch, "cursor": cursor,
                           "rng": rng_state()}, state_path)
        export()

    def eval_row(extra: dict):
        hl, acc, cum, tau, tau_h = evaluate(drafter, target, hstore, htoks, hidx, held_seqs, args, mask_id, weights)
        row = dict(extra, heldout_loss=f"{hl:.4f}", tau_pred=f"{tau:.3f}", tau_harm=f"{tau_h:.3f}")
        row.update({f"acc{k + 1}": f"{acc[k]:.3f}" for k in range(B - 1)})
        row.update({f"cum{k + 1}": f"{cum[k]:.3f}" for k in range(B - 1)})
        log.row(**row)
        print(f"eval step {step}: held-out loss {hl:.4f}, predicted tau {tau:.3f} (harmonic {tau_h:.3f}), acc "
              + " ".join(f"{a:.2f}" for a in acc.tolist()), flush=True)

    if step == 0:
        eval_row({"step": 0, "epoch": 0, "elapsed_s": f"{budget.elapsed():.0f}"})
    run_steps, t_last, blocks, loss_acc, n_loss = 0, time.time(), 0, 0.0, 0
    while step < total_steps and not budget.expired():
        perm = np.random.default_rng([args.seed, epoch]).permutation(train_seqs)
        lr = cosine_lr(step, total_steps, args.lr, warmup, 0.0)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        for _ in range(args.seqs_per_step):
            if cursor >= len(perm):
                epoch, cursor = epoch + 1, 0
                perm = np.random.default_rng([args.seed, epoch]).permutation(train_seqs)
            i = int(perm[cursor])
            cursor += 1
            off, n, plen = idx[i]
            loss, nb, _ = drafter_loss(drafter, target, store.get(i), np.asarray(toks[off: off + n]), int(plen),
                                       args, mask_id, rng, weights)
            (loss / args.seqs_per_step).backward()
            loss_acc += loss.item()
            n_loss += 1
            blocks += nb
        gn = torch.nn.utils.clip_grad_norm_(drafter.parameters(), args.clip).item()
        if not math.isfinite(gn):
            raise SystemExit(f"train_drafter: non-finite grad norm at step {step}")
        opt.step()
        step += 1
        run_steps += 1
        if step % args.log_every == 0 or step == total_steps:
            now = time.time()
            log.row(step=step, epoch=f"{epoch + cursor / len(perm):.3f}", lr=f"{lr:.3e}",
                    loss=f"{loss_acc / n_loss:.4f}", blocks_per_s=f"{blocks / (now - t_last):.2f}",
                    elapsed_s=f"{budget.elapsed():.0f}")
            print(f"step {step}/{total_steps} lr {lr:.2e} loss {loss_acc / n_loss:.4f} "
                  f"{blocks / (now - t_last):.1f} blocks/s", flush=True)
            t_last, blocks, loss_acc, n_loss = now, 0, 0.0, 0
        if step % args.eval_every == 0 or step == total_steps:
            eval_row({"step": step, "epoch": f"{epoch + cursor / len(perm):.3f}",
                      "elapsed_s": f"{budget.elapsed():.0f}"})
        if step % args.ckpt_every == 0:
            checkpoint()
        if args.max_steps_this_run and run_steps >= args.max_steps_this_run:
            break
    checkpoint()
    print(f"train_drafter: {'done' if step >= total_steps else 'paused'} at step {step}/{total_steps}; "
          f"HF export {args.out / 'hf'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
