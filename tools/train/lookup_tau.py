#!/usr/bin/env python3
"""How predictable the target's own greedy output is: tau of an n-gram lookup drafter on gen-data.

For each sequence of a `gen_data.py` / `dflash gen-data` output (prompt + the target's greedy response),
replays the decode loop at block B with a draft that needs no model: the continuation that followed
the most recent earlier occurrence of the last 3 tokens (2, then 1 if there is none) in the prompt and
response so far. At T = 0 the target's tokens are known, so a round accepts the longest prefix of that
continuation that matches them, plus one token. Printed: tokens per round (tau) per block size, overall
(tokens / rounds) and per sequence. This is a bound the DFlash drafter should reach or beat on the same
data — it sees the same context — and so a measure of how far its training has to go.

  python lookup_tau.py work/pair-gen-heldout [--limit 8] [--blocks 4,8,16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_data import load_dataset  # noqa: E402


def propose(s: list[int], t: int, n: int, max_gram: int = 3) -> list[int]:
    """Up to n tokens after the latest earlier match of s[t-g:t], for g = max_gram .. 1."""
    for g in range(min(max_gram, t), 0, -1):
        key = s[t - g:t]
        for u in range(t - 1, g - 1, -1):
            if s[u - g:u] == key:
                return s[u:u + n]
    return []


def replay(s: list[int], start: int, block: int) -> int:
    """Rounds the loop needs to produce s[start:] with lookup drafts of block - 1 tokens."""
    t, rounds = start, 0
    while t < len(s):
        draft = propose(s, t, block - 1)
        a = 0
        while a < len(draft) and t + a < len(s) and draft[a] == s[t + a]:
            a += 1
        t += a + 1
        rounds += 1
    return rounds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="gen-data directory (tokens.bin + index.bin)")
    ap.add_argument("--limit", type=int, default=8, help="first N sequences (0 = all)")
    ap.add_argument("--blocks", default="4,8,16")
    args = ap.parse_args()
    toks, idx = load_dataset(args.data)
    seqs = idx if args.limit <= 0 else idx[: args.limit]
    for block in (int(b) for b in args.blocks.split(",")):
        total_tokens = total_rounds = 0
        per = []
        for off, n, plen in seqs:
            s = [int(x) for x in toks[off: off + n]]
            # The first response token comes from the prefill; rounds start after it.
            start = int(plen) + 1
            if start >= len(s):
                continue
            r = replay(s, start, block)
            per.append((len(s) - start) / r)
            total_tokens += len(s) - start
            total_rounds += r
        print(f"B={block}: lookup tau {total_tokens / max(1, total_rounds):.2f} over {len(per)} sequences "
              f"(per sequence: {' '.join(f'{x:.2f}' for x in per)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
