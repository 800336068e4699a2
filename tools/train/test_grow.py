#!/usr/bin/env python3
"""grow.py must be function preserving: grown logits == seed logits (before noise).

Run: /work/main/tools/reference/.venv/bin/python tools/train/test_grow.py
Random seed models with non-trivial norm weights, A_log and dt_bias; sequences longer than the DeltaNet
chunk (64) so the chunked recurrence is crossed; two head layouts (Hv = 2 Hk with GQA, and Hv = Hk with
MHA); width x2 and depth x2, and width x3 / depth x1. Negative controls show the comparison can fail.
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import set_threads  # noqa: E402

set_threads(1)

from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig  # noqa: E402

from grow import Grower, grow_model  # noqa: E402
from model_configs import mrope_section  # noqa: E402


def cfg(h, inter, layers, nh, nkv, hk, hv, hd=16, dk=16, vocab=300):
    return Qwen3_5TextConfig(
        vocab_size=vocab, hidden_size=h, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=nh, num_key_value_heads=nkv, head_dim=hd, linear_num_key_heads=hk,
        linear_num_value_heads=hv, linear_key_head_dim=dk, linear_value_head_dim=dk, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                         "mrope_section": mrope_section(hd), "mrope_interleaved": True},
        full_attention_interval=4)


def random_seed_model(c, seed=0):
    torch.manual_seed(seed)
    m = Qwen3_5ForCausalLM(c).eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(0.3 * torch.randn_like(p))  # zero-centred norms: scale 1 + w, not the init 1
            elif n.endswith("A_log"):
                p.copy_(torch.rand_like(p) * 2 - 1)
            elif n.endswith("dt_bias"):
                p.copy_(torch.randn_like(p))
            elif p.ndim >= 2:
                p.copy_(torch.randn_like(p) * (1.0 / p.shape[-1] ** 0.5))
    return m


class GrowTest(unittest.TestCase):
    def check(self, s_cfg, g_cfg, spread=0.5, seq=150):
        seed = random_seed_model(s_cfg)
        grown = grow_model(seed, g_cfg, spread=spread, noise=0.0, seed=3).eval()
        ids = torch.randint(0, s_cfg.vocab_size, (2, seq), generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            ref = seed(ids).logits
            got = grown(ids).logits
        scale = ref.abs().max().item()
        diff = (got - ref).abs().max().item()
        self.assertGreater(scale, 1.0)  # the logits are not trivially small
        self.assertLess(diff, 1e-4 * scale, f"grown logits differ by {diff} (scale {scale})")
        return seed, grown, ids, ref

    def test_width2_depth2_gqa_hv2hk(self):
        s = cfg(32, 48, 4, nh=2, nkv=1, hk=1, hv=2)
        g = cfg(64, 96, 8, nh=4, nkv=2, hk=2, hv=4)
        seed, grown, ids, ref = self.check(s, g)
        # negative control 1: without the 1/k final-norm compensation the tied head scales logits by k
        with torch.no_grad():
            w = grown.model.norm.weight
            w.copy_((1 + w) * 2 - 1)
            bad = grown(ids).logits
        self.assertGreater((bad - ref).abs().max().item(), 1e-2 * ref.abs().max().item())

    def test_width2_depth2_mha_hv_eq_hk(self):
        s = cfg(32, 40, 4, nh=2, nkv=2, hk=2, hv=2)
        g = cfg(64, 80, 8, nh=4, nkv=4, hk=4, hv=4)
        self.check(s, g)

    def test_width3_depth1_unequal_split(self):
        s = cfg(32, 48, 4, nh=2, nkv=1, hk=1, hv=2)
        g = cfg(96, 144, 4, nh=6, nkv=3, hk=3, hv=6)
        self.check(s, g, spread=0.9, seq=70)

    def test_negative_control_partial_widening_breaks_rmsnorm(self):
        # Widening the hidden by *appending zero units* (instead of duplicating all) changes the RMS
        # statistic; the same comparison must catch it.
        s = cfg(32, 48, 4, nh=2, nkv=1, hk=1, hv=2)
        g = cfg(64, 96, 8, nh=4, nkv=2, hk=2, hv=4)
        seed = random_seed_model(s)
        grown = grow_model(seed, g, spread=0.5, noise=0.0, seed=3).eval()
        with torch.no_grad():
            grown.model.embed_tokens.weight[:, 32:] = 0  # one copy of each unit emptied
        ids = torch.randint(0, 300, (1, 80), generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            d = (grown(ids).logits - seed(ids).logits).abs().max().item()
        self.assertGreater(d, 1e-2)

    def test_noise_breaks_symmetry_but_stays_close(self):
        s = cfg(32, 48, 4, nh=2, nkv=1, hk=1, hv=2)
        g = cfg(64, 96, 8, nh=4, nkv=2, hk=2, hv=4)
        seed = random_seed_model(s)
        noisy = grow_model(seed, g, spread=0.5, noise=1e-3, seed=3).eval()
        e = noisy.model.embed_tokens.weight
        self.assertFalse(torch.equal(e[:, :32], e[:, 32:]))
        ids = torch.randint(0, 300, (1, 80), generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            ref = seed(ids).logits
            d = (noisy(ids).logits - ref).abs().max().item()
        self.assertGreater(d, 0.0)
        self.assertLess(d, 0.05 * ref.abs().max().item())

    def test_real_presets_seed_to_grown(self):
        # the shipped shapes: hidden 384 -> 768, 8 -> 16 layers, head dims 128, Hv = 2 Hk
        from model_configs import target_config, validate_for_engine

        sp = {"<|endoftext|>": 8165, "<|im_end|>": 8167, "<|mask|>": 8191}
        s, g = target_config("seed", 8192, sp), target_config("grown", 8192, sp)
        self.assertEqual(validate_for_engine(s), [])
        self.assertEqual(validate_for_engine(g), [])
        self.check(s, g, seq=80)

    def test_layer_plan_keeps_pattern(self):
        s = cfg(32, 48, 8, nh=2, nkv=1, hk=1, hv=2)
        g = cfg(64, 96, 16, nh=4, nkv=2, hk=2, hv=4)
        plan = Grower(s, g, 0.5, 0).layer_plan
        self.assertEqual([p for p, _ in plan], [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7])
        self.assertEqual([n for _, n in plan], [False] * 4 + [True] * 4 + [False] * 4 + [True] * 4)

    def test_rejects_non_multiple(self):
        s = cfg(32, 48, 4, nh=2, nkv=1, hk=1, hv=2)
        g = cfg(64, 100, 8, nh=4, nkv=2, hk=2, hv=4)
        with self.assertRaises(SystemExit):
            Grower(s, g, 0.5, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
