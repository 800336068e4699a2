// Byte layouts of the 16-row kernels' packed data that more than one kernel reads (the K-quant weight copy,
// prepack_rows16, and the packed Q8_0 / Q8_K activations of a 16-token group, act_pack_rows16), and how the kernels
// prefetch the copy. Read by the VNNI / AVX2 16-row kernels (matmul_rows16.cpp) and by the AMX kernels on
// the same copy (matmul_amx.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/matmul_impl.h"
#include "tensor/dtype.h"

namespace dflash::kernels::detail::rows16_layout {

constexpr int kTokens = 16;  // tokens per packed activation group

// Q4_K / Q5_K per super-block of a 16-row group: the 128 qs bytes of every row as [32-byte chunk p][k/4][row][4]
// (low nibbles: sub-block 2p, high: 2p + 1, element 4k4 + i of each); Q5_K then the fifth bits as one 64-bit
// mask per weight vector [sub-block][k/4] (bit 4r + i); then the 6-bit scales as bytes [sub-block][row], the
// mins as int16 pairs (m_2p, m_2p+1) [pair][row], d and dmin [row] fp16.
template <bool kQ5>
struct Q45Layout {
  static constexpr size_t kNibbles = 128 * kRows16;
  static constexpr size_t kMasks = kNibbles;
  static constexpr size_t kScales = kMasks + (kQ5 ? 64 * sizeof(uint64_t) : 0);
  static constexpr size_t kMins = kScales + 8 * kRows16;
  static constexpr size_t kD = kMins + 4 * kRows16 * sizeof(int32_t);
  static constexpr size_t kDmin = kD + kRows16 * sizeof(uint16_t);
  static constexpr size_t kBlock = kDmin + kRows16 * sizeof(uint16_t);
  static_assert(kBlock % 64 == 0);
};

// Q6_K per super-block of a 16-row group: the 6-bit q (0..63) as bytes [k/4][row][4], the int8 scales
// [sub-block][row], d [row] fp16. (Until session 16 the offset pairs −32·sc were stored too, 10 % of the
// bytes; the kernels form them from the scales, and the AMX one does not need them.)
constexpr size_t kQ6kScales = 256 * kRows16;
constexpr size_t kQ6kD = kQ6kScales + 16 * kRows16;
constexpr size_t kQ6kBlock = (kQ6kD + kRows16 * sizeof(uint16_t) + 63) / 64 * 64;

// Packed Q8_0 activations of a group of up to 16 tokens: per 32-element block the tokens' qs [token][32]
// (a block's A tile for the AMX kernel, 32 bytes a row), then dx [block][token], then −128·Σqs
// [block][token] (the correction for weights stored as w + 128).
inline size_t q8act_bytes(int64_t nb) {
  return size_t(nb) * kTokens * (tensor::kQK8_0 + sizeof(float) + sizeof(int32_t));
}
inline size_t q8act_d_offset(int64_t nb) { return size_t(nb) * kTokens * tensor::kQK8_0; }
inline size_t q8act_corr_offset(int64_t nb) { return size_t(nb) * kTokens * (tensor::kQK8_0 + sizeof(float)); }
// What the Q8_0 kernels read: a group of the copy's fp16 row scales [block][row] (after its nb tiles of
// kRows16TileBytes), and a packed activation group's dx and −128·Σx [block][token].
inline const uint16_t* q8_row_scales(const uint8_t* grp, int64_t nb) {
  return reinterpret_cast<const uint16_t*>(grp + size_t(nb) * kRows16TileBytes);
}
inline const float* q8act_d(const uint8_t* act, int64_t nb) {
  return reinterpret_cast<const float*>(act + q8act_d_offset(nb));
}
inline const int32_t* q8act_corr(const uint8_t* act, int64_t nb) {
  return reinterpret_cast<const int32_t*>(act + q8act_corr_offset(nb));
}

// Packed Q8_K activations of a group of up to 16 tokens: per super-block the tokens' qs [token][256];
// then dx [super-block][token]; then kPairs sub-block sums per super-block as int16 pairs
// (Σx_2p, Σx_2p+1) [super-block][pair][token] (Q4_K/Q5_K: 4 pairs of 32-element sums; Q6_K: 8 pairs of
// the 16-element bsums).
template <int kPairs>
inline size_t kact_bytes(int64_t nb) {
  return size_t(nb) * kTokens * (tensor::kQK_K + sizeof(float) + kPairs * sizeof(int32_t));
}
inline size_t kact_d_offset(int64_t nb) { return size_t(nb) * kTokens * tensor::kQK_K; }
inline size_t kact_sums_offset(int64_t nb) { return size_t(nb) * kTokens * (tensor::kQK_K + sizeof(float)); }

// Software prefetch of the copy's weight stream into L2 for the K-quant passes (AVX2, VNNI and AMX) that
// read a group from memory: each such pass fetches its share of the NEXT group, lines lines per super-block
// from base + b·block, kPer of them at each of the kernel's slots of super-block b (weight vectors, tile
// steps). One pass per group fetches all of it; the AVX2 passes over one half fetch half each, so memory
// stays busy while half 1 is computed from L2. Issued as a burst at the top of each super-block, the same
// prefetches stalled the loads behind them (Q4_K GEMV > L3, AVX2: 33–38 ms against 23–29; VNNI 35–36
// against 26–27).
struct Prefetch {
  const uint8_t* base = nullptr;
  size_t block = 0;
  int lines = 0;  // 0: none
};

template <int kPer>
__attribute__((always_inline)) inline void prefetch_slot(const Prefetch& pf, int64_t b, int slot) {
#pragma GCC unroll 8
  for (int i = 0; i < kPer; ++i)
    if (kPer * slot + i < pf.lines) __builtin_prefetch(pf.base + size_t(b) * pf.block + 64 * size_t(kPer * slot + i), 0, 1);
}

}  // namespace dflash::kernels::detail::rows16_layout
