#!/usr/bin/env python3
"""Measure tau of a trained pair with the reference decode loop (dflash.model.dflash_generate), T = 0.

For each prompt of bench/prompts/{code,prose}.txt (escaped, one per line): AR greedy with the target
(HF generate) and DFlash with the pair; checks that the outputs are identical (losslessness), and reports
the mean acceptance length tau (tokens committed per verify), per prompt set. PyTorch timings are printed
but are not the engine's speed. --chat wraps prompts in the tokenizer's chat template.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, read_json, set_threads, write_json  # noqa: E402


def unescape(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            out.append({"n": "\n", "t": "\t", "\\": "\\"}.get(line[i + 1], "\\" + line[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def np_list(a) -> list[int]:
    return [int(x) for x in a]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", type=Path, required=True)
    ap.add_argument("--drafter", type=Path, required=True)
    ap.add_argument("--prompts", nargs="*", type=Path,
                    default=[REPO / "bench/prompts/code.txt", REPO / "bench/prompts/prose.txt"])
    ap.add_argument("--limit", type=int, default=8, help="prompts per file")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--chat", action="store_true")
    ap.add_argument("--gen-data", type=Path, default=None,
                    help="also run the prompts of a gen_data.py directory (e.g. the held-out one): the same "
                         "distribution train_drafter's predicted tau is measured on")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="write results JSON here")
    args = ap.parse_args()

    set_threads(args.threads)
    import dflash.model as dm
    import torch
    from dflash.model import DFlashDraftModel
    from transformers import AutoTokenizer, Qwen3_5ForCausalLM

    dm._cuda_time = time.perf_counter  # the package times with CUDA syncs; CPU here
    target = Qwen3_5ForCausalLM.from_pretrained(str(args.target), dtype=torch.float32).eval()
    drafter = DFlashDraftModel.from_pretrained(str(args.drafter), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(args.target))
    specials = read_json(args.target / "special_tokens.json")
    stops = [specials["<|endoftext|>"], specials["<|im_end|>"]]
    results = {}
    sets = []
    for pf in args.prompts:
        texts = [unescape(line.rstrip("\n")) for line in open(pf) if line.strip()][: args.limit]
        if args.chat:
            texts = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                             add_generation_prompt=True) for t in texts]
        sets.append((pf.stem + ("-chat" if args.chat else ""), [tok(t)["input_ids"] for t in texts]))
    if args.gen_data:
        from gen_data import load_dataset

        gtoks, gidx = load_dataset(args.gen_data)
        sets.append((f"gen:{args.gen_data.name}",
                     [np_list(gtoks[o: o + p]) for o, _, p in gidx[: args.limit]]))
    for name, prompt_ids in sets:
        accept, same, n_tok, t_ar, t_df = [], 0, 0, 0.0, 0.0
        for pid in prompt_ids:
            ids = torch.tensor([pid])
            t0 = time.perf_counter()
            with torch.no_grad():
                ar = target.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False,
                                     eos_token_id=stops, pad_token_id=stops[0])
            t1 = time.perf_counter()
            st = dm.dflash_generate(drafter, target, ids, args.max_new_tokens, stops, temperature=0.0,
                                    return_stats=True)
            t2 = time.perf_counter()
            t_ar += t1 - t0
            t_df += t2 - t1
            a = ar[0, ids.shape[1]:].tolist()
            d = st.output_ids[0, ids.shape[1]:].tolist()
            same += int(a == d[: len(a)] and len(d) >= len(a))
            accept += st.acceptance_lengths
            n_tok += len(d)
        tau = sum(accept) / max(1, len(accept))
        results[name] = {
            "prompts": len(prompt_ids), "tau": round(tau, 3), "identical_to_ar": f"{same}/{len(prompt_ids)}",
            "torch_ar_tok_s": round(n_tok / max(t_ar, 1e-9), 1), "torch_dflash_tok_s": round(n_tok / max(t_df, 1e-9), 1)}
        print(f"{name}: tau {tau:.3f} over {len(accept)} verifies; identical to AR {same}/{len(prompt_ids)}; "
              f"torch AR {results[list(results)[-1]]['torch_ar_tok_s']} tok/s, "
              f"torch DFlash {results[list(results)[-1]]['torch_dflash_tok_s']} tok/s", flush=True)
    if args.out:
        write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
