"""Write a golden GGUF: metadata (scalars, strings, arrays) + f32 / i32 tensors, with the pip `gguf` package.

Tensor layout convention: a numpy array of shape [d0, d1, ..., dn] is stored row-major as is; in GGUF/ggml
order its dimensions are reversed, ne[0] = dn (the fastest, contiguous one). E.g. logits [T, V] -> ne = {V, T}:
row t (V floats) is position t.
"""
import numpy as np
import gguf

ARCH = "golden"


def write(path, meta: dict, tensors: dict):
    w = gguf.GGUFWriter(path, ARCH)
    for k, v in meta.items():
        if isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, int):
            w.add_int32(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        elif isinstance(v, str):
            w.add_string(k, v)
        elif isinstance(v, (list, tuple)):
            if all(isinstance(x, str) for x in v):
                w.add_array(k, list(v))
            else:
                w.add_array(k, [int(x) for x in v])
        else:
            raise TypeError(f"{k}: {type(v)}")
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype in (np.int64, np.int32):
            arr = arr.astype(np.int32)
        else:
            arr = arr.astype(np.float32)
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
