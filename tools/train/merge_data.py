#!/usr/bin/env python3
"""Concatenate drafter training-data directories (gen_data.py / `dflash gen-data` output) into one.

    merge_data.py OUT DIR1 DIR2 ...

tokens.bin and features.bin are appended in order, index.bin offsets shifted accordingly; every input
must be complete (features.count == its sequence count) and hold features of the same layers. Used to
train on data generated in several runs (e.g. a first 1600 prompts, then a second prompt set).
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def read_index(p: Path) -> np.ndarray:
    raw = np.fromfile(p, dtype="<i8")
    if raw.size % 3:
        raise SystemExit(f"merge_data: {p} is not a whole number of (offset, length, prompt_len) triples")
    return raw.reshape(-1, 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("inputs", type=Path, nargs="+")
    args = ap.parse_args()
    metas = []
    for d in args.inputs:
        idx = read_index(d / "index.bin")
        total = int(idx[-1, 0] + idx[-1, 1]) if len(idx) else 0
        if (d / "tokens.bin").stat().st_size != 2 * total:
            raise SystemExit(f"merge_data: {d}/tokens.bin does not match its index (interrupted run?)")
        meta = json.loads((d / "features.json").read_text()) if (d / "features.json").exists() else None
        if meta is not None:
            count = int((d / "features.count").read_text())
            if count != len(idx) or (d / "features.bin").stat().st_size != total * meta["width"] * 2:
                raise SystemExit(f"merge_data: {d}/features.bin is incomplete: finish its gen-data run first")
        metas.append(meta)
    if any(m != metas[0] for m in metas):
        raise SystemExit("merge_data: the inputs hold features of different layers/widths (or some none)")
    args.out.mkdir(parents=True, exist_ok=True)
    shift, n_seqs = 0, 0
    with open(args.out / "tokens.bin", "wb") as ft, open(args.out / "index.bin", "wb") as fi:
        for d in args.inputs:
            idx = read_index(d / "index.bin").copy()
            idx[:, 0] += shift
            idx.astype("<i8").tofile(fi)
            with open(d / "tokens.bin", "rb") as src:
                shutil.copyfileobj(src, ft, 1 << 24)
            shift += int(idx[-1, 0] + idx[-1, 1] - shift) if len(idx) else 0
            n_seqs += len(idx)
    if metas[0] is not None:
        with open(args.out / "features.bin", "wb") as ff:
            for d in args.inputs:
                with open(d / "features.bin", "rb") as src:
                    shutil.copyfileobj(src, ff, 1 << 24)
        (args.out / "features.json").write_text(json.dumps(metas[0]) + "\n")
        (args.out / "features.count").write_text(str(n_seqs))
    print(f"merge_data: {n_seqs} sequences, {shift} tokens from {len(args.inputs)} inputs into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
