// Intel AMX (Advanced Matrix Extensions) kernels: Q8_0 weights × Q8_0 activations, and Q4_K / Q5_K /
// Q6_K weights × Q8_K activations (see the K-quant section below for their arithmetic), read in place;
// and the K-quants on the 16-row kernels' packed copy with their scales folded into the tiles (the last
// sections), for verify blocks and prefill chunks.
//
// Why: verifying a block of B tokens is a GEMM with B columns. With AVX-512 VNNI the integer
// multiply-adds themselves are the bottleneck at B = 16 (c(16) ≈ 7 on the embedded target); one AMX
// TDPBSSD does a 16×32 · 32×16 int8 product (8192 MACs) in the time of a few vector instructions,
// so the block verify becomes bound by streaming the weights again, as on a GPU.
//
// Arithmetic: per weight block of 32 and token, C = Σ w·x exactly in int32 (TDPBSSD, signed ×
// signed), then acc = fma(float(C), dw·dx, acc) in block order, one float accumulator per (row,
// token). Each (row, token) result takes that same sequence whatever the batch, the row group or
// the thread count, so one-token decoding and B-token verification agree bit for bit. (Not bitwise
// equal to the VNNI kernels, which sum 4-product lanes separately; an ISA is chosen once per
// process, see matmul_isa.h.)
//
// Tiles: tmm0/tmm1 and tmm6/tmm7 C (up to 16 weight rows × up to 16 tokens, int32), tmm2/tmm3 A (16 weight rows ×
// one block's 32 quants, read in place from the Q8_0 rows with the row stride), tmm4/tmm5 B (the
// block's activations of up to 16 tokens in the VNNI layout [k/4][token][4], packed once per call by
// pack_q8_0). Two blocks per step, two C sets: one pair's products run while the other's are
// scaled (block_loop).
#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/matmul_impl.h"
#include "kernels/quantize_act.h"
#include "kernels/rows16_layout.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

namespace dflash::kernels::detail {
namespace {

using namespace dflash::tensor;

constexpr int kGroup = kAmxRowTile;                // tokens per B tile, rows per A/C tile
constexpr size_t kBTileBytes = 8 * 64;             // 32 quants × 16 tokens
constexpr size_t kPackedBlock = kBTileBytes + 64;  // + 16 float scales
static_assert(kPackedQ8Block == kGroup * kQK8_0 + kGroup * sizeof(uint16_t));

size_t group_bytes(int64_t n_blocks) { return size_t(n_blocks) * kPackedBlock; }

// Asks Linux for the AMX tile data state (off by default for every process since 5.16).
bool request_amx_permission() {
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

bool cpu_has_amx_int8() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool tile = (d >> 24) & 1, int8 = (d >> 25) & 1;
  const bool avx512 = ((b >> 16) & 1) && ((b >> 30) & 1);  // F, BW
  return tile && int8 && avx512;
}

#if defined(__clang__)
#pragma clang attribute push(                                                            \
    __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,f16c"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,f16c")
#endif

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// The configuration this thread last loaded (ldtilecfg is not free; shapes repeat).
thread_local int t_cfg_m = -1, t_cfg_n = -1, t_cfg_k = -1;

// k: the A tiles' bytes per row = the K of one product (32 for Q8_0 blocks, 16 for K-quant
// sub-blocks); the B tiles have k/4 rows.
void configure(int m, int n, int k) {
  if (m == t_cfg_m && n == t_cfg_n && k == t_cfg_k) return;
  TileConfig c;
  for (int i : {0, 1, 6, 7}) {  // C (two sets): m rows × n int32
    c.rows[i] = uint8_t(m);
    c.colsb[i] = uint16_t(n * 4);
  }
  for (int i : {2, 3}) {  // A: m rows × k int8
    c.rows[i] = uint8_t(m);
    c.colsb[i] = uint16_t(k);
  }
  for (int i : {4, 5}) {  // B: k/4 rows × n·4 int8
    c.rows[i] = uint8_t(k / 4);
    c.colsb[i] = uint16_t(n * 4);
  }
  // GCC 12 does not see ldtilecfg read all 64 bytes and may drop the stores above (seen: colsb
  // left zero → #GP); the empty asm makes the whole struct live in memory first.
  __asm__ __volatile__("" : : "r"(&c) : "memory");
  _tile_loadconfig(&c);
  t_cfg_m = m;
  t_cfg_n = n;
  t_cfg_k = k;
}

// The C tiles' staging buffer: per thread, zeroed once (a 2 KiB memset per row group cost ~9 % of
// the GEMM). Entries a partial tile does not store keep earlier finite integers; their lanes are
// never stored.
alignas(64) thread_local int32_t t_cbuf[2][kGroup * kGroup];

inline __m512i lane_ids() {
  return _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
}

// Token t's column of a C tile stored densely as [16 rows][N] int32, as one vector over the rows
// (lane r = element r·N + t): gathered, or for one token a plain load.
template <int N>
struct Columns {
  __m512i idx[N];
  Columns() {
    for (int t = 0; t < N; ++t)
      idx[t] = _mm512_add_epi32(_mm512_mullo_epi32(lane_ids(), _mm512_set1_epi32(N)),
                                _mm512_set1_epi32(t));
  }
  __m512i operator()(const int32_t* c, int t) const {
    return N == 1 ? _mm512_load_si512(c) : _mm512_i32gather_epi32(idx[t], c, 4);
  }
};

// Byte offsets of the 16 rows of a group (rows past m repeat row m − 1: always in bounds).
inline __m512i row_offsets(size_t w_stride, int m) {
  alignas(64) int32_t offs[kGroup];
  for (int r = 0; r < kGroup; ++r) offs[r] = int32_t(size_t(std::min(r, m - 1)) * w_stride);
  return _mm512_load_si512(offs);
}

// The fp16 scales d of block b of the 16 rows, as floats.
inline __m512 gather_scales(const uint8_t* w, __m512i row_offs, int64_t b) {
  const __m512i h = _mm512_i32gather_epi32(row_offs, w + size_t(b) * sizeof(BlockQ8_0), 1);
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));  // the low 16 bits of each lane are d
}

// In-register 16 × 16 transpose: v[i] lane j ↔ v[j] lane i (unpack pairs, then pairs of pairs,
// then two 128-bit lane shuffles).
inline void transpose16(__m512* v) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
#define pd(x) _mm512_castps_pd(x)
  for (int i = 0; i < 4; ++i) {  // v[4i + c] lane L: rows 4i..4i+3 of column 4L + c
    v[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[4 * i + 0]), pd(t[4 * i + 2])));
    v[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[4 * i + 0]), pd(t[4 * i + 2])));
    v[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[4 * i + 1]), pd(t[4 * i + 3])));
    v[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[4 * i + 1]), pd(t[4 * i + 3])));
  }
#undef pd
  for (int c = 0; c < 4; ++c) {  // 4 × 4 transpose of 128-bit lanes among v[c], v[4+c], v[8+c], v[12+c]
    t[c] = _mm512_shuffle_f32x4(v[c], v[4 + c], 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(v[c], v[4 + c], 0xdd);
    t[8 + c] = _mm512_shuffle_f32x4(v[8 + c], v[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(v[8 + c], v[12 + c], 0xdd);
  }
  for (int c = 0; c < 4; ++c) {
    v[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
    v[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);
    v[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
    v[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd);
  }
}

// Results of one tile into y ([token][ldy], rows of this group from y[0]): acc[r] lane t (vectors
// over tokens; transposed in registers so each token's m rows are one masked store) or acc[t]
// lane r (vectors over rows).
inline void store_by_rows(__m512* acc, int m, int n, float* y, int64_t ldy) {
  transpose16(acc);
  const __mmask16 rows = __mmask16((1u << m) - 1);
  for (int t = 0; t < n; ++t) _mm512_mask_storeu_ps(y + t * ldy, rows, acc[t]);
}
inline void store_by_tokens(const __m512* acc, int n, int m, float* y, int64_t ldy) {
  alignas(64) float o[kGroup];
  for (int t = 0; t < n; ++t) {
    _mm512_store_ps(o, acc[t]);
    for (int r = 0; r < m; ++r) y[t * ldy + r] = o[r];
  }
}

// Walks a call's 16-row groups × 16-token groups (tile configuration for k-byte products loaded
// per shape) and hands each to cols<N>(w, m, act, y) for N ≤ 3 tokens or rows(w, m, act, y, n).
template <class Cols, class Rows>
inline void for_each_tile(const RowsArgs& a, int64_t r0, int64_t r1, int k, Cols&& cols,
                          Rows&& rows) {
  for (int64_t rg = r0; rg < r1; rg += kGroup) {
    const int m = int(std::min<int64_t>(kGroup, r1 - rg));
    const uint8_t* w = a.w + size_t(rg) * a.w_stride;
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kGroup) {
      const int n = int(std::min<int64_t>(kGroup, a.n_tokens - t0));
      const uint8_t* act = a.act + size_t(t0 / kGroup) * a.act_stride;
      float* y = a.y + t0 * a.ldy + rg;
      configure(m, n, k);
      switch (n) {
        case 1: cols(std::integral_constant<int, 1>(), w, m, act, y); break;
        case 2: cols(std::integral_constant<int, 2>(), w, m, act, y); break;
        case 3: cols(std::integral_constant<int, 3>(), w, m, act, y); break;
        default: rows(w, m, act, y, n);
      }
    }
  }
  // The tile configuration stays loaded for this thread's next call (no tilerelease: reloading
  // it every call costs more than the kernel saves on small matrices).
}

// The block loop shared by both epilogues: the int32 products of blocks 2p and 2p+1 go to C tiles
// (0, 1) for even pairs and (6, 7) for odd ones, so one pair's products run on the TMUL while the
// previous pair is stored and scaled (tiles are not renamed: a single set would serialise them).
// scale(c, b) consumes block b's C as stored with row stride c_stride. kUnsignedB: B holds unsigned bytes
// (TDPBSUD; the 16-row copy's w + 128), else signed (TDPBSSD).
// Tile numbers are instruction immediates, hence the macros.
#define DFLASH_AMX_PRODUCT(C, A, B, blk)                                              \
  do {                                                                               \
    aq.prefetch(blk);                                                                \
    bq.prefetch(blk);                                                                \
    _tile_loadd(A, aq.at(blk), aq.row_stride);                                       \
    _tile_loadd(B, bq.base + size_t(blk) * bq.block_stride, bq.row_stride);          \
    _tile_zero(C);                                                                   \
    if constexpr (kUnsignedB)                                                        \
      _tile_dpbsud(C, A, B);                                                         \
    else                                                                             \
      _tile_dpbssd(C, A, B);                                                         \
  } while (0)
#define DFLASH_AMX_ISSUE(C0, C1, pair)              \
  do {                                             \
    DFLASH_AMX_PRODUCT(C0, 2, 4, 2 * (pair));      \
    DFLASH_AMX_PRODUCT(C1, 3, 5, 2 * (pair) + 1);  \
  } while (0)
#define DFLASH_AMX_DRAIN(C0, C1, pair)             \
  do {                                            \
    _tile_stored(C0, cbuf[0], c_stride);          \
    scale(cbuf[0], 2 * (pair));                   \
    _tile_stored(C1, cbuf[1], c_stride);          \
    scale(cbuf[1], 2 * (pair) + 1);               \
  } while (0)

// Where block b's B tile starts and its row stride: packed groups, or (one token) the natural
// ActQ8_0 layout, whose 32 quants are already the 8 × 4-byte rows of a one-column B tile.
struct BSource {
  const uint8_t* base;
  size_t block_stride;
  long row_stride;
  const uint8_t* scale_base;  // float token scale(s) of block b at scale_base + b·scale_stride
  size_t scale_stride;
  static BSource packed(const uint8_t* act, int64_t nb) {
    return {act, kBTileBytes, 64, act + size_t(nb) * kBTileBytes, kGroup * sizeof(float)};
  }
  static BSource natural(const uint8_t* act) {
    return {act + offsetof(ActQ8_0, qs), sizeof(ActQ8_0), 4, act + offsetof(ActQ8_0, d),
            sizeof(ActQ8_0)};
  }
  const float* scales(int64_t b) const {
    return reinterpret_cast<const float*>(scale_base + size_t(b) * scale_stride);
  }
  // Weights as B (the 16-row copy): the tile kAhead blocks on is prefetched, past the group's end too (its
  // scales, then the next group's first tiles; a prefetch never faults).
  bool stream = false;
  inline void prefetch(int64_t blk) const {
    constexpr int64_t kAhead = 8;
    if (!stream) return;
    const uint8_t* p = base + size_t(blk + kAhead) * block_stride;
#pragma GCC unroll 8
    for (size_t off = 0; off < block_stride; off += 64) __builtin_prefetch(p + off, 0, 3);
  }
};

// Where block b's A tile starts (16 rows at row_stride): the Q8_0 rows in place, or the unpacked
// K-quant sub-blocks.
struct ASource {
  const uint8_t* base;
  size_t block_stride;
  long row_stride;
  // Pre-packed weights are one contiguous stream: its tile kAhead blocks on is prefetched (the verify
  // GEMM stalled on tile loads; 12 blocks ahead took verify(16) 10.6 → 10.2 ms in an A/B, 4 blocks
  // 10.1; in place, 16 separate rows, prefetching cost more than it saved).
  int64_t stream_blocks = 0;  // blocks in the stream when it is prefetched, else 0
  inline void prefetch(int64_t blk) const {
    constexpr int64_t kAhead = 12;
    if (blk + kAhead >= stream_blocks) return;
    const uint8_t* p = base + size_t(blk + kAhead) * block_stride;
    for (size_t off = 0; off < block_stride; off += 64) __builtin_prefetch(p + off, 0, 3);
  }
  // K-quants: block blk is sub-block blk mod 2^sb_shift of super-block blk >> sb_shift, which sits
  // in unpack buffer (blk >> sb_shift) & 1, buf_stride bytes after buffer 0 (0: one linear stream).
  int sb_shift = 0;
  size_t buf_stride = 0;
  inline const uint8_t* at(int64_t blk) const {
    if (sb_shift == 0) return base + size_t(blk) * block_stride;
    return base + size_t(blk & ((int64_t(1) << sb_shift) - 1)) * block_stride +
           size_t((blk >> sb_shift) & 1) * buf_stride;
  }
  static ASource q8_0(const uint8_t* w, size_t w_stride) {
    return {w + offsetof(BlockQ8_0, qs), sizeof(BlockQ8_0), long(w_stride)};
  }
};

template <bool kUnsignedB = false, class Scale>
__attribute__((always_inline)) inline void block_loop(const ASource& aq, const BSource& bq, int64_t nb, long c_stride, Scale&& scale) {
  int32_t(*cbuf)[kGroup * kGroup] = t_cbuf;  // rows ≥ m / lanes ≥ n of a partial tile: stale, never stored
  const int64_t pairs = nb / 2;
  if (pairs > 0) {
    DFLASH_AMX_ISSUE(0, 1, 0);
    int64_t p = 1;
    for (;;) {
      if (p == pairs) {
        DFLASH_AMX_DRAIN(0, 1, p - 1);
        break;
      }
      DFLASH_AMX_ISSUE(6, 7, p);
      DFLASH_AMX_DRAIN(0, 1, p - 1);
      if (++p == pairs) {
        DFLASH_AMX_DRAIN(6, 7, p - 1);
        break;
      }
      DFLASH_AMX_ISSUE(0, 1, p);
      DFLASH_AMX_DRAIN(6, 7, p - 1);
      ++p;
    }
  }
  if (nb % 2) {
    DFLASH_AMX_PRODUCT(0, 2, 4, nb - 1);
    _tile_stored(0, cbuf[0], c_stride);
    scale(cbuf[0], nb - 1);
  }
}
#undef DFLASH_AMX_PRODUCT
#undef DFLASH_AMX_ISSUE
#undef DFLASH_AMX_DRAIN

// Where a 16-row group's Q8_0 weights come from: the GGUF rows in place (A tiles at the row stride,
// the fp16 block scales gathered), or the pre-packed copy (prepack_q8_0: per block one contiguous
// 16 × 32 A tile and the 16 scales next to it, one sequential stream the prefetchers follow).
struct Q8Rows {
  ASource aq;
  const uint8_t* w = nullptr;  // in place: the rows, scales gathered through vidx; null: pre-packed
  __m512i vidx;
  static Q8Rows in_place(const uint8_t* w, size_t w_stride, int m) {
    return {ASource::q8_0(w, w_stride), w, row_offsets(w_stride, m)};
  }
  static Q8Rows prepacked(const uint8_t* group, int64_t nb) {
    return {{group, kPackedQ8Block, kQK8_0, nb}, nullptr, _mm512_setzero_si512()};
  }
  // The fp16 scales d of block b of the 16 rows, as floats (rows past m: any finite value, unused).
  __m512 scales(int64_t b) const {
    if (!w)
      return _mm512_cvtph_ps(_mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(aq.base + size_t(b) * kPackedQ8Block + kGroup * kQK8_0)));
    return gather_scales(w, vidx, b);
  }
};

// One row group (m ≤ 16 rows) × one token group (n ≥ 2 tokens): vectors over tokens.
// acc[r] lane t = row r, token t.
void group_tokens(const Q8Rows& wq, int m, const uint8_t* act, int64_t nb, float* y, int64_t ldy,
                  int n) {
  const BSource bq = BSource::packed(act, nb);
  __m512 acc[kGroup];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  // The 16 rows' block scales are kept in memory, so each row's scale is one broadcast load.
  alignas(64) float dw[kGroup];
  block_loop(wq.aq, bq, nb, 64, [&](const int32_t* c, int64_t b)
                                                __attribute__((always_inline)) {
    _mm512_store_ps(dw, wq.scales(b));
    const __m512 dx = _mm512_loadu_ps(bq.scales(b));
#pragma GCC unroll 16
    for (int r = 0; r < kGroup; ++r) {
      const __m512 s = _mm512_mul_ps(_mm512_set1_ps(dw[r]), dx);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + r * kGroup)), s, acc[r]);
    }
  });
  store_by_rows(acc, m, n, y, ldy);
}

// One row group × a few tokens (N ≤ 3): vectors over the 16 rows, one accumulator per
// token. C is stored densely ([row][N] int32) and token t's column is gathered from it (one token:
// already contiguous). For small N this costs N vector steps per block instead of group_tokens' 16
// (which wins from N = 4 on: BM_MatmulModelPass, 768 × 2048, n = 4: 58 µs against 67).
template <int N>
void group_cols(const Q8Rows& wq, int m, const BSource& bq, int64_t nb, float* y, int64_t ldy) {
  const Columns<N> column;
  __m512 acc[N];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  block_loop(wq.aq, bq, nb, 4 * N, [&](const int32_t* c, int64_t b)
                                                   __attribute__((always_inline)) {
    const __m512 dw = wq.scales(b);
    const float* dx = bq.scales(b);
    for (int t = 0; t < N; ++t) {
      const __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(dx[t]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(column(c, t)), s, acc[t]);
    }
  });
  store_by_tokens(acc, N, m, y, ldy);
}

void rows_q8_0(const RowsArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.in / kQK8_0;
  // Row groups start at multiples of 16 from the slice's row 0 (r0 is a multiple of the row tile).
  auto rows = [&](const uint8_t* w, int m) {
    if (!a.w_packed) return Q8Rows::in_place(w, a.w_stride, m);
    const int64_t g = int64_t(size_t(w - a.w) / a.w_stride) / kGroup;
    return Q8Rows::prepacked(a.w_packed + size_t(g) * prepack_q8_0_group_bytes(a.in), nb);
  };
  for_each_tile(
      a, r0, r1, kQK8_0,
      [&](auto N, const uint8_t* w, int m, const uint8_t* act, float* y) {
        const BSource bq = a.n_tokens == 1 ? BSource::natural(act)  // not packed (act_pack_amx)
                                           : BSource::packed(act, nb);
        group_cols<N()>(rows(w, m), m, bq, nb, y, a.ldy);
      },
      [&](const uint8_t* w, int m, const uint8_t* act, float* y, int n) {
        group_tokens(rows(w, m), m, act, nb, y, a.ldy, n);
      });
}

// The dwords at p + (token t of a group of n)·act_stride for the 16 lanes t: one gather per packed
// row. Lanes past n (a partial group) read token 0 again and are masked to zero.
struct TokenGather {
  __m512i idx;
  __mmask16 valid;
  TokenGather(size_t act_stride, int n) : valid(__mmask16((1u << n) - 1)) {
    alignas(64) int32_t offs[kGroup];
    for (int t = 0; t < kGroup; ++t) offs[t] = int32_t(size_t(t < n ? t : 0) * act_stride);
    idx = _mm512_load_si512(offs);
  }
  __m512i operator()(const uint8_t* p) const {
    return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, idx, p, 1);
  }
};

// Calls fn(dst, src, gather) per group of 16 tokens: dst its packed bytes (group_bytes each), src
// its first token's natural activations.
template <class Fn>
inline void for_each_token_group(const uint8_t* act, size_t act_stride, int64_t n_tokens,
                                 size_t group_bytes, uint8_t* out, Fn&& fn) {
  for (int64_t g = 0; g * kGroup < n_tokens; ++g) {
    const int n = int(std::min<int64_t>(kGroup, n_tokens - g * kGroup));
    fn(out + size_t(g) * group_bytes, act + size_t(g * kGroup) * act_stride,
       TokenGather(act_stride, n));
  }
}

// Natural ActQ8_0 layout → per token group, per block: the B tile [k/4][token][4] and the 16 token
// scales. Row k4 of a block's tile is one gather of 4-byte groups across the group's tokens.
void pack_q8_0(const uint8_t* act, size_t act_stride, int64_t n_tokens, int64_t nb, uint8_t* out) {
  for_each_token_group(act, act_stride, n_tokens, group_bytes(nb), out,
                       [&](uint8_t* dst, const uint8_t* src, const TokenGather& gather) {
    float* scales = reinterpret_cast<float*>(dst + size_t(nb) * kBTileBytes);
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = src + size_t(b) * sizeof(ActQ8_0);
      uint8_t* tile = dst + size_t(b) * kBTileBytes;
      for (int k4 = 0; k4 < 8; ++k4)
        _mm512_storeu_si512(tile + k4 * 64, gather(blk + offsetof(ActQ8_0, qs) + k4 * 4));
      _mm512_storeu_si512(scales + b * kGroup, gather(blk + offsetof(ActQ8_0, d)));
    }
  });
}

// ---------------- K-quants × Q8_K ----------------
// A super-block of 256 is taken as sub-blocks of one scale each (Q4_K/Q5_K: 8 of 32, tile K = 32;
// Q6_K: 16 of 16, K = 16). Per row group and super-block the weights are unpacked once into signed
// bytes (Q4_K/Q5_K: q ∈ [0, 31]; Q6_K: q − 32 ∈ [−32, 31]) and int32 scales. Then, per (row, token):
//   isum = Σ_i sc_i · C_i   over the sub-blocks (exact: |isum| < 2^31 for every type)
//   imin = Σ_j m_j · Σx_j   (Q4_K/Q5_K: 8 mins against the activations' 32-element sums)
//   acc  = fma(float(isum), d·dx, acc);  acc = fma(−float(imin), dmin·dx, acc)
// in super-block order: the canonical sequence of the VNNI K-quant kernels (matmul_vnni.cpp), so
// small batches run there (AMX pays from a few tokens on, amx_min_tokens) with the same bits.
constexpr int kMaxSub = 16;
// Packed activations of a token group: first the B rows of every super-block ([k/4][token][4], 4 KiB
// each, back to back, so the sub-block tiles of the whole row are one linear stream), then per
// super-block 16 token scales dx and the 32-element sums Σx_j as int16 pairs (Σx_2p, Σx_2p+1) in
// 4 × 16 dwords: |Σx_j| ≤ 32·127 fits, and the min term Σ_j m_j·Σx_j is then 4 vpmaddwd instead of
// 8 32-bit multiplies (same integer, same bits).
constexpr size_t kKPackRows = 64 * 64;
constexpr size_t kKPackSums = 64;                  // after dx, within a super-block's extras
constexpr size_t kKPackExtra = kKPackSums + 4 * 64;

size_t kgroup_bytes(int64_t nb) { return size_t(nb) * (kKPackRows + kKPackExtra); }
// Where super-block b's dx and sums start, from the token group's packed start.
inline size_t kpack_extra(int64_t nb, int64_t b) { return size_t(nb) * kKPackRows + size_t(b) * kKPackExtra; }

void pack_q8_k(const uint8_t* act, size_t act_stride, int64_t n_tokens, int64_t nb, uint8_t* out) {
  for_each_token_group(act, act_stride, n_tokens, kgroup_bytes(nb), out,
                       [&](uint8_t* dst, const uint8_t* src, const TokenGather& gather) {
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = src + size_t(b) * sizeof(BlockQ8_K);
      uint8_t* p = dst + size_t(b) * kKPackRows;
      for (int k4 = 0; k4 < 64; ++k4)
        _mm512_storeu_si512(p + k4 * 64, gather(blk + offsetof(BlockQ8_K, qs) + 4 * k4));
      uint8_t* extra = dst + kpack_extra(nb, b);
      _mm512_storeu_si512(extra, gather(blk + offsetof(BlockQ8_K, d)));
      // bsums[2j] and bsums[2j+1] are adjacent int16: one dword per token, sign-extended halves.
      auto sum32 = [&](int j) __attribute__((always_inline)) {
        const __m512i v = gather(blk + offsetof(BlockQ8_K, bsums) + 4 * j);
        return _mm512_add_epi32(_mm512_srai_epi32(_mm512_slli_epi32(v, 16), 16), _mm512_srai_epi32(v, 16));
      };
      for (int pr = 0; pr < 4; ++pr) {
        const __m512i lo = _mm512_and_si512(sum32(2 * pr), _mm512_set1_epi32(0xFFFF));
        _mm512_storeu_si512(extra + kKPackSums + pr * 64, _mm512_or_si512(lo, _mm512_slli_epi32(sum32(2 * pr + 1), 16)));
      }
    }
  });
}

// One row group's unpacked super-block (thread-local scratch, rows < m valid). Scales and mins are
// stored [sub-block][row], so the epilogue over tokens broadcasts one and the one over rows loads a
// vector. Two of them, for super-blocks s and s + 1 (see kgroup_tokens).
struct alignas(64) KUnpacked {
  int8_t q[kGroup][256];
  int32_t sc[kMaxSub][kGroup];
  int32_t mn2[4][kGroup];  // the mins as int16 pairs (m_2p, m_2p+1), matching the packed Σx pairs
  float d[kGroup];
  float dmin[kGroup];
};
thread_local KUnpacked t_unpacked[2];

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline void store256(void* p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }

// Q4_K / Q5_K: d, dmin and the 12 bytes of 6-bit scales and mins of super-block b, for the 16 rows at
// once (lane = row; unpack_k_scales' bit arithmetic on 16 rows per instruction instead of one: the
// scalar version, 16 times per super-block, was about a third of the GEMM's instructions).
template <class B>
inline void unpack_q45_scales_rows(const uint8_t* w, __m512i row_offs, int64_t b, KUnpacked& u) {
  const uint8_t* base = w + size_t(b) * sizeof(B);
  const __m512i dd = _mm512_i32gather_epi32(row_offs, base + offsetof(B, d), 1);  // d | dmin << 16
  _mm512_store_ps(u.d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd)));
  _mm512_store_ps(u.dmin, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16))));
  const __m512i k0 = _mm512_i32gather_epi32(row_offs, base + offsetof(B, scales), 1);
  const __m512i k1 = _mm512_i32gather_epi32(row_offs, base + offsetof(B, scales) + 4, 1);
  const __m512i k2 = _mm512_i32gather_epi32(row_offs, base + offsetof(B, scales) + 8, 1);
  const __m512i m3f = _mm512_set1_epi32(0x3f3f3f3f), m0f = _mm512_set1_epi32(0x0f0f0f0f),
                m30 = _mm512_set1_epi32(0x30303030), ff = _mm512_set1_epi32(0xff);
  const __m512i sc_lo = _mm512_and_si512(k0, m3f), mn_lo = _mm512_and_si512(k1, m3f);
  const __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(k2, m0f), _mm512_and_si512(_mm512_srli_epi32(k0, 2), m30));
  const __m512i mn_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(k2, 4), m0f),
                                        _mm512_and_si512(_mm512_srli_epi32(k1, 2), m30));
  for (int j = 0; j < 4; ++j) {
    _mm512_store_si512(u.sc[j], _mm512_and_si512(_mm512_srli_epi32(sc_lo, 8 * j), ff));
    _mm512_store_si512(u.sc[4 + j], _mm512_and_si512(_mm512_srli_epi32(sc_hi, 8 * j), ff));
  }
  // Bytes (m0, m1, m2, m3) → int16 pairs (m0, m1) and (m2, m3).
  const __m512i lo16 = _mm512_set1_epi32(0x000000ff), hi16 = _mm512_set1_epi32(0x00ff0000);
  auto pairs = [&](__m512i v, int pr) __attribute__((always_inline)) {
    _mm512_store_si512(u.mn2[pr], _mm512_or_si512(_mm512_and_si512(v, lo16), _mm512_and_si512(_mm512_slli_epi32(v, 8), hi16)));
    _mm512_store_si512(u.mn2[pr + 1], _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(v, 16), lo16),
                                                      _mm512_and_si512(_mm512_srli_epi32(v, 8), hi16)));
  };
  pairs(mn_lo, 0);
  pairs(mn_hi, 2);
}

// Element order (ggml): chunk p of 32 qs bytes holds elements 64p + l (low nibble) and 64p + 32 + l
// (high nibble); Q5_K's 5th bits are bits 2p / 2p+1 of qh[l].
struct AmxQ4K {
  using Block = BlockQ4_K;
  static constexpr bool kMins = true;
  static constexpr int kLen = 32;  // sub-block length = tile K
  static constexpr int kSubShift = 3;  // 8 sub-blocks per super-block
  static constexpr bool kAcross = true;
  static void scales(const uint8_t* w, __m512i row_offs, int64_t b, KUnpacked& u) {
    unpack_q45_scales_rows<Block>(w, row_offs, b, u);
  }
  static void unpack(const uint8_t* p, int r, KUnpacked& u) {
    const Block& b = *reinterpret_cast<const Block*>(p);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; ++c) {
      const __m256i q = load256(b.qs + 32 * c);
      store256(u.q[r] + 64 * c, _mm256_and_si256(q, m4));
      store256(u.q[r] + 64 * c + 32, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
    }
  }
};

struct AmxQ5K {
  using Block = BlockQ5_K;
  static constexpr bool kMins = true;
  static constexpr int kLen = 32;
  static constexpr int kSubShift = 3;
  static constexpr bool kAcross = true;
  static void scales(const uint8_t* w, __m512i row_offs, int64_t b, KUnpacked& u) {
    unpack_q45_scales_rows<Block>(w, row_offs, b, u);
  }
  static void unpack(const uint8_t* p, int r, KUnpacked& u) {
    const Block& b = *reinterpret_cast<const Block*>(p);
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const __m256i qh = load256(b.qh);
    for (int c = 0; c < 4; ++c) {
      const __m256i q = load256(b.qs + 32 * c);
      const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one);
      const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one);
      store256(u.q[r] + 64 * c,
               _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(h0, 4)));
      store256(u.q[r] + 64 * c + 32,
               _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                               _mm256_slli_epi16(h1, 4)));
    }
  }
};

// Q6_K (ggml): per half h of 128 elements, ql bytes l / 32 + l hold elements l, 32 + l (low
// nibbles) and 64 + l, 96 + l (high nibbles); qh byte l holds their 2 high bits at bits 0-1, 2-3,
// 4-5, 6-7.
struct AmxQ6K {
  using Block = BlockQ6_K;
  static constexpr bool kMins = false;
  static constexpr int kLen = 16;
  static constexpr int kSubShift = 4;  // 16 sub-blocks
  static constexpr bool kAcross = false;
  // The 16 rows' int8 scales (4 gathers of 4) and d, as unpack_q45_scales_rows does for Q4_K/Q5_K.
  static void scales(const uint8_t* w, __m512i row_offs, int64_t b, KUnpacked& u) {
    const uint8_t* base = w + size_t(b) * sizeof(Block);
    for (int k = 0; k < 4; ++k) {
      const __m512i v = _mm512_i32gather_epi32(row_offs, base + offsetof(Block, scales) + 4 * k, 1);
      for (int j = 0; j < 4; ++j)
        _mm512_store_si512(u.sc[4 * k + j], _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * j), 24));
    }
    // d is the block's last 2 bytes: read the dword ending there (scales[14..15], d), not past it.
    const __m512i dd = _mm512_i32gather_epi32(row_offs, base + offsetof(Block, d) - 2, 1);
    _mm512_store_ps(u.d, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16))));
    _mm512_store_ps(u.dmin, _mm512_setzero_ps());
  }
  static void unpack(const uint8_t* p, int r, KUnpacked& u) {
    const Block& b = *reinterpret_cast<const Block*>(p);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30),
                  k32 = _mm256_set1_epi8(32);
    for (int h = 0; h < 2; ++h) {
      const __m256i l0 = load256(b.ql + 64 * h), l1 = load256(b.ql + 64 * h + 32);
      const __m256i qh = load256(b.qh + 32 * h);
      int8_t* dst = u.q[r] + 128 * h;
      auto put = [&](int off, __m256i lo4, __m256i hi2) __attribute__((always_inline)) {
        store256(dst + off, _mm256_sub_epi8(_mm256_or_si256(lo4, _mm256_and_si256(hi2, m30)), k32));
      };
      put(0, _mm256_and_si256(l0, m4), _mm256_slli_epi16(qh, 4));
      put(32, _mm256_and_si256(l1, m4), _mm256_slli_epi16(qh, 2));
      put(64, _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), qh);
      put(96, _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_srli_epi16(qh, 2));
    }
  }
};

// A tiles: sub-block i of super-block s in t_unpacked[s & 1]; B tiles: the linear packed stream.
template <class D>
inline ASource k_asource(int parity = 0) {
  ASource a{reinterpret_cast<const uint8_t*>(&t_unpacked[parity].q[0][0]), D::kLen, 256};
  a.sb_shift = D::kSubShift;
  a.buf_stride = sizeof(KUnpacked);
  return a;
}
template <class D>
inline BSource k_bsource(const uint8_t* act) {
  return {act, size_t(D::kLen) / 4 * 64, 64, nullptr, 0};
}

// The 16 rows are 16 separate weight streams, more than the hardware prefetchers follow when the
// weights come from DRAM: each row's super-block kAhead blocks on is prefetched by hand.
template <class D>
inline void unpack_rows(const uint8_t* w, size_t w_stride, __m512i row_offs, int m, int64_t b, int64_t nb,
                        KUnpacked& u) {
  constexpr int64_t kAhead = 2;
  constexpr size_t kBytes = sizeof(typename D::Block);
  D::scales(w, row_offs, b, u);
  for (int r = 0; r < m; ++r) {
    const uint8_t* row = w + size_t(r) * w_stride;
    if (b + kAhead < nb)
      for (size_t off = 0; off < kBytes; off += 64)
        __builtin_prefetch(row + size_t(b + kAhead) * kBytes + off, 0, 3);
    D::unpack(row + size_t(b) * kBytes, r, u);
  }
}

// The unpacked super-block holding the row's sub-block blk (its index within it in *i). At the first
// sub-block of super-block s it unpacks s + 1 into the other buffer (why so early: below).
template <class D>
__attribute__((always_inline)) inline const KUnpacked& sub_block(const uint8_t* w, size_t w_stride,
                                                                 __m512i row_offs, int m, int64_t nb,
                                                                 int64_t blk, int* i) {
  const int64_t s = blk >> D::kSubShift;
  *i = int(blk & ((int64_t(1) << D::kSubShift) - 1));
  if (*i == 0 && s + 1 < nb) unpack_rows<D>(w, w_stride, row_offs, m, s + 1, nb, t_unpacked[(s + 1) & 1]);
  return t_unpacked[s & 1];
}

// Q4_K/Q5_K (D::kAcross): the row group's sub-blocks of all super-blocks go through one block_loop, so
// the TMUL pipeline does not drain at every super-block (that bubble was the GEMM's hottest spot); Q6_K
// keeps a block_loop per super-block in kgroup_tokens (measured faster with its 16 sub-blocks).
// Super-block s + 1 is unpacked when s's first product is scaled: its tiles load several pairs later,
// after the stores have reached the cache (a tile load does not take bytes from pending stores).

// Row group × token group (n ≥ 4): vectors over tokens.
template <class D>
void kgroup_tokens(const uint8_t* w, size_t w_stride, int m, const uint8_t* act, int64_t nb,
                   float* y, int64_t ldy, int n) {
  constexpr int kSubs = 1 << D::kSubShift;
  const __m512i row_offs = row_offsets(w_stride, m);
  __m512 acc[kGroup];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  __m512i isum[kGroup];
  for (__m512i& v : isum) v = _mm512_setzero_si512();
  if (nb > 0) unpack_rows<D>(w, w_stride, row_offs, m, 0, nb, t_unpacked[0]);
  auto scale = [&](const int32_t* c, int64_t blk) __attribute__((always_inline)) {
    const int64_t s = blk >> D::kSubShift;
    int i;
    const KUnpacked& u = sub_block<D>(w, w_stride, row_offs, m, nb, blk, &i);
#pragma GCC unroll 16
    for (int r = 0; r < kGroup; ++r)
      isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(_mm512_load_si512(c + r * kGroup),
                                                             _mm512_set1_epi32(u.sc[i][r])));
    if (i != kSubs - 1) return;
    const uint8_t* extra = act + kpack_extra(nb, s);
    const __m512 dx = _mm512_loadu_ps(reinterpret_cast<const float*>(extra));
    [[maybe_unused]] __m512i sums[4];
    if constexpr (D::kMins)
      for (int pr = 0; pr < 4; ++pr) sums[pr] = _mm512_loadu_si512(extra + kKPackSums + pr * 64);
    for (int r = 0; r < kGroup; ++r) {
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_mul_ps(_mm512_set1_ps(u.d[r]), dx),
                               acc[r]);
      isum[r] = _mm512_setzero_si512();
      if constexpr (D::kMins) {
        __m512i imin = _mm512_madd_epi16(_mm512_set1_epi32(u.mn2[0][r]), sums[0]);
        for (int pr = 1; pr < 4; ++pr)
          imin = _mm512_add_epi32(imin, _mm512_madd_epi16(_mm512_set1_epi32(u.mn2[pr][r]), sums[pr]));
        acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(imin),
                                  _mm512_mul_ps(_mm512_set1_ps(u.dmin[r]), dx), acc[r]);
      }
    }
  };
  if constexpr (D::kAcross) {
    block_loop(k_asource<D>(), k_bsource<D>(act), nb * kSubs, 64, scale);
  } else {
    for (int64_t s = 0; s < nb; ++s)
      block_loop(k_asource<D>(int(s & 1)), k_bsource<D>(act + size_t(s) * kKPackRows), kSubs, 64,
                 [&](const int32_t* c, int64_t i) __attribute__((always_inline)) { scale(c, s * kSubs + i); });
  }
  store_by_rows(acc, m, n, y, ldy);
}

// Row group × N ≤ 3 tokens: vectors over the 16 rows (as group_cols).
template <class D, int N>
void kgroup_cols(const uint8_t* w, size_t w_stride, int m, const uint8_t* act, int64_t nb,
                 float* y, int64_t ldy) {
  constexpr int kSubs = 1 << D::kSubShift;
  const Columns<N> column;
  const __m512i row_offs = row_offsets(w_stride, m);
  __m512 acc[N];
  for (__m512& a : acc) a = _mm512_setzero_ps();
  __m512i isum[N];
  for (__m512i& v : isum) v = _mm512_setzero_si512();
  if (nb > 0) unpack_rows<D>(w, w_stride, row_offs, m, 0, nb, t_unpacked[0]);
  block_loop(k_asource<D>(), k_bsource<D>(act), nb * kSubs, 4 * N, [&](const int32_t* c, int64_t blk)
                                                               __attribute__((always_inline)) {
    const int64_t s = blk >> D::kSubShift;
    int i;
    const KUnpacked& u = sub_block<D>(w, w_stride, row_offs, m, nb, blk, &i);
    const __m512i sc = _mm512_load_si512(u.sc[i]);
    for (int t = 0; t < N; ++t) isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(column(c, t), sc));
    if (i != kSubs - 1) return;
    const uint8_t* extra = act + kpack_extra(nb, s);
    const float* dx = reinterpret_cast<const float*>(extra);
    const int32_t* sums = reinterpret_cast<const int32_t*>(extra + kKPackSums);
    const __m512 dv = _mm512_load_ps(u.d), dminv = _mm512_load_ps(u.dmin);
    [[maybe_unused]] __m512i mins[4];
    if constexpr (D::kMins)
      for (int pr = 0; pr < 4; ++pr) mins[pr] = _mm512_load_si512(u.mn2[pr]);
    for (int t = 0; t < N; ++t) {
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dv, _mm512_set1_ps(dx[t])),
                               acc[t]);
      isum[t] = _mm512_setzero_si512();
      if constexpr (D::kMins) {
        __m512i imin = _mm512_madd_epi16(mins[0], _mm512_set1_epi32(sums[t]));
        for (int pr = 1; pr < 4; ++pr)
          imin = _mm512_add_epi32(imin, _mm512_madd_epi16(mins[pr], _mm512_set1_epi32(sums[pr * kGroup + t])));
        acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(imin), _mm512_mul_ps(dminv, _mm512_set1_ps(dx[t])),
                                  acc[t]);
      }
    }
  });
  store_by_tokens(acc, N, m, y, ldy);
}

template <class D>
void rows_kq(const RowsArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.in / kQK_K;
  for_each_tile(
      a, r0, r1, D::kLen,
      [&](auto N, const uint8_t* w, int m, const uint8_t* act, float* y) {
        kgroup_cols<D, N()>(w, a.w_stride, m, act, nb, y, a.ldy);
      },
      [&](const uint8_t* w, int m, const uint8_t* act, float* y, int n) {
        kgroup_tokens<D>(w, a.w_stride, m, act, nb, y, a.ldy, n);
      });
}


// ---------------- K-quants on the 16-row copy: activations as A tiles, weights as B tiles ----------------
// The 16-row kernels' copy (prepack_rows16) holds the quants as bytes or nibbles [k/4][row][4], which is
// the B-tile layout: K/4 tile rows of 64 bytes (K k × 16 weight rows). With the tokens' Q8_K activations
// as the A tile (n tokens × K bytes, contiguous: pack_tiles_act below), a product gives C[token][row]
// exactly, one vector over the 16 rows per token: the VNNI 16-row kernel's vector, without its vpdpbusd
// per token and without the on-the-fly unpacking of the in-place AMX kernels above (rows_kq<AmxQ6K> has
// to turn ql/qh bits into bytes per call). The integers and float steps are every other kernel's, so
// are the bits.

// The tiles' activations of a group of up to 16 tokens: rows16_layout's packed Q8_K group (dx and the
// kPairs sums pairs at the same offsets; Q4_K/Q5_K: 4 pairs of 32-element sums, Q6_K: none) except that the
// quants are [super-block][64-element chunk][token][64], so a chunk's A tile is one contiguous run instead
// of 16 rows 256 bytes apart.
template <int kPairs>
void pack_tiles_act(const uint8_t* act, size_t act_stride, int64_t n_tokens, int64_t nb, uint8_t* out) {
  static_assert(kPairs == 0 || kPairs == 4);
  using namespace rows16_layout;
  constexpr int kK = 64;
  for (int64_t g = 0; g * kTokens < n_tokens; ++g) {
    uint8_t* dst = out + size_t(g) * kact_bytes<kPairs>(nb);
    float* d = reinterpret_cast<float*>(dst + kact_d_offset(nb));
    uint32_t* sums = reinterpret_cast<uint32_t*>(dst + kact_sums_offset(nb));
    const int n = int(std::min<int64_t>(kTokens, n_tokens - g * kTokens));
    for (int t = 0; t < n; ++t) {
      const BlockQ8_K* src = reinterpret_cast<const BlockQ8_K*>(act + size_t(g * kTokens + t) * act_stride);
      for (int64_t b = 0; b < nb; ++b) {
        for (int c = 0; c < kQK_K / kK; ++c)
          std::memcpy(dst + size_t(b) * kTokens * kQK_K + size_t(c * kTokens + t) * kK, src[b].qs + kK * c, kK);
        d[b * kTokens + t] = src[b].d;
        for (int p = 0; p < kPairs; ++p) {
          const int s0 = src[b].bsums[4 * p] + src[b].bsums[4 * p + 1];
          const int s1 = src[b].bsums[4 * p + 2] + src[b].bsums[4 * p + 3];
          sums[(b * kPairs + p) * kTokens + t] = uint32_t(uint16_t(int16_t(s0))) | uint32_t(uint16_t(int16_t(s1))) << 16;
        }
      }
    }
  }
}

// K-quants with the scales folded into the weights. Per sub-block j the exact integers w = sc_j·q (Q4_K,
// Q5_K: q ∈ [0, 31], 6-bit sc, w ∈ [0, 1953]) or w = sc_j·(q − 32) (Q6_K: int8 sc, w ∈ [−4064, 4096]) are
// split into bytes, w = 256·hi + lo with lo = w mod 256 (unsigned) and hi = ⌊w / 256⌋ (Q4_K/Q5_K: [0, 7],
// Q6_K: [−16, 16], signed). Then isum = 256·Σ hi·x + Σ lo·x over the whole super-block, which is the integer
// Σ_j sc_j·C_j every other kernel forms, so the bits are theirs (Q4_K/Q5_K keep their min term imin). Each
// of the 4 K = 64 chunks is two tile products (lo, hi) accumulated in the C tiles over the super-block;
// the per-sub-block epilogue (store C, vpmulld by the scales and, for Q6_K, the offset term) is gone: one
// C store and one fma per super-block and token. Against one product per sub-block this halves Q6_K's
// products (16 of K = 16 → 8) and keeps Q4_K/Q5_K's 8.
//
// The lo/hi tiles are built from the copy's quants (fold_tiles, ~10 vector ops per 64 bytes), one
// super-block ahead of their tile loads, and the build is the kernel's cost (16 MB cache-resident, 16
// tokens, 1 thread: per super-block and row group ~110 ns of build against ~45 of tile products). So the
// products of super-block b are issued from inside the build of b + 1, one K = 64 chunk at a time: the TMUL
// then runs under the build. Issued as one run before it, a chunk's tile loads waited for the previous
// chunk's products (the tile registers are reused), which held up the build behind them.

// Tiles of one super-block: [chunk c][lo, hi][16 tile rows (k/4 within the chunk)][16 rows × 4 bytes].
constexpr size_t kFoldChunk = 2 * 16 * 64;
alignas(64) thread_local uint8_t t_fold[2][4 * kFoldChunk];

// vpshufb controls that spread a sub-block's 16 row scales (one 128-bit lane, broadcast) to the u8×s8
// multipliers of the copy's tile rows [row][4 k]: row r's scale in bytes 4r and 4r + 2 (even) or 4r + 1 and
// 4r + 3 (odd), zero (0x80) elsewhere.
constexpr std::array<uint8_t, 64> scale_spread(int odd) {
  std::array<uint8_t, 64> a{};
  for (int p = 0; p < 64; ++p) a[size_t(p)] = p % 2 == odd ? uint8_t(p / 4) : uint8_t(0x80);
  return a;
}
alignas(64) constexpr std::array<uint8_t, 64> kSpreadEven = scale_spread(0), kSpreadOdd = scale_spread(1);

// The multipliers of a sub-block's even and odd quant bytes (its 16 row scales at sc16).
struct FoldScale {
  __m512i even, odd;
};
__attribute__((always_inline)) inline FoldScale fold_scale(const uint8_t* sc16) {
  const __m512i sc = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(sc16)));
  return {_mm512_shuffle_epi8(sc, _mm512_load_si512(kSpreadEven.data())),
          _mm512_shuffle_epi8(sc, _mm512_load_si512(kSpreadOdd.data()))};
}

// One tile row: quant bytes q (u8) times the scales, minus off (int16 lanes; Q6_K's 32·sc, else zero), split
// into the lo and hi tile rows. Byte 2i comes from the even product's int16 i, byte 2i + 1 from the odd one's.
template <bool kOffset>
__attribute__((always_inline)) inline void fold_row(__m512i q, const FoldScale& s, __m512i off, uint8_t* lo_row) {
  __m512i wa = _mm512_maddubs_epi16(q, s.even), wb = _mm512_maddubs_epi16(q, s.odd);
  if constexpr (kOffset) {
    wa = _mm512_sub_epi16(wa, off);
    wb = _mm512_sub_epi16(wb, off);
  }
  const __m512i low_byte = _mm512_set1_epi16(0x00FF);
  _mm512_store_si512(lo_row, _mm512_ternarylogic_epi32(low_byte, wa, _mm512_slli_epi16(wb, 8), 0xCA));
  _mm512_store_si512(lo_row + 16 * 64, _mm512_ternarylogic_epi32(low_byte, _mm512_srli_epi16(wa, 8), wb, 0xCA));
}

// Builds super-block blk's tiles into dst, calling chunk(c) before the build of chunk c's rows (the caller's
// products of the previous super-block).
template <DType kT, class Chunk>
__attribute__((always_inline)) inline void fold_tiles(const uint8_t* blk, uint8_t* dst, const rows16_layout::Prefetch& pf,
                                                      int64_t b, Chunk&& chunk) {
  using namespace rows16_layout;
  const uint8_t* next = pf.lines ? pf.base + size_t(b) * pf.block : nullptr;
  if constexpr (kT == DType::kQ6_K) {
    // The copy: q bytes [k/4][row][4] (chunk c = tile rows 16c..16c + 15 = sub-blocks 4c..4c + 3).
    static_assert(kQ6kBlock == 69 * 64 && kQ6kScales == 64 * 64, "the prefetch below walks this layout");
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      if (j % 4 == 0) chunk(j / 4);
      if (next) {  // 69 lines per super-block: the q bytes' 4 per sub-block, then scales and d (64..68)
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) __builtin_prefetch(next + 64 * (4 * j + i), 0, 1);
        if (j < 5) __builtin_prefetch(next + 64 * (64 + j), 0, 1);
      }
      const FoldScale s = fold_scale(blk + kQ6kScales + 16 * j);
      const __m512i off = _mm512_srai_epi16(s.odd, 3);  // the odd multiplier's int16 lanes are sc·256
      uint8_t* out = dst + size_t(j / 4) * kFoldChunk + size_t(j % 4) * 4 * 64;
#pragma GCC unroll 4
      for (int r4 = 0; r4 < 4; ++r4) fold_row<true>(_mm512_load_si512(blk + (4 * j + r4) * 64), s, off, out + r4 * 64);
    }
  } else {
    // The copy: nibbles [32-byte chunk p][k/4][row][4], low nibbles sub-block 2p, high 2p + 1 (Q5_K: + 16 under
    // the fifth-bit masks). Chunk c = p: tile rows 0..7 sub-block 2c, 8..15 sub-block 2c + 1.
    constexpr bool kQ5 = kT == DType::kQ5_K;
    using L = Q45Layout<kQ5>;
    const __m512i m4 = _mm512_set1_epi8(0x0F), zero = _mm512_setzero_si512();
    [[maybe_unused]] const __m512i c16 = _mm512_set1_epi8(16);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      chunk(c);
      const FoldScale s0 = fold_scale(blk + L::kScales + 16 * (2 * c)), s1 = fold_scale(blk + L::kScales + 16 * (2 * c + 1));
      uint8_t* out = dst + size_t(c) * kFoldChunk;
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        if (next) {  // Q4_K 39, Q5_K 47 lines per super-block: 2 per step
          __builtin_prefetch(next + 64 * (2 * (8 * c + k)), 0, 1);
          if (2 * (8 * c + k) + 1 < pf.lines) __builtin_prefetch(next + 64 * (2 * (8 * c + k) + 1), 0, 1);
        }
        const __m512i v = _mm512_load_si512(blk + 512 * c + 64 * k);
        __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        if constexpr (kQ5) {
          uint64_t b0, b1;
          std::memcpy(&b0, blk + L::kMasks + 8 * (8 * (2 * c) + k), 8);
          std::memcpy(&b1, blk + L::kMasks + 8 * (8 * (2 * c + 1) + k), 8);
          lo = _mm512_mask_add_epi8(lo, _cvtu64_mask64(b0), lo, c16);
          hi = _mm512_mask_add_epi8(hi, _cvtu64_mask64(b1), hi, c16);
        }
        fold_row<false>(lo, s0, zero, out + k * 64);
        fold_row<false>(hi, s1, zero, out + (8 + k) * 64);
      }
    }
  }
}

// Super-block b's C tiles (lo, hi) per token group by the parity of b: the epilogue reads them one
// super-block later, so its vector loads never wait on the tile stores.
alignas(64) thread_local int32_t t_fold_c[2][2][2][kGroup * kGroup];

// One 16-row group against kG token groups of 16 (kG = 2: two full groups, prefill chunks; their products
// share each super-block's built tiles, so the build, the kernel's cost, is paid once for 32 tokens).
// Token group g: activations act + g·act_stride, n[g] tokens, outputs y + 16·g·ldy.
template <DType kT, int kG>
void kq_rows16_group(const uint8_t* grp, int64_t nb, const uint8_t* act, size_t act_stride, const int* n, int m,
                     float* y, int64_t ldy, const rows16_layout::Prefetch& pf) {
  static_assert(kG == 1 || kG == 2);
  using namespace rows16_layout;
  constexpr bool kQ6 = kT == DType::kQ6_K;
  using L = Q45Layout<kT == DType::kQ5_K>;  // Q4_K/Q5_K
  constexpr size_t kBlock = kQ6 ? kQ6kBlock : L::kBlock;
  __m512 acc[kG][kGroup];
#pragma GCC unroll 2
  for (int g = 0; g < kG; ++g)
#pragma GCC unroll 16
    for (int t = 0; t < kGroup; ++t) acc[g][t] = _mm512_setzero_ps();
  // acc += d·dx·(256·C_hi + C_lo) for super-block b, from its stored C tiles (Q4_K/Q5_K: then − dmin·dx·imin).
  auto epilogue = [&](int64_t b, int g) __attribute__((always_inline)) {
    const uint8_t* ag = act + size_t(g) * act_stride;
    const float* xd = reinterpret_cast<const float*>(ag + kact_d_offset(nb));
    [[maybe_unused]] const int32_t* xs = reinterpret_cast<const int32_t*>(ag + kact_sums_offset(nb));
    const int32_t* lo = t_fold_c[b & 1][g][0];
    const int32_t* hi = t_fold_c[b & 1][g][1];
    const uint8_t* blk = grp + size_t(b) * kBlock;
    const __m512 d = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(blk + (kQ6 ? kQ6kD : L::kD))));
#pragma GCC unroll 16
    for (int t = 0; t < kGroup; ++t) {
      if (t >= n[g]) break;
      const __m512i isum = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(hi + t * kGroup), 8),
                                            _mm512_load_si512(lo + t * kGroup));
      const __m512 dx = _mm512_set1_ps(xd[b * kTokens + t]);
      acc[g][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, dx), acc[g][t]);
      if constexpr (!kQ6) {
        const int32_t* mn2 = reinterpret_cast<const int32_t*>(blk + L::kMins);
        __m512i imin = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int p = 0; p < 4; ++p)
          imin = _mm512_add_epi32(imin, _mm512_madd_epi16(_mm512_load_si512(mn2 + p * kRows16),
                                                          _mm512_set1_epi32(xs[(b * 4 + p) * kTokens + t])));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(blk + L::kDmin)));
        acc[g][t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(imin), _mm512_mul_ps(dmin, dx), acc[g][t]);
      }
    }
  };
  fold_tiles<kT>(grp, t_fold[0], pf, 0, [](int) {});
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* xb = act + size_t(b) * kTokens * kQK_K;  // [chunk][token][64]
    const uint8_t* tb = t_fold[b & 1];
    _tile_zero(0);
    _tile_zero(1);
    if constexpr (kG == 2) {
      _tile_zero(6);
      _tile_zero(7);
    }
    // Chunk c's products: C tiles 0/1 (token group 0) and 6/7 (group 1); A tiles 2 / 3; B tiles 4 (lo), 5 (hi).
    auto chunk = [&](int c) __attribute__((always_inline)) {
      _tile_loadd(4, tb + c * kFoldChunk, 64);
      _tile_loadd(5, tb + c * kFoldChunk + 16 * 64, 64);
      _tile_loadd(2, xb + kTokens * 64 * c, 64);
      _tile_dpbsud(0, 2, 4);
      if constexpr (kQ6)
        _tile_dpbssd(1, 2, 5);  // Q6_K's hi bytes are signed
      else
        _tile_dpbsud(1, 2, 5);
      if constexpr (kG == 2) {
        _tile_loadd(3, xb + act_stride + kTokens * 64 * c, 64);
        _tile_dpbsud(6, 3, 4);
        if constexpr (kQ6)
          _tile_dpbssd(7, 3, 5);
        else
          _tile_dpbsud(7, 3, 5);
      }
    };
    if (b + 1 < nb) {
      fold_tiles<kT>(grp + size_t(b + 1) * kBlock, t_fold[(b + 1) & 1], pf, b + 1, chunk);
    } else {
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) chunk(c);
    }
    _tile_stored(0, t_fold_c[b & 1][0][0], 64);
    _tile_stored(1, t_fold_c[b & 1][0][1], 64);
    if constexpr (kG == 2) {
      _tile_stored(6, t_fold_c[b & 1][1][0], 64);
      _tile_stored(7, t_fold_c[b & 1][1][1], 64);
    }
    if (b > 0)
      for (int g = 0; g < kG; ++g) epilogue(b - 1, g);
  }
  if (nb > 0)
    for (int g = 0; g < kG; ++g) epilogue(nb - 1, g);
  const __mmask16 rows = __mmask16((1u << m) - 1);
  for (int g = 0; g < kG; ++g)
    for (int t = 0; t < n[g]; ++t) _mm512_mask_storeu_ps(y + (kGroup * g + t) * ldy, rows, acc[g][t]);
}

// Row group rg's bytes in the 16-row copy; a row group without the copy (a row slice off the 16-row
// boundaries) is packed per call into a thread's scratch.
thread_local std::vector<uint8_t> t_kq_group;
const uint8_t* rows16_group(DType t, const RowsArgs& a, int64_t rg, int m, size_t gbytes) {
  if (a.w_packed) return a.w_packed + size_t(rg / kGroup) * gbytes;
  t_kq_group.resize(gbytes + 64);
  uint8_t* buf = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(t_kq_group.data()) + 63) & ~uintptr_t(63));
  prepack_rows16(t, a.w + size_t(rg) * a.w_stride, a.w_stride, m, a.in, buf);
  return buf;
}

template <DType kT>
void rows16_amx_kq(const RowsArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.in / kQK_K;
  const size_t gbytes = prepack_rows16_group_bytes(kT, a.in), block = gbytes / size_t(nb);
  constexpr int kK = 64;  // tile K: 64-element chunks
  for (int64_t rg = r0; rg < r1; rg += kGroup) {
    const int m = int(std::min<int64_t>(kGroup, r1 - rg));
    const uint8_t* grp = rows16_group(kT, a, rg, m, gbytes);
    // The first pass over a group of the copy fetches the next group into L2 (rows16_layout::Prefetch).
    const bool next = a.w_packed && rg + kGroup < r1;
    // Two full token groups per pass (one build of the tiles for both), a last partial group alone.
    for (int64_t t0 = 0; t0 < a.n_tokens;) {
      const int n[2] = {int(std::min<int64_t>(kGroup, a.n_tokens - t0)), kGroup};
      const bool pair = a.n_tokens - t0 >= 2 * kGroup;
      const rows16_layout::Prefetch pf{grp + gbytes, block, next && t0 == 0 ? int((block + 63) / 64) : 0};
      configure(n[0], kGroup, kK);  // C: n tokens × 16 rows int32; A: n × K bytes; B: K/4 × 64 bytes
      const uint8_t* act = a.act + size_t(t0 / kGroup) * a.act_stride;
      float* y = a.y + t0 * a.ldy + rg;
      if (pair)
        kq_rows16_group<kT, 2>(grp, nb, act, a.act_stride, n, m, y, a.ldy, pf);
      else
        kq_rows16_group<kT, 1>(grp, nb, act, a.act_stride, n, m, y, a.ldy, pf);
      t0 += pair ? 2 * kGroup : kGroup;
    }
  }
}

// ---------------- Q8_0 on the 16-row copy ----------------
// Verify blocks and prefill chunks on Q8_0 weights that have the 16-row copy: the VNNI 16-row kernel's
// layouts and per-(row, token) arithmetic (matmul_rows16.cpp), with the products on the TMUL. There a
// 16-token block costs 8 vpdpbusd per token and block, ~200 cycles per block of 16 rows; here one TDPBSUD
// and a float epilogue per token. Per block b of 32: A = the tokens' activations (n × 32 signed bytes, a
// block of the packed Q8_0 activations), B = the copy's tile (8 × 64 bytes: [k/4][row][4], weights + 128,
// unsigned), C[token][row] = Σ x·(w + 128) exactly; then, per token, acc = fma(float(C − 128·Σx), dw·dx,
// acc) in block order: the VNNI kernel's sequence, so the same bits (and the AMX in-place kernel's).
// The blocks go through block_loop (pairs, two C sets).

template <int NT>
void q8_rows16_group(const uint8_t* grp, int64_t nb, const uint8_t* act, int m, float* y, int64_t ldy) {
  using namespace rows16_layout;
  const uint16_t* wscales = rows16_layout::q8_row_scales(grp, nb);
  const float* xd = rows16_layout::q8act_d(act, nb);
  const int32_t* xc = rows16_layout::q8act_corr(act, nb);
  __m512 acc[NT];
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  auto epilogue = [&](const int32_t* c, int64_t b) __attribute__((always_inline)) {
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wscales + b * kRows16)));
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      const __m512i ci = _mm512_add_epi32(_mm512_load_si512(c + t * kGroup), _mm512_set1_epi32(xc[b * kTokens + t]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ci), _mm512_mul_ps(dw, _mm512_set1_ps(xd[b * kTokens + t])), acc[t]);
    }
  };
  // A: the block's activations (nt × 32 at stride 32); B: the copy's tile, one sequential stream per group
  // (prefetched ahead, as the VNNI kernel does).
  const ASource aq{act, kTokens * kQK8_0, kQK8_0};
  BSource bq{grp, kRows16TileBytes, 64, nullptr, 0};
  bq.stream = true;
  block_loop</*kUnsignedB=*/true>(aq, bq, nb, 64, epilogue);
  const __mmask16 rows = __mmask16((1u << m) - 1);
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + t * ldy, rows, acc[t]);
}

template <int... I>
inline void q8_rows16_group_n(int nt, const uint8_t* grp, int64_t nb, const uint8_t* act, int m, float* y,
                              int64_t ldy, std::integer_sequence<int, I...>) {
  ((nt == I + 1 ? q8_rows16_group<I + 1>(grp, nb, act, m, y, ldy) : void()), ...);
}

void rows16_amx_q8(const RowsArgs& a, int64_t r0, int64_t r1) {
  const int64_t nb = a.in / kQK8_0;
  const size_t gbytes = prepack_rows16_group_bytes(DType::kQ8_0, a.in);
  for (int64_t rg = r0; rg < r1; rg += kGroup) {
    const int m = int(std::min<int64_t>(kGroup, r1 - rg));
    const uint8_t* grp = rows16_group(DType::kQ8_0, a, rg, m, gbytes);
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kGroup) {
      const int nt = int(std::min<int64_t>(kGroup, a.n_tokens - t0));
      configure(nt, kGroup, kQK8_0);  // C: nt tokens × 16 rows int32; A: nt × 32 bytes; B: 8 × 64 bytes
      q8_rows16_group_n(nt, grp, nb, a.act + size_t(t0 / kGroup) * a.act_stride, m, a.y + t0 * a.ldy + rg, a.ldy,
                        std::make_integer_sequence<int, kGroup>());
    }
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

}  // namespace

bool amx_available() {
  static const bool ok = cpu_has_amx_int8() && request_amx_permission();
  return ok;
}

RowsFn rows_fn_rows16_amx(DType t) {
  if (!amx_available()) return nullptr;
  switch (t) {
    case DType::kQ4_K: return &rows16_amx_kq<DType::kQ4_K>;
    case DType::kQ5_K: return &rows16_amx_kq<DType::kQ5_K>;
    case DType::kQ6_K: return &rows16_amx_kq<DType::kQ6_K>;
    case DType::kQ8_0: return &rows16_amx_q8;
    default: return nullptr;
  }
}

ActPack act_pack_rows16_amx(DType t) {
  if (t == DType::kQ8_0) return act_pack_rows16(t);  // the VNNI kernel's packed activations
  ActPack p;
  p.group = rows16_layout::kTokens;
  p.min_tokens = 1;
  if (t == DType::kQ6_K) {
    p.group_bytes = &rows16_layout::kact_bytes<0>;  // no sums: Q6_K has no min term
    p.pack = &pack_tiles_act<0>;
  } else if (t == DType::kQ4_K || t == DType::kQ5_K) {
    p.group_bytes = &rows16_layout::kact_bytes<4>;
    p.pack = &pack_tiles_act<4>;
  } else {
    return {};
  }
  return p;
}

RowsFn rows_fn_amx(DType t) {
  if (!amx_available()) return nullptr;
  switch (t) {
    case DType::kQ8_0: return &rows_q8_0;
    case DType::kQ4_K: return &rows_kq<AmxQ4K>;
    case DType::kQ5_K: return &rows_kq<AmxQ5K>;
    case DType::kQ6_K: return &rows_kq<AmxQ6K>;
    default: return nullptr;
  }
}

ActPack act_pack_amx(DType t) {
  ActPack p;
  p.group = kGroup;
  if (t == DType::kQ8_0) {
    p.group_bytes = &group_bytes;
    p.pack = &pack_q8_0;
    p.min_tokens = 2;  // one token: read in place (BSource::natural)
  } else if (t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K) {
    p.group_bytes = &kgroup_bytes;
    p.pack = &pack_q8_k;
    p.min_tokens = 1;
  } else {
    return {};
  }
  return p;
}

}  // namespace dflash::kernels::detail

#else  // no AMX kernels off x86-64 Linux

namespace dflash::kernels::detail {
bool amx_available() { return false; }
RowsFn rows_fn_amx(tensor::DType) { return nullptr; }
RowsFn rows_fn_rows16_amx(tensor::DType) { return nullptr; }
ActPack act_pack_rows16_amx(tensor::DType) { return {}; }
ActPack act_pack_amx(tensor::DType) { return {}; }
}  // namespace dflash::kernels::detail

#endif

// Platform-independent: which batches the AMX kernels take (matmul.cpp asks only on the AMX ISA).
namespace dflash::kernels::detail {
namespace {
std::atomic<int> g_k_min_tokens{0};  // 0: default
// Measured (bench/matmul_results.md): against the per-row VNNI kernels the tiles win for Q4_K from ~8
// tokens, for Q6_K (16 products per super-block) from ~12; against the 16-row VNNI kernels they lose
// at 8 and at 16 tie (4096-wide, 0.8B shape) or lose (768-wide, the shipped target: verify(16) 8.3–8.9
// against 9.7–10.7 ms), so with those the tiles start at 32, as for Q8_0 (prefill chunks).
int default_k_min_tokens(tensor::DType t, bool rows16) {
  if (rows16) return 32;
  return t == tensor::DType::kQ6_K ? 12 : 8;
}
}  // namespace

void set_amx_k_min_tokens(int n) { g_k_min_tokens.store(n > 0 ? n : 0); }

void prepack_q8_0(const uint8_t* w, size_t w_stride, int64_t rows, int64_t in, uint8_t* out) {
  const int64_t nb = in / tensor::kQK8_0;
  const size_t gbytes = prepack_q8_0_group_bytes(in);
  for (int64_t g = 0; g * kAmxRowTile < rows; ++g) {
    uint8_t* dst = out + size_t(g) * gbytes;
    std::memset(dst, 0, gbytes);
    const int m = int(std::min<int64_t>(kAmxRowTile, rows - g * kAmxRowTile));
    for (int r = 0; r < m; ++r) {
      const auto* row = reinterpret_cast<const tensor::BlockQ8_0*>(w + size_t(g * kAmxRowTile + r) * w_stride);
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* blk = dst + size_t(b) * kPackedQ8Block;
        std::memcpy(blk + size_t(r) * tensor::kQK8_0, row[b].qs, tensor::kQK8_0);
        std::memcpy(blk + size_t(kAmxRowTile) * tensor::kQK8_0 + size_t(r) * sizeof(uint16_t), &row[b].d,
                    sizeof(uint16_t));
      }
    }
  }
}

int amx_min_tokens(tensor::DType t, bool rows16) {
  const int forced = g_k_min_tokens.load(std::memory_order_relaxed);
  if (forced > 0) return forced;
  static const int from_env = [] {
    const char* e = std::getenv("DFLASH_AMX_MIN_TOKENS");  // A/B benchmarks
    return e ? std::max(0, std::atoi(e)) : 0;
  }();
  return from_env > 0 ? from_env : default_k_min_tokens(t, rows16);
}
}  // namespace dflash::kernels::detail
