// Integer dot-product kernels for quantised weights × 8-bit activations, hand-written with x86
// intrinsics. Highway 1.0.3 (Debian's) has no u8×i8 pairwise multiply-add (maddubs; Highway added
// SatWidenMulPairwiseAdd later) and no VNNI dot (SumOfMulQuadAccumulate), which these paths are
// built on, so they are written directly. Each function is compiled for its target via pragmas and
// only reached after runtime CPU detection (matmul_isa()); matmul_scalar.cpp is the portable path.
//
// Loop order: for each weight row, for each tile of up to kTokenTile tokens, for each block: the
// block is unpacked once into registers and used for all tokens of the tile; the row stays in L1
// across tiles, so weights are read from memory once per call however many tokens there are.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/matmul_impl.h"
#include "kernels/quantize_act.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

namespace dflash::kernels::detail {
namespace {

using namespace dflash::tensor;

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 6-bit (scale, min) pairs of a Q4_K/Q5_K block as two 8-byte arrays (same as formats::k_scale_min).
inline void unpack_k_scales(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  uint32_t k0, k1, k2;
  std::memcpy(&k0, s, 4);
  std::memcpy(&k1, s + 4, 4);
  std::memcpy(&k2, s + 8, 4);
  const uint32_t a = k0 & 0x3f3f3f3fu, b = k1 & 0x3f3f3f3fu;
  const uint32_t c = (k2 & 0x0f0f0f0fu) | ((k0 >> 2) & 0x30303030u);
  const uint32_t d = ((k2 >> 4) & 0x0f0f0f0fu) | ((k1 >> 2) & 0x30303030u);
  std::memcpy(sc, &a, 4);
  std::memcpy(sc + 4, &c, 4);
  std::memcpy(mn, &b, 4);
  std::memcpy(mn + 4, &d, 4);
}

// Broadcast byte j of a 128-bit lane to all 16-bit lanes, zero-extended: pattern (j, 0x80) repeated.
inline __m256i bcast_u8_to_i16(__m256i bytes, int j) {
  return _mm256_shuffle_epi8(bytes, _mm256_set1_epi16(int16_t(0x8000 | j)));
}

// ---------------- Q8_0 × Q8_0 ----------------
struct KQ8_0 {
  template <int NT>
  static void dot(const uint8_t* wrow, const uint8_t* const* acts, int64_t in, float* out) {
    const BlockQ8_0* w = reinterpret_cast<const BlockQ8_0*>(wrow);
    const ActQ8_0* x[NT];
    for (int t = 0; t < NT; ++t) x[t] = reinterpret_cast<const ActQ8_0*>(acts[t]);
    const int64_t nb = in / kQK8_0;
    // Two accumulator sets hide the FMA latency when there are few tokens.
    __m256 acc[2][NT];
    for (int t = 0; t < NT; ++t) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i qw = load256(w[b].qs);
      const __m256i aw = _mm256_abs_epi8(qw);  // |−128| = 128 read as unsigned: still exact
      const float dw = h2f(w[b].d);
      const int k = int(b & 1);
      for (int t = 0; t < NT; ++t) {
        const __m256i sx = _mm256_sign_epi8(load256(x[t][b].qs), qw);
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
        acc[k][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[t][b].d), _mm256_cvtepi32_ps(p), acc[k][t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = hsum(_mm256_add_ps(acc[0][t], acc[1][t]));
  }
};

// ---------------- Q4_K / Q5_K × Q8_K ----------------
// Per 32-weight sub-block j: maddubs(q, x) → 16 int16 pair sums (≤ 2·31·127, no saturation),
// madd with the 6-bit scale → int32; the min term uses the activation's 16-element sums (bsums).
template <bool kQ5>
struct KQ45_K {
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  template <int NT>
  static void dot(const uint8_t* wrow, const uint8_t* const* acts, int64_t in, float* out) {
    const Block* w = reinterpret_cast<const Block*>(wrow);
    const BlockQ8_K* x[NT];
    for (int t = 0; t < NT; ++t) x[t] = reinterpret_cast<const BlockQ8_K*>(acts[t]);
    const int64_t nb = in / kQK_K;
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m128i dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    for (int64_t b = 0; b < nb; ++b) {
      alignas(16) uint8_t sc[8], mn[8];
      unpack_k_scales(w[b].scales, sc, mn);
      uint64_t sc64;
      std::memcpy(&sc64, sc, 8);
      const __m256i scb = _mm256_broadcastsi128_si256(_mm_cvtsi64_si128(int64_t(sc64)));
      uint64_t mn64;
      std::memcpy(&mn64, mn, 8);
      const __m256i m16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128(int64_t(mn64)), dup));
      __m256i hb;
      if constexpr (kQ5) hb = load256(w[b].qh);
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (int j2 = 0; j2 < 4; ++j2) {
        const __m256i q = load256(w[b].qs + 32 * j2);
        __m256i lo = _mm256_and_si256(q, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if constexpr (kQ5) {
          const __m256i one = _mm256_set1_epi8(1);
          const __m256i h = _mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * j2));
          lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(h, one), 4));
          hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 1), one), 4));
        }
        const __m256i s_lo = bcast_u8_to_i16(scb, 2 * j2);
        const __m256i s_hi = bcast_u8_to_i16(scb, 2 * j2 + 1);
        for (int t = 0; t < NT; ++t) {
          const int8_t* xq = x[t][b].qs + 64 * j2;
          const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(xq)), s_lo);
          const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load256(xq + 32)), s_hi);
          isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(p0, p1));
        }
      }
      const float d = h2f(w[b].d), dmin = h2f(w[b].dmin);
      for (int t = 0; t < NT; ++t) {
        const __m256i msum = _mm256_madd_epi16(load256(x[t][b].bsums), m16);
        const float dx = x[t][b].d;
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * d), _mm256_cvtepi32_ps(isum[t]), acc[t]);
        acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(dx * dmin), _mm256_cvtepi32_ps(msum), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = hsum(acc[t]);
  }
};

// ---------------- Q6_K × Q8_K ----------------
// Unsigned 6-bit q (0..63) through maddubs, then Σ sc·(q·x) − 32·Σ sc·bsum for the −32 offset.
struct KQ6_K {
  template <int NT>
  static void dot(const uint8_t* wrow, const uint8_t* const* acts, int64_t in, float* out) {
    const BlockQ6_K* w = reinterpret_cast<const BlockQ6_K*>(wrow);
    const BlockQ8_K* x[NT];
    for (int t = 0; t < NT; ++t) x[t] = reinterpret_cast<const BlockQ8_K*>(acts[t]);
    const int64_t nb = in / kQK_K;
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < nb; ++b) {
      const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].scales));
      const __m256i scb = _mm256_broadcastsi128_si256(sc8);
      const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);  // natural order, for the offset term
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m256i qa = load256(w[b].ql + 64 * h);
        const __m256i qb = load256(w[b].ql + 64 * h + 32);
        const __m256i qh = load256(w[b].qh + 32 * h);
        __m256i v[4];
        v[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
        v[1] = _mm256_or_si256(_mm256_and_si256(qb, m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
        v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
        v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
        for (int i = 0; i < 4; ++i) {
          // Lanes 0..7 (elements 0..15) take scale g = 8h+2i, lanes 8..15 take g+1; bytes are
          // broadcast into both halves of each int16 and sign-extended by the arithmetic shift.
          const int g = 8 * h + 2 * i;
          const __m256i idx = _mm256_setr_epi8(g, g, g, g, g, g, g, g, g, g, g, g, g, g, g, g, g + 1,
                                               g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1,
                                               g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1);
          const __m256i s = _mm256_srai_epi16(_mm256_shuffle_epi8(scb, idx), 8);
          for (int t = 0; t < NT; ++t) {
            const __m256i xv = load256(x[t][b].qs + 128 * h + 32 * i);
            isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(v[i], xv), s));
          }
        }
      }
      const float d = h2f(w[b].d);
      for (int t = 0; t < NT; ++t) {
        const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(load256(x[t][b].bsums), sc16), 5);
        const __m256i tot = _mm256_sub_epi32(isum[t], off);
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(x[t][b].d * d), _mm256_cvtepi32_ps(tot), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = hsum(acc[t]);
  }
};

template <class K>
void rows(const RowsArgs& a, int64_t r0, int64_t r1) {
  const uint8_t* xs[kTokenTile];
  float o[kTokenTile];
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* wr = a.w + size_t(r) * a.w_stride;
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokenTile) {
      const int nt = int(std::min<int64_t>(kTokenTile, a.n_tokens - t0));
      for (int i = 0; i < nt; ++i) xs[i] = a.act + size_t(t0 + i) * a.act_stride;
      switch (nt) {
        case 1: K::template dot<1>(wr, xs, a.in, o); break;
        case 2: K::template dot<2>(wr, xs, a.in, o); break;
        case 3: K::template dot<3>(wr, xs, a.in, o); break;
        default: K::template dot<4>(wr, xs, a.in, o); break;
      }
      for (int i = 0; i < nt; ++i) a.y[(t0 + i) * a.ldy + r] = o[i];
    }
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

}  // namespace

RowsFn rows_fn_avx2(DType t) {
  switch (t) {
    case DType::kQ8_0: return &rows<KQ8_0>;
    case DType::kQ4_K: return &rows<KQ45_K<false>>;
    case DType::kQ5_K: return &rows<KQ45_K<true>>;
    case DType::kQ6_K: return &rows<KQ6_K>;
    default: return nullptr;
  }
}

}  // namespace dflash::kernels::detail

#else  // not x86 with GCC/clang: no AVX2 kernels.

namespace dflash::kernels::detail {
RowsFn rows_fn_avx2(tensor::DType) { return nullptr; }
}  // namespace dflash::kernels::detail

#endif
