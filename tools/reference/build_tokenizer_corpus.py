#!/usr/bin/env python3
"""Builds the tokenizer conformance corpus from text that Debian packages install on this machine,
plus synthetic cases. Output: tests/data/tokenizer/corpus.bin.gz and corpus_manifest.tsv (every
document: name, origin path, Debian package, licence, bytes).

Deterministic (fixed seeds, fixed file list, sorted catalogs). Run with the reference venv:
  /work/main/tools/reference/.venv/bin/python tools/reference/build_tokenizer_corpus.py
then tools/reference/tokenizer_reference.py to produce the expected ids.

Format of corpus.bin.gz (little endian):
  b"DFTKCORP" u32 version=1 u32 n_docs, then per doc:
  u8 flags (bit0: parse special tokens), u16 name_len, name, u32 n_bytes, bytes (may be invalid UTF-8)
"""
import gettext
import gzip
import os
import random
import struct
import subprocess
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "tests", "data", "tokenizer")

docs = []  # (flags, name, bytes, origin, package, licence)


def owner_package(path):
    try:
        out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True).stdout
        return out.split(":")[0].strip() if out else "?"
    except OSError:
        return "?"


def add(name, data, origin, package, licence, flags=1):
    if isinstance(data, str):
        data = data.encode("utf-8")
    docs.append((flags, name, data, origin, package, licence))


def read(path, limit=None):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    if limit is not None and len(data) > limit:
        cut = data.rfind(b"\n", 0, limit)
        data = data[: cut + 1 if cut > 0 else limit]
    return data


def add_file(path, licence, limit=None, name=None):
    if not os.path.exists(path):
        print("missing (skipped):", path, file=sys.stderr)
        return
    add(name or ("file:" + path), read(path, limit), path, owner_package(path), licence)


# --- source code ---------------------------------------------------------------------------------
PY = "/usr/lib/python3.11/"
for f, lim in [("argparse.py", None), ("typing.py", 60000), ("difflib.py", None), ("textwrap.py", None),
               ("inspect.py", 60000), ("json/decoder.py", None), ("email/_header_value_parser.py", 50000),
               ("string.py", None)]:
    add_file(PY + f, "PSF-2.0 (Python Software Foundation License)", lim)
for f, lic, lim in [
    ("/usr/include/stdlib.h", "LGPL-2.1+ (glibc)", None),
    ("/usr/include/unistd.h", "LGPL-2.1+ (glibc)", None),
    ("/usr/include/linux/bpf.h", "GPL-2.0 WITH Linux-syscall-note", 60000),
    ("/usr/include/zlib.h", "Zlib", None),
    ("/usr/include/pcre2.h", "BSD-3-Clause (PCRE2)", None),
    ("/usr/include/utf8proc.h", "MIT (utf8proc)", None),
    ("/usr/include/c++/12/bits/stl_algo.h", "GPL-3.0+ WITH GCC-exception-3.1", 70000),
    ("/usr/share/cmake-3.25/Modules/FindPkgConfig.cmake", "BSD-3-Clause (CMake)", 40000),
    ("/usr/share/perl5/Dpkg/Changelog.pm", "GPL-2.0+ (dpkg)", None),
    ("/usr/share/perl5/Dpkg/BuildFlags.pm", "GPL-2.0+ (dpkg)", None),
    ("/usr/bin/ldd", "LGPL-2.1+ (glibc)", None),
]:
    add_file(f, lic, lim)

# --- English prose ---------------------------------------------------------------------------------
add_file("/usr/share/common-licenses/GPL-3", "GPL-3.0 text (verbatim copying permitted)")
add_file("/usr/share/common-licenses/Apache-2.0", "Apache-2.0 text")
add_file("/usr/share/man/man1/bash.1.gz", "GPL-3.0+ (bash)", 60000)

# --- translations (gettext catalogs installed by Debian packages) --------------------------------------
MO_LICENCES = {
    "glib20": "LGPL-2.1+ (glib2.0)", "gtk20": "LGPL-2.0+ (gtk+2.0)", "apt": "GPL-2.0+ (apt)",
    "libapt-pkg6.0": "GPL-2.0+ (apt)", "coreutils": "GPL-3.0+ (coreutils)", "dpkg": "GPL-2.0+ (dpkg)",
    "iso_3166-1": "LGPL-2.1+ (iso-codes)", "iso_639-3": "LGPL-2.1+ (iso-codes)", "Linux-PAM": "BSD-3-Clause or GPL (Linux-PAM)",
    "PackageKit": "GPL-2.0+ (PackageKit)", "shared-mime-info": "GPL-2.0+ (shared-mime-info)",
    "xkeyboard-config": "MIT (xkeyboard-config)", "systemd": "LGPL-2.1+ (systemd)", "grep": "GPL-3.0+ (grep)",
    "at-spi2-core": "LGPL-2.1+ (at-spi2-core)", "software-properties": "GPL-2.0+ (software-properties)",
}
LANGS = ["ru", "uk", "bg", "el", "ka", "hy", "ja", "zh_CN", "zh_TW", "ko", "ar", "fa", "he", "hi", "bn", "ta",
         "te", "ml", "mr", "ne", "pa", "gu", "si", "th", "km", "my", "am", "vi", "tr", "de", "fr", "es", "pl"]
PER_LANG = 36000
for lang in LANGS:
    texts = []
    size = 0
    used = []
    for dom in MO_LICENCES:
        path = f"/usr/share/locale/{lang}/LC_MESSAGES/{dom}.mo"
        if not os.path.exists(path) or size >= PER_LANG:
            continue
        with open(path, "rb") as f:
            cat = gettext.GNUTranslations(f)._catalog
        used.append(path)
        for k in sorted(cat, key=lambda k: str(k)):
            v = cat[k]
            if not v or k == "" or (isinstance(k, str) and k == ""):
                continue
            texts.append(v)
            size += len(v.encode("utf-8")) + 1
            if size >= PER_LANG:
                break
    if texts:
        pkgs = ", ".join(sorted({owner_package(p) for p in used}))
        lics = "; ".join(MO_LICENCES[os.path.basename(p)[:-3]] for p in used)
        add(f"po:{lang}", "\n".join(texts) + "\n", " ".join(used), pkgs, lics)

MAN_LICENCES = {"passwd.1.gz": "BSD-3-Clause (shadow: /usr/share/doc/passwd/copyright)",
                "man.1.gz": "GPL-2.0+ (man-db: /usr/share/doc/man-db/copyright)",
                "pstree.1.gz": "GPL-2.0+ (psmisc: /usr/share/doc/psmisc/copyright)",
                "killall.1.gz": "GPL-2.0+ (psmisc: /usr/share/doc/psmisc/copyright)"}
for lang, pages in [("ja", ["man1/passwd.1.gz", "man1/man.1.gz"]), ("zh_CN", ["man1/man.1.gz", "man1/passwd.1.gz"]),
                    ("ru", ["man1/pstree.1.gz", "man1/killall.1.gz"]), ("ko", ["man1/man.1.gz"])]:
    for p in pages:
        add_file(f"/usr/share/man/{lang}/{p}", MAN_LICENCES[os.path.basename(p)], 40000)

# --- synthetic ---------------------------------------------------------------------------------------
SYN = "synthetic (tools/reference/build_tokenizer_corpus.py)", "-", "CC0-1.0"

# Every assigned code point (Python's Unicode 14 database) in contexts that expose its regex class:
# letter runs, marks joining letters, digits, whitespace, punctuation runs, contractions.
sweep = []
big_blocks = [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x17000, 0x187F7), (0x20000, 0x3134A),
              (0xF0000, 0x10FFFF)]
for cp in range(0x110000):
    if any(a + 64 <= cp <= b for a, b in big_blocks):
        continue  # keep 64 of each huge block: same properties throughout
    cat = unicodedata.category(chr(cp))
    if cat in ("Cn", "Cs"):
        continue
    c = chr(cp)
    sweep.append(f"a{c}b {c}{c}1 '{c} {c}\n")
add("syn:unicode-sweep", "".join(sweep), *SYN)

# NFC: canonical decompositions (NFD input must come out composed), marks in non-canonical order.
nfd = []
for cp in range(0x110000):
    c = chr(cp)
    if unicodedata.category(c) in ("Cn", "Cs"):
        continue
    d = unicodedata.normalize("NFD", c)
    if d != c:
        nfd.append(f"{d} x{d}\n")
# Every combining mark (canonical class != 0) between a base and marks of class 230 and 202: shows
# whether the reference reorders/composes across it (its NFC data is older than Python's).
for cp in range(0x110000):
    c = chr(cp)
    if unicodedata.combining(c):
        nfd.append(f"a{c}\u0301 c{c}\u0327 e\u0301{c}\n")
rng = random.Random(1234)
marks = [chr(cp) for cp in range(0x300, 0x370)] + ["\u0951", "\u093c", "\u094d", "\u05b0", "\u0650", "\u0e48", "\u3099",
                                                     "\u1df6", "\u1abf", "\U0001e08f", "\U0001e4ec", "\U00011930"]
bases = list("aeiouAEIOUnsczğ") + ["\U00011935", "\u0915", "\u05d0", "\u0628", "\u0e01", "\u304b", "\u1100", "\u1161", "\u11a8"]
for _ in range(4000):
    nfd.append(rng.choice(bases) + "".join(rng.choice(marks) for _ in range(rng.randint(1, 4))) + rng.choice(["", " ", "x", "\n"]))
add("syn:nfc", "".join(nfd), *SYN)

emoji = ["👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🇺🇸🇩🇪🇯🇵", "1️⃣", "❤️‍🔥", "🧑🏿‍🤝‍🧑🏻", "😶‍🌫️", "🦙🦙", "👍🏻👍🏼👍🏽👍🏾👍🏿",
         "🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅", "#️⃣*️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "\u200d\u200d", "a\u200db", "\ufe0f"]
lines = []
for _ in range(1200):
    k = rng.randint(1, 5)
    lines.append(rng.choice(["", " ", "x", "Hello ", "\n"]).join(rng.choice(emoji) for _ in range(k)) + rng.choice(["\n", " ", "!"]))
add("syn:emoji", "".join(lines), *SYN)

ws = []
for n in [1, 2, 3, 7, 16, 100, 600]:
    for unit in [" ", "\t", "\n", "\r\n", " \n", "\n ", "\u3000", "\u00a0", "\u2003", "\x0b", "\x0c", "\x85", "\u2028"]:
        ws.append("x" + unit * n + "y" + unit * n + "1" + unit * n)
    ws.append("z" + " " * n + "\n" * n + " " * n + "q")
ws.append(" " * 20000 + "end" + "\n" * 5000 + "\t \n" * 2000)
add("syn:whitespace", "".join(ws), *SYN)

digits = []
for n in [1, 2, 3, 4, 5, 10, 50, 1000, 20000]:
    digits.append("".join(str(rng.randint(0, 9)) for _ in range(n)) + " ")
digits.append("3.14159 1,000,000 1e10 0x1F -42 ١٢٣٤ ০১২৩ ๑๒๓ ½ ² Ⅻ 一二三 ")
add("syn:digits", "".join(digits), *SYN)

# Long runs that hit the BPE heap path: letters, punctuation, mixed.
long_runs = ["a" * 3000, " " + "ab" * 2000, "-" * 5000, "=" * 4097, "İ" * 500, "ß" * 700, "x" * 20000,
             "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(30000)), "日本語" * 2000]
add("syn:long-runs", "\n".join(long_runs), *SYN)

special = [
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<think>\nreasoning</think>\n\nanswer", "abc<|endoftext|>def", "<|im_start|><|im_end|><|im_start|>",
    "<|im_start", "im_end|>", "<|im_start|<|im_end|>", "<<|im_start|>>", " <|im_start|> ", "\n<|im_end|>\n",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<|vision_start|><|image_pad|><|vision_end|>", "x<think>y</think>z", "<|endoftext|>" * 5, "<|unknown_token|>",
    "é<|im_end|>\u0301", "<tool_response>ok</tool_response>",
]
spec_text = "\n".join(special * 20)
add("syn:special", spec_text, *SYN, flags=1)
add("syn:special-as-text", spec_text, *SYN, flags=0)

contractions = "I'm you're he's she'd we'll they've it's don't CAN'T I'M YOU'RE 'S 's 'ſ 'Ｓ o'clock rock'n'roll ''' 'll'll 'LL 'Ll 'lL "
add("syn:contractions", contractions * 50, *SYN)

# Random mixtures of code points from many classes (a seeded fuzz corpus the reference also encodes).
pool = [chr(c) for c in list(range(0x20, 0x7f)) * 4 + list(range(0xa0, 0x250)) + list(range(0x300, 0x370)) +
        list(range(0x400, 0x460)) + list(range(0x590, 0x600)) + list(range(0x600, 0x700)) + list(range(0x900, 0x980)) +
        list(range(0xe00, 0xe60)) + list(range(0x3040, 0x3100)) + list(range(0x4e00, 0x4e80)) + list(range(0xac00, 0xac40)) +
        list(range(0x1f300, 0x1f400)) + [0x200d, 0xfe0f, 0x20e3, 0x2028, 0x3000, 0x85, 0xa0, 0x9, 0xa, 0xd]
        if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
rand = []
for _ in range(60000):
    rand.append(rng.choice(pool) if rng.random() < 0.8 else rng.choice([" ", "\n", "'s", "'", "''", "1", " '"]))
add("syn:random-mix", "".join(rand), *SYN)

# Invalid UTF-8 (the reference sees bytes.decode("utf-8", errors="replace")).
inv = [b"abc\xffdef", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
       b"\xe6\x97", b"\xe6\x97 x", b"\xf0\x9f\x98", b"\x80\x80\x80", b"caf\xc3", b"\xc3\x28", b"\xe2\x82\x28",
       b"<|im_start|>\xff<|im_end|>", b"\xef\xbb\xbfBOM", b"\x00nul\x00", b"e\xcc", b"\xcc\x81"]
blob = bytearray()
for i in range(400):
    blob += rng.choice(inv)
    blob += rng.choice([b" ", b"x", b"\n", "é".encode(), b""])
for _ in range(3000):
    blob.append(rng.randrange(256))
add("syn:invalid-utf8", bytes(blob), *SYN)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    raw = bytearray(b"DFTKCORP" + struct.pack("<II", 1, len(docs)))
    for flags, name, data, *_ in docs:
        nb = name.encode()
        raw += struct.pack("<BH", flags, len(nb)) + nb + struct.pack("<I", len(data)) + data
    with open(os.path.join(OUT_DIR, "corpus.bin.gz"), "wb") as f:
        f.write(gzip.compress(bytes(raw), 9, mtime=0))
    with open(os.path.join(OUT_DIR, "corpus_manifest.tsv"), "w") as f:
        f.write("name\tbytes\tparse_special\torigin\tdebian_package\tlicence\n")
        for flags, name, data, origin, pkg, lic in docs:
            f.write(f"{name}\t{len(data)}\t{flags & 1}\t{origin}\t{pkg}\t{lic}\n")
    total = sum(len(d[2]) for d in docs)
    print(f"{len(docs)} documents, {total} bytes; corpus.bin.gz {os.path.getsize(os.path.join(OUT_DIR, 'corpus.bin.gz'))} bytes")


if __name__ == "__main__":
    main()
