"""Shared helpers for the training scripts: paths, threads, atomic saves, CSV logs, time budget."""

from __future__ import annotations

import csv
import json
import os
import random
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORK = Path(os.environ.get("DFLASH_TRAIN_WORK", HERE / "work"))

# Quiet progress bars of save_pretrained in logs; one thread per library unless asked otherwise.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("RAYON_NUM_THREADS", "1")


def set_threads(n: int) -> None:
    """Pin torch to n intra-op threads (the machine is shared: default 1)."""
    import torch

    torch.set_num_threads(max(1, n))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class CsvLog:
    """Append-only CSV; the header is written once, so a resumed run keeps one file."""

    def __init__(self, path: Path, fields: list[str]):
        self.path = path
        self.fields = fields
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size == 0:
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(fields)

    def row(self, **kv) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([kv.get(k, "") for k in self.fields])


class Budget:
    """Wall-clock budget: `expired()` turns true after max_minutes (0 = unlimited)."""

    def __init__(self, max_minutes: float):
        self.t0 = time.time()
        self.limit = max_minutes * 60.0 if max_minutes and max_minutes > 0 else None

    def elapsed(self) -> float:
        return time.time() - self.t0

    def expired(self) -> bool:
        return self.limit is not None and self.elapsed() >= self.limit


def cosine_lr(step: int, total: int, peak: float, warmup: int, floor_frac: float = 0.1) -> float:
    """Linear warm-up to `peak`, then cosine decay to floor_frac * peak at `total`."""
    import math

    if step < warmup:
        return peak * (step + 1) / max(1, warmup)
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor_frac + (1 - floor_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def param_count(model) -> int:
    seen = set()
    n = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n += p.numel()
    return n
