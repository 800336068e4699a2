// Plain scalar references for the matmul kernels and their activation quantisers.
//
// (a) matmul_int mirrors the fast kernels' arithmetic: activations quantised with the same rule,
//     exact integer dot products per block, the same per-block scaling; only the order of the
//     final f32 additions differs, so fast results must match it to a few ulps of the magnitude.
// (b) matmul_f64 is the semantic reference: dequantised W (formats::dequantize_row) times the
//     un-quantised x in float64.
#pragma once

#include <cstdint>

#include "kernels/quantize_act.h"
#include "tensor/tensor.h"

namespace dflash::kernels::ref {

void quantize_act_q8_0(const float* x, ActQ8_0* y, int64_t n);
void quantize_act_q8_k(const float* x, tensor::BlockQ8_K* y, int64_t n);

// Dot product of one weight row (n elements) with one pre-quantised activation row.
float vec_dot_q8_0(const tensor::BlockQ8_0* w, const ActQ8_0* x, int64_t n);
float vec_dot_q4_k(const tensor::BlockQ4_K* w, const tensor::BlockQ8_K* x, int64_t n);
float vec_dot_q5_k(const tensor::BlockQ5_K* w, const tensor::BlockQ8_K* x, int64_t n);
float vec_dot_q6_k(const tensor::BlockQ6_K* w, const tensor::BlockQ8_K* x, int64_t n);
// Float weights: f32 accumulation in element order.
float vec_dot_f32(const float* w, const float* x, int64_t n);
float vec_dot_f16(const uint16_t* w, const float* x, int64_t n);
float vec_dot_bf16(const uint16_t* w, const float* x, int64_t n);

// Activation format a weight dtype's integer dot product uses (kF32 = none, x stays f32).
tensor::DType act_dtype(tensor::DType weight);

// y[t * rows + r] for r over all rows of w (w.rows(), so a 3-D expert tensor is all experts).
void matmul_int(const tensor::Tensor& w, const float* x, int64_t n_tokens, float* y);
void matmul_f64(const tensor::Tensor& w, const float* x, int64_t n_tokens, double* y);

}  // namespace dflash::kernels::ref
