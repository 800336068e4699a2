#!/usr/bin/env python3
"""Tiny random-weight Qwen3.5 targets and DFlash drafters, built with the official classes.

Writes tests/data/hf/<name>/ exactly as `save_pretrained` produces it (config.json, model.safetensors,
generation_config.json when transformers writes one) plus a tiny byte-level BPE tokenizer
(tokenizer.json, tokenizer_config.json) that the GGUF converter needs. See tools/reference/README.md.

Run with the reference venv:  tools/reference/.venv/bin/python tools/reference/make_tiny_models.py [--out DIR]
"""
import argparse
import json
import os
import shutil

import torch
from torch import nn

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from transformers.models.qwen3_5.configuration_qwen3_5 import Qwen3_5Config, Qwen3_5TextConfig
from transformers.models.qwen3_5.modeling_qwen3_5 import (
    Qwen3_5ForCausalLM,
    Qwen3_5ForConditionalGeneration,
    Qwen3_5GatedDeltaNet,
    Qwen3_5RMSNorm,
    Qwen3_5RMSNormGated,
)
from transformers.models.qwen3_5_moe.configuration_qwen3_5_moe import Qwen3_5MoeTextConfig
from transformers.models.qwen3_5_moe.modeling_qwen3_5_moe import (
    Qwen3_5MoeForCausalLM,
    Qwen3_5MoeGatedDeltaNet,
    Qwen3_5MoeRMSNorm,
    Qwen3_5MoeRMSNormGated,
)
from transformers.models.qwen3.configuration_qwen3 import Qwen3Config
from dflash.model import DFlashDraftModel

SEED = 20260525
# Qwen3.5 pre-tokenizer regex (transformers models/qwen3_5/tokenization_qwen3_5.py).
QWEN35_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]
# Token ids of the tiny tokenizer (checked against the trained tokenizer in main()): 474 byte/merge
# tokens, then the four specials in SPECIAL_TOKENS order.
EOS_TOKEN_ID = 474      # <|endoftext|>
MASK_TOKEN_ID = 477     # <|mask|>
TOKENIZER_VOCAB = 480  # BPE size incl. 256 byte symbols and the special tokens; all models have vocab >= 512

# Training text for the tiny BPE: fixed, in-repo, deterministic.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "def main():\n    return 0\n\nfor i in range(10):\n    print(i, i * i)\n",
    "Speculative decoding drafts a block of tokens and verifies them with the target model.",
    "Gated DeltaNet layers keep a recurrent state; attention layers keep a key/value cache.",
    "int main(int argc, char** argv) { return argc > 1 ? 0 : 1; }",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 2.71828",
    "Hello, world! How are you today? I'm fine, thanks; and you?",
    "Qwen3.5 uses a hybrid of linear attention and gated softmax attention.",
]


def make_tokenizer(path: str) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN35_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB - len(SPECIAL_TOKENS), min_frequency=1,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    # Specials go after the BPE vocab, like Qwen's added tokens.
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", model_max_length=4096)
    fast.save_pretrained(path)
    return fast


# ----------------------------------------------------------------------------------------------
# Target models
# ----------------------------------------------------------------------------------------------

def rope_params(theta, head_dim, partial=0.25):
    pairs = int(head_dim * partial) // 2
    # Split the rotary pairs into three M-RoPE sections like the real [11, 11, 10] for 32 pairs.
    t = (pairs + 2) // 3
    h = (pairs - t + 1) // 2
    w = pairs - t - h
    return {"rope_type": "default", "rope_theta": float(theta), "partial_rotary_factor": partial,
            "mrope_section": [t, h, w], "mrope_interleaved": True}


TARGETS = {
    # Dense, text-only layout, Hv = 2*Hk, head_dim 32 (rotary 8 dims), interval 3, tied embeddings, F32.
    "qwen35-dense-a": dict(
        kind="dense", layout="causal", dtype="float32",
        text=dict(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=6,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                  linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
                  linear_value_head_dim=16, full_attention_interval=3, tie_word_embeddings=True,
                  rope_parameters=rope_params(1e7, 32), eos_token_id=EOS_TOKEN_ID)),
    # Dense, multimodal layout (Qwen3_5ForConditionalGeneration, model.language_model.* + tiny vision
    # tower), Hv == Hk (odd: 3), head_dim 64 (rotary 16 dims), 3 heads / 1 KV head, interval 4, untied, F32.
    "qwen35-dense-vl": dict(
        kind="dense", layout="vl", dtype="float32",
        text=dict(vocab_size=512, hidden_size=48, intermediate_size=80, num_hidden_layers=5,
                  num_attention_heads=3, num_key_value_heads=1, head_dim=64,
                  linear_num_key_heads=3, linear_num_value_heads=3, linear_key_head_dim=16,
                  linear_value_head_dim=16, full_attention_interval=4, tie_word_embeddings=False,
                  rope_parameters=rope_params(1e7, 64), eos_token_id=EOS_TOKEN_ID)),
    # Dense, explicit unusual layer_types (starts with attention, two attention layers in a row, ends
    # linear), odd head counts Hk=3, Hv=6, 5 query heads / 1 KV head, vocab 1000, untied, stored BF16
    # (A_log and linear_attn.norm kept F32 as in the official checkpoints).
    "qwen35-dense-odd-bf16": dict(
        kind="dense", layout="causal", dtype="bfloat16",
        text=dict(vocab_size=1000, hidden_size=80, intermediate_size=112, num_hidden_layers=7,
                  num_attention_heads=5, num_key_value_heads=1, head_dim=32,
                  linear_num_key_heads=3, linear_num_value_heads=6, linear_key_head_dim=16,
                  linear_value_head_dim=16, tie_word_embeddings=False,
                  layer_types=["full_attention", "linear_attention", "linear_attention", "full_attention",
                               "full_attention", "linear_attention", "linear_attention"],
                  rope_parameters=rope_params(1e6, 32), eos_token_id=EOS_TOKEN_ID)),
    # MoE (qwen3_5_moe), 4 experts top-2 + gated shared expert, Hv = 2*Hk, interval 2, untied, F32.
    "qwen35moe-a": dict(
        kind="moe", layout="causal", dtype="float32",
        text=dict(vocab_size=512, hidden_size=64, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                  linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
                  linear_value_head_dim=16, full_attention_interval=2, tie_word_embeddings=False,
                  num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                  shared_expert_intermediate_size=48,
                  rope_parameters=rope_params(1e7, 32), eos_token_id=EOS_TOKEN_ID)),
}


def randomise_target(model: nn.Module, gen: torch.Generator):
    """Non-degenerate random weights: linear std 0.06, embeddings 1.0, untied lm_head 0.25, zero-centred norms N(0, 0.3)
    (so a missing +1 is visible), gated norm 1 + N(0, 0.3), conv taps std 0.4, A_log U(-1.5, 1.5),
    dt_bias N(0, 0.5)."""
    with torch.no_grad():
        for mod_name, mod in model.named_modules():
            if isinstance(mod, (Qwen3_5GatedDeltaNet, Qwen3_5MoeGatedDeltaNet)):
                mod.A_log.copy_(torch.empty_like(mod.A_log).uniform_(-1.5, 1.5, generator=gen))
                mod.dt_bias.copy_(torch.randn(mod.dt_bias.shape, generator=gen) * 0.5)
                mod.conv1d.weight.copy_(torch.randn(mod.conv1d.weight.shape, generator=gen) * 0.4)
            elif isinstance(mod, (Qwen3_5RMSNormGated, Qwen3_5MoeRMSNormGated)):
                mod.weight.copy_(1.0 + torch.randn(mod.weight.shape, generator=gen) * 0.3)
            elif isinstance(mod, (Qwen3_5RMSNorm, Qwen3_5MoeRMSNorm)):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * 0.3)
            elif isinstance(mod, nn.Embedding):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * 1.0)
            elif isinstance(mod, nn.Linear):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * 0.06)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.02)
        # A larger untied lm_head spreads the logits (std ~2) so greedy argmax margins are comfortable.
        head = getattr(model, "lm_head", None)
        if head is not None and head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.25)
        elif head is not None:  # tied: one matrix serves as embedding and lm_head
            # Small enough that a token's own embedding does not dominate the residual stream (with a
            # large tied matrix the model just repeats its input token).
            head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.05)
        # Final norm (1 + w) around 2.5: spreads the logits; also a clear +1-folding check.
        final_norm = model.get_decoder().norm if hasattr(model, "get_decoder") else model.model.norm
        final_norm.weight.copy_(1.5 + torch.randn(final_norm.weight.shape, generator=gen) * 0.3)
        # Fused MoE expert tensors and router are plain Parameters, not nn.Linear.
        for name, p in model.named_parameters():
            if ".mlp.experts." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.06)
            elif name.endswith(".mlp.gate.weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)  # router: distinct expert choices


def build_target(name: str, spec: dict, gen: torch.Generator):
    text = dict(spec["text"])
    if spec["kind"] == "moe":
        cfg = Qwen3_5MoeTextConfig(**text)
        model = Qwen3_5MoeForCausalLM(cfg)
    elif spec["layout"] == "vl":
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4,
                      temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=text["hidden_size"],
                      num_position_embeddings=16)
        tie = text.pop("tie_word_embeddings")
        cfg = Qwen3_5Config(text_config=text, vision_config=vision, tie_word_embeddings=tie,
                            image_token_id=508, video_token_id=509, vision_start_token_id=510,
                            vision_end_token_id=511)
        model = Qwen3_5ForConditionalGeneration(cfg)
    else:
        cfg = Qwen3_5TextConfig(**text)
        model = Qwen3_5ForCausalLM(cfg)
    model.eval()
    randomise_target(model, gen)
    if getattr(model.config, "tie_word_embeddings", False) or \
            getattr(getattr(model.config, "text_config", None), "tie_word_embeddings", False):
        model.tie_weights()
    if spec["dtype"] == "bfloat16":
        model.to(torch.bfloat16)
        # The official checkpoints keep these two in F32 (qwen35.md §8.2).
        for n, p in model.named_parameters():
            if n.endswith("linear_attn.A_log") or n.endswith("linear_attn.norm.weight"):
                p.data = p.data.float()
    return model


# ----------------------------------------------------------------------------------------------
# DFlash drafters (the authors' DFlashDraftModel: a Qwen3 decoder stack, no embedding / lm_head)
# ----------------------------------------------------------------------------------------------


DRAFTERS = {
    # Block 16, 1 layer, GQA 4/2, one target layer, nested dflash_config, top-level rope_theta (config.json is
    # rewritten after save_pretrained, which would otherwise store it as rope_parameters: older z-lab
    # drafter configs carry a top-level "rope_theta").
    "dflash-b16-l1": dict(target="qwen35-dense-a", cfg=dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, vocab_size=512,
        rope_theta=1e7, max_position_embeddings=4096, num_target_layers=6,
        dflash_config={"target_layer_ids": [3], "block_size": 16, "mask_token_id": MASK_TOKEN_ID}),
        rope_top_level=True),
    # Block 8, 3 layers, GQA 6/2, three target layers (incl. the last layer 5), top-level dflash fields,
    # nested rope_parameters.
    "dflash-b8-l3": dict(target="qwen35-dense-a", cfg=dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=6,
        num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-6, vocab_size=512,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, max_position_embeddings=4096,
        num_target_layers=6, target_layer_ids=[0, 2, 5], block_size=8, mask_token_id=MASK_TOKEN_ID)),
    # Block 8, 2 layers, MQA 2/1, for the MoE target, neither rope_theta nor rope_parameters in config.json
    # (class default applies), two target layers.
    "dflash-b8-l2-moe": dict(target="qwen35moe-a", cfg=dict(
        hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, rms_norm_eps=1e-6, vocab_size=512,
        max_position_embeddings=4096, num_target_layers=4,
        dflash_config={"target_layer_ids": [1, 2], "block_size": 8, "mask_token_id": MASK_TOKEN_ID}),
        strip_rope=True),
}


def build_drafter(spec: dict, gen: torch.Generator):
    cfg = Qwen3Config(**spec["cfg"])
    cfg.architectures = ["DFlashDraftModel"]
    model = DFlashDraftModel(cfg)
    model.eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + torch.randn(p.shape, generator=gen) * 0.3)  # plain Qwen3 RMSNorm x̂·w
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
    return model


def rewrite_rope_in_config(path: str, top_level: bool):
    """Drafter config fixtures for the other RoPE spellings: top_level=True moves rope_parameters.rope_theta
    to a top-level "rope_theta"; top_level=False removes every RoPE key ('neither rope_theta nor
    rope_parameters'). Everything else stays as transformers wrote it."""
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    theta = cfg.get("rope_parameters", {}).get("rope_theta")
    cfg.pop("rope_theta", None)
    cfg.pop("rope_parameters", None)
    cfg.pop("rope_scaling", None)
    if top_level:
        cfg["rope_theta"] = theta
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "hf"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)

    tok_dir = os.path.join(out, ".tokenizer")
    tok = make_tokenizer(tok_dir)
    assert tok.convert_tokens_to_ids("<|endoftext|>") == EOS_TOKEN_ID, tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.convert_tokens_to_ids("<|mask|>") == MASK_TOKEN_ID

    for i, (name, spec) in enumerate(TARGETS.items()):
        gen = torch.Generator().manual_seed(SEED + i)
        model = build_target(name, spec, gen)
        path = os.path.join(out, name)
        shutil.rmtree(path, ignore_errors=True)
        model.save_pretrained(path)
        for f in os.listdir(tok_dir):
            shutil.copy(os.path.join(tok_dir, f), path)
        n = sum(p.numel() for p in model.parameters())
        print(f"{name}: {type(model).__name__}, {n} params, dtype {spec['dtype']}")

    for i, (name, spec) in enumerate(DRAFTERS.items()):
        gen = torch.Generator().manual_seed(SEED + 100 + i)
        model = build_drafter(spec, gen)
        path = os.path.join(out, name)
        shutil.rmtree(path, ignore_errors=True)
        model.save_pretrained(path)
        if spec.get("strip_rope") or spec.get("rope_top_level"):
            rewrite_rope_in_config(path, top_level=bool(spec.get("rope_top_level")))
        # z-lab drafter repositories ship the target's tokenizer files; the fork's converter needs them.
        for f in os.listdir(tok_dir):
            shutil.copy(os.path.join(tok_dir, f), path)
        n = sum(p.numel() for p in model.parameters())
        print(f"{name}: DFlashDraftModel, {n} params, target {spec['target']}")
    shutil.rmtree(tok_dir)


if __name__ == "__main__":
    main()
