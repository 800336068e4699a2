#!/usr/bin/env python3
"""Function-preserving growth of a trained Qwen3.5 seed model to a k-times wider, m-times deeper one.

Width (Net2Net-style neuron splitting, chosen so that it is exact with RMSNorm):
  * Every hidden unit is duplicated k times ([x, x, ...], new unit j copies old unit j mod H). The residual
    stream of the grown model is then k copies of the seed's, so the mean square over the widened
    hidden - the RMSNorm statistic - is unchanged. Splitting only *some* units would change it; that is
    why all units are duplicated uniformly. Norm weights are duplicated too.
  * Weights that read the normalised hidden (q/k/v, in_proj_*, gate/up) get their input columns copied
    and multiplied by split ratios that sum to 1 over the k copies of each unit, so their outputs are
    unchanged. Weights that write into the residual stream (o_proj, out_proj, down_proj, embedding) get
    their output rows duplicated.
  * Inner dims grow by duplicating whole heads (attention q/kv heads, DeltaNet key and value heads) and
    FFN neurons k times; head dims stay, so q/k norms, l2norm and the attention scale are unchanged.
    The GQA and DeltaNet grouping (q head h -> kv head h // g, value head j -> key head j // r) maps a
    copied head onto a copy of its original partner because copies are appended as whole blocks.
    The consumers of duplicated heads/neurons (o_proj, out_proj, down_proj columns) are split.
  * Tied embeddings: the embedding is [E, E, ...] for the input, and the same matrix is the lm_head,
    which would multiply the logits by k; the final norm's effective scale (1 + w) is divided by k instead.
Depth: each block of `full_attention_interval` seed layers is followed by m-1 new blocks whose layers copy
  the seed block's widened weights but have zero output projections (o_proj/out_proj/down_proj), so each
  new layer is the identity on the residual stream and the layer-type pattern is kept.
Symmetry: split ratios are random in [1-s, 1+s] (normalised; still exact), and --noise adds Gaussian
  noise of that relative std to every matrix (the only inexact step; Adam would otherwise move copies
  with proportional gradients in lockstep). test_grow.py checks exactness with --noise 0.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def head_map(n_old: int, k: int, dim: int) -> torch.Tensor:
    """Row map for k copies of n_old heads of size dim, copies appended as whole blocks."""
    i = torch.arange(k * n_old * dim)
    return ((i // dim) % n_old) * dim + i % dim


def split_ratios(col_map: torch.Tensor, n_old: int, spread: float, gen: torch.Generator) -> torch.Tensor:
    """Ratios per new column; the copies of each old column sum to exactly 1."""
    r = 1.0 + spread * (2 * torch.rand(len(col_map), generator=gen, dtype=torch.float64) - 1)
    sums = torch.zeros(n_old, dtype=torch.float64).index_add_(0, col_map, r)
    return r / sums[col_map]


class Grower:
    def __init__(self, s_cfg, g_cfg, spread: float, seed: int):
        self.s, self.g = s_cfg, g_cfg
        k = g_cfg.hidden_size // s_cfg.hidden_size
        checks = {
            "hidden_size": (s_cfg.hidden_size * k, g_cfg.hidden_size),
            "intermediate_size": (s_cfg.intermediate_size * k, g_cfg.intermediate_size),
            "num_attention_heads": (s_cfg.num_attention_heads * k, g_cfg.num_attention_heads),
            "num_key_value_heads": (s_cfg.num_key_value_heads * k, g_cfg.num_key_value_heads),
            "linear_num_key_heads": (s_cfg.linear_num_key_heads * k, g_cfg.linear_num_key_heads),
            "linear_num_value_heads": (s_cfg.linear_num_value_heads * k, g_cfg.linear_num_value_heads),
            "head_dim": (s_cfg.head_dim, g_cfg.head_dim),
            "linear_key_head_dim": (s_cfg.linear_key_head_dim, g_cfg.linear_key_head_dim),
            "linear_value_head_dim": (s_cfg.linear_value_head_dim, g_cfg.linear_value_head_dim),
            "vocab_size": (s_cfg.vocab_size, g_cfg.vocab_size),
            "linear_conv_kernel_dim": (s_cfg.linear_conv_kernel_dim, g_cfg.linear_conv_kernel_dim),
        }
        bad = [f"{n}: need {want}, grown config has {got}" for n, (want, got) in checks.items() if want != got]
        if k < 1 or bad:
            raise SystemExit("grow: grown config is not a k-times widening of the seed:\n  " + "\n  ".join(bad))
        if g_cfg.num_hidden_layers % s_cfg.num_hidden_layers:
            raise SystemExit("grow: grown layer count must be a multiple of the seed's")
        self.k = k
        self.m = g_cfg.num_hidden_layers // s_cfg.num_hidden_layers
        self.spread = spread
        self.gen = torch.Generator().manual_seed(seed)
        self.hmap = head_map(s_cfg.hidden_size, k, 1)
        self.layer_plan = self._plan_layers()

    def _plan_layers(self):
        """Grown position -> (seed layer, is_new). Blocks of the attention interval are repeated m times."""
        s_types, g_types = self.s.layer_types, self.g.layer_types
        f = next((i + 1 for i, t in enumerate(s_types) if t == "full_attention"), len(s_types))
        if len(s_types) % f:
            raise SystemExit(f"grow: seed layers ({len(s_types)}) not a multiple of the attention interval {f}")
        plan = []
        for b in range(len(s_types) // f):
            for c in range(self.m):
                for i in range(f):
                    plan.append((b * f + i, c > 0))
        for p, (src, _) in enumerate(plan):
            if g_types[p] != s_types[src]:
                raise SystemExit(f"grow: layer type mismatch at grown layer {p}: {g_types[p]} vs seed {s_types[src]}")
        return plan

    # -- primitive transforms ------------------------------------------------------------------------
    def reads_hidden(self, w: torch.Tensor, row_map: torch.Tensor | None) -> torch.Tensor:
        """Linear reading the normalised hidden: rows copied by row_map, hidden columns split."""
        if row_map is not None:
            w = w[row_map]
        ratio = split_ratios(self.hmap, self.s.hidden_size, self.spread, self.gen)
        return (w[:, self.hmap].double() * ratio[None, :]).to(w.dtype)

    def writes_hidden(self, w: torch.Tensor, col_map: torch.Tensor, n_old_cols: int) -> torch.Tensor:
        """Linear writing the residual stream: hidden rows duplicated, inner columns split."""
        ratio = split_ratios(col_map, n_old_cols, self.spread, self.gen)
        return (w[self.hmap][:, col_map].double() * ratio[None, :]).to(w.dtype)

    # -- per layer -----------------------------------------------------------------------------------
    def widen_layer(self, sd: dict, prefix: str) -> dict:
        s, k = self.s, self.k
        out = {}
        get = lambda n: sd[prefix + n]  # noqa: E731
        for n in ("input_layernorm.weight", "post_attention_layernorm.weight"):
            out[n] = get(n)[self.hmap].clone()
        if prefix + "linear_attn.in_proj_qkv.weight" in sd:
            hk, hv, dk, dv = s.linear_num_key_heads, s.linear_num_value_heads, s.linear_key_head_dim, \
                s.linear_value_head_dim
            kd = hk * dk
            qkv_map = torch.cat([head_map(hk, k, dk), kd + head_map(hk, k, dk), 2 * kd + head_map(hv, k, dv)])
            vmap = head_map(hv, k, dv)
            hmap1 = head_map(hv, k, 1)
            a = "linear_attn."
            out[a + "in_proj_qkv.weight"] = self.reads_hidden(get(a + "in_proj_qkv.weight"), qkv_map)
            out[a + "in_proj_z.weight"] = self.reads_hidden(get(a + "in_proj_z.weight"), vmap)
            out[a + "in_proj_b.weight"] = self.reads_hidden(get(a + "in_proj_b.weight"), hmap1)
            out[a + "in_proj_a.weight"] = self.reads_hidden(get(a + "in_proj_a.weight"), hmap1)
            out[a + "conv1d.weight"] = get(a + "conv1d.weight")[qkv_map].clone()
            out[a + "dt_bias"] = get(a + "dt_bias")[hmap1].clone()
            out[a + "A_log"] = get(a + "A_log")[hmap1].clone()
            out[a + "norm.weight"] = get(a + "norm.weight").clone()
            out[a + "out_proj.weight"] = self.writes_hidden(get(a + "out_proj.weight"), vmap, hv * dv)
        else:
            nh, nkv, hd = s.num_attention_heads, s.num_key_value_heads, s.head_dim
            a = "self_attn."
            out[a + "q_proj.weight"] = self.reads_hidden(get(a + "q_proj.weight"), head_map(nh, k, 2 * hd))
            out[a + "k_proj.weight"] = self.reads_hidden(get(a + "k_proj.weight"), head_map(nkv, k, hd))
            out[a + "v_proj.weight"] = self.reads_hidden(get(a + "v_proj.weight"), head_map(nkv, k, hd))
            out[a + "q_norm.weight"] = get(a + "q_norm.weight").clone()
            out[a + "k_norm.weight"] = get(a + "k_norm.weight").clone()
            out[a + "o_proj.weight"] = self.writes_hidden(get(a + "o_proj.weight"), head_map(nh, k, hd), nh * hd)
        imap = head_map(s.intermediate_size, k, 1)
        out["mlp.gate_proj.weight"] = self.reads_hidden(get("mlp.gate_proj.weight"), imap)
        out["mlp.up_proj.weight"] = self.reads_hidden(get("mlp.up_proj.weight"), imap)
        out["mlp.down_proj.weight"] = self.writes_hidden(get("mlp.down_proj.weight"), imap, s.intermediate_size)
        return out

    def grow(self, seed_sd: dict) -> dict:
        k = self.k
        g = {}
        g["model.embed_tokens.weight"] = seed_sd["model.embed_tokens.weight"][:, self.hmap].clone()
        # zero-centred norm: effective scale (1 + w) / k compensates the k-fold tied lm_head
        g["model.norm.weight"] = ((1.0 + seed_sd["model.norm.weight"].double()) / k - 1.0)[self.hmap].to(
            seed_sd["model.norm.weight"].dtype)
        widened = {}
        for p, (src, is_new) in enumerate(self.layer_plan):
            if src not in widened or is_new:
                widened[src] = self.widen_layer(seed_sd, f"model.layers.{src}.")
            for n, t in widened[src].items():
                t = t.clone()
                if is_new and n.endswith(("o_proj.weight", "out_proj.weight", "down_proj.weight")):
                    t.zero_()
                g[f"model.layers.{p}.{n}"] = t
        return g


def add_noise(sd: dict, rel_std: float, seed: int) -> None:
    if rel_std <= 0:
        return
    gen = torch.Generator().manual_seed(seed + 1)
    for n, t in sd.items():
        if t.ndim >= 2 and t.is_floating_point():
            std = t.float().std().item()
            if std > 0:
                t.add_(torch.randn(t.shape, generator=gen, dtype=t.dtype) * (rel_std * std))


def grow_model(seed_model, grown_cfg, spread: float = 0.5, noise: float = 0.0, seed: int = 0):
    from transformers import Qwen3_5ForCausalLM

    gr = Grower(seed_model.config, grown_cfg, spread, seed)
    sd = {n: t.detach() for n, t in seed_model.state_dict().items()}
    new_sd = gr.grow(sd)
    add_noise(new_sd, noise, seed)
    model = Qwen3_5ForCausalLM(grown_cfg)  # random init, then every persistent tensor is overwritten
    missing = set(model.state_dict()) - set(new_sd) - {"lm_head.weight"}
    extra = set(new_sd) - set(model.state_dict())
    if missing or extra:
        raise SystemExit(f"grow: state mismatch; missing {sorted(missing)[:5]} extra {sorted(extra)[:5]}")
    model.load_state_dict(new_sd, strict=False)
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise SystemExit("grow: lm_head is not tied to the embedding")
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed-model", type=Path, required=True, help="HF dir of the trained seed")
    ap.add_argument("--preset", default="grown", help="model_configs preset of the grown model")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--spread", type=float, default=0.5, help="split ratio spread s (exact for any s < 1)")
    ap.add_argument("--noise", type=float, default=1e-3, help="relative std of noise added to matrices")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from common import param_count, read_json, set_threads
    from model_configs import target_config

    set_threads(args.threads)
    from transformers import Qwen3_5ForCausalLM

    seed_model = Qwen3_5ForCausalLM.from_pretrained(str(args.seed_model), dtype=torch.float32).eval()
    specials = read_json(args.seed_model / "special_tokens.json")
    g_cfg = target_config(args.preset, seed_model.config.vocab_size, specials)
    exact = grow_model(seed_model, g_cfg, args.spread, 0.0, args.seed).eval()
    grown = grow_model(seed_model, g_cfg, args.spread, args.noise, args.seed).eval()
    ids = torch.randint(0, seed_model.config.vocab_size, (1, 128), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = seed_model(ids).logits
        d_exact = (exact(ids).logits - ref).abs().max().item()
        d_noise = (grown(ids).logits - ref).abs().max().item()
    print(f"grow: {param_count(seed_model) / 1e6:.2f} M -> {param_count(grown) / 1e6:.2f} M params; "
          f"max |logit diff| vs seed: {d_exact:.2e} before noise, {d_noise:.2e} with noise {args.noise} "
          f"(logit scale {ref.abs().max().item():.2f})")
    tmp = args.out.with_name(args.out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    grown.save_pretrained(str(tmp))
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens.json"):
        if (args.seed_model / f).exists():
            shutil.copy2(args.seed_model / f, tmp / f)
    if args.out.exists():
        shutil.rmtree(args.out)
    tmp.rename(args.out)
    print(f"grow: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
