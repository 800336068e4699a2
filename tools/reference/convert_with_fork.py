#!/usr/bin/env python3
"""Run the llama.cpp fork's own convert_hf_to_gguf.py (used as a tool, never copied) on a tiny model.

Usage: convert_with_fork.py LLAMA_FORK_DIR [convert_hf_to_gguf.py arguments...]

Only one thing is changed, in memory: the tiny test tokenizer (a byte-level BPE trained with the Qwen3.5
pre-tokenizer regex, see make_tiny_models.py) has no entry in the converter's table of known tokenizer
hashes, so `get_vocab_base_pre` would refuse it. When - and only when - the hash is unknown we answer
"qwen35", which is the truth for this tokenizer (same pre-tokenizer regex as Qwen3.5). Everything else
(tensor names, +1 folding, ssm_a, V-head reordering, metadata keys) is the converter's own code.
The fork's gguf-py is put first on sys.path: it defines the fork's `dflash-draft` architecture that the
pip gguf package does not know.
"""
import os
import sys


def main():
    fork = os.path.abspath(sys.argv[1])
    sys.path.insert(0, os.path.join(fork, "gguf-py"))
    sys.path.insert(0, fork)
    import convert_hf_to_gguf as conv  # noqa: E402

    original = conv.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            conv.logger.warning("tiny test tokenizer: unknown pre-tokenizer hash, using 'qwen35' (same regex)")
            return "qwen35"

    conv.TextModel.get_vocab_base_pre = get_vocab_base_pre

    # The fork's DFlashDraftModel.set_vocab tries sentencepiece first and falls back to the BPE path on
    # FileNotFoundError (no tokenizer.model). The reference venv has no sentencepiece package, so the
    # import inside _create_vocab_sentencepiece would fail before that check: do the file check first.
    original_spm = conv.TextModel._create_vocab_sentencepiece

    def create_vocab_sentencepiece(self):
        if not (self.dir_model / "tokenizer.model").is_file():
            raise FileNotFoundError(f"File not found: {self.dir_model / 'tokenizer.model'}")
        return original_spm(self)

    conv.TextModel._create_vocab_sentencepiece = create_vocab_sentencepiece
    sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[2:]
    conv.main()


if __name__ == "__main__":
    main()
