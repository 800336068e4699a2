#!/usr/bin/env python3
"""Cross-check vectors for the quant codecs, produced with the public gguf-py (gguf.quants).

Writes raw little-endian files into tests/data/quant/:
  q8_0_input.f32   float32 input rows (n_q8 blocks of 32, mixed distributions, rounding ties, zero block)
  q8_0_gguf.bin    gguf.quants.quantize(input, Q8_0) bytes (bit-exact with ggml's reference)
  f16_input.f32    special values for the scalar conversions (ties, subnormals, inf, nan, overflow)
  f16_gguf.bin     gguf.quants.quantize(f16_input, F16)  (numpy float16 cast, round-to-nearest-even)
  bf16_gguf.bin    gguf.quants.quantize(f16_input, BF16)
  {q4_k,q5_k,q6_k}_blocks.bin   random blocks (random bytes, with finite random fp16 super-scales)
  {q4_k,q5_k,q6_k}_dequant.f32  gguf.quants.dequantize(blocks)
Run: /work/main/tools/reference/.venv/bin/python tools/reference/quant_vectors.py
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "quant")
rng = np.random.default_rng(20261125)


def write(name, arr):
    path = os.path.join(OUT, name)
    np.ascontiguousarray(arr).tofile(path)
    print(f"{name}: {os.path.getsize(path)} bytes")


def q8_0_input():
    blocks = [
        rng.normal(0.0, 1.0, 32),
        rng.normal(0.0, 0.02, 32),              # typical weight magnitude
        rng.uniform(-3.0, 3.0, 32),
        rng.standard_t(2.0, 32) * 0.1,          # heavy tails
        np.zeros(32),                            # all-zero block: d = 0
        np.full(32, -0.75),                      # constant negative
        np.concatenate([[127.0], np.arange(-15.5, 15.5, 1.0)]),  # d == 1: exact .5 ties
        np.concatenate([[-127.0], rng.integers(-126, 126, 31) + 0.5]),  # negative max, ties
        rng.normal(0.0, 1.0, 32) * 1e-6,         # tiny values
        rng.normal(0.0, 1.0, 32) * 1e-9,         # d in fp16 subnormal range
        np.concatenate([rng.normal(0, 0.01, 31), [50.0]]),  # outlier
        rng.normal(0.0, 100.0, 32),
    ]
    return np.concatenate(blocks).astype(np.float32)


def special_f16_input():
    v = [0.0, -0.0, 1.0, -1.0, 0.5, 65504.0, 65520.0, 65519.0, 1e6, -1e6, 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8,
         1e-10, np.inf, -np.inf, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 3.0e-5, -4.5e-6, 0.1, 1 / 3, 2.0**-24 * 1.5]
    bf = [1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 3.3895e38, 1e-39, -1e-40]
    x = np.array(v + bf, dtype=np.float32)
    return np.concatenate([x, rng.normal(0, 1, 64 - x.size).astype(np.float32)])


def random_k_blocks(qtype, type_size, d_offsets, n_blocks=6):
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in d_offsets:  # finite fp16 super-block scales of either sign
        d = (rng.uniform(0.2, 1.0, n_blocks) * rng.choice([-1.0, 1.0], n_blocks) * 0.01).astype(np.float16)
        raw[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    deq = quants.dequantize(raw, qtype).astype(np.float32)
    return raw, deq


def main():
    os.makedirs(OUT, exist_ok=True)
    x = q8_0_input()
    write("q8_0_input.f32", x)
    write("q8_0_gguf.bin", quants.quantize(x.reshape(-1, 32), T.Q8_0))
    s = special_f16_input()
    write("f16_input.f32", s)
    with np.errstate(over="ignore"):
        write("f16_gguf.bin", quants.quantize(s, T.F16).view(np.uint8))
    write("bf16_gguf.bin", quants.quantize(s, T.BF16))
    for name, qt, size, offs in (("q4_k", T.Q4_K, 144, (0, 2)), ("q5_k", T.Q5_K, 176, (0, 2)),
                                 ("q6_k", T.Q6_K, 210, (208,))):
        raw, deq = random_k_blocks(qt, size, offs)
        write(f"{name}_blocks.bin", raw)
        write(f"{name}_dequant.f32", deq)
    return 0


if __name__ == "__main__":
    sys.exit(main())
