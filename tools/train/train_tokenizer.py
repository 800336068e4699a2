#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer of the embedded model pair (Qwen3.5 scheme, small vocab).

Scheme = Qwen3.5's (transformers Qwen3_5Tokenizer / qwen35.md section 6): NFC normalizer; pre-tokenizer
Split(Qwen3.5 regex, isolated) then ByteLevel(add_prefix_space=False, use_regex=False); BPE without unk
or byte fallback; ByteLevel decoder. The 256 byte symbols are the initial alphabet, so every input
encodes. Ordinary BPE tokens take ids 0..V-n_special-1 and the added tokens follow in Qwen's order
(<|endoftext|> first), ending with <|mask|>, the DFlash mask token; total = --vocab-size rows.

Writes tokenizer.json, tokenizer_config.json (with the Qwen3.5 chat template) and
special_tokens.json (name -> id, read by model_configs.py) into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, WORK, atomic_write_text, write_json  # noqa: E402

QWEN35_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# (content, special) in Qwen's id order; special=False ones are decoded like text (as in Qwen3).
ADDED_TOKENS = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
    ("<|mask|>", True),
]
CHAT_TEMPLATE = Path("/work/shared/data/chat-templates/qwen3.5.jinja")


def iter_texts(corpus: Path, max_mb: float):
    """Deterministic sample of the training split: every k-th document so that ~max_mb are read."""
    path = corpus / "train.jsonl"
    total = path.stat().st_size
    stride = max(1, int(total / (max_mb * 1e6))) if max_mb > 0 else 1
    with open(path) as f:
        for i, line in enumerate(f):
            if i % stride == 0:
                yield json.loads(line)["text"]


def build(vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN35_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=WORK / "corpus")
    ap.add_argument("--out", type=Path, default=WORK / "tokenizer")
    ap.add_argument("--vocab-size", type=int, default=8192, help="total rows incl. added tokens")
    ap.add_argument("--max-mb", type=float, default=60.0, help="training text sample size (0 = all)")
    ap.add_argument("--min-frequency", type=int, default=2)
    args = ap.parse_args()

    from tokenizers import AddedToken, pre_tokenizers, trainers

    n_bpe = args.vocab_size - len(ADDED_TOKENS)
    if n_bpe < 300:
        print(f"train_tokenizer: --vocab-size {args.vocab_size} too small (need >= {300 + len(ADDED_TOKENS)})",
              file=sys.stderr)
        return 2
    tok = build(args.vocab_size)
    trainer = trainers.BpeTrainer(vocab_size=n_bpe, min_frequency=args.min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    t0 = time.time()
    tok.train_from_iterator(iter_texts(args.corpus, args.max_mb), trainer=trainer)
    got = tok.get_vocab_size()
    if got != n_bpe:
        # The trainer stops early when the sample has too few distinct pairs (toy corpora); pad with
        # never-produced placeholder added tokens would change the scheme, so report it instead.
        print(f"train_tokenizer: BPE vocabulary has {got} tokens, asked {n_bpe} (sample too small?)",
              file=sys.stderr)
    tok.add_tokens([AddedToken(c, special=s, normalized=False, lstrip=False, rstrip=False, single_word=False)
                    for c, s in ADDED_TOKENS])
    print(f"train_tokenizer: trained in {time.time() - t0:.1f}s, vocab {tok.get_vocab_size()}")

    # Spell the byte-level components exactly as Qwen's tokenizer.json does (the library's defaults
    # differ in flags that do not change ids, but readers compare these fields).
    from tokenizers import Tokenizer

    j = json.loads(tok.to_str())
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    j["pre_tokenizer"]["pretokenizers"][1] = dict(byte_level)
    j["post_processor"] = dict(byte_level)
    j["decoder"] = dict(byte_level)
    j["model"]["continuing_subword_prefix"] = ""
    j["model"]["end_of_word_suffix"] = ""
    tok = Tokenizer.from_str(json.dumps(j, ensure_ascii=False))
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "tokenizer.json", json.dumps(j, ensure_ascii=False, indent=2) + "\n")

    specials = {c: tok.token_to_id(c) for c, _ in ADDED_TOKENS}
    added_decoder = {str(specials[c]): {"content": c, "lstrip": False, "normalized": False, "rstrip": False,
                                        "single_word": False, "special": s} for c, s in ADDED_TOKENS}
    cfg = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added_decoder,
        "additional_special_tokens": [c for c, s in ADDED_TOKENS if s and c != "<|endoftext|>"],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE.read_text() if CHAT_TEMPLATE.exists() else None,
        "clean_up_tokenization_spaces": False,
        # A base LM trained on documents separated by <|endoftext|>; stop also on <|im_end|> (chat).
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }
    if cfg["chat_template"] is None:
        print(f"train_tokenizer: {CHAT_TEMPLATE} missing, tokenizer_config.json has no chat_template",
              file=sys.stderr)
        del cfg["chat_template"]
    write_json(args.out / "tokenizer_config.json", cfg)
    write_json(args.out / "special_tokens.json", specials)

    # Self-check: round trip on held-out text, compression, and that AutoTokenizer reads it identically.
    held = []
    with open(args.corpus / "heldout.jsonl") as f:
        for line in f:
            held.append(json.loads(line)["text"])
    sample = "".join(held)[:2_000_000]
    ids = tok.encode(sample).ids
    import unicodedata
    assert tok.decode(ids) == unicodedata.normalize("NFC", sample), "decode(encode(x)) != NFC(x)"
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(args.out))
    probe = sample[:20000] + "<|im_start|>user\nhi<|im_end|>\n"
    assert hf(probe)["input_ids"] == tok.encode(probe).ids, "AutoTokenizer disagrees with tokenizer.json"
    rendered = hf.apply_chat_template([{"role": "user", "content": "Write a sort."}], tokenize=False,
                                      add_generation_prompt=True) if "chat_template" in cfg else ""
    stats = {"vocab_size": tok.get_vocab_size(), "bpe_tokens": got, "specials": specials,
             "heldout_bytes_per_token": round(len(sample.encode()) / max(1, len(ids)), 3),
             "chat_template_probe": rendered}
    write_json(args.out / "stats.json", stats)
    print(f"train_tokenizer: held-out {stats['heldout_bytes_per_token']} bytes/token; "
          f"<|endoftext|>={specials['<|endoftext|>']} <|mask|>={specials['<|mask|>']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
