#!/usr/bin/env python3
"""Generate the drafter's training data with the target itself (DFlash recipe: target-produced responses).

Prompts: random windows of the corpus token stream (train or held-out split) that start right after a
newline token, prompt length uniform in [--prompt-min, --prompt-max]; response: the target's greedy
(--temperature 0, default, matching T = 0 decoding) or sampled continuation of --gen-len tokens, cut after
<|endoftext|>. Batches of --batch prompts of equal length (no padding).

Output directory (simple flat files, so the C++ engine can write the same format later):
  tokens.bin  uint16 little-endian token ids of all sequences, concatenated
  index.bin   int64 little-endian triples per sequence: (offset into tokens.bin, length, prompt_len);
              loss_mask[t] = t >= prompt_len (the response)
  meta.json   target, tokenizer hash, settings, counts
Resumable: a sequence exists once its index triple is written (tokens first, then index, both fsync'd);
a restart truncates tokens.bin to the last indexed sequence and continues with the next prompt number
(prompt i is drawn from an RNG seeded by (seed, i), so the data does not depend on interruptions).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import WORK, Budget, read_json, set_threads, write_json  # noqa: E402


def read_index(path: Path) -> np.ndarray:
    if not path.exists():
        return np.zeros((0, 3), np.int64)
    raw = np.fromfile(path, dtype="<i8")
    n = len(raw) // 3
    return raw[: n * 3].reshape(n, 3)


def load_dataset(d: Path):
    """-> (tokens uint16 memmap, index [n,3] int64)."""
    idx = read_index(d / "index.bin")
    toks = np.memmap(d / "tokens.bin", dtype="<u2", mode="r") if (d / "tokens.bin").stat().st_size else \
        np.zeros(0, np.uint16)
    return toks, idx


def newline_table(tokenizer_dir: Path) -> np.ndarray:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    return np.array([("\n" in tok.decode([i], skip_special_tokens=False)) for i in range(tok.get_vocab_size())])


def pick_prompt(stream: np.ndarray, nl: np.ndarray, length: int, rng: np.random.Generator, eot: int):
    for _ in range(100):
        r = int(rng.integers(1, len(stream) - length - 1))
        hits = np.nonzero(nl[stream[r - 1: r + 2000]])[0]
        if len(hits) == 0:
            continue
        start = r + int(hits[0])  # first token after a newline-bearing token
        p = np.asarray(stream[start: start + length], dtype=np.int64)
        if len(p) == length and not (p == eot).any():
            return p
    raise SystemExit("gen_data: could not find prompts (token file too small?)")


def write_prompts(args) -> int:
    """The same prompts the HF path would use (same RNG streams, same per-batch lengths)."""
    specials = read_json(args.tokenizer_dir / "special_tokens.json")
    eot = specials["<|endoftext|>"]
    stream = np.memmap(args.tokens / f"{args.split}.bin", dtype=np.uint16, mode="r")
    nl = newline_table(args.tokenizer_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    toks, recs, end = [], [], 0
    for done in range(0, args.num_seqs, args.batch):
        nb = min(args.batch, args.num_seqs - done)
        plen = int(np.random.default_rng([args.seed, done, 0]).integers(args.prompt_min, args.prompt_max + 1))
        for j in range(nb):
            p = pick_prompt(stream, nl, plen, np.random.default_rng([args.seed, done + j]), eot).astype("<u2")
            toks.append(p)
            recs.append((end, plen, plen))
            end += plen
    for name, arr in (("tokens.bin", np.concatenate(toks)), ("index.bin", np.asarray(recs, dtype="<i8"))):
        tmp = args.out / (name + ".tmp")
        arr.tofile(tmp)
        os.replace(tmp, args.out / name)
    write_json(args.out / "meta.json", {"split": args.split, "seed": args.seed, "num_seqs": args.num_seqs,
                                        "prompt_len": [args.prompt_min, args.prompt_max], "batch": args.batch,
                                        "format": "prompts: tokens.bin uint16; index.bin int64 (offset, length, prompt_len)"})
    print(f"gen_data: wrote {args.num_seqs} prompts ({end} tokens) to {args.out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=Path, default=None, help="HF dir of the target (not with --prompts-only)")
    ap.add_argument("--tokenizer-dir", type=Path, default=WORK / "tokenizer",
                    help="tokenizer.json + special_tokens.json (--prompts-only)")
    ap.add_argument("--tokens", type=Path, default=WORK / "tokens", help="dir with train.bin / heldout.bin")
    ap.add_argument("--split", choices=["train", "heldout"], default="train")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--num-seqs", type=int, required=True)
    ap.add_argument("--prompt-min", type=int, default=32)
    ap.add_argument("--prompt-max", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=0.0)
    ap.add_argument("--prompts-only", action="store_true",
                    help="only write the prompts (OUT/tokens.bin + index.bin, length = prompt_len) for "
                         "`dflash gen-data --prompts OUT`: the engine generates the responses and features")
    args = ap.parse_args()
    if args.prompts_only:
        return write_prompts(args)

    if args.target is None:
        raise SystemExit("gen_data: give --target HF_DIR (or --prompts-only)")
    set_threads(args.threads)
    import torch
    from transformers import Qwen3_5ForCausalLM

    specials = read_json(args.target / "special_tokens.json")
    eot, im_end = specials["<|endoftext|>"], specials.get("<|im_end|>")
    model = Qwen3_5ForCausalLM.from_pretrained(str(args.target), dtype=torch.float32).eval()
    stream = np.memmap(args.tokens / f"{args.split}.bin", dtype=np.uint16, mode="r")
    nl = newline_table(args.target)

    args.out.mkdir(parents=True, exist_ok=True)
    idx = read_index(args.out / "index.bin")
    end = int(idx[-1, 0] + idx[-1, 1]) if len(idx) else 0
    tok_path, idx_path = args.out / "tokens.bin", args.out / "index.bin"
    with open(tok_path, "ab"):
        pass
    os.truncate(tok_path, end * 2)  # drop a partially written tail
    os.truncate(idx_path, len(idx) * 24) if idx_path.exists() else None
    write_json(args.out / "meta.json", {"target": str(args.target), "split": args.split,
                                        "gen_len": args.gen_len, "temperature": args.temperature,
                                        "prompt_len": [args.prompt_min, args.prompt_max], "seed": args.seed,
                                        "format": "tokens.bin uint16; index.bin int64 (offset, length, prompt_len)"})
    budget = Budget(args.max_minutes)
    done = len(idx)
    t0, gen_tokens = time.time(), 0
    stop_ids = [i for i in (eot, im_end) if i is not None]
    while done < args.num_seqs and not budget.expired():
        nb = min(args.batch, args.num_seqs - done)
        # batch b uses prompt numbers done..done+nb-1; its length is drawn from the first one's RNG
        plen = int(np.random.default_rng([args.seed, done, 0]).integers(args.prompt_min, args.prompt_max + 1))
        prompts = np.stack([pick_prompt(stream, nl, plen, np.random.default_rng([args.seed, done + j]), eot)
                            for j in range(nb)])
        gen_kwargs = dict(max_new_tokens=args.gen_len, eos_token_id=stop_ids, pad_token_id=eot,
                          use_cache=True)
        if args.temperature > 0:
            torch.manual_seed(args.seed * 1_000_003 + done)
            gen_kwargs.update(do_sample=True, temperature=args.temperature, top_k=0, top_p=1.0)
        else:
            gen_kwargs.update(do_sample=False)
        with torch.no_grad():
            out = model.generate(torch.from_numpy(prompts), attention_mask=torch.ones_like(torch.from_numpy(prompts)),
                                 **gen_kwargs).numpy()
        with open(tok_path, "ab") as ft:
            recs = []
            for row in out:
                resp = row[plen:]
                stop = np.nonzero(np.isin(resp, stop_ids))[0]
                if len(stop):
                    resp = resp[: stop[0] + 1]
                seq = np.concatenate([row[:plen], resp]).astype("<u2")
                recs.append((end, len(seq), plen))
                ft.write(seq.tobytes())
                end += len(seq)
                gen_tokens += len(resp)
            ft.flush()
            os.fsync(ft.fileno())
        with open(idx_path, "ab") as fi:
            fi.write(np.asarray(recs, dtype="<i8").tobytes())
            fi.flush()
            os.fsync(fi.fileno())
        done += nb
        dt = time.time() - t0
        print(f"gen_data: {done}/{args.num_seqs} seqs, {gen_tokens / dt:.1f} generated tok/s", flush=True)
    print(f"gen_data: {'done' if done >= args.num_seqs else 'paused'} with {done} sequences in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
