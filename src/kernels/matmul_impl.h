// Internal interface between the matmul driver (matmul.cpp) and the per-ISA row kernels.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"

namespace dflash::kernels::detail {

struct RowsArgs {
  const uint8_t* w = nullptr;    // row 0 of the weight slice
  size_t w_stride = 0;           // bytes per weight row
  int64_t in = 0;                // elements per row
  const uint8_t* act = nullptr;  // token t's activations at act + t * act_stride (quantised or f32)
  size_t act_stride = 0;
  int64_t n_tokens = 0;
  float* y = nullptr;  // y[t * ldy + r]
  int64_t ldy = 0;
};

// Computes rows [r0, r1) of the slice for every token.
using RowsFn = void (*)(const RowsArgs& a, int64_t r0, int64_t r1);

// Optional in-place rearrangement of one token's quantised activations (n_blocks blocks) that a
// row kernel expects instead of the natural layout.
using ActPrepFn = void (*)(uint8_t* act, int64_t n_blocks);

// AVX2 Q4_K/Q5_K kernels take Q8_K activations with each 64-element chunk (sub-blocks a, b)
// stored as [a0..15 b0..15 a16..31 b16..31]; this converts from the natural order.
ActPrepFn act_prep_avx2(tensor::DType t);

// Per-ISA tables; nullptr when the dtype has no kernel for that ISA.
RowsFn rows_fn_scalar(tensor::DType t);
RowsFn rows_fn_avx2(tensor::DType t);        // integer paths (hand-written AVX2)
RowsFn rows_fn_avx512vnni(tensor::DType t);  // integer paths (AVX-512 VNNI)
RowsFn rows_fn_float_simd(tensor::DType t);  // F32/F16/BF16 via Highway dynamic dispatch

// AVX2 K-quant batch kernels: 1 = pair_madd variant, 0 = plain, -1 = choose by CPU (default).
// Both give identical integers; tests force each to cover both on any machine.
void set_avx2_pair_madd(int mode);

// Most tokens a float kernel handles at once (the integer kernels use 8); larger batches loop over
// tiles of this many tokens while the weight row stays in L1.
constexpr int kTokenTile = 4;

}  // namespace dflash::kernels::detail
