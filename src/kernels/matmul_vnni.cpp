// AVX-512 VNNI integer dot-product kernels for quantised weights × 8-bit activations.
//
// One source per weight type, written against a small vector-width policy (V256: EVEX ymm, V512:
// zmm) so the block decode exists once and only the width-specific loads, shuffles and the
// multiply-accumulate differ. Zen 4 executes a 512-bit op as two 256-bit halves, so which width
// is faster is measured, not assumed (DFLASH_VNNI_WIDTH=256|512 for A/B runs; set_vnni_width).
//
// Arithmetic (all exact in int32 until the per-block float scaling):
//   - weights are decoded to unsigned bytes in natural element order and multiplied with the
//     signed activations by vpdpbusd (4 products per int32 lane);
//   - K-quant sub-block scales are applied by vpdpwssd on those int32 sums read as int16 pairs
//     [sum, sign]: with the scale lane [sc, 0] the pair product is sum·sc (|sum| < 2^15 holds:
//     4·63·127 for the largest, Q6_K);
//   - Q8_0 weights are signed, so the activations carry +128 (act prep) and the kernel starts each
//     token's accumulator at −128·Σw, computed once per weight block for all tokens.
// Per token, integer partial sums may be grouped differently for different tile sizes (integer
// addition is exact), but the float accumulation is the same sequence whatever the tile, so a
// token's result is bitwise independent of batch size and thread count.
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>

#include "kernels/matmul_impl.h"
#include "kernels/quantize_act.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12's AVX-512 intrinsics initialise their "undefined" vectors from themselves, which its own
// -Wuninitialized flags once they are inlined here (a known false positive of the header).
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

namespace dflash::kernels::detail {
namespace {

using namespace dflash::tensor;

#if defined(__clang__)
#pragma clang attribute push(                                                               \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#endif

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

#include "kernels/matmul_q45_x86-inl.h"
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---------------- vector-width policies ----------------
// kBytes: bytes (= quantised elements) per vector. Lane tables below are indexed in int32 lanes
// (kBytes / 4 per vector) or int16 lanes (kBytes / 2).

struct V256 {
  using I = __m256i;
  using F = __m256;
  static constexpr int kBytes = 32;
  static I load(const void* p) { return load256(p); }
  static I zero() { return _mm256_setzero_si256(); }
  static F fzero() { return _mm256_setzero_ps(); }
  static I set8(int8_t v) { return _mm256_set1_epi8(v); }
  static I and_(I a, I b) { return _mm256_and_si256(a, b); }
  static I or_(I a, I b) { return _mm256_or_si256(a, b); }
  static I add32(I a, I b) { return _mm256_add_epi32(a, b); }
  static I sub32(I a, I b) { return _mm256_sub_epi32(a, b); }
  static I srli16(I a, int n) { return _mm256_srli_epi16(a, n); }
  static I sllv16(I a, I n) { return _mm256_sllv_epi16(a, n); }
  static I srlv16(I a, I n) { return _mm256_srlv_epi16(a, n); }
  static I dpbusd(I acc, I u8, I s8) { return _mm256_dpbusd_epi32(acc, u8, s8); }
  static I dpwssd(I acc, I a, I b) { return _mm256_dpwssd_epi32(acc, a, b); }
  // a | c where (a_bits & bits) != 0, per byte.
  static I or_where(I a, I qh, I bits, I c) {
    return _mm256_or_si256(a, _mm256_maskz_mov_epi8(_mm256_test_epi8_mask(qh, bits), c));
  }
  // 32 bytes replicated into every 256-bit half.
  static I bcast256(const void* p) { return load256(p); }
  // int32 lanes gathered from an 8 x int32 source by an index vector.
  static I perm32(I idx, __m256i src) { return _mm256_permutexvar_epi32(idx, src); }
  static I widen(__m256i v) { return v; }
  // Q8_0: kBytes / 32 consecutive weight blocks' quants in one vector, and their scales per lane.
  static I load_q8(const BlockQ8_0* w) { return load256(w->qs); }
  static F scales_q8(const BlockQ8_0* w) { return _mm256_set1_ps(h2f(w->d)); }
  static F act_scales_q8(const float* d) { return _mm256_set1_ps(d[0]); }
  static F cvt(I v) { return _mm256_cvtepi32_ps(v); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static float hsum(F v) { return hsum256(v); }
  static int32_t hsum_i32(I v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
  }
};

struct V512 {
  using I = __m512i;
  using F = __m512;
  static constexpr int kBytes = 64;
  static I load(const void* p) { return _mm512_loadu_si512(p); }
  static I zero() { return _mm512_setzero_si512(); }
  static F fzero() { return _mm512_setzero_ps(); }
  static I set8(int8_t v) { return _mm512_set1_epi8(v); }
  static I and_(I a, I b) { return _mm512_and_si512(a, b); }
  static I or_(I a, I b) { return _mm512_or_si512(a, b); }
  static I add32(I a, I b) { return _mm512_add_epi32(a, b); }
  static I sub32(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I srli16(I a, int n) { return _mm512_srli_epi16(a, n); }
  static I sllv16(I a, I n) { return _mm512_sllv_epi16(a, n); }
  static I srlv16(I a, I n) { return _mm512_srlv_epi16(a, n); }
  static I dpbusd(I acc, I u8, I s8) { return _mm512_dpbusd_epi32(acc, u8, s8); }
  static I dpwssd(I acc, I a, I b) { return _mm512_dpwssd_epi32(acc, a, b); }
  static I or_where(I a, I qh, I bits, I c) {
    return _mm512_or_si512(a, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(qh, bits), c));
  }
  static I bcast256(const void* p) { return _mm512_broadcast_i64x4(load256(p)); }
  static I perm32(I idx, __m256i src) {
    return _mm512_permutexvar_epi32(idx, _mm512_castsi256_si512(src));
  }
  static I widen(__m256i v) { return _mm512_zextsi256_si512(v); }
  static I load_q8(const BlockQ8_0* w) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(w[0].qs)), load256(w[1].qs), 1);
  }
  static F scales_q8(const BlockQ8_0* w) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(h2f(w[0].d))),
                              _mm256_set1_ps(h2f(w[1].d)), 1);
  }
  static F act_scales_q8(const float* d) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d[0])), _mm256_set1_ps(d[1]),
                              1);
  }
  static F cvt(I v) { return _mm512_cvtepi32_ps(v); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static float hsum(F v) {
    return hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
  }
  static int32_t hsum_i32(I v) { return _mm512_reduce_add_epi32(v); }
};

// Constant lane tables, built at compile time: entry [v][lane] = f(first element of vector v plus
// the lane's element offset). Loaded once per weight block, shared by every token of the tile.
template <int kVecs, int kLanes>
struct LaneTable {
  alignas(64) std::array<int32_t, size_t(kVecs) * kLanes> v{};
  const void* at(int i) const { return &v[size_t(i) * kLanes]; }
};

// int32 lane i of vector i_v (elements from i_v·kBytes) → index of its scale group of kGroup
// elements.
template <class V, int kVecs, int kGroup>
constexpr LaneTable<kVecs, V::kBytes / 4> group_idx32() {
  LaneTable<kVecs, V::kBytes / 4> t;
  for (int iv = 0; iv < kVecs; ++iv)
    for (int l = 0; l < V::kBytes / 4; ++l)
      t.v[size_t(iv * (V::kBytes / 4) + l)] = (iv * V::kBytes + 4 * l) / kGroup;
  return t;
}

// ---------------- Q8_0 × Q8_0 ----------------
// Activations after act_prep_avx512vnni: uint8 qs (x + 128) for all blocks, then the f32 scales.
template <class V>
struct KQ8_0 {
  static constexpr int kPer = V::kBytes / kQK8_0;  // weight blocks per vector
  template <int NT>
  static void dot(const uint8_t* wrow, const uint8_t* const* acts, int64_t in, float* out) {
    const BlockQ8_0* w = reinterpret_cast<const BlockQ8_0*>(wrow);
    const int64_t nb = in / kQK8_0;
    const uint8_t* xq[NT];
    const float* xd[NT];
    for (int t = 0; t < NT; ++t) {
      xq[t] = acts[t];
      xd[t] = reinterpret_cast<const float*>(acts[t] + nb * kQK8_0);
    }
    // Two accumulator sets (even / odd steps) hide the FMA latency when there are few tokens.
    typename V::F acc0[NT], acc1[NT];
    for (int t = 0; t < NT; ++t) acc0[t] = acc1[t] = V::fzero();
    const typename V::I k80 = V::set8(int8_t(0x80));
    auto step = [&](int64_t b, typename V::F * acc, auto wv, auto dw)
        __attribute__((always_inline)) {
      // Σ (x+128)·w − 128·Σw = Σ x·w; the correction starts every token's accumulator.
      const typename V::I neg = V::sub32(V::zero(), V::dpbusd(V::zero(), k80, wv));
      for (int t = 0; t < NT; ++t) {
        const typename V::I p = V::dpbusd(neg, V::load(xq[t] + b * kQK8_0), wv);
        acc[t] = V::fmadd(V::cvt(p), V::mul(dw, V::act_scales_q8(xd[t] + b)), acc[t]);
      }
    };
    int64_t b = 0;
    for (; b + 2 * kPer <= nb; b += 2 * kPer) {
      prefetch_block<2 * kPer * sizeof(BlockQ8_0)>(w + b);
      step(b, acc0, V::load_q8(w + b), V::scales_q8(w + b));
      step(b + kPer, acc1, V::load_q8(w + b + kPer), V::scales_q8(w + b + kPer));
    }
    // Tail: fewer than 2·kPer blocks, one 256-bit block at a time (same for every token).
    typename V256::F t0[NT], t1[NT];
    for (int t = 0; t < NT; ++t) t0[t] = t1[t] = V256::fzero();
    int parity = 0;
    for (; b < nb; ++b, parity ^= 1) {
      const __m256i wv = V256::load_q8(w + b);
      const __m256 dw = V256::scales_q8(w + b);
      const __m256i neg =
          V256::sub32(V256::zero(), V256::dpbusd(V256::zero(), V256::set8(int8_t(0x80)), wv));
      for (int t = 0; t < NT; ++t) {
        const __m256i p = V256::dpbusd(neg, V256::load(xq[t] + b * kQK8_0), wv);
        __m256& a = parity ? t1[t] : t0[t];
        a = V256::fmadd(V256::cvt(p), V256::mul(dw, V256::set1(xd[t][b])), a);
      }
    }
    for (int t = 0; t < NT; ++t)
      out[t] = V::hsum(V::add(acc0[t], acc1[t])) + hsum256(_mm256_add_ps(t0[t], t1[t]));
  }
};

// Natural order → [x + 128 for every block][d for every block] (see KQ8_0).
void relayout_q8_0(uint8_t* act, int64_t n_blocks) {
  thread_local std::unique_ptr<uint8_t[]> tmp;
  thread_local size_t cap = 0;
  const size_t bytes = size_t(n_blocks) * sizeof(ActQ8_0);
  if (bytes > cap) {
    tmp.reset(new uint8_t[bytes]);
    cap = bytes;
  }
  std::memcpy(tmp.get(), act, bytes);
  const ActQ8_0* src = reinterpret_cast<const ActQ8_0*>(tmp.get());
  float* d = reinterpret_cast<float*>(act + n_blocks * kQK8_0);
  const __m256i k80 = _mm256_set1_epi8(int8_t(0x80));
  for (int64_t b = 0; b < n_blocks; ++b) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(act + b * kQK8_0),
                        _mm256_xor_si256(load256(src[b].qs), k80));
    std::memcpy(d + b, &src[b].d, sizeof(float));
  }
}

// ---------------- K-quants × Q8_K: the block loop ----------------
// Canonical float sequence, shared bit for bit with the AMX kernels (matmul_amx.cpp), so that an
// AMX machine may run small batches here and large ones on the tiles: per (row, token) and
// super-block, with exact integers isum = Σ sc·Σ q·x (Q6_K: q − 32) and imin = Σ_j m_j·Σx_j,
//   acc = fma(float(isum), d·dx, acc);  acc = fma(−float(imin), dmin·dx, acc)   (scalar, in order).

// Σ_j m_j·Σx_j for a Q4_K/Q5_K block: the activations carry the 8 sub-block sums as int32
// (act_prep_k_sums). Exact: |·| ≤ 8·63·32·127.
[[gnu::always_inline]] inline int32_t min_term(__m256i mn32, const BlockQ8_K& x) {
  return V256::hsum_i32(_mm256_mullo_epi32(mn32, load256(x.bsums)));
}
// Shared by every K-quant kernel; the block decoder D supplies the per-type part. Per weight block:
// D's integer sums (already weighted by the sub-block scales) for every token of the tile, summed
// across lanes and scaled by d·dx into one float accumulator per token; for types with mins, the
// exact min term Σ m_j·Σx_j (the activations carry Σx_j per sub-block, act_prep_k_sums) by dmin·dx.
// D provides: V (width policy), Block, kMins; Consts (per row: masks; its constructors are
// written out because implicit ones would not get this file's target options); Scales (per block, built
// from it; mn32 and dmin when kMins); start(scales, activation block): isum's first value (an offset term or
// zero); sums<NT, kAcc>(consts, block, scales, x, b, isum).
template <class D>
struct KQuantDot {
  using V = typename D::V;
  using Block = typename D::Block;
  template <int NT>
  static void dot(const uint8_t* wrow, const uint8_t* const* acts, int64_t in, float* out) {
    const Block* w = reinterpret_cast<const Block*>(wrow);
    const BlockQ8_K* x[NT];
    for (int t = 0; t < NT; ++t) x[t] = reinterpret_cast<const BlockQ8_K*>(acts[t]);
    const int64_t nb = in / kQK_K;
    float acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    const typename D::Consts c;
    // One token alone: two integer accumulators break the vpdpwssd dependency chain (exact, so
    // the grouping may differ from larger tiles).
    constexpr int kAcc = NT == 1 ? 2 : 1;
    for (int64_t b = 0; b < nb; ++b) {
      prefetch_block<sizeof(Block)>(w + b);
      const typename D::Scales s(w[b]);
      typename V::I isum[kAcc][NT];
      for (int t = 0; t < NT; ++t) {
        isum[0][t] = D::start(s, x[t][b]);
        if constexpr (kAcc == 2) isum[1][t] = V::zero();
      }
      D::template sums<NT, kAcc>(c, w[b], s, x, b, isum);
      const float d = h2f(w[b].d);
      // The block's float step on exact integer totals (see the canonical sequence above).
      for (int t = 0; t < NT; ++t) {
        typename V::I is = isum[0][t];
        if constexpr (kAcc == 2) is = V::add32(is, isum[1][t]);
        acc[t] = std::fma(float(V::hsum_i32(is)), d * x[t][b].d, acc[t]);
        if constexpr (D::kMins)
          acc[t] = std::fma(-float(min_term(s.mn32, x[t][b])), s.dmin * x[t][b].d, acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) out[t] = acc[t];
  }
};

// Q4_K/Q5_K block scales: the eight 6-bit scales as bytes, the eight 6-bit mins as int32 (for
// min_term) and dmin as float.
[[gnu::always_inline]] inline void k_block_scales(const uint8_t* scales, uint16_t dmin, uint64_t* sc64,
                                                  __m256i* mn32, float* dminf) {
  alignas(16) uint8_t sc[8], mn[8];
  unpack_k_scales(scales, sc, mn);
  uint64_t mn64;
  std::memcpy(sc64, sc, 8);
  std::memcpy(&mn64, mn, 8);
  *mn32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(mn64)));
  *dminf = h2f(dmin);
}

// ---------------- Q4_K / Q5_K × Q8_K ----------------
// Per vector of kBytes weights (natural order; sub-blocks of 32): vpdpbusd with the activations,
// vpdpwssd with the 6-bit scales; the min term uses the activation's 16-element sums (bsums).
template <class V_, bool kQ5>
struct DecQ45_K {
  using V = V_;
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  static constexpr bool kMins = true;
  static constexpr int kVecs = kQK_K / V::kBytes;
  static constexpr auto kScaleIdx = group_idx32<V, kVecs, 32>();
  // Q5_K: byte k of vector v takes its fifth bit from bit (sub-block) of qh[k mod 32].
  static constexpr LaneTable<kVecs, V::kBytes / 4> fifth_bits() {
    LaneTable<kVecs, V::kBytes / 4> t;
    for (int iv = 0; iv < kVecs; ++iv)
      for (int l = 0; l < V::kBytes / 4; ++l) {
        const uint32_t bit = 1u << ((iv * V::kBytes + 4 * l) / 32);
        t.v[size_t(iv * (V::kBytes / 4) + l)] = int32_t(bit * 0x01010101u);
      }
    return t;
  }
  static constexpr auto kBits = fifth_bits();

  // Two vectors of decoded weights (elements 2s·kBytes.. and (2s+1)·kBytes..) from kBytes of qs.
  static void decode(const Block& blk, int s, typename V::I m4, typename V::I qh,
                     typename V::I* q) {
    const typename V::I raw = V::load(blk.qs + s * V::kBytes);
    typename V::I lo = V::and_(raw, m4), hi = V::and_(V::srli16(raw, 4), m4);
    if constexpr (std::is_same_v<V, V512>) {
      // qs[64k..64k+63] hold sub-blocks (4k, 4k+2) in the low nibbles, (4k+1, 4k+3) in the high.
      const __m512i a = _mm512_shuffle_i64x2(lo, hi, 0x44), b = _mm512_shuffle_i64x2(lo, hi, 0xEE);
      lo = a;
      hi = b;
    }
    if constexpr (kQ5) {
      const typename V::I c16 = V::set8(16);
      lo = V::or_where(lo, qh, V::load(kBits.at(2 * s)), c16);
      hi = V::or_where(hi, qh, V::load(kBits.at(2 * s + 1)), c16);
    }
    q[0] = lo;
    q[1] = hi;
  }

  struct Consts {
    typename V::I m4;
    Consts() : m4(V::set8(0x0F)) {}
  };
  struct Scales {
    __m256i sc32;
    __m256i mn32;
    float dmin;
    typename V::I qh;
    [[gnu::always_inline]] explicit Scales(const Block& blk) : qh(V::zero()) {
      uint64_t sc64;
      k_block_scales(blk.scales, blk.dmin, &sc64, &mn32, &dmin);
      sc32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(sc64)));
      if constexpr (kQ5) qh = V::bcast256(blk.qh);
    }
  };
  [[gnu::always_inline]] static typename V::I start(const Scales&, const BlockQ8_K&) { return V::zero(); }

  template <int NT, int kAcc>
  [[gnu::always_inline]] static void sums(const Consts& c, const Block& blk, const Scales& sc,
                                          const BlockQ8_K* const* x, int64_t b,
                                          typename V::I (&isum)[kAcc][NT]) {
#pragma GCC unroll 4
    for (int s = 0; s < kVecs / 2; ++s) {
      typename V::I q[2];
      decode(blk, s, c.m4, sc.qh, q);
      for (int h = 0; h < 2; ++h) {
        const int iv = 2 * s + h;
        const typename V::I scv = V::perm32(V::load(kScaleIdx.at(iv)), sc.sc32);
        for (int t = 0; t < NT; ++t) {
          const typename V::I p = V::dpbusd(V::zero(), q[h], V::load(x[t][b].qs + iv * V::kBytes));
          isum[iv % kAcc][t] = V::dpwssd(isum[iv % kAcc][t], p, scv);
        }
      }
    }
  }
};
template <class V, bool kQ5>
using KQ45_K = KQuantDot<DecQ45_K<V, kQ5>>;

// 256-bit form on the AVX2 kernel's interleaved pair layout (decode_q45_pair, activations
// interleaved too): vpdpbusd twice into one int32 sum per lane (8 products of one sub-block,
// ≤ 8·31·127 < 2^15), then one vpdpwssd with the lane's scale: 3 multiply ops per 64 MACs where
// the natural layout needs 4.
template <bool kQ5>
struct DecQ45_KPair {
  using V = V256;
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  static constexpr bool kMins = true;
  struct Consts {
    __m256i m4;
    Consts() : m4(_mm256_set1_epi8(0x0F)) {}
  };
  struct Scales {
    __m256i scb;
    __m256i mn32;
    float dmin;
    __m256i qh;
    [[gnu::always_inline]] explicit Scales(const Block& blk) : qh(_mm256_setzero_si256()) {
      uint64_t sc64;
      k_block_scales(blk.scales, blk.dmin, &sc64, &mn32, &dmin);
      scb = _mm256_broadcastsi128_si256(_mm_cvtsi64_si128(int64_t(sc64)));
      if constexpr (kQ5) qh = load256(blk.qh);
    }
  };
  [[gnu::always_inline]] static __m256i start(const Scales&, const BlockQ8_K&) {
    return _mm256_setzero_si256();
  }

  template <int NT, int kAcc>
  [[gnu::always_inline]] static void sums(const Consts& c, const Block& blk, const Scales& sc,
                                          const BlockQ8_K* const* x, int64_t b, __m256i (&isum)[kAcc][NT]) {
#pragma GCC unroll 4
    for (int j2 = 0; j2 < 4; ++j2) {
      __m256i w0, w1;
      decode_q45_pair<kQ5>(blk, j2, c.m4, sc.qh, &w0, &w1);
      const __m256i s_ab = pair_scales<4>(sc.scb, j2);
      for (int t = 0; t < NT; ++t) {
        const int8_t* xq = x[t][b].qs + 64 * j2;
        const __m256i p = _mm256_dpbusd_epi32(
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), w0, load256(xq)), w1, load256(xq + 32));
        isum[j2 % kAcc][t] = _mm256_dpwssd_epi32(isum[j2 % kAcc][t], p, s_ab);
      }
    }
  }
};
template <bool kQ5>
using KQ45_KPair = KQuantDot<DecQ45_KPair<kQ5>>;

// Q4_K/Q5_K activations: each block's 16 int16 bsums become the 8 int32 sub-block sums Σx_j, in
// place (same 32 bytes), for the exact min term (min_term).
void act_prep_k_sums(uint8_t* act, int64_t n_blocks) {
  BlockQ8_K* blk = reinterpret_cast<BlockQ8_K*>(act);
  static_assert(sizeof(blk->bsums) == 8 * sizeof(int32_t));
  for (int64_t i = 0; i < n_blocks; ++i) {
    // madd gives the pair sums in natural order: lane j = bsums[2j] + bsums[2j+1].
    const __m256i s32 = _mm256_madd_epi16(load256(blk[i].bsums), _mm256_set1_epi16(1));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blk[i].bsums), s32);
  }
}

// ---------------- Q6_K × Q8_K ----------------
// Unsigned 6-bit q (0..63): Σ sc·(q·x) − 32·Σ sc·bsum, the offset term starting the accumulator.
template <class V_>
struct DecQ6_K {
  using V = V_;
  using Block = BlockQ6_K;
  static constexpr bool kMins = false;
  static constexpr int kSteps = 64 / V::kBytes;  // vectors per 64 bytes of ql (per half block)
  // Per half block h: vector "lo" (step c) covers elements 128h + c·kBytes, "hi" 128h + 64 +
  // c·kBytes; scale groups of 16 within the half.
  static constexpr auto kScaleIdx = group_idx32<V, 128 / V::kBytes, 16>();
  // High bits of qh for lo vectors: the 32-byte group g of ql (g = 0: bits 0,1; g = 1: bits 2,3)
  // moved to bits 4,5 by a left shift of 4 / 2; for hi vectors (bits 4,5 / 6,7) a right shift of
  // 0 / 2. Entries are int16 shift counts, packed two per int32 lane.
  static constexpr LaneTable<kSteps, V::kBytes / 4> shifts(bool left) {
    LaneTable<kSteps, V::kBytes / 4> t;
    for (int c = 0; c < kSteps; ++c)
      for (int l = 0; l < V::kBytes / 4; ++l) {
        const int g = (c * V::kBytes + 4 * l) / 32;
        const int n = left ? (g == 0 ? 4 : 2) : (g == 0 ? 0 : 2);
        t.v[size_t(c * (V::kBytes / 4) + l)] = n | (n << 16);
      }
    return t;
  }
  static constexpr auto kShl = shifts(true);
  static constexpr auto kShr = shifts(false);

  struct Consts {
    typename V::I m4, m30;
    Consts() : m4(V::set8(0x0F)), m30(V::set8(0x30)) {}
  };
  struct Scales {
    __m256i off16;  // −32·sc per scale group, as int16
    [[gnu::always_inline]] explicit Scales(const Block& blk) {
      const __m256i sc16 =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales)));
      off16 = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
    }
  };
  [[gnu::always_inline]] static typename V::I start(const Scales& s, const BlockQ8_K& xb) {
    return V::widen(_mm256_madd_epi16(load256(xb.bsums), s.off16));
  }

  template <int NT, int kAcc>
  [[gnu::always_inline]] static void sums(const Consts& cs, const Block& blk, const Scales&,
                                          const BlockQ8_K* const* x, int64_t b,
                                          typename V::I (&isum)[kAcc][NT]) {
    int iv = 0;  // vector counter for the accumulator choice
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      // Signed scales as int16 pairs [sc, 0]: the zero keeps the sum's sign half out.
      const __m256i sc32 = _mm256_and_si256(
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk.scales + 8 * h))),
          _mm256_set1_epi32(0xFFFF));
      const typename V::I qh = V::bcast256(blk.qh + 32 * h);
#pragma GCC unroll 2
      for (int c = 0; c < kSteps; ++c) {
        const typename V::I raw = V::load(blk.ql + 64 * h + c * V::kBytes);
        const typename V::I q[2] = {
            V::or_(V::and_(raw, cs.m4), V::and_(V::sllv16(qh, V::load(kShl.at(c))), cs.m30)),
            V::or_(V::and_(V::srli16(raw, 4), cs.m4), V::and_(V::srlv16(qh, V::load(kShr.at(c))), cs.m30))};
        for (int k = 0; k < 2; ++k, ++iv) {
          // Vector index within the half: lo vectors first (elements < 64), then hi.
          const int hv = k * kSteps + c;
          const typename V::I scv = V::perm32(V::load(kScaleIdx.at(hv)), sc32);
          for (int t = 0; t < NT; ++t) {
            const typename V::I p =
                V::dpbusd(V::zero(), q[k], V::load(x[t][b].qs + 128 * h + hv * V::kBytes));
            isum[iv % kAcc][t] = V::dpwssd(isum[iv % kAcc][t], p, scv);
          }
        }
      }
    }
  }
};
template <class V>
using KQ6_K = KQuantDot<DecQ6_K<V>>;

// Tokens per register tile: 32 vector registers hold 8 tokens' accumulators next to the
// decoded weights and scales.
constexpr int kVnniTokenTile = 8;

template <class V>
RowsFn table(DType t) {
  switch (t) {
    case DType::kQ8_0:
      return &TiledRows<KQ8_0<V>, kVnniTokenTile>::rows;
    case DType::kQ4_K:
      if constexpr (std::is_same_v<V, V256>)
        return &TiledRows<KQ45_KPair<false>, kVnniTokenTile>::rows;
      else
        return &TiledRows<KQ45_K<V, false>, kVnniTokenTile>::rows;
    case DType::kQ5_K:
      if constexpr (std::is_same_v<V, V256>)
        return &TiledRows<KQ45_KPair<true>, kVnniTokenTile>::rows;
      else
        return &TiledRows<KQ45_K<V, true>, kVnniTokenTile>::rows;
    case DType::kQ6_K:
      return &TiledRows<KQ6_K<V>, kVnniTokenTile>::rows;
    default:
      return nullptr;
  }
}

// Pair layout (KQ45_KPair): the AVX2 kernels' interleave, then the float sub-block sums.
void act_prep_k_pair(uint8_t* act, int64_t n_blocks) {
  act_prep_avx2(DType::kQ4_K)(act, n_blocks);
  act_prep_k_sums(act, n_blocks);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// Default width when neither set_vnni_width nor DFLASH_VNNI_WIDTH chooses. Measured on Zen 4
// (bench/matmul_results.md): 256-bit is as fast or faster for every type and batch (Zen 4 runs a
// 512-bit op as two halves, and the 512-bit decode needs extra cross-lane shuffles).
constexpr int kDefaultWidth = 256;

int width_from_env() {
  static const int w = [] {
    const char* e = std::getenv("DFLASH_VNNI_WIDTH");  // for A/B benchmarks
    const int v = e ? std::atoi(e) : 0;
    return v == 256 || v == 512 ? v : kDefaultWidth;
  }();
  return w;
}

std::atomic<int> g_width{0};  // 0: not forced
}  // namespace

void set_vnni_width(int bits) { g_width.store(bits == 256 || bits == 512 ? bits : 0); }

int vnni_width() {
  const int w = g_width.load(std::memory_order_relaxed);
  return w ? w : width_from_env();
}

ActPrepFn act_prep_avx512vnni(DType t) {
  switch (t) {
    case DType::kQ8_0:
      return &relayout_q8_0;
    case DType::kQ4_K:
    case DType::kQ5_K:
      return vnni_width() == 256 ? &act_prep_k_pair : &act_prep_k_sums;
    default:
      return nullptr;
  }
}

RowsFn rows_fn_avx512vnni(DType t) { return vnni_width() == 256 ? table<V256>(t) : table<V512>(t); }

}  // namespace dflash::kernels::detail

#else  // not x86 with GCC/clang: no VNNI kernels.

namespace dflash::kernels::detail {
RowsFn rows_fn_avx512vnni(tensor::DType) { return nullptr; }
ActPrepFn act_prep_avx512vnni(tensor::DType) { return nullptr; }
void set_vnni_width(int) {}
int vnni_width() { return 0; }
}  // namespace dflash::kernels::detail

#endif
