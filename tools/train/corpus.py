#!/usr/bin/env python3
"""Build the training corpus from text that every machine of this kind has or can install.

Sources (all fixed by versioned packages, so a rebuild on another machine gives the same files; the
manifest records each file's sha256 so that can be checked):
  stdlib   the Python standard library of the interpreter running this script (.py files; PSF-2.0)
  venv     Python sources of selected packages in the pinned reference venv (tools/reference), licence
           read from each package's dist-info METADATA
  headers  C/C++ headers of Debian packages libc6-dev (LGPL-2.1+) and libstdc++-12-dev (GPL-3+ with the
           GCC Runtime Library Exception), enumerated with `dpkg -L`, versions recorded
  prose    /usr/share/common-licenses (Debian base-files: licence texts, verbatim copying permitted) and
           the README/long description in each selected venv package's METADATA (package licence)

Output (under --out, default tools/train/work/corpus):
  train.jsonl, heldout.jsonl   one document per line: {"id", "source", "licence", "text"}
  manifest.json                per source: packages, licences, file counts, bytes; per file: id, sha256, split
Held-out split: a file is held out iff int(sha256(id)[:8], 16) % 50 == 0 (~2 %), stable under additions.
Dedup: exact content hash; the first file in sorted id order is kept.

Also carves bench prompts from the held-out split only (--prompts-dir, default bench/prompts):
  code.txt   function signature + docstring of held-out Python functions (the model writes the body)
  prose.txt  opening words of English docstring paragraphs / prose documents of held-out files
One prompt per line, escaped: backslash -> \\\\, newline -> \\n, tab -> \\t.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata as md
import json
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, WORK, atomic_write_text, write_json  # noqa: E402

# Import names of the venv packages used (permissive licences; all pinned in tools/reference).
DEFAULT_VENV_PACKAGES = [
    "torch", "transformers", "numpy", "sympy", "networkx", "jinja2", "pip",
    "pygments", "huggingface_hub", "tokenizers", "gguf", "dflash",
]
HEADER_PACKAGES = {
    "libc6-dev": "LGPL-2.1-or-later (GNU C Library; see /usr/share/doc/libc6-dev/copyright)",
    "libstdc++-12-dev": "GPL-3.0-or-later WITH GCC-exception-3.1 (see /usr/share/doc/libstdc++-12-dev/copyright)",
}
HEADER_SUFFIXES = (".h", ".hpp", ".tcc")
MAX_BYTES = 512 * 1024
MIN_BYTES = 64
HELDOUT_MOD = 50


def heldout(doc_id: str) -> bool:
    return int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16) % HELDOUT_MOD == 0


def acceptable(text: str) -> bool:
    """Skip data blobs: very long lines or many long lines mean generated tables, not code/prose."""
    if not (MIN_BYTES <= len(text.encode("utf-8")) <= MAX_BYTES):
        return False
    lines = text.split("\n")
    if max(len(line) for line in lines) > 2000:
        return False
    long_lines = sum(1 for line in lines if len(line) > 300)
    return long_lines <= 0.05 * len(lines)


def read_text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text.replace("\r\n", "\n")


def dist_licence(dist: md.Distribution) -> str:
    meta = dist.metadata
    lic = meta.get("License-Expression")
    if lic:
        return lic
    lic = meta.get("License")
    if lic and len(lic) < 80 and "\n" not in lic:
        return lic
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return " / ".join(classifiers) if classifiers else "UNKNOWN (see package)"


def stdlib_docs():
    root = Path(sysconfig.get_paths()["stdlib"])
    ver = f"Python {sys.version.split()[0]}"
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "dist-packages/")):
            continue
        yield f"stdlib/{rel}", p, "PSF-2.0", ver


def venv_docs(packages: list[str]):
    pkg_to_dist = md.packages_distributions()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in packages:
        dists = pkg_to_dist.get(name)
        if not dists:
            print(f"corpus: venv package {name!r} not installed, skipped", file=sys.stderr)
            continue
        dist = md.distribution(dists[0])
        lic = dist_licence(dist)
        ver = f"{dist.metadata['Name']} {dist.version}"
        root = site / name
        for p in sorted(root.rglob("*.py")):
            yield f"venv/{name}/{p.relative_to(root).as_posix()}", p, lic, ver


def header_docs():
    for pkg, lic in HEADER_PACKAGES.items():
        try:
            ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], check=True,
                                 capture_output=True, text=True).stdout.strip()
            files = subprocess.run(["dpkg", "-L", pkg], check=True, capture_output=True, text=True).stdout.split("\n")
        except (OSError, subprocess.CalledProcessError):
            print(f"corpus: Debian package {pkg} not installed, skipped", file=sys.stderr)
            continue
        for f in sorted(set(files)):
            p = Path(f)
            if not f.startswith("/usr/include/") or not p.is_file():
                continue
            # libstdc++ headers have no suffix (<vector>, <map>, ...)
            if not (f.endswith(HEADER_SUFFIXES) or "/c++/" in f and "." not in p.name):
                continue
            yield f"headers/{pkg}{f}", p, lic, f"{pkg} {ver}"


def prose_docs(packages: list[str]):
    root = Path("/usr/share/common-licenses")
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if p.is_file() and not p.is_symlink():
                yield f"prose/common-licenses/{p.name}", p, "verbatim copying permitted (licence text)", "base-files"
    pkg_to_dist = md.packages_distributions()
    for name in packages:
        dists = pkg_to_dist.get(name)
        if not dists:
            continue
        dist = md.distribution(dists[0])
        body = dist.metadata.get_payload() if hasattr(dist.metadata, "get_payload") else None
        if body and len(body) >= MIN_BYTES:
            yield (f"prose/metadata/{name}/DESCRIPTION", body, dist_licence(dist),
                   f"{dist.metadata['Name']} {dist.version}")


# --------------------------------------------------------------------------------------------------
# Prompt carving (held-out split only)


def escape_prompt(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def code_prompts_from(doc_id: str, text: str) -> list[str]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.split("\n")
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body:
            continue
        first = node.body[0]
        if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)) or len(node.body) < 2:
            continue
        start = node.lineno - 1 - len(node.decorator_list)
        end = first.end_lineno  # inclusive line of the docstring's end
        block = "\n".join(lines[start:end])
        block = textwrap.dedent(block) + "\n"
        body_len = node.end_lineno - end
        if 2 <= block.count("\n") <= 20 and 80 <= len(block) <= 900 and body_len >= 3:
            out.append(block)
    return out


_PROSE_KEY: dict[str, str] = {}  # prose prompt -> first source line (for the leak check)
_PROSE_OK = re.compile(r"^[A-Za-z][A-Za-z0-9 ,.;:'()\-\"/]+$")


def prose_prompts_from(doc_id: str, text: str) -> list[str]:
    paragraphs = []
    if doc_id.endswith(".py"):
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            return []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                ds = ast.get_docstring(node)
                if ds:
                    paragraphs += ds.split("\n\n")
    elif doc_id.startswith("prose/"):
        paragraphs = text.split("\n\n")
    out = []
    for para in paragraphs:
        flat = " ".join(para.split())
        words = flat.split(" ")
        if len(words) < 30 or not _PROSE_OK.match(flat) or re.search(r"\w : \w", flat):
            continue  # too short, symbols, or a numpydoc parameter list
        out.append(" ".join(words[:24]))  # the model continues the paragraph
        _PROSE_KEY[out[-1]] = para.strip().split("\n")[0].strip()
    return out


def leak_keys(prompt: str, kind: str) -> list[str]:
    """Lines that, all present in the training split, mark a prompt as a near-duplicate leak."""
    if kind == "prose":
        return [_PROSE_KEY.get(prompt, prompt)]
    lines = [ln.strip() for ln in prompt.split("\n") if ln.strip()]
    sig = next((ln for ln in lines if ln.startswith(("def ", "async def "))), lines[0])
    return [sig, max(lines, key=len)]


def train_line_hashes(path: Path) -> set[int]:
    hashes: set[int] = set()
    with open(path) as f:
        for line in f:
            for ln in json.loads(line)["text"].split("\n"):
                hashes.add(hash(ln.strip()))
    return hashes


def pick(cands: list[tuple[str, str]], n: int, per_doc: int, kind: str = "code",
         train_lines: set[int] | None = None) -> list[tuple[str, str]]:
    """Deterministic, diverse selection: order by hash, at most per_doc prompts per file, and none whose
    key lines all occur in the training split (near-duplicate files, e.g. transformers' modular/modeling
    pairs and "Copied from" code, would otherwise leak held-out prompts into training)."""
    cands = sorted(cands, key=lambda c: hashlib.sha256((c[0] + c[1]).encode()).hexdigest())
    used: dict[str, int] = {}
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for doc_id, p in cands:
        if used.get(doc_id, 0) >= per_doc or p in seen:
            continue
        if train_lines is not None and all(hash(k) in train_lines for k in leak_keys(p, kind)):
            continue
        used[doc_id] = used.get(doc_id, 0) + 1
        seen.add(p)
        out.append((doc_id, p))
        if len(out) == n:
            break
    return out


def prompts_source_md(code, prose, licences: dict[str, str]) -> str:
    lines = ["# bench/prompts — origin", "",
             "Written by `tools/train/corpus.py` from the **held-out split** of the training corpus only",
             "(files with int(sha256(id)[:8], 16) % 50 == 0, never seen in tokenizer or model training).",
             "One prompt per line; escapes: `\\\\` = backslash, `\\n` = newline, `\\t` = tab.", "",
             "- `code.txt`: signature (with decorators) + docstring of a held-out Python function that has a",
             "  body of >= 3 lines; dedented; the model is to write the body.",
             "- Leak check: a candidate is dropped when its signature line and its longest line (prose: the",
             "  paragraph's first line) both occur, stripped, as lines of some training-split file.",
             "- `prose.txt`: the first 24 words of an English paragraph (>= 30 words, letters and simple",
             "  punctuation only, no parameter lists) of a docstring or prose document of a held-out file.", "",
             "Each line below: prompt file:line, source file id in the corpus manifest, licence of that file.", ""]
    for name, items in (("code.txt", code), ("prose.txt", prose)):
        for i, (doc_id, _) in enumerate(items, 1):
            lines.append(f"- {name}:{i} — `{doc_id}` — {licences[doc_id]}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=WORK / "corpus")
    ap.add_argument("--sources", default="stdlib,venv,headers,prose",
                    help="comma list of: stdlib, venv, headers, prose")
    ap.add_argument("--venv-packages", default=",".join(DEFAULT_VENV_PACKAGES))
    ap.add_argument("--max-docs", type=int, default=0, help="toy corpora: stop after this many documents per source")
    ap.add_argument("--prompts-dir", type=Path, default=REPO / "bench" / "prompts")
    ap.add_argument("--no-prompts", action="store_true", help="do not (re)write bench prompts")
    ap.add_argument("--n-prompts", type=int, default=32)
    args = ap.parse_args()

    sources = [s for s in args.sources.split(",") if s]
    packages = [p for p in args.venv_packages.split(",") if p]
    gens = {
        "stdlib": stdlib_docs,
        "venv": lambda: venv_docs(packages),
        "headers": header_docs,
        "prose": lambda: prose_docs(packages),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    seen_hashes: set[str] = set()
    manifest = {"heldout_rule": f"int(sha256(id)[:8],16) % {HELDOUT_MOD} == 0",
                "filters": f"utf-8, {MIN_BYTES}..{MAX_BYTES} bytes, no line > 2000 chars, <= 5% lines > 300 chars, exact dedup",
                "python": sys.version.split()[0], "sources": {}, "files": []}
    code_cands: list[tuple[str, str]] = []
    licences: dict[str, str] = {}
    prose_cands: list[tuple[str, str]] = []
    counts = {"train": [0, 0], "heldout": [0, 0]}
    with open(args.out / "train.jsonl.tmp", "w") as ftrain, open(args.out / "heldout.jsonl.tmp", "w") as fheld:
        for src in sources:
            if src not in gens:
                print(f"corpus: unknown source {src!r} (expected stdlib, venv, headers, prose)", file=sys.stderr)
                return 2
            stats = manifest["sources"].setdefault(src, {"packages": {}, "files": 0, "bytes": 0,
                                                         "skipped_filter": 0, "skipped_dup": 0})
            n_src = 0
            for doc_id, path_or_text, lic, pkgver in gens[src]():
                text = read_text(path_or_text) if isinstance(path_or_text, Path) else path_or_text
                if text is None or not acceptable(text):
                    stats["skipped_filter"] += 1
                    continue
                h = hashlib.sha256(text.encode("utf-8")).hexdigest()
                if h in seen_hashes:
                    stats["skipped_dup"] += 1
                    continue
                seen_hashes.add(h)
                split = "heldout" if heldout(doc_id) else "train"
                rec = {"id": doc_id, "source": src, "licence": lic, "text": text}
                (fheld if split == "heldout" else ftrain).write(json.dumps(rec, ensure_ascii=False) + "\n")
                nbytes = len(text.encode("utf-8"))
                counts[split][0] += 1
                counts[split][1] += nbytes
                stats["files"] += 1
                stats["bytes"] += nbytes
                pk = stats["packages"].setdefault(pkgver, {"licence": lic, "files": 0, "bytes": 0})
                pk["files"] += 1
                pk["bytes"] += nbytes
                manifest["files"].append({"id": doc_id, "sha256": h, "bytes": nbytes, "split": split})
                if split == "heldout":
                    licences[doc_id] = lic
                    if doc_id.endswith(".py"):
                        code_cands += [(doc_id, p) for p in code_prompts_from(doc_id, text)]
                    prose_cands += [(doc_id, p) for p in prose_prompts_from(doc_id, text)]
                n_src += 1
                if args.max_docs and n_src >= args.max_docs:
                    break
    for name in ("train", "heldout"):
        (args.out / f"{name}.jsonl.tmp").replace(args.out / f"{name}.jsonl")
    manifest["splits"] = {k: {"files": v[0], "bytes": v[1]} for k, v in counts.items()}
    write_json(args.out / "manifest.json", manifest)
    for k, v in counts.items():
        print(f"corpus: {k}: {v[0]} files, {v[1] / 1e6:.1f} MB")
    for src, st in manifest["sources"].items():
        print(f"corpus:   {src}: {st['files']} files, {st['bytes'] / 1e6:.1f} MB "
              f"(filtered {st['skipped_filter']}, duplicates {st['skipped_dup']})")

    if not args.no_prompts:
        train_lines = train_line_hashes(args.out / "train.jsonl")
        code = pick(code_cands, args.n_prompts, 2, "code", train_lines)
        prose = pick(prose_cands, args.n_prompts, 2, "prose", train_lines)
        if len(code) < 20 or len(prose) < 20:
            print(f"corpus: only {len(code)} code / {len(prose)} prose prompts in the held-out split "
                  "(need >= 20); prompts not written", file=sys.stderr)
        else:
            args.prompts_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.prompts_dir / "code.txt", "".join(escape_prompt(p) + "\n" for _, p in code))
            atomic_write_text(args.prompts_dir / "prose.txt", "".join(escape_prompt(p) + "\n" for _, p in prose))
            atomic_write_text(args.prompts_dir / "SOURCE.md", prompts_source_md(code, prose, licences))
            print(f"corpus: wrote {len(code)} code and {len(prose)} prose prompts to {args.prompts_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
