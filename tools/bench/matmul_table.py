#!/usr/bin/env python3
"""Markdown table from dflash-microbench JSON (run with --benchmark_repetitions=N; uses the _min rows).

    build/bin/dflash-microbench --benchmark_filter='BM_Matmul/|BM_DramRead|BM_Pool' \
        --benchmark_repetitions=3 --benchmark_out=out.json --benchmark_out_format=json
    python3 tools/bench/matmul_table.py out.json
"""
import json
import re
import sys

DTYPES = ["f32", "f16", "bf16", "q8_0", "q4_K", "q5_K", "q6_K"]


def to_ms(b):
    t = b["real_time"]
    return {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")] * t


def main(path):
    data = json.load(open(path))
    rows = [b for b in data["benchmarks"] if b.get("aggregate_name", "min") == "min"
            and b.get("run_type") in ("aggregate", "iteration")]
    mm, other = {}, []
    for b in rows:
        m = re.match(r"BM_Matmul/dtype:(\d+)/n:(\d+)/", b["name"])
        if m:
            mm[(int(m.group(1)), int(m.group(2)))] = b
        elif b["name"].startswith(("BM_DramRead", "BM_Pool")):
            other.append(b)
    ctx = data.get("context", {})
    print(f"host: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs @ {ctx.get('mhz_per_cpu', '?')} MHz")
    for b in other:
        gbs = b.get("GB/s")
        extra = f", {gbs:.1f} GB/s" if gbs else ""
        print(f"- {b['name']}: {to_ms(b) * 1e3:.2f} us{extra}" if to_ms(b) < 1 else
              f"- {b['name']}: {to_ms(b):.1f} ms{extra}")
    ns = sorted({n for (_, n) in mm})
    print()
    print("| dtype | weights | " + " | ".join(f"n={n}" for n in ns) + " |")
    print("|---|---|" + "---|" * len(ns))
    for d in sorted({d for (d, _) in mm}):
        base = mm.get((d, 1))
        cells = []
        for n in ns:
            b = mm.get((d, n))
            if not b:
                cells.append("")
                continue
            t = to_ms(b)
            gbs = b["weight_MB"] / t  # MB/ms = GB/s
            ratio = t / to_ms(base) if base else float("nan")
            cells.append(f"{t:.2f} ms, {gbs:.1f} GB/s, {ratio:.1f}x")
        mb = mm[(d, ns[0])]["weight_MB"]
        print(f"| {DTYPES[d]} | {mb:.0f} MB | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
