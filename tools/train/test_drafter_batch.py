#!/usr/bin/env python3
"""The multi-block training forward of train_drafter.py must equal the inference-time drafter call.

Inference (dflash.model.dflash_generate): for anchor a the drafter gets the context features of tokens
0..a-1 and the block [token[a], MASK...] at positions a..a+B-1, no mask. Training puts all blocks of a
sequence in one forward with a custom mask. Each block's rows must match the single-block call.
Run: /work/main/tools/reference/.venv/bin/python tools/train/test_drafter_batch.py
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import set_threads  # noqa: E402

set_threads(1)

from dflash.model import DFlashDraftModel, extract_context_feature  # noqa: E402
from transformers import Qwen3_5ForCausalLM  # noqa: E402

from model_configs import drafter_config, target_config  # noqa: E402
from train_drafter import build_batch  # noqa: E402


class DrafterBatchTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.target = Qwen3_5ForCausalLM(target_config("toy-grown", 200, {"<|endoftext|>": 190})).eval()
        self.B = 8
        self.mask_id = 199
        dcfg = drafter_config(self.target.config, 2, self.mask_id, self.B)
        self.drafter = DFlashDraftModel(dcfg).eval()
        with torch.no_grad():  # non-trivial norms so that a wrong mask cannot hide behind symmetry
            for n, p in self.drafter.named_parameters():
                if n.endswith("norm.weight"):
                    p.copy_(1 + 0.3 * torch.randn_like(p))
        self.tokens = np.random.default_rng(1).integers(0, 190, size=90)
        with torch.no_grad():
            out = self.target(input_ids=torch.from_numpy(self.tokens)[None], output_hidden_states=True)
        self.feats = extract_context_feature(out.hidden_states, self.drafter.target_layer_ids)[0]

    def embed(self, ids):
        return F.embedding(ids, self.target.get_input_embeddings().weight)

    def test_blocks_match_single_calls(self):
        B = self.B
        rng = np.random.default_rng(5)
        anchors, ids, pos, mask, labels = build_batch(self.tokens, 20, B, 12, self.mask_id, rng)
        self.assertTrue(np.all(np.diff(anchors) > 0) and anchors[0] >= 20 and anchors[-1] <= len(self.tokens) - B)
        for i, a in enumerate(anchors):  # labels are the next B-1 tokens
            self.assertTrue(np.array_equal(labels[i].numpy(), self.tokens[a + 1: a + B]))
        with torch.no_grad():
            multi = self.drafter(position_ids=pos[None], attention_mask=mask[None, None],
                                 noise_embedding=self.embed(ids.reshape(1, -1)), target_hidden=self.feats[None])
            multi = multi.reshape(len(anchors), B, -1)
            worst = 0.0
            for i, a in enumerate(anchors):
                a = int(a)
                single = self.drafter(position_ids=torch.arange(a + B)[None], noise_embedding=self.embed(ids[i][None]),
                                      target_hidden=self.feats[None, :a])[0]
                worst = max(worst, (single - multi[i]).abs().max().item())
        self.assertLess(worst, 1e-4)

    def test_wrong_mask_is_detected(self):
        # negative control: letting blocks see the anchor's own features (k <= a) changes the rows
        B = self.B
        anchors, ids, pos, mask, _ = build_batch(self.tokens, 20, B, 6, self.mask_id, np.random.default_rng(5))
        leaky = mask.clone()
        for i, a in enumerate(anchors):
            leaky[i * B:(i + 1) * B, int(a)] = True
        with torch.no_grad():
            good = self.drafter(position_ids=pos[None], attention_mask=mask[None, None],
                                noise_embedding=self.embed(ids.reshape(1, -1)), target_hidden=self.feats[None])
            bad = self.drafter(position_ids=pos[None], attention_mask=leaky[None, None],
                               noise_embedding=self.embed(ids.reshape(1, -1)), target_hidden=self.feats[None])
        self.assertGreater((good - bad).abs().max().item(), 1e-3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
