// Q8_0 weights × Q8_0 activations with vectors over 16 weight rows (AVX-512 VNNI).
//
// Why: the per-row kernels (matmul_vnni.cpp) take a vector along one weight row, so every 32-weight
// block needs a float convert + scale + FMA per token next to its one multiply-add: at 16 tokens the
// float steps, not the products, bound the GEMM (GEMM(16) ≈ 10–14 × GEMV). Here a vector holds 4
// consecutive weights of each of 16 rows ([k/4][row][4], the AMX B-tile layout), the token's 4
// activations are broadcast, and 8 vpdpbusd give the 16 rows' exact block sums in one register: one
// float step per 16 rows instead of per row. The weights are re-laid out once at load
// (prepack_q8_0_rows16, PackedWeights); a matrix without the copy is re-laid out per row group on
// the fly into the same layout, so the bits do not depend on which.
//
// Arithmetic per (row, token), exactly the AMX kernels' canonical sequence (matmul_amx.cpp):
// per block, C = Σ w·x exact in int32, then acc = fma(float(C), d_w·d_x, acc) in block order. The
// weights are stored as w + 128 (unsigned, vpdpbusd's first operand) and the activations stay
// signed, so C = Σ (w + 128)·x − 128·Σx with the correction per (token, block) from the packing.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "kernels/matmul_impl.h"
#include "kernels/quantize_act.h"

namespace dflash::kernels::detail {

size_t prepack_rows16_group_bytes(int64_t in) {
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

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,f16c")
#endif

constexpr int kBlk = kQK8_0;

// Packed activations of a group of up to 16 tokens: per block the tokens' qs [token][32], then
// the tokens' d [block][token] and −128·Σqs [block][token]. A block's broadcasts are then fixed
// offsets from one pointer.
constexpr int kTokens = 16;
size_t act_bytes(int64_t nb) { return size_t(nb) * kTokens * (kBlk + sizeof(float) + sizeof(int32_t)); }
inline size_t act_d_offset(int64_t nb) { return size_t(nb) * kTokens * kBlk; }
inline size_t act_corr_offset(int64_t nb) { return size_t(nb) * kTokens * (kBlk + sizeof(float)); }

void pack_act(const uint8_t* act, size_t act_stride, int64_t n_tokens, int64_t nb, uint8_t* out) {
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t g = 0; g * kTokens < n_tokens; ++g) {
    uint8_t* dst = out + size_t(g) * act_bytes(nb);
    float* d = reinterpret_cast<float*>(dst + act_d_offset(nb));
    int32_t* corr = reinterpret_cast<int32_t*>(dst + act_corr_offset(nb));
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

// One block of m ≤ 16 rows (rows at row_offs from w, block b) into the packed layout: tile row k4
// is one gather of the rows' 4-byte groups, flipped to unsigned.
inline void pack_block(const uint8_t* w, __m512i row_offs, int64_t b, uint8_t* tile, uint16_t* scales) {
  const uint8_t* blk = w + size_t(b) * sizeof(BlockQ8_0);
  const __m512i k80 = _mm512_set1_epi8(int8_t(0x80));
  for (int k4 = 0; k4 < kBlk / 4; ++k4) {
    const __m512i v = _mm512_i32gather_epi32(row_offs, blk + offsetof(BlockQ8_0, qs) + 4 * k4, 1);
    _mm512_store_si512(tile + 64 * k4, _mm512_xor_si512(v, k80));
  }
  const __m512i dd = _mm512_i32gather_epi32(row_offs, blk + offsetof(BlockQ8_0, d), 1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(scales), _mm512_cvtepi32_epi16(dd));
}

// Byte offsets of the group's rows; rows past m repeat row m − 1 (in bounds, results not stored).
inline __m512i row_offsets(size_t w_stride, int m) {
  alignas(64) int32_t offs[kRows16];
  for (int r = 0; r < kRows16; ++r) offs[r] = int32_t(size_t(std::min(r, m - 1)) * w_stride);
  return _mm512_load_si512(offs);
}

void pack_group(const uint8_t* w, size_t w_stride, int m, int64_t nb, uint8_t* out) {
  const __m512i offs = row_offsets(w_stride, m);
  uint16_t* scales = reinterpret_cast<uint16_t*>(out + size_t(nb) * kRows16TileBytes);
  for (int64_t b = 0; b < nb; ++b) pack_block(w, offs, b, out + size_t(b) * kRows16TileBytes, scales + b * kRows16);
}

// NT tokens × one 16-row group: acc[t] lane r = row r, token t. The 8 weight vectors of a block
// stay in registers for all NT tokens; each token's 4-byte activation groups are broadcast
// from memory into vpdpbusd.
template <int NT>
inline void tile(const uint8_t* grp, int64_t nb, const uint8_t* act, int m, float* y, int64_t ldy) {
  const uint16_t* wscales = reinterpret_cast<const uint16_t*>(grp + size_t(nb) * kRows16TileBytes);
  const float* xd = reinterpret_cast<const float*>(act + act_d_offset(nb));
  const int32_t* xc = reinterpret_cast<const int32_t*>(act + act_corr_offset(nb));
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
      // Two chains of 4 (vpdpbusd latency, not throughput, would bound one chain of 8).
      __m512i c0 = _mm512_set1_epi32(xc[b * kTokens + t]), c1 = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        int32_t x0, x1;
        std::memcpy(&x0, xb + t * kBlk + 8 * k, 4);
        std::memcpy(&x1, xb + t * kBlk + 8 * k + 4, 4);
        c0 = _mm512_dpbusd_epi32(c0, wv[2 * k], _mm512_set1_epi32(x0));
        c1 = _mm512_dpbusd_epi32(c1, wv[2 * k + 1], _mm512_set1_epi32(x1));
      }
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

// A row group re-laid out on the fly (matrices without a packed copy), per thread.
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

void rows_q8_0(const RowsArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.in / kBlk;
  const size_t gbytes = prepack_rows16_group_bytes(a.in);
  for (int64_t rg = r0; rg < r1; rg += kRows16) {
    const int m = int(std::min<int64_t>(kRows16, r1 - rg));
    const uint8_t* grp;
    if (a.w_packed) {
      grp = a.w_packed + size_t(rg / kRows16) * gbytes;
    } else {
      uint8_t* buf = group_scratch(gbytes);
      pack_group(a.w + size_t(rg) * a.w_stride, a.w_stride, m, nb, buf);
      grp = buf;
    }
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokens) {
      const int nt = int(std::min<int64_t>(kTokens, a.n_tokens - t0));
      // Token group t0 / 16 (16 accumulators + 8 weight vectors + temporaries fit the 32 zmm
      // registers, so a verify of 16 tokens reads each weight once).
      tile_n(nt, grp, nb, a.act + size_t(t0 / kTokens) * a.act_stride, m, a.y + t0 * a.ldy + rg, a.ldy,
             std::make_integer_sequence<int, kTokens>());
    }
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

}  // namespace

RowsFn rows_fn_rows16(DType t) { return t == DType::kQ8_0 ? &rows_q8_0 : nullptr; }

ActPack act_pack_rows16(DType t) {
  ActPack p;
  if (t != DType::kQ8_0) return p;
  p.group = kTokens;
  p.min_tokens = 1;
  p.group_bytes = &act_bytes;
  p.pack = &pack_act;
  return p;
}

void prepack_q8_0_rows16(const uint8_t* w, size_t w_stride, int64_t rows, int64_t in, uint8_t* out) {
  const int64_t nb = in / kBlk;
  const size_t gbytes = prepack_rows16_group_bytes(in);
  for (int64_t g = 0; g * kRows16 < rows; ++g) {
    uint8_t* dst = out + size_t(g) * gbytes;
    std::memset(dst, 0, gbytes);
    const int m = int(std::min<int64_t>(kRows16, rows - g * kRows16));
    pack_group(w + size_t(g * kRows16) * w_stride, w_stride, m, nb, dst);
  }
}

}  // namespace dflash::kernels::detail

#else

namespace dflash::kernels::detail {
RowsFn rows_fn_rows16(tensor::DType) { return nullptr; }
ActPack act_pack_rows16(tensor::DType) { return {}; }
void prepack_q8_0_rows16(const uint8_t*, size_t, int64_t, int64_t, uint8_t*) {}
}  // namespace dflash::kernels::detail

#endif
