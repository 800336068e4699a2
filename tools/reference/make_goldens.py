#!/usr/bin/env python3
"""Goldens for the tiny Qwen3.5 targets, computed by transformers (the reference), stored as GGUF.

For every target in tests/data/hf/<name>/ writes tests/golden/qwen35/<name>.gguf. Layout of each file:
tools/reference/README.md ("Target goldens"). All computation is float32 (BF16 checkpoints are upcast,
exactly, on load); torch runs single-threaded so the files are reproducible bit for bit.
"""
import argparse
import json
import os

import numpy as np
import torch
from transformers import AutoModelForCausalLM, DynamicCache
from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5ForConditionalGeneration

import gguf_golden as gg

TARGETS = ["qwen35-dense-a", "qwen35-dense-vl", "qwen35-dense-odd-bf16", "qwen35moe-a"]
PROMPT_LEN = 33          # main prompt (odd on purpose)
N_PREFILL = 13           # incremental check: prefill this many prompt tokens, then one token at a time
LONG_PROMPT_LEN = 100    # > 64: spans two chunks of HF's chunked delta rule
N_GEN = 64
SEED = 1234


def load(name, root):
    path = os.path.join(root, name)
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    if cfg["architectures"][0].endswith("ForConditionalGeneration"):
        model = Qwen3_5ForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
        lm = model.model.language_model
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        lm = model.model
    model.eval()
    return model, lm, cfg


def text_config(model):
    return model.config.get_text_config()


def prompt_ids(n, vocab_text, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_text, (1, n), generator=g)


@torch.inference_mode()
def run_target(name, root, out_dir):
    model, lm, cfg = load(name, root)
    tc = text_config(model)
    layer_types = list(tc.layer_types)
    n_layer = tc.num_hidden_layers
    V = tc.vocab_size
    # Prompt ids drawn from the tokenizer's byte/merge range (0..473) so they are real tokens.
    ids = prompt_ids(PROMPT_LEN, 474, SEED)
    long_ids = prompt_ids(LONG_PROMPT_LEN, 474, SEED + 1)

    # 1) Full prompt in one forward, with a cache so the final states can be read.
    layer_out = []
    hooks = [layer.register_forward_hook(lambda m, i, o: layer_out.append(o[0] if isinstance(o, tuple) else o))
             for layer in lm.layers]
    cache = DynamicCache(config=tc)
    out = model(ids, past_key_values=cache, use_cache=True, output_hidden_states=True)
    for h in hooks:
        h.remove()
    logits = out.logits[0].float().numpy()
    hs = out.hidden_states
    assert len(layer_out) == n_layer and len(hs) == n_layer + 1
    tensors = {"logits": logits, "hidden.embd": hs[0][0].numpy()}
    for i in range(n_layer):
        tensors[f"hidden.{i}"] = layer_out[i][0].numpy()            # raw output of decoder layer i
    tensors["hidden.final_norm"] = hs[n_layer][0].numpy()          # HF's last hidden_states entry is post-norm
    for i, t in enumerate(layer_types):
        layer = cache.layers[i]
        if t == "linear_attention":
            tensors[f"conv_state.{i}"] = layer.conv_states[0][0].numpy()          # [conv_dim, K]
            tensors[f"recurrent_state.{i}"] = layer.recurrent_states[0][0].numpy()  # [Hv, Dk, Dv]
        else:
            tensors[f"kv.k.{i}"] = layer.keys[0].numpy()      # [n_kv, T, head_dim] (post k_norm + RoPE)
            tensors[f"kv.v.{i}"] = layer.values[0].numpy()    # [n_kv, T, head_dim]

    # 2) Incremental: prefill N_PREFILL tokens, then one token per forward (HF's recurrent kernel path).
    cache2 = DynamicCache(config=tc)
    rows = [model(ids[:, :N_PREFILL], past_key_values=cache2, use_cache=True).logits[0]]
    for t in range(N_PREFILL, PROMPT_LEN):
        rows.append(model(ids[:, t:t + 1], past_key_values=cache2, use_cache=True).logits[0])
    inc_logits = torch.cat(rows, 0).numpy()
    tensors["inc.logits"] = inc_logits
    for i, t in enumerate(layer_types):
        if t == "linear_attention":
            tensors[f"inc.recurrent_state.{i}"] = cache2.layers[i].recurrent_states[0][0].numpy()
            tensors[f"inc.conv_state.{i}"] = cache2.layers[i].conv_states[0][0].numpy()

    # 3) Long prompt (two chunks of the chunked delta rule): logits at every position.
    tensors["long.logits"] = model(long_ids).logits[0].numpy()

    # 4) Greedy continuation with generate (no EOS stop: always N_GEN tokens). Explicit all-ones attention
    # mask and a pad id outside the prompt range: generate() otherwise derives mask and positions from
    # pad_token_id and treats prompt tokens equal to it as padding.
    gen = model.generate(ids, max_new_tokens=N_GEN, min_new_tokens=0, do_sample=False, eos_token_id=None,
                         pad_token_id=474, attention_mask=torch.ones_like(ids), output_logits=True,
                         return_dict_in_generate=True)
    gen_ids = gen.sequences[0, PROMPT_LEN:].numpy().astype(np.int32)
    gen_logits = torch.cat([l for l in gen.logits], 0).float().numpy()   # [N_GEN, V]; row i produced token i
    assert (gen_logits.argmax(-1) == gen_ids).all()
    assert np.abs(gen_logits[0] - logits[-1]).max() < 1e-3, "generate's first step disagrees with the forward"
    tensors["gen.logits"] = gen_logits
    tensors["prompt"] = ids[0].numpy().astype(np.int32)
    tensors["long.prompt"] = long_ids[0].numpy().astype(np.int32)
    tensors["gen.tokens"] = gen_ids

    stats = {
        "inc_vs_full_logits_max_abs": float(np.abs(inc_logits - logits).max()),
        "inc_vs_full_state_max_abs": max(
            [float(np.abs(tensors[f"inc.recurrent_state.{i}"] - tensors[f"recurrent_state.{i}"]).max())
             for i, t in enumerate(layer_types) if t == "linear_attention"] or [0.0]),
        "logits_abs_max": float(np.abs(logits).max()),
        "gen_min_top2_margin": float(np.min(np.diff(np.sort(gen_logits, -1)[:, -2:], axis=-1))),
        "logits_min_top2_margin": float(np.min(np.diff(np.sort(logits, -1)[:, -2:], axis=-1))),
    }
    meta = {
        "golden.model": name,
        "golden.hf_class": type(model).__name__,
        "golden.layer_types": layer_types,
        "golden.n_layer": n_layer,
        "golden.n_vocab": V,
        "golden.prompt_len": PROMPT_LEN,
        "golden.n_prefill": N_PREFILL,
        "golden.long_prompt_len": LONG_PROMPT_LEN,
        "golden.n_gen": N_GEN,
        "golden.compute_dtype": "float32",
        "golden.v_head_order": "hf_grouped",
        "golden.linear_num_key_heads": tc.linear_num_key_heads,
        "golden.linear_num_value_heads": tc.linear_num_value_heads,
        "golden.linear_key_head_dim": tc.linear_key_head_dim,
        "golden.linear_value_head_dim": tc.linear_value_head_dim,
        "golden.conv_kernel": tc.linear_conv_kernel_dim,
        "golden.generator": "transformers " + __import__("transformers").__version__ + ", torch " + torch.__version__,
    }
    os.makedirs(out_dir, exist_ok=True)
    gg.write(os.path.join(out_dir, name + ".gguf"), meta, tensors)
    return stats


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", default=os.path.join(here, "..", "..", "tests", "data", "hf"))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "golden", "qwen35"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    all_stats = {}
    for name in TARGETS:
        all_stats[name] = run_target(name, os.path.abspath(args.hf), os.path.abspath(args.out))
        print(name, json.dumps(all_stats[name]))
    with open(os.path.join(os.path.abspath(args.out), "stats.json"), "w") as f:
        json.dump(all_stats, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
