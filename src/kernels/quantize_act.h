// Activation quantisers for the integer matmul paths: f32 activations are quantised per block to
// int8 with a float scale, then multiplied against quantised weights with integer dot products.
//
// Rule (both formats, identical in the fast and reference versions so tests can compare exactly):
//   amax = max |x| over the block; d = amax / 127; q = round_half_even(clamp(x * (127 / amax),
//   ±127)); an all-zero block gets d = 0 and q = 0.
// Named kernels::quantize_act_* on purpose: formats::quantize_row_q8_* are the file-format codecs.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace dflash::kernels {

// Q8_0-style activation block; the scale stays f32 (the file format's fp16 scale would only add
// error).
struct ActQ8_0 {
  float d;
  int8_t qs[tensor::kQK8_0];
};
static_assert(sizeof(ActQ8_0) == 36);

// n must be a multiple of 32 (Q8_0) or 256 (Q8_K). Q8_K also fills bsums (sums of 16 quants),
// which the K-quant dot products use for the min / offset terms.
void quantize_act_q8_0(const float* x, ActQ8_0* y, int64_t n);
void quantize_act_q8_k(const float* x, tensor::BlockQ8_K* y, int64_t n);

}  // namespace dflash::kernels
