#!/usr/bin/env python3
"""Markdown table from dflash-microbench JSON (run with --benchmark_repetitions=N; uses the _min rows).

    build/bin/dflash-microbench --benchmark_filter='BM_Matmul/|BM_MatmulIsa|BM_DramRead|BM_Pool' \
        --benchmark_repetitions=3 --benchmark_out=out.json --benchmark_out_format=json
    python3 tools/bench/matmul_table.py out.json

BM_MatmulIsa rows (integer paths side by side) give a second table: GEMV and GEMM(16) per path.
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
    mm, isa, other = {}, {}, []
    for b in rows:
        m = re.match(r"BM_Matmul/dtype:(\d+)/n:(\d+)/", b["name"])
        mi = re.match(r"BM_MatmulIsa/dtype:(\d+)/n:(\d+)/path:(\d+)/", b["name"])
        if m:
            mm[(int(m.group(1)), int(m.group(2)))] = b
        elif mi:
            isa[(int(mi.group(1)), int(mi.group(2)), int(mi.group(3)))] = b
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
    if isa:
        paths = ["avx2", "vnni-256", "vnni-512"]
        print()
        print("| dtype | path | GEMV n=1 | GEMV GB/s | GEMM n=16 | GEMM(16)/GEMV(1) |")
        print("|---|---|---|---|---|---|")
        for d in sorted({d for (d, _, _) in isa}):
            for p in sorted({p for (dd, _, p) in isa if dd == d}):
                g1, g16 = isa.get((d, 1, p)), isa.get((d, 16, p))
                if not g1 or not g16:
                    continue
                t1, t16 = to_ms(g1), to_ms(g16)
                print(f"| {DTYPES[d]} | {paths[p]} | {t1:.2f} ms | {g1['weight_MB'] / t1:.1f} | "
                      f"{t16:.2f} ms | {t16 / t1:.1f}x |")


if __name__ == "__main__":
    main(sys.argv[1])
