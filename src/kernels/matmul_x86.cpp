// Integer dot-product kernels for quantised weights × 8-bit activations, hand-written with x86
// intrinsics. Highway 1.0.3 (Debian's) has no u8×i8 pairwise multiply-add (maddubs; Highway added
// SatWidenMulPairwiseAdd later) and no VNNI dot (SumOfMulQuadAccumulate), which these paths are
// built on, so they are written directly. Each function is compiled for its target via pragmas and
// only reached after runtime CPU detection (matmul_isa()); matmul_scalar.cpp is the portable path.
//
// Loop order: for each weight row, for each tile of up to kIntTokenTile tokens, for each block: the
// block is unpacked once into registers and used for all tokens of the tile; the row stays in L1
// across tiles, so weights are read from memory once per call however many tokens there are.
#include <algorithm>
#include <atomic>
#include <cstdlib>
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

#include "kernels/matmul_q45_x86-inl.h"

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Σ sa·p0 + Σ sb·p1 as 8 int32 for two maddubs outputs p0 (scale sa) and p1 (scale sb), with one
// vpmaddwd instead of two: adjacent int16 pairs are first added with byte shifts and a blend
// (other execution ports), giving even lanes from p0 and odd lanes from p1; s_ab holds sa in the
// even and sb in the odd int16 lanes. On cores where vpmaddubsw/vpmaddwd share one port (Zen 1)
// that port is the bottleneck (used on AMD only, see use_pair_madd; Q6_K, whose 16-element
// scale groups rule out the interleaved layout of Q4_K/Q5_K). Needs |p[2k] + p[2k+1]| < 2^15: true
// for 6-bit (and smaller) unsigned weights times int8 in [-127, 127] (2·2·63·127 = 32004).
inline __m256i pair_madd(__m256i p0, __m256i p1, __m256i s_ab) {
  const __m256i e = _mm256_add_epi16(p0, _mm256_bsrli_epi128(p0, 2));
  const __m256i o = _mm256_add_epi16(p1, _mm256_bslli_epi128(p1, 2));
  return _mm256_madd_epi16(_mm256_blend_epi16(e, o, 0xAA), s_ab);
}

// ---------------- Q8_0 × Q8_0 ----------------
struct KQ8_0 {
  template <int NT>
  static void dot(const uint8_t* wrow, const uint8_t* const* acts, int64_t in, float* out) {
    const BlockQ8_0* w = reinterpret_cast<const BlockQ8_0*>(wrow);
    const ActQ8_0* x[NT];
    for (int t = 0; t < NT; ++t) x[t] = reinterpret_cast<const ActQ8_0*>(acts[t]);
    const int64_t nb = in / kQK8_0;
    // Two accumulator sets (even / odd blocks) hide the FMA latency when there are few tokens.
    // Fixed indices only: a data-dependent index would keep them in memory.
    __m256 acc0[NT], acc1[NT];
    for (int t = 0; t < NT; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    auto step = [&](int64_t b, __m256 * acc) __attribute__((always_inline)) {
      if (b % 2 == 0) prefetch_block<64>(w + b);  // two 34-byte blocks per cache line
      const __m256i qw = load256(w[b].qs);
      const __m256i aw = _mm256_abs_epi8(qw);  // |−128| = 128 read as unsigned: still exact
      const float dw = h2f(w[b].d);
      for (int t = 0; t < NT; ++t) {
        const __m256i sx = _mm256_sign_epi8(load256(x[t][b].qs), qw);
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[t][b].d), _mm256_cvtepi32_ps(p), acc[t]);
      }
    };
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
      step(b, acc0);
      step(b + 1, acc1);
    }
    if (b < nb) step(b, acc0);
    for (int t = 0; t < NT; ++t) out[t] = hsum(_mm256_add_ps(acc0[t], acc1[t]));
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
      prefetch_block<sizeof(Block)>(w + b);
      alignas(16) uint8_t sc[8], mn[8];
      unpack_k_scales(w[b].scales, sc, mn);
      uint64_t sc64;
      std::memcpy(&sc64, sc, 8);
      const __m256i scb = _mm256_broadcastsi128_si256(_mm_cvtsi64_si128(int64_t(sc64)));
      uint64_t mn64;
      std::memcpy(&mn64, mn, 8);
      const __m256i m16 =
          _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128(int64_t(mn64)), dup));
      __m256i hb = _mm256_setzero_si256();
      if constexpr (kQ5) hb = load256(w[b].qh);
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (int j2 = 0; j2 < 4; ++j2) {
        // Pair (a, b) = (2·j2, 2·j2+1) as [a | b] lanes (decode_q45_pair), so both products
        // share one per-lane scale vector: one vpaddw (≤ 4·31·127, no overflow) and one vpmaddwd.
        __m256i w0, w1;
        decode_q45_pair<kQ5>(w[b], j2, m4, hb, &w0, &w1);
        const __m256i s_ab = pair_scales<2>(scb, j2);
        for (int t = 0; t < NT; ++t) {
          const int8_t* xq = x[t][b].qs + 64 * j2;
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(w0, load256(xq)),
                                             _mm256_maddubs_epi16(w1, load256(xq + 32)));
          isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(p, s_ab));
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
template <bool kPair>
struct KQ6_K {
  template <int NT>
  static void dot(const uint8_t* wrow, const uint8_t* const* acts, int64_t in, float* out) {
    const BlockQ6_K* w = reinterpret_cast<const BlockQ6_K*>(wrow);
    const BlockQ8_K* x[NT];
    for (int t = 0; t < NT; ++t) x[t] = reinterpret_cast<const BlockQ8_K*>(acts[t]);
    const int64_t nb = in / kQK_K;
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i k03 = _mm256_set1_epi8(0x03), k0c = _mm256_set1_epi8(0x0C);
    const __m256i k30 = _mm256_set1_epi8(0x30), kc0 = _mm256_set1_epi8(int8_t(0xC0));
    // pshufb patterns picking int16 scales for pair_madd of (v0, v1) and (v2, v3): the low 128-bit
    // lane holds elements 0..15 of each vector (scales 8h+2i), the high lane 16..31 (8h+2i+1).
    const __m256i pat01 = _mm256_setr_epi8(0, 1, 4, 5, 0, 1, 4, 5, 0, 1, 4, 5, 0, 1, 4, 5,  //
                                           2, 3, 6, 7, 2, 3, 6, 7, 2, 3, 6, 7, 2, 3, 6, 7);
    const __m256i pat23 =
        _mm256_setr_epi8(8, 9, 12, 13, 8, 9, 12, 13, 8, 9, 12, 13, 8, 9, 12, 13,  //
                         10, 11, 14, 15, 10, 11, 14, 15, 10, 11, 14, 15, 10, 11, 14, 15);
    for (int64_t b = 0; b < nb; ++b) {
      prefetch_block<sizeof(BlockQ6_K)>(w + b);
      const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].scales));
      const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);  // natural order: offset term and pairs
      __m256i isum[NT];
      for (int t = 0; t < NT; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m256i qa = load256(w[b].ql + 64 * h);
        const __m256i qb = load256(w[b].ql + 64 * h + 32);
        const __m256i qh = load256(w[b].qh + 32 * h);
        // High 2 bits of v_i are bits 2i, 2i+1 of qh, moved to bits 4, 5 (few bit shifts: they
        // run on a single port on some cores; x+x is a shift by one on any ALU port).
        const __m256i h1 = _mm256_and_si256(qh, k0c);
        const __m256i h1s = _mm256_add_epi8(_mm256_add_epi8(h1, h1), _mm256_add_epi8(h1, h1));
        const __m256i v0 = _mm256_or_si256(_mm256_and_si256(qa, m4),
                                           _mm256_slli_epi16(_mm256_and_si256(qh, k03), 4));
        const __m256i v1 = _mm256_or_si256(_mm256_and_si256(qb, m4), h1s);
        const __m256i v2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4),
                                           _mm256_and_si256(qh, k30));
        const __m256i v3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                                           _mm256_srli_epi16(_mm256_and_si256(qh, kc0), 2));
        const __m256i sh = h == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00)
                                  : _mm256_permute2x128_si256(sc16, sc16, 0x11);
        if constexpr (NT == 1 || !kPair) {
          // Plain: one vpmaddwd per vector. Scale of vector i: int16 index 2i in the low 128-bit
          // lane, 2i+1 in the high lane.
          __m256i sv[4];
          for (int i = 0; i < 4; ++i) {
            const __m256i pat =
                _mm256_setr_epi8(4 * i, 4 * i + 1, 4 * i, 4 * i + 1, 4 * i, 4 * i + 1, 4 * i,
                                 4 * i + 1, 4 * i, 4 * i + 1, 4 * i, 4 * i + 1, 4 * i, 4 * i + 1,
                                 4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 2, 4 * i + 3,
                                 4 * i + 2, 4 * i + 3, 4 * i + 2, 4 * i + 3, 4 * i + 2, 4 * i + 3,
                                 4 * i + 2, 4 * i + 3, 4 * i + 2, 4 * i + 3, 4 * i + 2, 4 * i + 3);
            sv[i] = _mm256_shuffle_epi8(sh, pat);
          }
          const __m256i v[4] = {v0, v1, v2, v3};
          for (int t = 0; t < NT; ++t) {
            const int8_t* xq = x[t][b].qs + 128 * h;
            __m256i sum = _mm256_setzero_si256();
            for (int i = 0; i < 4; ++i) {
              const __m256i p = _mm256_maddubs_epi16(v[i], load256(xq + 32 * i));
              sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, sv[i]));
            }
            isum[t] = _mm256_add_epi32(isum[t], sum);
          }
        } else {
          const __m256i s01 = _mm256_shuffle_epi8(sh, pat01);
          const __m256i s23 = _mm256_shuffle_epi8(sh, pat23);
          for (int t = 0; t < NT; ++t) {
            const int8_t* xq = x[t][b].qs + 128 * h;
            const __m256i p0 = _mm256_maddubs_epi16(v0, load256(xq));
            const __m256i p1 = _mm256_maddubs_epi16(v1, load256(xq + 32));
            const __m256i p2 = _mm256_maddubs_epi16(v2, load256(xq + 64));
            const __m256i p3 = _mm256_maddubs_epi16(v3, load256(xq + 96));
            isum[t] = _mm256_add_epi32(
                isum[t], _mm256_add_epi32(pair_madd(p0, p1, s01), pair_madd(p2, p3, s23)));
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

// Tokens per register tile: each unpacked weight block is used for up to 8 tokens (8 int32
// accumulators still fit the 16 ymm registers next to the unpacked weights).
constexpr int kIntTokenTile = 8;

// Natural Q8_K order → per 64-element chunk [a0..15 b0..15 a16..31 b16..31] (see KQ45_K).
void interleave_q8_k(uint8_t* act, int64_t n_blocks) {
  BlockQ8_K* blk = reinterpret_cast<BlockQ8_K*>(act);
  for (int64_t i = 0; i < n_blocks; ++i) {
    for (int c = 0; c < kQK_K; c += 64) {
      int8_t* q = blk[i].qs + c;
      const __m256i a = load256(q), b = load256(q + 32);
      const __m256i x0 = _mm256_inserti128_si256(a, _mm256_castsi256_si128(b), 1);
      const __m256i x1 = _mm256_inserti128_si256(b, _mm256_extracti128_si256(a, 1), 0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), x0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32), x1);
    }
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

}  // namespace

namespace {
// pair_madd (Q6_K batches) trades one vpmaddwd for byte shifts, adds and a blend. That pays
// where vpmaddwd and vpmaddubsw share a single port (AMD Zen: +5..15% for batches on Zen 1); on
// Intel cores both run on two ports and the extra shuffles would cost more than they save.
std::atomic<int> g_pair_madd{-1};
bool use_pair_madd() {
  int v = g_pair_madd.load(std::memory_order_relaxed);
  if (v < 0) {
    __builtin_cpu_init();
    v = __builtin_cpu_is("amd") ? 1 : 0;
    if (const char* e = std::getenv("DFLASH_PAIR_MADD"))
      v = std::atoi(e) != 0;  // for A/B benchmarks
    g_pair_madd.store(v, std::memory_order_relaxed);
  }
  return v != 0;
}
}  // namespace

void set_avx2_pair_madd(int mode) { g_pair_madd.store(mode < 0 ? -1 : (mode ? 1 : 0)); }

ActPrepFn act_prep_avx2(DType t) {
  return (t == DType::kQ4_K || t == DType::kQ5_K) ? &interleave_q8_k : nullptr;
}

RowsFn rows_fn_avx2(DType t) {
  const bool pair = use_pair_madd();
  switch (t) {
    case DType::kQ8_0:
      return &TiledRows<KQ8_0, kIntTokenTile>::rows;
    case DType::kQ4_K:
      return &TiledRows<KQ45_K<false>, kIntTokenTile>::rows;
    case DType::kQ5_K:
      return &TiledRows<KQ45_K<true>, kIntTokenTile>::rows;
    case DType::kQ6_K:
      return pair ? &TiledRows<KQ6_K<true>, kIntTokenTile>::rows
                  : &TiledRows<KQ6_K<false>, kIntTokenTile>::rows;
    default:
      return nullptr;
  }
}

}  // namespace dflash::kernels::detail

#else  // not x86 with GCC/clang: no AVX2 kernels.

namespace dflash::kernels::detail {
RowsFn rows_fn_avx2(tensor::DType) { return nullptr; }
ActPrepFn act_prep_avx2(tensor::DType) { return nullptr; }
void set_avx2_pair_madd(int) {}
}  // namespace dflash::kernels::detail

#endif
