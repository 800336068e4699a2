#include "kernels/ref/matmul_ref.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "formats/quant.h"

namespace dflash::kernels::ref {

using namespace dflash::tensor;

namespace {
// Shared quantisation rule (see quantize_act.h). Returns d.
float quant_block(const float* x, int8_t* q, int n) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0.0f) {
    std::fill(q, q + n, int8_t(0));
    return 0.0f;
  }
  const float id = 127.0f / amax;
  for (int i = 0; i < n; ++i) {
    float v = std::min(127.0f, std::max(-127.0f, x[i] * id));
    q[i] = static_cast<int8_t>(std::nearbyint(v));  // default rounding: half to even, as cvtps
  }
  return amax / 127.0f;
}

// (scale, min) of the 8 sub-blocks of a Q4_K / Q5_K super-block.
void unpack_scales(const uint8_t* s, int sc[8], int m[8]) {
  for (int j = 0; j < 8; ++j) {
    uint8_t a, b;
    formats::k_scale_min(j, s, &a, &b);
    sc[j] = a;
    m[j] = b;
  }
}
}  // namespace

void quantize_act_q8_0(const float* x, ActQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b) y[b].d = quant_block(x + b * kQK8_0, y[b].qs, kQK8_0);
}

void quantize_act_q8_k(const float* x, BlockQ8_K* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    y[b].d = quant_block(x + b * kQK_K, y[b].qs, kQK_K);
    for (int g = 0; g < kQK_K / 16; ++g) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += y[b].qs[g * 16 + i];
      y[b].bsums[g] = int16_t(s);
    }
  }
}

float vec_dot_q8_0(const BlockQ8_0* w, const ActQ8_0* x, int64_t n) {
  float acc = 0.0f;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    int32_t s = 0;
    for (int i = 0; i < kQK8_0; ++i) s += int32_t(w[b].qs[i]) * x[b].qs[i];
    acc += (fp16_to_fp32(w[b].d) * x[b].d) * float(s);
  }
  return acc;
}

float vec_dot_q4_k(const BlockQ4_K* w, const BlockQ8_K* x, int64_t n) {
  float acc = 0.0f;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int sc[8], m[8];
    unpack_scales(w[b].scales, sc, m);
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* q = w[b].qs + 32 * (j / 2);
      const int shift = (j % 2) * 4;
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) s += int32_t((q[l] >> shift) & 0xF) * x[b].qs[32 * j + l];
      isum += sc[j] * s;
      msum += m[j] * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
    }
    const float d = fp16_to_fp32(w[b].d), dmin = fp16_to_fp32(w[b].dmin);
    acc += (x[b].d * d) * float(isum) - (x[b].d * dmin) * float(msum);
  }
  return acc;
}

float vec_dot_q5_k(const BlockQ5_K* w, const BlockQ8_K* x, int64_t n) {
  float acc = 0.0f;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int sc[8], m[8];
    unpack_scales(w[b].scales, sc, m);
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* q = w[b].qs + 32 * (j / 2);
      const int shift = (j % 2) * 4;
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0xF) | (((w[b].qh[l] >> j) & 1) << 4);
        s += v * x[b].qs[32 * j + l];
      }
      isum += sc[j] * s;
      msum += m[j] * (x[b].bsums[2 * j] + x[b].bsums[2 * j + 1]);
    }
    const float d = fp16_to_fp32(w[b].d), dmin = fp16_to_fp32(w[b].dmin);
    acc += (x[b].d * d) * float(isum) - (x[b].d * dmin) * float(msum);
  }
  return acc;
}

float vec_dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* x, int64_t n) {
  float acc = 0.0f;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int8_t q[kQK_K];  // decoded signed 6-bit values, element order
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = w[b].ql + 64 * h;
      const uint8_t* qh = w[b].qh + 32 * h;
      int8_t* o = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        o[l + 0] = int8_t(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        o[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        o[l + 64] = int8_t(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        o[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    int32_t isum = 0;
    for (int g = 0; g < 16; ++g) {
      int32_t s = 0;
      for (int i = 0; i < 16; ++i) s += int32_t(q[16 * g + i]) * x[b].qs[16 * g + i];
      isum += int32_t(w[b].scales[g]) * s;
    }
    acc += (x[b].d * fp16_to_fp32(w[b].d)) * float(isum);
  }
  return acc;
}

float vec_dot_f32(const float* w, const float* x, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += w[i] * x[i];
  return acc;
}
float vec_dot_f16(const uint16_t* w, const float* x, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += fp16_to_fp32(w[i]) * x[i];
  return acc;
}
float vec_dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += bf16_to_fp32(w[i]) * x[i];
  return acc;
}

DType act_dtype(DType weight) {
  switch (weight) {
    case DType::kQ8_0:
      return DType::kQ8_0;
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return DType::kQ8_K;
    default:
      return DType::kF32;
  }
}

void matmul_int(const Tensor& w, const float* x, int64_t n_tokens, float* y) {
  const int64_t in = w.ne[0], rows = w.rows();
  std::vector<ActQ8_0> a0;
  std::vector<BlockQ8_K> ak;
  const DType adt = act_dtype(w.dtype);
  if (adt == DType::kQ8_0) {
    a0.resize(size_t(n_tokens * (in / kQK8_0)));
    for (int64_t t = 0; t < n_tokens; ++t)
      ref::quantize_act_q8_0(x + t * in, &a0[t * (in / kQK8_0)], in);
  } else if (adt == DType::kQ8_K) {
    ak.resize(size_t(n_tokens * (in / kQK_K)));
    for (int64_t t = 0; t < n_tokens; ++t)
      ref::quantize_act_q8_k(x + t * in, &ak[t * (in / kQK_K)], in);
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * in;
    const ActQ8_0* a0t = adt == DType::kQ8_0 ? &a0[t * (in / kQK8_0)] : nullptr;
    const BlockQ8_K* akt = adt == DType::kQ8_K ? &ak[t * (in / kQK_K)] : nullptr;
    for (int64_t r = 0; r < rows; ++r) {
      const void* wr = w.row(r);
      float v = 0.0f;
      switch (w.dtype) {
        case DType::kF32:
          v = vec_dot_f32(static_cast<const float*>(wr), xt, in);
          break;
        case DType::kF16:
          v = vec_dot_f16(static_cast<const uint16_t*>(wr), xt, in);
          break;
        case DType::kBF16:
          v = vec_dot_bf16(static_cast<const uint16_t*>(wr), xt, in);
          break;
        case DType::kQ8_0:
          v = vec_dot_q8_0(static_cast<const BlockQ8_0*>(wr), a0t, in);
          break;
        case DType::kQ4_K:
          v = vec_dot_q4_k(static_cast<const BlockQ4_K*>(wr), akt, in);
          break;
        case DType::kQ5_K:
          v = vec_dot_q5_k(static_cast<const BlockQ5_K*>(wr), akt, in);
          break;
        case DType::kQ6_K:
          v = vec_dot_q6_k(static_cast<const BlockQ6_K*>(wr), akt, in);
          break;
        default:
          v = std::nanf("");
          break;
      }
      y[t * rows + r] = v;
    }
  }
}

void matmul_f64(const Tensor& w, const float* x, int64_t n_tokens, double* y) {
  const int64_t in = w.ne[0], rows = w.rows();
  std::vector<float> wr(static_cast<size_t>(in));
  for (int64_t r = 0; r < rows; ++r) {
    formats::dequantize_row(w.dtype, w.row(r), wr.data(), in);
    for (int64_t t = 0; t < n_tokens; ++t) {
      double s = 0.0;
      for (int64_t i = 0; i < in; ++i) s += double(wr[i]) * double(x[t * in + i]);
      y[t * rows + r] = s;
    }
  }
}

}  // namespace dflash::kernels::ref
