// Quantised weights × 8-bit activations with vectors over 16 weight rows: Q8_0, Q4_K, Q5_K and Q6_K on
// AVX-512 VNNI and on AVX2 without VNNI (Zen 2/3), on the same packed layouts and with the same bits.
//
// Why: the per-row kernels (matmul_vnni.cpp, matmul_x86.cpp) take a vector along one weight row, so
// every 32-weight block needs a float convert + scale + FMA per token next to its one multiply-add: at
// 16 tokens the float steps, not the products, bound the GEMM (GEMM(16) ≈ 10–14 × GEMV). Here a vector
// holds 4 consecutive weights of each of 16 rows ([k/4][row][4], the AMX B-tile layout), the token's 4
// activations are broadcast, and 8 vpdpbusd give the 16 rows' exact block sums in one register: one
// float step per 16 rows instead of per row. The weights are re-laid out once at load (prepack_rows16,
// PackedWeights); a matrix without the copy is re-laid out per row group on the fly into the same
// layout, so the bits do not depend on which.
//
// Arithmetic per (row, token), exactly the AMX kernels' canonical sequence (matmul_amx.cpp). Q8_0:
// per block, C = Σ w·x exact in int32, then acc = fma(float(C), d_w·d_x, acc) in block order; the
// weights are stored as w + 128 (unsigned, vpdpbusd's first operand) and the activations stay signed,
// so C = Σ (w + 128)·x − 128·Σx with the correction per (token, block) from the packing. K-quants: see
// their section below.
//
// AVX2 (no VNNI): a ymm holds half of a 16-row vector (8 rows × 4 bytes) and vpmaddubsw + vpmaddwd stand
// in for vpdpbusd; the integer sums are exact, so the bits are the VNNI kernels'. The per-row AVX2
// kernels' bits differ (they keep 8 partial float sums per token), so on AVX2 a matrix with the copy
// runs these kernels for every batch (matmul.cpp, rows16_takes). Packing needs no AVX-512 there: the
// K-quant packers below use 8 × 8 dword transposes (AVX2) where the VNNI ones gather.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>

#include "kernels/matmul_impl.h"
#include "kernels/matmul_isa.h"
#include "kernels/quantize_act.h"
#include "kernels/rows16_layout.h"

namespace dflash::kernels::detail {

// The packed layouts (Q45Layout, kQ6k*) and the packed Q8_K activations: kernels/rows16_layout.h.
using rows16_layout::Q45Layout;
using rows16_layout::kQ6kScales;
using rows16_layout::kQ6kD;
using rows16_layout::kQ6kBlock;
using rows16_layout::Prefetch;
using rows16_layout::prefetch_slot;

size_t prepack_rows16_group_bytes(tensor::DType t, int64_t in) {
  if (t == tensor::DType::kQ4_K) return size_t(in / tensor::kQK_K) * Q45Layout<false>::kBlock;
  if (t == tensor::DType::kQ5_K) return size_t(in / tensor::kQK_K) * Q45Layout<true>::kBlock;
  if (t == tensor::DType::kQ6_K) return size_t(in / tensor::kQK_K) * kQ6kBlock;
  const size_t nb = size_t(in / tensor::kQK8_0);
  // Tiles first (64-byte aligned vectors), then the fp16 scales, padded to a cache line.
  return nb * kRows16TileBytes + (nb * kRows16 * sizeof(uint16_t) + 63) / 64 * 64;
}

}  // namespace dflash::kernels::detail

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

namespace dflash::kernels::detail {
namespace {

using namespace dflash::tensor;

constexpr int kBlk = kQK8_0;

// One row's per-block metadata into the 16-row layouts, shared by the AVX2 and the AVX-512 packers (which
// differ only in how they move the quants): Q4_K/Q5_K row r's 6-bit scales as bytes [sub-block][row], its
// mins as int16 pairs [pair][row], d and dmin; Q6_K row r's scales and d.
template <bool kQ5, class B>
inline void put_q45_row_meta(const B& x, int r, uint8_t* out) {
  using L = Q45Layout<kQ5>;
  uint8_t s8[8], m8[8];
  unpack_k_scales(x.scales, s8, m8);
  for (int j = 0; j < 8; ++j) out[L::kScales + j * kRows16 + r] = s8[j];
  int32_t* mn2 = reinterpret_cast<int32_t*>(out + L::kMins);
  for (int p = 0; p < 4; ++p) mn2[p * kRows16 + r] = int32_t(m8[2 * p]) | int32_t(m8[2 * p + 1]) << 16;
  reinterpret_cast<uint16_t*>(out + L::kD)[r] = x.d;
  reinterpret_cast<uint16_t*>(out + L::kDmin)[r] = x.dmin;
}

inline void put_q6k_row_meta(const BlockQ6_K& x, int r, uint8_t* out) {
  int8_t* sc = reinterpret_cast<int8_t*>(out + kQ6kScales);
  for (int j = 0; j < 16; ++j) sc[j * kRows16 + r] = x.scales[j];
  reinterpret_cast<uint16_t*>(out + kQ6kD)[r] = x.d;
}

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

// ---------------- shared by the AVX2 and AVX-512 kernels (AVX2 instructions only) ----------------

// Packed Q8_0 activations of a group of up to 16 tokens (layout in kernels/rows16_layout.h): a block's
// broadcasts are fixed offsets from one pointer.
using rows16_layout::kTokens;
using rows16_layout::q8act_bytes;
using rows16_layout::q8act_corr_offset;
using rows16_layout::q8act_d_offset;

void pack_act(const uint8_t* act, size_t act_stride, int64_t n_tokens, int64_t nb, uint8_t* out) {
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t g = 0; g * kTokens < n_tokens; ++g) {
    uint8_t* dst = out + size_t(g) * q8act_bytes(nb);
    float* d = reinterpret_cast<float*>(dst + q8act_d_offset(nb));
    int32_t* corr = reinterpret_cast<int32_t*>(dst + q8act_corr_offset(nb));
    const int n = int(std::min<int64_t>(kTokens, n_tokens - g * kTokens));
    for (int t = 0; t < n; ++t) {
      const ActQ8_0* src = reinterpret_cast<const ActQ8_0*>(act + size_t(g * kTokens + t) * act_stride);
      for (int64_t b = 0; b < nb; ++b) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[b].qs));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + size_t(b * kTokens + t) * kBlk), q);
        d[b * kTokens + t] = src[b].d;
        // Σ qs: 1·q summed in pairs (int16), then the 16 pair sums.
        const __m256i s32 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, q), _mm256_set1_epi16(1));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
        corr[b * kTokens + t] = -128 * _mm_cvtsi128_si32(s);
      }
    }
  }
}

// Byte offsets of a group's 16 rows from its first; rows past m repeat row m − 1 (in bounds; their
// results are never stored).
inline void group_row_offsets(size_t w_stride, int m, int32_t* offs) {
  for (int r = 0; r < kRows16; ++r) offs[r] = int32_t(size_t(std::min(r, m - 1)) * w_stride);
}

// Packed Q8_K activations of a group of up to 16 tokens (the AVX2 and VNNI K-quant kernels; packed with
// AVX2): layout in kernels/rows16_layout.h.
using rows16_layout::kact_bytes;
using rows16_layout::kact_d_offset;
using rows16_layout::kact_sums_offset;

template <int kPairs>
void pack_kact(const uint8_t* act, size_t act_stride, int64_t n_tokens, int64_t nb, uint8_t* out) {
  for (int64_t g = 0; g * kTokens < n_tokens; ++g) {
    uint8_t* dst = out + size_t(g) * kact_bytes<kPairs>(nb);
    float* d = reinterpret_cast<float*>(dst + kact_d_offset(nb));
    uint32_t* sums = reinterpret_cast<uint32_t*>(dst + kact_sums_offset(nb));
    const int n = int(std::min<int64_t>(kTokens, n_tokens - g * kTokens));
    for (int t = 0; t < n; ++t) {
      const BlockQ8_K* src = reinterpret_cast<const BlockQ8_K*>(act + size_t(g * kTokens + t) * act_stride);
      for (int64_t b = 0; b < nb; ++b) {
        std::memcpy(dst + size_t(b * kTokens + t) * kQK_K, src[b].qs, kQK_K);
        d[b * kTokens + t] = src[b].d;
        for (int p = 0; p < kPairs; ++p) {
          const int u = 8 / kPairs;  // bsums per sum: 2 (Q4_K's 32-element sub-blocks) or 1 (Q6_K)
          int s0 = 0, s1 = 0;
          for (int i = 0; i < u; ++i) {
            s0 += src[b].bsums[2 * u * p + i];
            s1 += src[b].bsums[2 * u * p + u + i];
          }
          sums[(b * kPairs + p) * kTokens + t] = uint32_t(uint16_t(int16_t(s0))) | uint32_t(uint16_t(int16_t(s1))) << 16;
        }
      }
    }
  }
}

// ---------------- Q8_0 with AVX2 (no VNNI) ----------------
// The same layout and per-(row, token) sequence as the VNNI kernel (so the same bits): the exact block
// sum C from vpmaddubsw on |w| and sign(x, w) (pairs ≤ 2·128·127 < 2^15), vpmaddwd with ones, then
// acc = fma(float(C), dw·dx, acc). A vector holds 8 rows; NT ≤ 4 tokens per pass keep 4 int and 4
// float accumulators plus the weights in the 16 ymm registers.
constexpr int kAvx2Tokens = 4;

template <int NT>
inline void tile_avx2(const uint8_t* grp, int64_t nb, const uint8_t* act, int t0, int h, int m, float* y, int64_t ldy) {
  const uint16_t* wscales = rows16_layout::q8_row_scales(grp, nb);
  const float* xd = rows16_layout::q8act_d(act, nb);
  const __m256i ones = _mm256_set1_epi16(1), k80 = _mm256_set1_epi8(int8_t(0x80));
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* tb = grp + size_t(b) * kRows16TileBytes + 32 * h;
    const uint8_t* xb = act + size_t(b * kTokens + t0) * kBlk;
    __m256i c[NT];
    for (int t = 0; t < NT; ++t) c[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      // The pass over half 0 streams the group: one line 8 tiles ahead per weight vector, into L2 (GEMV
      // > L3: 26–27 ms against 34 with the hardware prefetchers alone).
      if (h == 0) __builtin_prefetch(tb + 8 * kRows16TileBytes + 64 * k, 0, 1);
      const __m256i w = _mm256_xor_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(tb + 64 * k)), k80);
      const __m256i aw = _mm256_abs_epi8(w);  // |−128| = 128 read as unsigned: still exact
      for (int t = 0; t < NT; ++t) {
        int32_t x4;
        std::memcpy(&x4, xb + t * kBlk + 4 * k, 4);
        const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_set1_epi32(x4), w));
        c[t] = _mm256_add_epi32(c[t], _mm256_madd_epi16(p, ones));
      }
    }
    const __m256 dw =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wscales + b * kRows16 + 8 * h)));
    for (int t = 0; t < NT; ++t)
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c[t]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[b * kTokens + t0 + t])),
                               acc[t]);
  }
  const int rows = std::clamp(m - 8 * h, 0, 8);
  alignas(32) int32_t lane_mask[8];
  for (int r = 0; r < 8; ++r) lane_mask[r] = r < rows ? -1 : 0;
  const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_mask));
  for (int t = 0; t < NT; ++t) _mm256_maskstore_ps(y + t * ldy + 8 * h, mask, acc[t]);
}

// A scratch row group per thread (matrices without a packed copy).
struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
thread_local std::unique_ptr<uint8_t, FreeDeleter> t_group;
thread_local size_t t_group_cap = 0;

uint8_t* group_scratch(size_t n) {
  if (n > t_group_cap) {
    t_group.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64)));
    t_group_cap = n;
  }
  return t_group.get();
}

// ---------------- Q4_K, Q5_K, Q6_K with AVX2 (no VNNI) ----------------
// The packed layouts and activations of the VNNI kernels below, and their canonical per-(row, token)
// sequence, so the same bits: exact isum (and imin) per super-block, then the same FMAs. A ymm holds
// half h of a 16-row vector (rows 8h .. 8h + 7). The weights are unsigned (Q4_K 0..15, Q5_K 0..31,
// Q6_K 0..63) and the activations signed (|x| ≤ 127), so vpmaddubsw needs no sign trick. Its int16
// pairs (≤ 2·63·127 = 16002 for 6 bits, 7874 for 5, 3810 for 4) are summed in int16 over as many
// 4-byte groups as cannot overflow (Q4_K: 8 = a 32-element sub-block, ≤ 30480; Q5_K: 4, ≤ 31496;
// Q6_K: 2, ≤ 32004), then one vpmaddwd against the rows' scale as an int16 pair (sc, sc) gives sc·C
// exactly in int32. The min and −32 offset terms are vpmaddwd of the same packed int16 pairs as the
// VNNI kernels' vpdpwssd (vpmaddwd wraps only when both products are −32768·−32768, impossible here).
// The isum / imin bounds are the VNNI kernels' (int32, no overflow).

// 8 rows' first 8·n_oct dwords (row i at src[i]) into half hh of the [k/4][row][4] layout: dword c of
// row i goes to out + 64·c + 32·hh + 4·i (8 × 8 dword transposes in registers, no gathers).
inline void transpose8_dwords(const uint8_t* const* src, int n_oct, uint8_t* out, int hh) {
  for (int q = 0; q < n_oct; ++q) {
    __m256i r[8], t[8], u[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[i] + 32 * q));
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {  // t[i] = (r_i[0] r_i+1[0] r_i[1] r_i+1[1] | 4, 5), t[i + 1]: 2, 3 | 6, 7
      t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 8; i += 4) {  // u[i + e]: dword e | e + 4 of rows i .. i + 3
      u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
      u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
      u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
      u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    uint8_t* o = out + 64 * 8 * q + 32 * hh;
#pragma GCC unroll 4
    for (int e = 0; e < 4; ++e) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(o + 64 * e), _mm256_permute2x128_si256(u[e], u[4 + e], 0x20));
      _mm256_store_si256(reinterpret_cast<__m256i*>(o + 64 * (e + 4)), _mm256_permute2x128_si256(u[e], u[4 + e], 0x31));
    }
  }
}

// Q8_0 rows into the packed layout: tile row k4 holds the 4-byte groups k4 of the 16 rows, flipped to unsigned.
void pack_q8_group(const uint8_t* w, size_t w_stride, int m, int64_t nb, uint8_t* out) {
  uint16_t* scales = reinterpret_cast<uint16_t*>(out + size_t(nb) * kRows16TileBytes);
  int32_t offs[kRows16];
  group_row_offsets(w_stride, m, offs);
  const __m256i k80 = _mm256_set1_epi8(int8_t(0x80));
  const uint8_t* src[kRows16];
  for (int64_t b = 0; b < nb; ++b) {
    // A block's 32 quants are 8 dwords per row: two 8 × 8 dword transposes (a per-byte loop here made the
    // on-the-fly re-layout of MoE expert stacks 8 × the matmul it fed).
    for (int r = 0; r < kRows16; ++r) src[r] = w + size_t(offs[r]) + size_t(b) * sizeof(BlockQ8_0) + offsetof(BlockQ8_0, qs);
    uint8_t* tile = out + size_t(b) * kRows16TileBytes;
    for (int hh = 0; hh < 2; ++hh) transpose8_dwords(src + 8 * hh, 1, tile, hh);
    for (size_t i = 0; i < kRows16TileBytes; i += 32) {
      __m256i* v = reinterpret_cast<__m256i*>(tile + i);
      _mm256_store_si256(v, _mm256_xor_si256(_mm256_load_si256(v), k80));
    }
    for (int r = 0; r < kRows16; ++r)
      scales[b * kRows16 + r] = reinterpret_cast<const BlockQ8_0*>(w + size_t(offs[r]))[b].d;
  }
}

// Super-block b of m ≤ 16 rows into Q45Layout (rows past m repeat row m − 1), for the AVX2 and VNNI kernels
// alike: transposes, and the fifth bits by vpmovmskb (a gather + bit-loop packer took 10× the matmul it fed).
template <bool kQ5>
void pack_q45_block_avx2(const uint8_t* w, size_t w_stride, int m, int64_t b, uint8_t* out) {
  using B = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  using L = Q45Layout<kQ5>;
  int32_t offs[kRows16];
  group_row_offsets(w_stride, m, offs);
  const uint8_t* blk = w + size_t(b) * sizeof(B);
  const uint8_t* src[kRows16];
  for (int r = 0; r < kRows16; ++r) src[r] = blk + size_t(offs[r]) + offsetof(B, qs);
  for (int hh = 0; hh < 2; ++hh) transpose8_dwords(src + 8 * hh, 4, out, hh);  // dword c: chunk c / 8, k4 = c % 8
  for (int r = 0; r < kRows16; ++r) put_q45_row_meta<kQ5>(*reinterpret_cast<const B*>(blk + size_t(offs[r])), r, out);
  if constexpr (kQ5) {
    // Element 32j + l (l = 4k4 + i) of row r has its fifth bit at bit j of qh[l]; mask (j, k4) holds it at
    // bit 4r + i. qh laid out as [k4][row][4] bytes: byte 4r + i of vector k4 is row r's qh[4k4 + i], so
    // mask (j, k4) is bit j of each of its 64 bytes in byte order: vpmovmskb after moving bit j to bit 7.
    alignas(32) uint8_t qh[8 * 64];
    for (int r = 0; r < kRows16; ++r) src[r] = blk + size_t(offs[r]) + offsetof(B, qh);
    for (int hh = 0; hh < 2; ++hh) transpose8_dwords(src + 8 * hh, 1, qh, hh);
    uint32_t masks[64][2];
    for (int k4 = 0; k4 < 8; ++k4)
      for (int hh = 0; hh < 2; ++hh) {
        __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(qh + 64 * k4 + 32 * hh));
        for (int j = 7; j >= 0; --j) {
          masks[8 * j + k4][hh] = uint32_t(_mm256_movemask_epi8(v));
          v = _mm256_add_epi8(v, v);  // bit j − 1 of every byte to bit 7
        }
      }
    std::memcpy(out + L::kMasks, masks, sizeof(masks));  // little-endian: [hh = 0, hh = 1] = one uint64_t
  }
}

// Q6_K super-block b of m ≤ 16 rows into the kQ6k layout, each
// row's 6-bit q decoded to bytes in element order, then transposed.
void pack_q6k_block_avx2(const uint8_t* w, size_t w_stride, int m, int64_t b, uint8_t* out) {
  int32_t offs[kRows16];
  group_row_offsets(w_stride, m, offs);
  alignas(32) uint8_t q[kRows16][kQK_K];
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  for (int r = 0; r < kRows16; ++r) {
    const BlockQ6_K& x = *reinterpret_cast<const BlockQ6_K*>(w + size_t(offs[r]) + size_t(b) * sizeof(BlockQ6_K));
    // Element 128h + 32s + l (ggml's order): low 4 bits from ql[64h + 32(s & 1) + l] (s < 2: low nibble),
    // high 2 from bits 2s, 2s + 1 of qh[32h + l].
    for (int h = 0; h < 2; ++h) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * h));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.ql + 64 * h + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * h));
      const __m256i qv[4] = {
          _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30)),
          _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30))};
      for (int s = 0; s < 4; ++s) _mm256_store_si256(reinterpret_cast<__m256i*>(q[r] + 128 * h + 32 * s), qv[s]);
    }
    put_q6k_row_meta(x, r, out);
  }
  const uint8_t* src[kRows16];
  for (int r = 0; r < kRows16; ++r) src[r] = q[r];
  for (int hh = 0; hh < 2; ++hh) transpose8_dwords(src + 8 * hh, 8, out, hh);
}

// The rows' scales of (sub-)block j, half h, as int16 pairs (sc, sc) per row: vpmaddwd's operand.
template <bool kSigned>
inline __m256i scale_pairs(const uint8_t* p) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m256i v = kSigned ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
  return _mm256_blend_epi16(v, _mm256_slli_epi32(v, 16), 0xAA);
}

inline __m256i bcast4(const uint8_t* x) {
  int32_t v;
  std::memcpy(&v, x, 4);
  return _mm256_set1_epi32(v);
}

// Masked store of the 8 rows of half h that exist (m rows in the group).
template <int NT>
inline void store_half(const __m256* acc, int h, int m, float* y, int64_t ldy) {
  const int rows = std::clamp(m - 8 * h, 0, 8);
  alignas(32) int32_t lane_mask[8];
  for (int r = 0; r < 8; ++r) lane_mask[r] = r < rows ? -1 : 0;
  const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_mask));
  for (int t = 0; t < NT; ++t) _mm256_maskstore_ps(y + t * ldy + 8 * h, mask, acc[t]);
}

// Q4_K / Q5_K: NT tokens (t0 .. t0 + NT − 1 of the packed group) × NH halves from h0 of a 16-row group
// (NH = 2: interleaved per weight vector, sharing the activation broadcasts). Per weight vector the
// nibbles (Q5_K: plus 16 where the fifth bit is set) are decoded once for the NT tokens.
template <bool kQ5, int NT, int NH>
inline void ktile_avx2(const uint8_t* grp, int64_t nb, const uint8_t* act, int t0, int h0, int m, float* y,
                       int64_t ldy, const Prefetch& pf) {
  using L = Q45Layout<kQ5>;
  const float* xd = reinterpret_cast<const float*>(act + kact_d_offset(nb));
  const int32_t* xs = reinterpret_cast<const int32_t*>(act + kact_sums_offset(nb));
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  // Q5_K: byte 4r + i of a half needs bit 4r + i of the half's 32 mask bits: vpshufb puts mask byte
  // (4r + i) / 8 into it, then the byte's own bit is tested.
  [[maybe_unused]] const __m256i byte_sel =
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  [[maybe_unused]] const __m256i bit_sel = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  [[maybe_unused]] const __m256i c16 = _mm256_set1_epi8(16);
  __m256 acc[NH][NT];
  for (int hh = 0; hh < NH; ++hh)
    for (int t = 0; t < NT; ++t) acc[hh][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = grp + size_t(b) * L::kBlock;
    const uint8_t* xb = act + size_t(b) * kTokens * kQK_K + size_t(t0) * kQK_K;
    __m256i isum[NH][NT];
    for (int hh = 0; hh < NH; ++hh)
      for (int t = 0; t < NT; ++t) isum[hh][t] = _mm256_setzero_si256();
    // Sub-blocks in pairs, so that which nibble a sub-block takes is known at compile time (a run-time
    // parity test put a branch into every weight vector's step).
    auto sub_block = [&]<int kOdd>(std::integral_constant<int, kOdd>, int j) __attribute__((always_inline)) {
      const uint8_t* nib = blk + 512 * (j / 2) + 32 * h0;
      __m256i sc[NH], c16s[NH][NT];
      for (int hh = 0; hh < NH; ++hh) sc[hh] = scale_pairs<false>(blk + L::kScales + 16 * j + 8 * (h0 + hh));
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        prefetch_slot<1>(pf, b, 8 * j + k);
#pragma GCC unroll 2
        for (int hh = 0; hh < NH; ++hh) {
          const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(nib + 64 * k + 32 * hh));
          __m256i w = _mm256_and_si256(kOdd ? _mm256_srli_epi16(v, 4) : v, m4);
          if constexpr (kQ5) {
            uint32_t bits;
            std::memcpy(&bits, blk + L::kMasks + 8 * (8 * j + k) + 4 * (h0 + hh), 4);
            const __m256i sel = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(int32_t(bits)), byte_sel), bit_sel);
            w = _mm256_or_si256(w, _mm256_and_si256(_mm256_cmpeq_epi8(sel, bit_sel), c16));
          }
#pragma GCC unroll 8
          for (int t = 0; t < NT; ++t) {
            const __m256i p = _mm256_maddubs_epi16(w, bcast4(xb + t * kQK_K + 32 * j + 4 * k));
            c16s[hh][t] = k % (kQ5 ? 4 : 8) == 0 ? p : _mm256_add_epi16(c16s[hh][t], p);
            if (k % (kQ5 ? 4 : 8) == (kQ5 ? 3 : 7))
              isum[hh][t] = _mm256_add_epi32(isum[hh][t], _mm256_madd_epi16(c16s[hh][t], sc[hh]));
          }
        }
      }
    };
    for (int j = 0; j < 8; j += 2) {
      sub_block(std::integral_constant<int, 0>(), j);
      sub_block(std::integral_constant<int, 1>(), j + 1);
    }
#pragma GCC unroll 2
    for (int hh = 0; hh < NH; ++hh) {
      const int h = h0 + hh;
      const __m256 d = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(blk + L::kD + 16 * h)));
      const __m256 dmin = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(blk + L::kDmin + 16 * h)));
      const int32_t* mn2 = reinterpret_cast<const int32_t*>(blk + L::kMins) + 8 * h;
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        const int tt = t0 + t;
        __m256i imin = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int p = 0; p < 4; ++p)
          imin = _mm256_add_epi32(imin, _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(mn2 + p * kRows16)),
                                                          _mm256_set1_epi32(xs[(b * 4 + p) * kTokens + tt])));
        const __m256 dx = _mm256_set1_ps(xd[b * kTokens + tt]);
        acc[hh][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[hh][t]), _mm256_mul_ps(d, dx), acc[hh][t]);
        acc[hh][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_mul_ps(dmin, dx), acc[hh][t]);
      }
    }
  }
  for (int hh = 0; hh < NH; ++hh) store_half<NT>(acc[hh], h0 + hh, m, y, ldy);
}

// Q6_K: the same for NT tokens × NH halves; isum starts at the offset term −32·Σ_p (sc pairs · bsums pairs).
template <int NT, int NH>
inline void q6tile_avx2(const uint8_t* grp, int64_t nb, const uint8_t* act, int t0, int h0, int m, float* y,
                        int64_t ldy, const Prefetch& pf) {
  const float* xd = reinterpret_cast<const float*>(act + kact_d_offset(nb));
  const int32_t* xs = reinterpret_cast<const int32_t*>(act + kact_sums_offset(nb));
  __m256 acc[NH][NT];
  for (int hh = 0; hh < NH; ++hh)
    for (int t = 0; t < NT; ++t) acc[hh][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = grp + size_t(b) * kQ6kBlock;
    const uint8_t* xb = act + size_t(b) * kTokens * kQK_K + size_t(t0) * kQK_K;
    __m256i isum[NH][NT];
#pragma GCC unroll 2
    for (int hh = 0; hh < NH; ++hh) {
      // The offset term −32·Σ_j sc_j·Σx_j: the scales as int16 pairs (sc_2p, sc_2p+1) per row against the
      // bsums pairs, then × −32 (exact: the same integer as summing −32·sc pairs).
      __m256i scp[8];
      const uint8_t* sc = blk + kQ6kScales + 8 * (h0 + hh);
#pragma GCC unroll 8
      for (int p = 0; p < 8; ++p) {
        const __m256i a = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + 16 * (2 * p))));
        const __m256i c = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + 16 * (2 * p + 1))));
        scp[p] = _mm256_blend_epi16(a, _mm256_slli_epi32(c, 16), 0xAA);
      }
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) {
        __m256i off = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int p = 0; p < 8; ++p)
          off = _mm256_add_epi32(off, _mm256_madd_epi16(scp[p], _mm256_set1_epi32(xs[(b * 8 + p) * kTokens + t0 + t])));
        isum[hh][t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
      }
    }
    for (int j = 0; j < 16; ++j) {
      __m256i sc[NH];
      for (int hh = 0; hh < NH; ++hh) sc[hh] = scale_pairs<true>(blk + kQ6kScales + 16 * j + 8 * (h0 + hh));
#pragma GCC unroll 2
      for (int u = 0; u < 2; ++u) {
        prefetch_slot<3>(pf, b, 2 * j + u);
#pragma GCC unroll 2
        for (int hh = 0; hh < NH; ++hh) {
          const uint8_t* wp = blk + 64 * (4 * j + 2 * u) + 32 * (h0 + hh);
          const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wp));
          const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wp + 64));
#pragma GCC unroll 8
          for (int t = 0; t < NT; ++t) {
            const uint8_t* x = xb + t * kQK_K + 16 * j + 8 * u;
            const __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(w0, bcast4(x)), _mm256_maddubs_epi16(w1, bcast4(x + 4)));
            isum[hh][t] = _mm256_add_epi32(isum[hh][t], _mm256_madd_epi16(s, sc[hh]));
          }
        }
      }
    }
#pragma GCC unroll 2
    for (int hh = 0; hh < NH; ++hh) {
      const __m256 d = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(blk + kQ6kD + 16 * (h0 + hh))));
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t)
        acc[hh][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[hh][t]),
                                     _mm256_mul_ps(d, _mm256_set1_ps(xd[b * kTokens + t0 + t])), acc[hh][t]);
    }
  }
  for (int hh = 0; hh < NH; ++hh) store_half<NT>(acc[hh], h0 + hh, m, y, ldy);
}

// A 16-row group of kT into the packed layout (load-time prepack, or on the fly for a matrix without the
// copy). AVX2 only, so every ISA's kernels use it: per-element and per-bit AVX-512 packers that it replaced
// cost 10–30 × the matmul they fed when rows were re-laid out per call.
template <DType kT>
void pack_rows(const uint8_t* w, size_t w_stride, int m, int64_t in, uint8_t* out) {
  if constexpr (kT == DType::kQ8_0) {
    pack_q8_group(w, w_stride, m, in / kBlk, out);
  } else {
    for (int64_t b = 0; b < in / kQK_K; ++b) {
      uint8_t* dst = out + size_t(b) * prepack_rows16_group_bytes(kT, kQK_K);
      if constexpr (kT == DType::kQ6_K)
        pack_q6k_block_avx2(w, w_stride, m, b, dst);
      else
        pack_q45_block_avx2<kT == DType::kQ5_K>(w, w_stride, m, b, dst);
    }
  }
}

// K-quant batches of up to this many tokens take both halves in one pass (interleaved per weight vector,
// sharing the activation broadcasts: 1.35–1.6 × faster with cache-resident weights than one half after
// the other at n = 1, 2; with 4 tokens per pass the 16 registers no longer hold both halves).
constexpr int kAvx2BothHalves = 2;

// One pass: NT tokens over half h (K-quants, h = 2: both halves, interleaved) of a 16-row group.
template <DType kT, int NT>
inline void tile_avx2_any(const uint8_t* grp, int64_t nb, const uint8_t* act, int tg, int h, int m, float* y,
                          int64_t ldy, const Prefetch& pf) {
  constexpr bool kQ5 = kT == DType::kQ5_K;
  if constexpr (kT == DType::kQ8_0) {
    tile_avx2<NT>(grp, nb, act, tg, h, m, y, ldy);
  } else {
    if constexpr (NT <= kAvx2BothHalves) {
      if (h == 2) {
        if constexpr (kT == DType::kQ6_K)
          q6tile_avx2<NT, 2>(grp, nb, act, tg, 0, m, y, ldy, pf);
        else
          ktile_avx2<kQ5, NT, 2>(grp, nb, act, tg, 0, m, y, ldy, pf);
        return;
      }
    }
    if constexpr (kT == DType::kQ6_K)
      q6tile_avx2<NT, 1>(grp, nb, act, tg, h, m, y, ldy, pf);
    else
      ktile_avx2<kQ5, NT, 1>(grp, nb, act, tg, h, m, y, ldy, pf);
  }
}

template <DType kT, int... I>
inline void tile_avx2_n(int nt, const uint8_t* grp, int64_t nb, const uint8_t* act, int tg, int h, int m, float* y,
                        int64_t ldy, const Prefetch& pf, std::integer_sequence<int, I...>) {
  ((nt == I + 1 ? tile_avx2_any<kT, I + 1>(grp, nb, act, tg, h, m, y, ldy, pf) : void()), ...);
}

// Tokens per pass of the AVX2 kernels. Q8_0: 4 int and 4 float accumulators plus the weights in the 16
// registers. K-quants keep an int16 and an int32 sum per token in registers (the float sums are touched
// once per super-block, so spilling them costs little): Q4_K 4 (8 measured 3 % slower at n = 16, cache-
// resident weights); Q5_K and Q6_K 8, which shares each weight vector's decode (Q5_K: the fifth-bit
// expansion, 5 instructions) over twice the tokens: Q5_K n = 16 7–10 % faster, Q6_K within noise.
template <DType kT>
constexpr int kAvx2Pass = kT == DType::kQ8_0 || kT == DType::kQ4_K ? kAvx2Tokens : 2 * kAvx2Tokens;

// The AVX2 row driver: per 16-row group (packed copy, or re-laid out on the fly), passes of kAvx2Pass
// tokens over one half (the pass size divides the activations' 16-token groups, so a pass never straddles
// two), or for small K-quant batches one pass over both halves.
template <DType kT>
void rows16_avx2(const RowsArgs& a, int64_t r0, int64_t r1) {
  constexpr int kPass = kAvx2Pass<kT>;
  static_assert(kTokens % kPass == 0);
  const int64_t nb = a.in / (kT == DType::kQ8_0 ? kBlk : kQK_K);
  const size_t gbytes = prepack_rows16_group_bytes(kT, a.in), block = gbytes / size_t(nb);
  const bool both = kT != DType::kQ8_0 && a.n_tokens <= kAvx2BothHalves;
  for (int64_t rg = r0; rg < r1; rg += kRows16) {
    const int m = int(std::min<int64_t>(kRows16, r1 - rg));
    const uint8_t* grp;
    if (a.w_packed) {
      grp = a.w_packed + size_t(rg / kRows16) * gbytes;
    } else {
      uint8_t* buf = group_scratch(gbytes);
      pack_rows<kT>(a.w + size_t(rg) * a.w_stride, a.w_stride, m, a.in, buf);
      grp = buf;
    }
    // The next group of the copy, if this call reads it too; none on the fly.
    const bool next = a.w_packed && rg + kRows16 < r1;
    float* y = a.y + rg;
    if (both) {
      const Prefetch pf{grp + gbytes, block, next ? int((block + 63) / 64) : 0};
      tile_avx2_n<kT>(int(a.n_tokens), grp, nb, a.act, 0, 2, m, y, a.ldy, pf,
                      std::make_integer_sequence<int, kAvx2BothHalves>());
      continue;
    }
    for (int h = 0; h < 2 && 8 * h < m; ++h)
      for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kPass) {
        const int nt = int(std::min<int64_t>(kPass, a.n_tokens - t0));
        const uint8_t* act = a.act + size_t(t0 / kTokens) * a.act_stride;
        const Prefetch pf{grp + gbytes + size_t(h) * (gbytes / 2), block / 2,
                          next && t0 == 0 ? int((block / 2 + 63) / 64) : 0};
        tile_avx2_n<kT>(nt, grp, nb, act, int(t0 % kTokens), h, m, y + t0 * a.ldy, a.ldy, pf,
                        std::make_integer_sequence<int, kPass>());
      }
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

}  // namespace
}  // namespace dflash::kernels::detail

namespace dflash::kernels::detail {
namespace {

using namespace dflash::tensor;

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,f16c")
#endif

// One token's 4-byte activation groups x[4k ..] against the weight vectors wv[k], k < 2·kPairs, summed
// by vpdpbusd into two chains (even and odd k: one chain's latency, not the issue rate, would bound
// it); *c0 starts at init.
template <int kPairs>
__attribute__((always_inline)) inline void dot_chains(const __m512i* wv, const uint8_t* x, __m512i init, __m512i* c0,
                                                      __m512i* c1) {
  __m512i a = init, b = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int k = 0; k < kPairs; ++k) {
    int32_t x0, x1;
    std::memcpy(&x0, x + 8 * k, 4);
    std::memcpy(&x1, x + 8 * k + 4, 4);
    a = _mm512_dpbusd_epi32(a, wv[2 * k], _mm512_set1_epi32(x0));
    b = _mm512_dpbusd_epi32(b, wv[2 * k + 1], _mm512_set1_epi32(x1));
  }
  *c0 = a;
  *c1 = b;
}

// NT tokens × one 16-row group: acc[t] lane r = row r, token t. The 8 weight vectors of a block
// stay in registers for all NT tokens; each token's 4-byte activation groups are broadcast
// from memory into vpdpbusd.
template <int NT>
inline void tile(const uint8_t* grp, int64_t nb, const uint8_t* act, int m, float* y, int64_t ldy) {
  const uint16_t* wscales = rows16_layout::q8_row_scales(grp, nb);
  const float* xd = rows16_layout::q8act_d(act, nb);
  const int32_t* xc = rows16_layout::q8act_corr(act, nb);
  __m512 acc[NT];
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* tb = grp + size_t(b) * kRows16TileBytes;
    // The packed stream is one sequential run; a few blocks ahead keeps DRAM busy for GEMV.
    constexpr int64_t kAhead = 6;
#pragma GCC unroll 8
    for (int l = 0; l < 8; ++l) __builtin_prefetch(tb + kAhead * kRows16TileBytes + 64 * l, 0, 3);
    __m512i wv[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) wv[k] = _mm512_load_si512(tb + 64 * k);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wscales + b * kRows16)));
    const uint8_t* xb = act + size_t(b) * kTokens * kBlk;
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      __m512i c0, c1;
      dot_chains<4>(wv, xb + t * kBlk, _mm512_set1_epi32(xc[b * kTokens + t]), &c0, &c1);
      const __m512i c = _mm512_add_epi32(c0, c1);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), _mm512_mul_ps(dw, _mm512_set1_ps(xd[b * kTokens + t])), acc[t]);
    }
  }
  const __mmask16 rows = __mmask16((1u << m) - 1);
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + t * ldy, rows, acc[t]);
}

template <int... I>
inline void tile_n(int nt, const uint8_t* grp, int64_t nb, const uint8_t* act, int m, float* y, int64_t ldy,
                   std::integer_sequence<int, I...>) {
  ((nt == I + 1 ? tile<I + 1>(grp, nb, act, m, y, ldy) : void()), ...);
}


// ---------------- Q4_K × Q8_K ----------------
// The canonical K-quant sequence of matmul_vnni.cpp / matmul_amx.cpp, per (row, token) and
// super-block: isum = Σ_j sc_j·C_j and imin = Σ_j m_j·Σx_j exactly, then
// acc = fma(float(isum), d·dx, acc); acc = fma(−float(imin), dmin·dx, acc). Here C_j of 16 rows is
// one register (8 vpdpbusd of the rows' nibbles against the token's broadcast activations), scaled
// by the rows' sc_j with vpdpwssd.

// The float sums of NT tokens × 16 rows of a K-quant pass: in registers up to 8 tokens; for more (a
// 16-token verify in one pass) in an L1 array touched once per super-block, since 16 integer sums, 8
// weight vectors and 16 float sums do not fit the 32 registers together.
template <int NT>
struct TokenSums {
  static constexpr bool kMem = NT > 8;
  __m512 reg[kMem ? 1 : NT];
  alignas(64) float mem[kMem ? NT : 1][kRows16];
  TokenSums() {
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) set(t, _mm512_setzero_ps());
  }
  __m512 get(int t) const { return kMem ? _mm512_load_ps(mem[kMem ? t : 0]) : reg[kMem ? 0 : t]; }
  void set(int t, __m512 v) {
    if constexpr (kMem)
      _mm512_store_ps(mem[t], v);
    else
      reg[t] = v;
  }
  void store(int m, float* y, int64_t ldy) const {
    const __mmask16 rows = __mmask16((1u << m) - 1);
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + t * ldy, rows, get(t));
  }
};

// NT ≤ 16 tokens (t0 .. t0 + NT − 1 of the packed group) × one 16-row group. Per sub-block j the 8
// weight vectors (the nibbles of chunk j / 2, Q5_K: plus 16 where the fifth-bit mask is set) are decoded
// once for the NT tokens. Up to 8 tokens the float sums stay in registers; 16 tokens keep their 16 integer
// sums in registers and the float sums in L1 (touched once per super-block), so a 16-token verify reads
// and decodes each weight once.
template <bool kQ5, int NT>
inline void ktile(const uint8_t* grp, int64_t nb, const uint8_t* act, int t0, int m, float* y, int64_t ldy,
                  const Prefetch& pf) {
  using L = Q45Layout<kQ5>;
  const float* xd = reinterpret_cast<const float*>(act + kact_d_offset(nb));
  const int32_t* xs = reinterpret_cast<const int32_t*>(act + kact_sums_offset(nb));
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  [[maybe_unused]] const __m512i c16 = _mm512_set1_epi8(16);
  TokenSums<NT> acc;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = grp + size_t(b) * L::kBlock;
    const uint8_t* xb = act + size_t(b) * kTokens * kQK_K + size_t(t0) * kQK_K;
    __m512i isum[NT];
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) isum[t] = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      const uint8_t* nib = blk + 512 * (j / 2);
      __m512i wv[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        prefetch_slot<1>(pf, b, 8 * j + k);
        const __m512i v = _mm512_load_si512(nib + 64 * k);
        wv[k] = _mm512_and_si512(j % 2 ? _mm512_srli_epi16(v, 4) : v, m4);
        if constexpr (kQ5) {
          uint64_t bits;
          std::memcpy(&bits, blk + L::kMasks + 8 * (8 * j + k), 8);
          wv[k] = _mm512_mask_add_epi8(wv[k], _cvtu64_mask64(bits), wv[k], c16);
        }
      }
      const __m512i sc = _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(blk + L::kScales + 16 * j)));
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const uint8_t* x = xb + t * kQK_K + 32 * j;
        __m512i c0, c1;
        dot_chains<4>(wv, x, _mm512_setzero_si512(), &c0, &c1);
        if constexpr (kQ5) {
          // 5-bit q: a chain of 16 products can reach 16·31·128 ≥ 2^15, so the sum is scaled by vpmulld.
          isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(_mm512_add_epi32(c0, c1), sc));
        } else {
          // Each chain sums 16 products, |·| ≤ 16·15·128 < 2^15: read as int16 pairs [c, sign], times the
          // scale lanes [sc, 0], vpdpwssd adds c·sc exactly (cheaper than vpmulld on the sum).
          isum[t] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(isum[t], c0, sc), c1, sc);
        }
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(blk + L::kD)));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(blk + L::kDmin)));
    const int32_t* mn2 = reinterpret_cast<const int32_t*>(blk + L::kMins);
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      const int tt = t0 + t;
      __m512i imin = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int p = 0; p < 4; ++p)
        imin = _mm512_dpwssd_epi32(imin, _mm512_load_si512(mn2 + p * kRows16),
                                   _mm512_set1_epi32(xs[(b * 4 + p) * kTokens + tt]));
      const __m512 dx = _mm512_set1_ps(xd[b * kTokens + tt]);
      __m512 a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, dx), acc.get(t));
      acc.set(t, _mm512_fnmadd_ps(_mm512_cvtepi32_ps(imin), _mm512_mul_ps(dmin, dx), a));
    }
  }
  acc.store(m, y, ldy);
}

// Tokens per Q4_K/Q5_K/Q6_K pass: 8 isum + 8 acc + 8 weight vectors + temporaries in the 32 registers.
constexpr int kKTokens = 8;

template <bool kQ5, int... I>
inline void ktile_n(int nt, const uint8_t* grp, int64_t nb, const uint8_t* act, int t0, int m, float* y,
                    int64_t ldy, const Prefetch& pf, std::integer_sequence<int, I...>) {
  ((nt == I + 1 ? ktile<kQ5, I + 1>(grp, nb, act, t0, m, y, ldy, pf) : void()), ...);
}

// ---------------- Q6_K × Q8_K ----------------
// Same canonical sequence (no min term). C_j = Σ q·x over a 16-element sub-block with q unsigned
// (|C_j| < 2^17, so vpmulld scales it), and the −32 offset enters as −32·Σ_j sc_j·Σx_j: 8 vpdpwssd
// of the scale pairs against the activations' bsums pairs.
template <int NT>
inline void q6tile(const uint8_t* grp, int64_t nb, const uint8_t* act, int t0, int m, float* y, int64_t ldy,
                   const Prefetch& pf) {
  const float* xd = reinterpret_cast<const float*>(act + kact_d_offset(nb));
  const int32_t* xs = reinterpret_cast<const int32_t*>(act + kact_sums_offset(nb));
  TokenSums<NT> acc;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = grp + size_t(b) * kQ6kBlock;
    const uint8_t* xb = act + size_t(b) * kTokens * kQK_K + size_t(t0) * kQK_K;
    __m512i isum[NT];
    // The offset term −32·Σ_j sc_j·Σx_j: the scales as int16 pairs (sc_2p, sc_2p+1) per row against the
    // bsums pairs, then × −32 (exact: the same integer as summing −32·sc pairs).
    __m512i scp[8];
#pragma GCC unroll 8
    for (int p = 0; p < 8; ++p) {
      const __m512i a = _mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(blk + kQ6kScales + 16 * (2 * p))));
      const __m512i c =
          _mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(blk + kQ6kScales + 16 * (2 * p + 1))));
      scp[p] = _mm512_mask_blend_epi16(__mmask32(0xAAAAAAAAu), a, _mm512_slli_epi32(c, 16));
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      __m512i off = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int p = 0; p < 8; ++p)
        off = _mm512_dpwssd_epi32(off, scp[p], _mm512_set1_epi32(xs[(b * 8 + p) * kTokens + t0 + t]));
      isum[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(off, 5));
    }
    for (int j = 0; j < 16; ++j) {
      __m512i wv[4];
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        prefetch_slot<2>(pf, b, 4 * j + k);  // 69 lines per super-block, 64 slots
        wv[k] = _mm512_load_si512(blk + 64 * (4 * j + k));
      }
      const __m512i sc = _mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(blk + kQ6kScales + 16 * j)));
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const uint8_t* x = xb + t * kQK_K + 16 * j;
        __m512i c0, c1;
        dot_chains<2>(wv, x, _mm512_setzero_si512(), &c0, &c1);
        isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(_mm512_add_epi32(c0, c1), sc));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(blk + kQ6kD)));
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      acc.set(t, _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, _mm512_set1_ps(xd[b * kTokens + t0 + t])),
                                 acc.get(t)));
    }
  }
  acc.store(m, y, ldy);
}

template <int... I>
inline void q6tile_n(int nt, const uint8_t* grp, int64_t nb, const uint8_t* act, int t0, int m, float* y,
                     int64_t ldy, const Prefetch& pf, std::integer_sequence<int, I...>) {
  ((nt == I + 1 ? q6tile<I + 1>(grp, nb, act, t0, m, y, ldy, pf) : void()), ...);
}

// The row driver: per 16-row group (packed copy, or re-laid out on the fly), token passes of 16 (Q8_0:
// 16 accumulators + 8 weight vectors + temporaries fit the 32 zmm registers, so a verify of 16 tokens
// reads each weight once) or kKTokens (K-quants, which keep an integer sum per token too).
template <DType kT>
void rows16(const RowsArgs& a, int64_t r0, int64_t r1) {
  constexpr bool kQ8 = kT == DType::kQ8_0;
  constexpr int kPass = kQ8 ? kTokens : kKTokens;
  const int64_t nb = a.in / (kQ8 ? kBlk : kQK_K);
  const size_t gbytes = prepack_rows16_group_bytes(kT, a.in), block = gbytes / size_t(nb);
  for (int64_t rg = r0; rg < r1; rg += kRows16) {
    const int m = int(std::min<int64_t>(kRows16, r1 - rg));
    const uint8_t* grp;
    if (a.w_packed) {
      grp = a.w_packed + size_t(rg / kRows16) * gbytes;
    } else {
      uint8_t* buf = group_scratch(gbytes);
      pack_rows<kT>(a.w + size_t(rg) * a.w_stride, a.w_stride, m, a.in, buf);
      grp = buf;
    }
    // K-quants: the first pass over a group of the copy fetches the next group into L2 (as on AVX2).
    const bool next = a.w_packed && rg + kRows16 < r1;
    // K-quants: a call of at most 16 tokens (a verify block) takes them in one pass, which reads and
    // decodes each weight once; longer calls (prefill chunks, whose row groups stay in L1 across the
    // token groups) take passes of kKTokens, which keep the float sums in registers.
    static const bool kq16 = [] { const char* e = std::getenv("DFLASH_KQ_PASS16"); return !e || e[0] != '0'; }();  // A/B
    const int pass = !kQ8 && kq16 && a.n_tokens <= kTokens ? kTokens : kPass;
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += pass) {
      const int nt = int(std::min<int64_t>(pass, a.n_tokens - t0));
      const uint8_t* act = a.act + size_t(t0 / kTokens) * a.act_stride;  // token group t0 / 16
      float* y = a.y + t0 * a.ldy + rg;
      const auto seq = std::make_integer_sequence<int, kTokens>();
      const Prefetch pf{grp + gbytes, block, next && t0 == 0 ? int((block + 63) / 64) : 0};
      if constexpr (kQ8)
        tile_n(nt, grp, nb, act, m, y, a.ldy, seq);
      else if constexpr (kT == DType::kQ6_K)
        q6tile_n(nt, grp, nb, act, int(t0 % kTokens), m, y, a.ldy, pf, seq);
      else
        ktile_n<kT == DType::kQ5_K>(nt, grp, nb, act, int(t0 % kTokens), m, y, a.ldy, pf, seq);
    }
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

}  // namespace

RowsFn rows_fn_rows16(DType t) {
  switch (t) {
    case DType::kQ8_0: return &rows16<DType::kQ8_0>;
    case DType::kQ4_K: return &rows16<DType::kQ4_K>;
    case DType::kQ5_K: return &rows16<DType::kQ5_K>;
    case DType::kQ6_K: return &rows16<DType::kQ6_K>;
    default: return nullptr;
  }
}

RowsFn rows_fn_rows16_avx2(DType t) {
  switch (t) {
    case DType::kQ8_0: return &rows16_avx2<DType::kQ8_0>;
    case DType::kQ4_K: return &rows16_avx2<DType::kQ4_K>;
    case DType::kQ5_K: return &rows16_avx2<DType::kQ5_K>;
    case DType::kQ6_K: return &rows16_avx2<DType::kQ6_K>;
    default: return nullptr;
  }
}

ActPack act_pack_rows16(DType t) {
  ActPack p;
  p.group = kTokens;
  p.min_tokens = 1;
  if (t == DType::kQ8_0) {
    p.group_bytes = &q8act_bytes;
    p.pack = &pack_act;
  } else if (t == DType::kQ4_K || t == DType::kQ5_K) {
    p.group_bytes = &kact_bytes<4>;
    p.pack = &pack_kact<4>;
  } else if (t == DType::kQ6_K) {
    p.group_bytes = &kact_bytes<8>;
    p.pack = &pack_kact<8>;
  }
  return p;
}

void prepack_rows16(DType t, const uint8_t* w, size_t w_stride, int64_t rows, int64_t in, uint8_t* out) {
  const size_t gbytes = prepack_rows16_group_bytes(t, in);
  for (int64_t g = 0; g * kRows16 < rows; ++g) {
    uint8_t* dst = out + size_t(g) * gbytes;
    std::memset(dst, 0, gbytes);
    const int m = int(std::min<int64_t>(kRows16, rows - g * kRows16));
    const uint8_t* src = w + size_t(g * kRows16) * w_stride;
    switch (t) {
      case DType::kQ4_K: pack_rows<DType::kQ4_K>(src, w_stride, m, in, dst); break;
      case DType::kQ5_K: pack_rows<DType::kQ5_K>(src, w_stride, m, in, dst); break;
      case DType::kQ6_K: pack_rows<DType::kQ6_K>(src, w_stride, m, in, dst); break;
      default: pack_rows<DType::kQ8_0>(src, w_stride, m, in, dst);
    }
  }
}

}  // namespace dflash::kernels::detail

#else

namespace dflash::kernels::detail {
RowsFn rows_fn_rows16(tensor::DType) { return nullptr; }
RowsFn rows_fn_rows16_avx2(tensor::DType) { return nullptr; }
ActPack act_pack_rows16(tensor::DType) { return {}; }
void prepack_rows16(tensor::DType, const uint8_t*, size_t, int64_t, int64_t, uint8_t*) {}
}  // namespace dflash::kernels::detail

#endif
