// Internal interface between the matmul driver (matmul.cpp) and the per-ISA row kernels.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "tensor/dtype.h"

namespace dflash::kernels::detail {

struct RowsArgs {
  const uint8_t* w = nullptr;    // row 0 of the weight slice
  size_t w_stride = 0;           // bytes per weight row
  int64_t in = 0;                // elements per row
  const uint8_t* act = nullptr;  // token t's activations at act + t * act_stride (quantised or f32)
  size_t act_stride = 0;
  int64_t n_tokens = 0;
  float* y = nullptr;  // y[t * ldy + r]
  int64_t ldy = 0;
  // The slice's pre-packed copy (PackedWeights) when the kernel reads one: row group g (rows
  // 16g .. 16g + 15 of the slice) at w_packed + g · prepack_q8_0_group_bytes(in).
  const uint8_t* w_packed = nullptr;
};

// Pre-packed Q8_0 weights for the AMX kernel: per 16-row group and per block, the A tile
// [16 rows][32 quants] then the 16 rows' fp16 scales; rows past the end of a partial group are zero.
constexpr size_t kPackedQ8Block = 16 * 32 + 16 * sizeof(uint16_t);
inline size_t prepack_q8_0_group_bytes(int64_t in) { return size_t(in / 32) * kPackedQ8Block; }
void prepack_q8_0(const uint8_t* w, size_t w_stride, int64_t rows, int64_t in, uint8_t* out);

// Q8_0 and K-quants with vectors over 16 weight rows (matmul_rows16.cpp, AVX-512 VNNI and AVX2): per 16-row
// group, Q8_0: the blocks' tiles [k/4][row][4] of w + 128 (512 bytes each, back to back), then the
// rows' fp16 scales [block][row], padded to 64 bytes; Q4_K/Q5_K/Q6_K: per super-block the rows' quants
// in the same [k/4][row][4] order, then scales (layouts in matmul_rows16.cpp). Rows past the end of a partial group: anything finite.
// out is 64-byte aligned. prepack_rows16 runs the packers of matmul_isa() (AVX-512 ones from VNNI up, AVX2
// ones below; the same bytes), so it needs no AVX-512 on AVX2-only CPUs.
constexpr int kRows16 = 16;
constexpr size_t kRows16TileBytes = 32 * kRows16;
size_t prepack_rows16_group_bytes(tensor::DType t, int64_t in);
void prepack_rows16(tensor::DType t, const uint8_t* w, size_t w_stride, int64_t rows, int64_t in, uint8_t* out);

// Computes rows [r0, r1) of the slice for every token.
using RowsFn = void (*)(const RowsArgs& a, int64_t r0, int64_t r1);

// Optional in-place rearrangement of one token's quantised activations (n_blocks blocks) that a
// row kernel expects instead of the natural layout.
using ActPrepFn = void (*)(uint8_t* act, int64_t n_blocks);

// AVX2 Q4_K/Q5_K kernels take Q8_K activations with each 64-element chunk (sub-blocks a, b)
// stored as [a0..15 b0..15 a16..31 b16..31]; this converts from the natural order.
ActPrepFn act_prep_avx2(tensor::DType t);

// Per-ISA tables; nullptr when the dtype has no kernel for that ISA.
RowsFn rows_fn_scalar(tensor::DType t);
RowsFn rows_fn_avx2(tensor::DType t);        // integer paths (hand-written AVX2)
RowsFn rows_fn_avx512vnni(tensor::DType t);  // integer paths (AVX-512 VNNI)
RowsFn rows_fn_float_simd(tensor::DType t);  // F32/F16/BF16 via Highway dynamic dispatch

// A row kernel that reads the whole batch's activations in its own layout, packed by token groups:
// group g (tokens g·group .. g·group + group − 1) at packed + g · group_bytes(n_blocks), packed
// from the natural layout (token t at act + t·act_stride) by pack. RowsArgs then carries the
// packed buffer with act_stride = group_bytes(n_blocks). Batches of fewer than min_tokens are not
// packed: the kernel reads them in the natural layout.
struct ActPack {
  int group = 0;
  int min_tokens = 1;
  size_t (*group_bytes)(int64_t n_blocks) = nullptr;
  void (*pack)(const uint8_t* act, size_t act_stride, int64_t n_tokens, int64_t n_blocks,
               uint8_t* out) = nullptr;
  explicit operator bool() const { return pack != nullptr; }
};

// Intel AMX (matmul_amx.cpp): true when the CPU has AMX-TILE + AMX-INT8 and Linux granted this
// process the tile state. Q8_0, Q4_K, Q5_K, Q6_K; other dtypes fall back to the VNNI kernels.
bool amx_available();
RowsFn rows_fn_amx(tensor::DType t);
constexpr int kAmxRowTile = 16;  // weight rows per A/C tile (also tokens per B tile)
// K-quant batches below this many tokens go to a VNNI kernel instead (same bits): the tiles pay from
// a few tokens against the per-row kernels, from 32 against the 16-row ones (rows16: those are on).
// 0 in the setter = default (or DFLASH_AMX_MIN_TOKENS); tests and benchmarks force it.
int amx_min_tokens(tensor::DType t, bool rows16);
void set_amx_k_min_tokens(int n);
ActPack act_pack_amx(tensor::DType t);

// AMX on the 16-row kernels' packed copy (Q4_K, Q5_K, Q6_K; nullptr for other dtypes or without AMX),
// with its own activation layout (a sub-block's A tile contiguous): same bits as rows_fn_rows16.
RowsFn rows_fn_rows16_amx(tensor::DType t);
ActPack act_pack_rows16_amx(tensor::DType t);

// The 16-row kernels (AVX-512 VNNI): Q8_0, Q4_K, Q5_K, Q6_K; nullptr / empty for other dtypes. Same bits as
// the AMX kernels (Q8_0) and as every K-quant kernel (Q4_K, the canonical sequence).
RowsFn rows_fn_rows16(tensor::DType t);
ActPack act_pack_rows16(tensor::DType t);
// The 16-row kernels for AVX2 without VNNI: Q8_0, Q4_K, Q5_K, Q6_K (same layouts, activations and bits);
// nullptr otherwise.
RowsFn rows_fn_rows16_avx2(tensor::DType t);
// On AVX2 / VNNI: 1 = the 16-row kernels, 0 = the per-row ones, -1 = default (DFLASH_ROWS16 or 1).
void set_rows16(int mode);
// Q8_0 on AMX machines: 1 = the AMX tiles, 0 = the 16-row VNNI kernel, -1 = default (DFLASH_AMX_Q8 or 0).
void set_amx_q8(int mode);
// AMX machines: 1 = the AMX kernels on the 16-row copy take verify blocks and prefill chunks (Q8_0 from 4 tokens,
// K-quants from 10), 0 = they do not, -1 = default (DFLASH_AMX_ROWS16 or 1).
void set_amx_rows16(int mode);

// VNNI kernels' activation layouts (same sizes as the natural ones): Q8_0 as [qs + 128 as uint8,
// all blocks][d, all blocks]; Q4_K/Q5_K with each block's bsums replaced by the 8 int32
// sub-block sums Σx_j, and at 256 bits the quants interleaved as for AVX2 (act_prep_avx2). Depends on
// vnni_width(): fetch it together with rows_fn_avx512vnni.
ActPrepFn act_prep_avx512vnni(tensor::DType t);

// AVX-512 VNNI kernels: vector width 256 or 512 bits, 0 = default (DFLASH_VNNI_WIDTH or the
// measured best). Both give identical integers and per-token results independent of the batch;
// tests force each.
void set_vnni_width(int bits);
int vnni_width();

// AVX2 K-quant batch kernels: 1 = pair_madd variant, 0 = plain, -1 = choose by CPU (default).
// Both give identical integers; tests force each to cover both on any machine.
void set_avx2_pair_madd(int mode);

// 6-bit (scale, min) pairs of a Q4_K/Q5_K block as two 8-byte arrays (same as
// formats::k_scale_min, four sub-blocks per 32-bit word operation).
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

// Software prefetch distance in the weight stream. Hardware prefetchers stop at 4 KiB page
// boundaries (weights are mmap'd with small pages), which costs a DRAM round trip per page;
// prefetching ~1.5 KiB ahead measured ~10% faster GEMV on the 2-core Zen VM.
constexpr size_t kPrefetchBytes = 1536;
template <size_t kBlockBytes>
inline void prefetch_block(const void* blk) {
  const char* p = static_cast<const char*>(blk) + kPrefetchBytes;
  for (size_t off = 0; off < kBlockBytes; off += 64) __builtin_prefetch(p + off, 0, 3);
}

// Row driver of the integer kernels: for each weight row, tiles of up to kTile tokens go to
// K::dot<NT>(row, token activation pointers, in, out[NT]), which unpacks each weight block once for
// the whole tile. Every token of a tile runs the same instruction sequence as a tile of one, so a
// token's result does not depend on the batch it comes in.
template <class K, int kTile>
struct TiledRows {
  template <int... I>
  static void dot_n(int nt, const uint8_t* wr, const uint8_t* const* xs, int64_t in, float* o,
                    std::integer_sequence<int, I...>) {
    ((nt == I + 1 ? K::template dot<I + 1>(wr, xs, in, o) : void()), ...);
  }
  static void rows(const RowsArgs& a, int64_t r0, int64_t r1) {
    const uint8_t* xs[kTile];
    float o[kTile];
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* wr = a.w + size_t(r) * a.w_stride;
      for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTile) {
        const int nt = int(std::min<int64_t>(kTile, a.n_tokens - t0));
        for (int i = 0; i < nt; ++i) xs[i] = a.act + size_t(t0 + i) * a.act_stride;
        dot_n(nt, wr, xs, a.in, o, std::make_integer_sequence<int, kTile>());
        for (int i = 0; i < nt; ++i) a.y[(t0 + i) * a.ldy + r] = o[i];
      }
    }
  }
};

}  // namespace dflash::kernels::detail
