#!/usr/bin/env python3
"""The frozen target as the drafter trainer sees it, read from the engine's GGUF instead of an HF dir.

Drafter training touches only the target's config, its token embedding and its (tied) output head:
the context features come precomputed from `dflash gen-data --features` (the engine runs the target).
Reading those two matrices from the GGUF the engine ships — dequantized exactly as the engine stores
them (Q8_0 etc.) — trains the drafter against precisely the target it will run with, and lets a
session resume drafter training from the committed models/ GGUF without the HF checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace


def _field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    if len(f.types) == 1 and f.types[0].name == "STRING":
        return bytes(f.parts[f.data[0]]).decode()
    vals = [f.parts[i].tolist() for i in f.data]
    vals = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in vals]
    return vals[0] if len(vals) == 1 else vals


class GgufTarget:
    """get_input_embeddings().weight, lm_head(h), config.{hidden_size, head_dim, num_hidden_layers,
    vocab_size}, special token ids — what train_drafter.py needs of Qwen3_5ForCausalLM."""

    def __init__(self, path: Path):
        import numpy as np
        import torch
        from gguf import GGUFReader
        from gguf.quants import dequantize

        r = GGUFReader(str(path))
        arch = _field(r, "general.architecture")
        if arch not in ("qwen35", "qwen35moe"):
            raise SystemExit(f"{path}: general.architecture is {arch!r}, expected a qwen35 target")
        tensors = {t.name: t for t in r.tensors}

        def mat(name):
            t = tensors[name]
            a = dequantize(t.data, t.tensor_type).astype(np.float32)
            return torch.from_numpy(a.reshape(int(t.shape[1]), int(t.shape[0])).copy())

        emb = mat("token_embd.weight")
        head = mat("output.weight") if "output.weight" in tensors else emb
        vocab, hidden = emb.shape
        self.config = SimpleNamespace(
            hidden_size=int(hidden), vocab_size=int(vocab),
            num_hidden_layers=int(_field(r, f"{arch}.block_count")),
            head_dim=int(_field(r, f"{arch}.attention.key_length")),
        )
        self._emb = torch.nn.Embedding.from_pretrained(emb, freeze=True)
        self.lm_head = torch.nn.Linear(hidden, vocab, bias=False)
        self.lm_head.weight = torch.nn.Parameter(head, requires_grad=False)
        toks = _field(r, "tokenizer.ggml.tokens") or []
        names = [bytes(r.fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8", "replace")
                 for i in r.fields["tokenizer.ggml.tokens"].data] if toks else []
        self.special_tokens = {t: i for i, t in enumerate(names) if t.startswith("<|") and t.endswith("|>")}

    def get_input_embeddings(self):
        return self._emb

    def parameters(self):
        return iter([self._emb.weight, self.lm_head.weight])

    def eval(self):
        return self
