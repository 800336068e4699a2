#include "kernels/quantize_act.h"

#include <algorithm>
#include <cmath>

#include "kernels/matmul_isa.h"
#include "kernels/ref/matmul_ref.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DFLASH_X86 1
#include <immintrin.h>
#endif

namespace dflash::kernels {
namespace {

#if DFLASH_X86
// Functions in this region are compiled for AVX2 and only called after runtime detection.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

// Quantises 32 floats with the shared rule; returns d and writes 32 int8 in order.
inline float quant32_avx2(const float* x, int8_t* q) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
  __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
  __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                           _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float amax = _mm_cvtss_f32(m4);
  if (amax == 0.0f) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_setzero_si256());
    return 0.0f;
  }
  const __m256 id = _mm256_set1_ps(127.0f / amax);
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  auto cv = [&](__m256 v) {
    return _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_mul_ps(v, id))));
  };
  __m256i i0 = cv(v0), i1 = cv(v1), i2 = cv(v2), i3 = cv(v3);
  // packs works per 128-bit lane; the final permute restores element order.
  __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), p);
  return amax / 127.0f;
}

void quantize_q8_0_avx2(const float* x, ActQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / tensor::kQK8_0; ++b) y[b].d = quant32_avx2(x + b * 32, y[b].qs);
}

void quantize_q8_k_avx2(const float* x, tensor::BlockQ8_K* y, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / tensor::kQK_K; ++b) {
    const float* xb = x + b * tensor::kQK_K;
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < tensor::kQK_K; i += 8)
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    tensor::BlockQ8_K& o = y[b];
    if (amax == 0.0f) {
      o.d = 0.0f;
      std::fill(std::begin(o.qs), std::end(o.qs), int8_t(0));
      std::fill(std::begin(o.bsums), std::end(o.bsums), int16_t(0));
      continue;
    }
    o.d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(127.0f / amax);
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    for (int i = 0; i < tensor::kQK_K; i += 32) {
      auto cv = [&](int k) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xb + i + k), id);
        return _mm256_cvtps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, v)));
      };
      __m256i i0 = cv(0), i1 = cv(8), i2 = cv(16), i3 = cv(24);
      __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
      p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.qs + i), p);
      // Sums of the two groups of 16: byte pairs (maddubs with 1), then 4-wide, then per lane.
      __m256i s =
          _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p), _mm256_set1_epi16(1));
      s = _mm256_hadd_epi32(s, s);
      s = _mm256_hadd_epi32(s, s);
      o.bsums[i / 16] = int16_t(_mm256_extract_epi32(s, 0));
      o.bsums[i / 16 + 1] = int16_t(_mm256_extract_epi32(s, 4));
    }
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // DFLASH_X86

}  // namespace

void quantize_act_q8_0(const float* x, ActQ8_0* y, int64_t n) {
#if DFLASH_X86
  if (matmul_isa() != MatmulIsa::kScalar) return quantize_q8_0_avx2(x, y, n);
#endif
  ref::quantize_act_q8_0(x, y, n);
}

void quantize_act_q8_k(const float* x, tensor::BlockQ8_K* y, int64_t n) {
#if DFLASH_X86
  if (matmul_isa() != MatmulIsa::kScalar) return quantize_q8_k_avx2(x, y, n);
#endif
  ref::quantize_act_q8_k(x, y, n);
}

}  // namespace dflash::kernels
