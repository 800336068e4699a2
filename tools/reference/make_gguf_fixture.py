#!/usr/bin/env python3
"""Writes tests/data/gguf/python_writer.gguf with the public `gguf` package (GGUFWriter), plus
python_writer.json describing what it wrote (metadata with types, tensors with shapes and bytes).
tests/formats/gguf_test.cpp reads both and checks that our reader sees exactly the same thing.

Run: /work/main/tools/reference/.venv/bin/python tools/reference/make_gguf_fixture.py
"""
import hashlib
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGUFValueType as T

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
out_dir = os.path.join(root, "tests", "data", "gguf")
path = os.path.join(out_dir, "python_writer.gguf")
os.makedirs(out_dir, exist_ok=True)
if os.path.exists(path):
    os.remove(path)

w = gguf.GGUFWriter(path, "qwen35")
expected = [("general.architecture", "string", "qwen35")]


def kv(key, vtype, val, add, sub=None):
    add(key, val)
    expected.append((key, vtype, val) if sub is None else (key, vtype, {"elem": sub, "items": val}))


kv("test.u8", "u8", 200, w.add_uint8)
kv("test.i8", "i8", -100, w.add_int8)
kv("test.u16", "u16", 60000, w.add_uint16)
kv("test.i16", "i16", -30000, w.add_int16)
kv("test.u32", "u32", 4000000000, w.add_uint32)
kv("test.i32", "i32", -2000000000, w.add_int32)
kv("test.f32", "f32", 0.15625, w.add_float32)
kv("test.bool", "bool", True, w.add_bool)
kv("test.string", "string", "héllo \"gguf\"\n", w.add_string)
kv("test.u64", "u64", 18000000000000000000, w.add_uint64)
kv("test.i64", "i64", -9000000000000000000, w.add_int64)
kv("test.f64", "f64", 2.5e-300, w.add_float64)
w.add_key_value("test.arr_u32", [1, 2, 4000000000], T.ARRAY, sub_type=T.UINT32)
expected.append(("test.arr_u32", "array", {"elem": "u32", "items": [1, 2, 4000000000]}))
kv("test.arr_i32", "array", [-1, 0, 7], w.add_array, "i32")
kv("test.arr_f32", "array", [0.5, -1.25, 3.0], w.add_array, "f32")
kv("test.arr_bool", "array", [True, False, True], w.add_array, "bool")
kv("test.arr_str", "array", ["<|endoftext|>", "Ġthe", "", "日本"], w.add_array, "string")
kv("test.arr_nested", "array", [[1, 2], [3], [4, 5, 6]], w.add_array, "array")
kv("general.alignment", "u32", 64, w.add_uint32)
w.data_alignment = 64  # the Python writer does not derive the layout from the key

rng = np.random.default_rng(1234)
tensors = []
t_f32 = rng.standard_normal((3, 5)).astype(np.float32)       # numpy (rows, cols) -> ne = [5, 3]
t_f16 = rng.standard_normal((7,)).astype(np.float16)
t_q8 = rng.integers(0, 256, size=(2, 34 * 2), dtype=np.uint8)  # 2 rows of 64 q8_0 values
w.add_tensor("token_embd.weight", t_f32)
w.add_tensor("blk.0.attn_norm.weight", t_f16)
w.add_tensor("blk.0.attn_q.weight", t_q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
tensors.append(("token_embd.weight", "f32", [5, 3], t_f32.tobytes()))
tensors.append(("blk.0.attn_norm.weight", "f16", [7], t_f16.tobytes()))
tensors.append(("blk.0.attn_q.weight", "q8_0", [64, 2], t_q8.tobytes()))

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

desc = {
    "generator": f"gguf {gguf.__version__ if hasattr(gguf, '__version__') else 'py'} GGUFWriter",
    "version": 3,
    "alignment": 64,
    "metadata": [{"key": k, "type": t, "value": v} for k, t, v in expected],
    "tensors": [{"name": n, "dtype": d, "ne": ne, "nbytes": len(b), "hex": b.hex()} for n, d, ne, b in tensors],
}
with open(os.path.join(out_dir, "python_writer.json"), "w") as f:
    json.dump(desc, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(path, os.path.getsize(path), "bytes; sha256", hashlib.sha256(open(path, "rb").read()).hexdigest())
