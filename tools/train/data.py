"""Token streams for target training: the corpus encoded once into flat uint16 files.

work/tokens/{train,heldout}.bin: little-endian uint16 token ids, each document followed by <|endoftext|>
(the format a C++ tool could write too); meta.json records the tokenizer hash and counts.
Training windows are non-overlapping slices of seq_len+1 tokens (documents are packed, no attention reset),
visited in a seeded random permutation; the cursor into it is part of the resumable state.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from common import atomic_write_bytes, write_json


def tokenizer_hash(tokenizer_dir: Path) -> str:
    return hashlib.sha256((tokenizer_dir / "tokenizer.json").read_bytes()).hexdigest()[:16]


def encode_corpus(corpus: Path, tokenizer_dir: Path, out: Path, max_train_mb: float = 0.0,
                  batch_docs: int = 256) -> dict:
    """Encode train/heldout JSONL into .bin files (skipped if up to date)."""
    from tokenizers import Tokenizer

    meta_path = out / "meta.json"
    th = tokenizer_hash(tokenizer_dir)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("tokenizer") == th and meta.get("max_train_mb") == max_train_mb:
            return meta
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    if tok.get_vocab_size() > 65535:
        raise SystemExit("vocab too large for uint16 token files")
    meta = {"tokenizer": th, "max_train_mb": max_train_mb, "eot": eot}
    t0 = time.time()
    for split in ("train", "heldout"):
        limit = max_train_mb * 1e6 if (split == "train" and max_train_mb > 0) else float("inf")
        chunks, nbytes, ndocs, batch = [], 0, 0, []

        def flush():
            for enc in tok.encode_batch(batch, add_special_tokens=False):
                chunks.append(np.asarray(enc.ids + [eot], dtype=np.uint16))
            batch.clear()

        with open(corpus / f"{split}.jsonl") as f:
            for line in f:
                text = json.loads(line)["text"]
                batch.append(text)
                nbytes += len(text.encode("utf-8"))
                ndocs += 1
                if len(batch) >= batch_docs:
                    flush()
                if nbytes >= limit:
                    break
        if batch:
            flush()
        arr = np.concatenate(chunks) if chunks else np.zeros(0, np.uint16)
        atomic_write_bytes(out / f"{split}.bin", arr.tobytes())
        meta[split] = {"docs": ndocs, "bytes": nbytes, "tokens": int(arr.size)}
        print(f"data: {split}: {ndocs} docs, {nbytes / 1e6:.1f} MB -> {arr.size / 1e6:.2f} M tokens "
              f"({time.time() - t0:.0f}s)", file=sys.stderr)
    write_json(meta_path, meta)
    return meta


def load_tokens(path: Path) -> np.ndarray:
    return np.memmap(path, dtype=np.uint16, mode="r")


class Windows:
    """Seeded permutation of non-overlapping windows; state = (epoch, cursor)."""

    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int):
        self.tokens = tokens
        self.seq_len = seq_len
        self.seed = seed
        self.n = (len(tokens) - 1) // seq_len
        if self.n < 1:
            raise SystemExit(f"token file too short for seq_len {seq_len}: {len(tokens)} tokens")
        self.epoch = 0
        self.cursor = 0
        self._perm = None

    def _permutation(self):
        if self._perm is None:
            self._perm = np.random.default_rng(self.seed + self.epoch).permutation(self.n)
        return self._perm

    def next_batch(self, batch: int) -> np.ndarray:
        out = np.empty((batch, self.seq_len + 1), dtype=np.int64)
        for b in range(batch):
            if self.cursor >= self.n:
                self.epoch += 1
                self.cursor = 0
                self._perm = None
            w = int(self._permutation()[self.cursor])
            self.cursor += 1
            out[b] = self.tokens[w * self.seq_len: w * self.seq_len + self.seq_len + 1]
        return out

    def state(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "seq_len": self.seq_len}

    def load_state(self, st: dict) -> None:
        self.epoch, self.cursor = int(st["epoch"]), int(st["cursor"])
        self._perm = None


def fixed_windows(tokens: np.ndarray, seq_len: int, count: int) -> np.ndarray:
    """The first `count` evenly spread windows: the same held-out batch every evaluation."""
    n = (len(tokens) - 1) // seq_len
    count = min(count, n)
    idx = np.linspace(0, n - 1, count).astype(np.int64)
    return np.stack([np.asarray(tokens[i * seq_len: i * seq_len + seq_len + 1], dtype=np.int64) for i in idx])
