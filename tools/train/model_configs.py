#!/usr/bin/env python3
"""Configs of the embedded model pair.

Target (transformers Qwen3_5TextConfig, text-only Qwen3_5ForCausalLM layout): Gated DeltaNet layers with a
gated full-attention layer every 4th (full_attention_interval 4), partial RoPE 0.25 with theta 1e7,
tied embeddings, vocab = the trained tokenizer's.
  seed   hidden 384, 8 layers: trained first (cheap), then grown x2 in width and x2 in depth by grow.py
  grown  hidden 768, 16 layers: >= 100 M parameters, i.e. >= 100 MB at Q8_0 (34 bytes per 32 weights)
Every head count of `grown` is exactly twice the seed's and the head dims are equal, so grow.py can
duplicate heads (see grow.py). Engine constraints checked by `validate_for_engine`: head_dim 64|128,
linear key/value head dim 64|128, Hv = Hk or 2*Hk (here 2*Hk, which exercises the converter's V-head
reorder to tiled order).

Drafter (dflash DFlashDraftModel = Qwen3Config + dflash_config): hidden = target hidden, block 16,
mask token <|mask|>, n_layers drafter layers and as many target_layer_ids chosen by the published default
rule (dflash.model.build_target_layer_ids): n ids evenly spaced from 1 to L-3.

`python model_configs.py` prints the parameter counts and Q8_0 sizes.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROPE_THETA = 10_000_000.0
PARTIAL_ROTARY = 0.25

# name -> dims. Heads of "grown" = 2x "seed" heads (same head dims), hidden and FFN 2x, layers 2x.
TARGET_PRESETS = {
    "seed": dict(hidden_size=384, intermediate_size=768, num_hidden_layers=8, num_attention_heads=3,
                 num_key_value_heads=1, head_dim=128, linear_num_key_heads=2, linear_num_value_heads=4,
                 linear_key_head_dim=128, linear_value_head_dim=128),
    "grown": dict(hidden_size=768, intermediate_size=1536, num_hidden_layers=16, num_attention_heads=6,
                  num_key_value_heads=2, head_dim=128, linear_num_key_heads=4, linear_num_value_heads=8,
                  linear_key_head_dim=128, linear_value_head_dim=128),
    # toy sizes for smoke tests only (head dims not engine-valid on purpose: they keep the test fast)
    "toy-seed": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=16, linear_num_key_heads=1, linear_num_value_heads=2,
                     linear_key_head_dim=16, linear_value_head_dim=16),
    "toy-grown": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
                      linear_key_head_dim=16, linear_value_head_dim=16),
}
GROW_PAIRS = {"seed": "grown", "toy-seed": "toy-grown"}


def mrope_section(head_dim: int) -> list[int]:
    """Interleaved M-RoPE sections summing to the rotary half-dim (Qwen3.5: 32 -> [11, 11, 10]).
    For text all three position rows are equal, so this only has to be well-formed."""
    n = int(head_dim * PARTIAL_ROTARY) // 2
    c = math.ceil(n / 3)
    return [c, c, n - 2 * c]


def target_config(preset: str, vocab_size: int, specials: dict | None = None):
    from transformers import Qwen3_5TextConfig

    if preset not in TARGET_PRESETS:
        raise SystemExit(f"unknown target preset {preset!r}; expected one of {sorted(TARGET_PRESETS)}")
    d = dict(TARGET_PRESETS[preset])
    specials = specials or {}
    eot = specials.get("<|endoftext|>")
    eos = [i for i in (eot, specials.get("<|im_end|>")) if i is not None]
    cfg = Qwen3_5TextConfig(
        vocab_size=vocab_size,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        hidden_act="silu",
        attention_bias=False,
        linear_conv_kernel_dim=4,
        full_attention_interval=4,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA,
                         "partial_rotary_factor": PARTIAL_ROTARY,
                         "mrope_section": mrope_section(d["head_dim"]), "mrope_interleaved": True},
        pad_token_id=eot,
        eos_token_id=eos if len(eos) > 1 else (eos[0] if eos else None),
        **d,
    )
    cfg.architectures = ["Qwen3_5ForCausalLM"]
    return cfg


def validate_for_engine(cfg) -> list[str]:
    """Shape constraints of the C++ engine's kernels; empty list = valid."""
    errs = []
    if cfg.head_dim not in (64, 128):
        errs.append(f"head_dim {cfg.head_dim} not in (64, 128)")
    if cfg.linear_key_head_dim not in (64, 128) or cfg.linear_value_head_dim not in (64, 128):
        errs.append("linear key/value head dims must be 64 or 128")
    if cfg.linear_num_value_heads not in (cfg.linear_num_key_heads, 2 * cfg.linear_num_key_heads):
        errs.append("linear_num_value_heads must be Hk or 2*Hk")
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        errs.append("num_attention_heads not a multiple of num_key_value_heads")
    return errs


def drafter_config(target_cfg, n_layers: int, mask_token_id: int, block_size: int = 16,
                   intermediate_size: int | None = None):
    """DFlashDraftModel config (Qwen3Config + dflash_config), z-lab layout."""
    from dflash.model import build_target_layer_ids
    from transformers import Qwen3Config

    h = target_cfg.hidden_size
    head_dim = target_cfg.head_dim
    n_heads = max(1, h // head_dim)
    n_kv = max(1, n_heads // 2) if n_heads % 2 == 0 else n_heads
    layer_ids = build_target_layer_ids(target_cfg.num_hidden_layers, n_layers)
    cfg = Qwen3Config(
        vocab_size=target_cfg.vocab_size,
        hidden_size=h,
        intermediate_size=intermediate_size or 2 * h,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv,
        head_dim=head_dim,
        hidden_act="silu",
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        attention_bias=False,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
    )
    cfg.architectures = ["DFlashDraftModel"]
    cfg.num_target_layers = target_cfg.num_hidden_layers
    cfg.block_size = block_size
    cfg.dflash_config = {"block_size": block_size, "mask_token_id": int(mask_token_id),
                         "target_layer_ids": list(layer_ids)}
    return cfg


def count_params(cfg, kind: str = "target") -> int:
    import torch

    with torch.device("meta"):
        if kind == "target":
            from transformers import Qwen3_5ForCausalLM

            m = Qwen3_5ForCausalLM(cfg)
        else:
            from dflash.model import DFlashDraftModel

            m = DFlashDraftModel(cfg)
    from common import param_count

    return param_count(m)


def main() -> int:
    vocab = 8192
    specials = {"<|endoftext|>": vocab - 27, "<|im_end|>": vocab - 25, "<|mask|>": vocab - 1}
    for name in ("seed", "grown", "toy-seed", "toy-grown"):
        cfg = target_config(name, vocab, specials)
        n = count_params(cfg)
        emb = vocab * cfg.hidden_size
        errs = validate_for_engine(cfg)
        print(f"target {name:9s}: {n / 1e6:7.2f} M params ({(n - emb) / 1e6:.2f} M non-embedding), "
              f"Q8_0 ~{n * 34 / 32 / 1e6:6.1f} MB, layers {cfg.layer_types.count('linear_attention')} DeltaNet + "
              f"{cfg.layer_types.count('full_attention')} attention"
              + ("" if not errs or name.startswith("toy") else f"  ENGINE-INVALID: {errs}"))
    grown = target_config("grown", vocab, specials)
    for nl in (1, 2, 3, 5):
        d = drafter_config(grown, nl, specials["<|mask|>"])
        n = count_params(d, "drafter")
        print(f"drafter {nl} layers: {n / 1e6:6.2f} M params (no embedding/lm_head), "
              f"target_layer_ids {d.dflash_config['target_layer_ids']}, Q8_0 ~{n * 34 / 32 / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
