#!/usr/bin/env python3
"""Expected token ids for the tokenizer conformance corpus, from Hugging Face `tokenizers` (the
reference; version pinned in requirements.txt).

  /work/main/tools/reference/.venv/bin/python tools/reference/tokenizer_reference.py [--bench]

Reads tests/data/tokenizer/corpus.bin.gz and tests/data/tokenizer/qwen3/tokenizer.json.gz and writes
tests/data/tokenizer/expected_ids.bin.gz for two tokenizers:
  qwen3  - the real Qwen3 tokenizer.json
  qwen35 - the same file with the Qwen3.5 pre-tokenizer regex swapped in (qwen35.md section 6)
Documents that are not valid UTF-8 are given to the reference as bytes.decode("utf-8", "replace"),
since HF encode() only accepts valid strings; documents with flag bit0 = 0 are encoded with
encode_special_tokens=True (special tokens as plain text).

Format (little endian): b"DFTKIDS1" u32 n_tokenizers, then per tokenizer: u16 name_len, name,
u32 n_docs, per doc: u32 n_ids, then n_ids unsigned LEB128 varints; n_ids = 0xFFFFFFFF means
"identical to the same document of the first tokenizer" (most of the corpus has no \\p{M}).
--bench also prints HF's single-thread encode speed on the whole corpus.
"""
import argparse
import gzip
import json
import os
import struct
import time

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")

QWEN2_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN35_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def read_corpus():
    raw = gzip.decompress(open(os.path.join(DATA, "corpus.bin.gz"), "rb").read())
    assert raw[:8] == b"DFTKCORP"
    ver, n = struct.unpack_from("<II", raw, 8)
    assert ver == 1
    off = 16
    docs = []
    for _ in range(n):
        flags, nl = struct.unpack_from("<BH", raw, off)
        off += 3
        name = raw[off:off + nl].decode()
        off += nl
        (nb,) = struct.unpack_from("<I", raw, off)
        off += 4
        docs.append((flags, name, raw[off:off + nb]))
        off += nb
    return docs


def load_tokenizers():
    text = gzip.decompress(open(os.path.join(DATA, "qwen3", "tokenizer.json.gz"), "rb").read()).decode()
    j = json.loads(text)
    assert j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] == QWEN2_REGEX
    j35 = json.loads(text)
    j35["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = QWEN35_REGEX
    return [("qwen3", Tokenizer.from_str(text)), ("qwen35", Tokenizer.from_str(json.dumps(j35)))]


def encode(tok, flags, data):
    tok.encode_special_tokens = not (flags & 1)
    return tok.encode(data.decode("utf-8", errors="replace"), add_special_tokens=False).ids


def varints(ids):
    out = bytearray()
    for v in ids:
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", action="store_true")
    args = ap.parse_args()
    docs = read_corpus()
    toks = load_tokenizers()
    out = bytearray(b"DFTKIDS1" + struct.pack("<I", len(toks)))
    first = None
    for ti, (name, tok) in enumerate(toks):
        all_ids = [encode(tok, f, d) for f, _, d in docs]
        nb = name.encode()
        out += struct.pack("<H", len(nb)) + nb + struct.pack("<I", len(docs))
        same = 0
        for di, ids in enumerate(all_ids):
            if ti > 0 and ids == first[di]:
                out += struct.pack("<I", 0xFFFFFFFF)
                same += 1
            else:
                out += struct.pack("<I", len(ids)) + varints(ids)
        if ti == 0:
            first = all_ids
        print(f"{name}: {sum(len(i) for i in all_ids)} ids over {len(docs)} docs"
              + (f" ({same} docs identical to {toks[0][0]})" if ti else ""))
    path = os.path.join(DATA, "expected_ids.bin.gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(bytes(out), 9, mtime=0))
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    if args.bench:
        # CPU time of this process (the machine may be shared; wall time would measure the load).
        # HF encodes a single string on the calling thread.
        texts = [(f, n, d.decode("utf-8", errors="replace"), len(d)) for f, n, d in docs]
        groups = {"all": texts, "real text": [t for t in texts if not t[1].startswith("syn:")]}
        for name, tok in toks:
            for g, items in groups.items():
                total = sum(t[3] for t in items)
                best = 1e9
                for _ in range(3):
                    t0 = time.process_time()
                    for f, _, t, _ in items:
                        tok.encode_special_tokens = not (f & 1)
                        tok.encode(t, add_special_tokens=False)
                    best = min(best, time.process_time() - t0)
                print(f"HF tokenizers {name} [{g}]: {total / best / 1e6:.2f} MB/s ({total} bytes, CPU time, best of 3, "
                      f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')})")


if __name__ == "__main__":
    main()
