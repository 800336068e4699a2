// Quantised block codecs, bit-compatible with the GGUF block types (tensor/dtype.h layouts).
// These are the plain scalar reference codecs; kernels/ has the fast dot products.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"
#include "util/status.h"

namespace dflash::formats {

// True for the types this file can encode and decode: F32 F16 BF16 Q8_0 Q4_K Q5_K Q6_K (+ Q8_K).
bool codec_supported(tensor::DType t);

// Decodes n elements (a multiple of the block size) from src into dst.
void dequantize_row(tensor::DType t, const void* src, float* dst, int64_t n);

// Encodes n elements of src into dst (row_size(t, n) bytes). K-quants use the standard
// scale search (iterative least-squares refinement of scale and min), not plain min/max.
// `importance` (n weights, may be null) weights the squared error as an imatrix would.
void quantize_row(tensor::DType t, const float* src, void* dst, int64_t n,
                  const float* importance = nullptr);

// Per-block reference codecs (exposed for tests and for the activation quantisers).
void dequantize_row_q8_0(const tensor::BlockQ8_0* x, float* y, int64_t n);
void dequantize_row_q4_k(const tensor::BlockQ4_K* x, float* y, int64_t n);
void dequantize_row_q5_k(const tensor::BlockQ5_K* x, float* y, int64_t n);
void dequantize_row_q6_k(const tensor::BlockQ6_K* x, float* y, int64_t n);
void dequantize_row_q8_k(const tensor::BlockQ8_K* x, float* y, int64_t n);

void quantize_row_q8_0(const float* x, tensor::BlockQ8_0* y, int64_t n);
void quantize_row_q8_k(const float* x, tensor::BlockQ8_K* y, int64_t n);
void quantize_row_q4_k(const float* x, tensor::BlockQ4_K* y, int64_t n, const float* importance);
void quantize_row_q5_k(const float* x, tensor::BlockQ5_K* y, int64_t n, const float* importance);
void quantize_row_q6_k(const float* x, tensor::BlockQ6_K* y, int64_t n, const float* importance);

// Unpacks the 6-bit (scale, min) pair j (0..7) of a Q4_K/Q5_K block.
inline void k_scale_min(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace dflash::formats
