// F32 / F16 / BF16 weight rows × f32 activations, written with Highway and compiled for every x86
// target Highway supports (foreach_target), chosen at runtime by HWY_DYNAMIC_DISPATCH.
// For batches, each converted weight vector is reused for a tile of up to 4 tokens, and each
// activation vector for a tile of rows.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/matmul_float.cpp"
#include <algorithm>
#include <cstring>

#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/matmul_impl.h"
#include "tensor/dtype.h"

HWY_BEFORE_NAMESPACE();
namespace dflash::kernels::detail::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

struct F32W {
  using T = float;
  template <class DF>
  static HWY_INLINE hn::Vec<DF> load(DF df, const T* p) {
    return hn::LoadU(df, p);
  }
  static float scalar(T v) { return v; }
};
struct F16W {
  using T = hwy::float16_t;
  template <class DF>
  static HWY_INLINE hn::Vec<DF> load(DF df, const T* p) {
    const hn::Rebind<T, DF> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, p));
  }
  static float scalar(T v) {
    uint16_t b;
    std::memcpy(&b, &v, 2);
    return tensor::fp16_to_fp32(b);
  }
};
struct BF16W {
  using T = hwy::bfloat16_t;
  template <class DF>
  static HWY_INLINE hn::Vec<DF> load(DF df, const T* p) {
    const hn::Rebind<T, DF> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, p));
  }
  static float scalar(T v) {
    uint16_t b;
    std::memcpy(&b, &v, 2);
    return tensor::bf16_to_fp32(b);
  }
};

// NR weight rows × NT tokens at once: each weight vector is converted once for NT tokens and each
// activation vector loaded once for NR rows, so a batch is bound by the FMAs, not by loads and converts
// (one row × 4 tokens ran at ~40 % of the FMA rate). Every (row, token) keeps two accumulators over the
// same chunks in the same order, then the same reduction and scalar tail, for every NR and NT: a token's
// result does not depend on the batch it is computed in or the rows computed beside it.
template <class WL, int NR, int NT>
HWY_INLINE void DotRows(const typename WL::T* const* HWY_RESTRICT w, const float* const* x, int64_t n,
                        float* out, int64_t ldo, const typename WL::T* const* next) {
  const hn::ScalableTag<float> df;
  const int64_t N = int64_t(hn::Lanes(df));
  constexpr int U = 2;
  using V = hn::Vec<decltype(df)>;
  V acc[U][NR][NT];
  for (int u = 0; u < U; ++u)
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[u][r][t] = hn::Zero(df);
  int64_t i = 0;
  for (; i + U * N <= n; i += U * N) {
    if (next) {
      // A row tile's first token tile fetches the next tile's rows: the other token tiles then compute
      // from L1 while memory keeps streaming.
      for (int r = 0; r < NR; ++r)
        for (size_t b = 0; b < size_t(U * N) * sizeof(typename WL::T); b += 64)
          hwy::Prefetch(reinterpret_cast<const char*>(next[r] + i) + b);
    } else {
      // Hardware prefetchers stop at 4 KiB pages; keep the weight streams ~1.5 KiB ahead.
      for (int r = 0; r < NR; ++r) hwy::Prefetch(reinterpret_cast<const char*>(w[r] + i) + 1536);
    }
    for (int u = 0; u < U; ++u) {
      V wv[NR];
      for (int r = 0; r < NR; ++r) wv[r] = WL::load(df, w[r] + i + u * N);
      for (int t = 0; t < NT; ++t) {
        const V xv = hn::LoadU(df, x[t] + i + u * N);
        for (int r = 0; r < NR; ++r) acc[u][r][t] = hn::MulAdd(wv[r], xv, acc[u][r][t]);
      }
    }
  }
  for (; i + N <= n; i += N) {
    for (int r = 0; r < NR; ++r) {
      const V wv = WL::load(df, w[r] + i);
      for (int t = 0; t < NT; ++t) acc[0][r][t] = hn::MulAdd(wv, hn::LoadU(df, x[t] + i), acc[0][r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) {
      const V s = hn::Add(acc[0][r][t], acc[1][r][t]);
      float v = hn::GetLane(hn::SumOfLanes(df, s));
      for (int64_t k = i; k < n; ++k) v += WL::scalar(w[r][k]) * x[t][k];
      out[t * ldo + r] = v;
    }
}

// Rows × tokens per tile: each weight vector serves 4 tokens and each activation vector 4 rows. Measured
// with cache-resident weights, 1 thread, 16 tokens, bf16 4096 × 64 (`BM_MatmulHot`): AVX-512, one row at a
// time 206 µs, 2 × 4 150, 3 × 4 140, 4 × 3 112, 8 × 2 114, 8 × 4 139, 4 × 4 95 (32 accumulators, a few
// spilled); AVX2 (16 registers, DFLASH_HWY_AVX2=1) 1 × 4 231, 2 × 4 203, 4 × 4 167.
constexpr int kRowTile = 4;
constexpr int kTokTile = 4;

template <class WL, int NR>
HWY_INLINE void RowTile(const RowsArgs& a, const typename WL::T* const* wr, int64_t r,
                        const typename WL::T* const* next) {
  const float* xs[kTokTile];
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokTile) {
    const int nt = int(std::min<int64_t>(kTokTile, a.n_tokens - t0));
    for (int i = 0; i < nt; ++i) xs[i] = reinterpret_cast<const float*>(a.act + size_t(t0 + i) * a.act_stride);
    float* y = a.y + t0 * a.ldy + r;
    const auto* pf = t0 == 0 ? next : nullptr;
    switch (nt) {
      case 1: DotRows<WL, NR, 1>(wr, xs, a.in, y, a.ldy, pf); break;
      case 2: DotRows<WL, NR, 2>(wr, xs, a.in, y, a.ldy, pf); break;
      case 3: DotRows<WL, NR, 3>(wr, xs, a.in, y, a.ldy, pf); break;
      default: DotRows<WL, NR, 4>(wr, xs, a.in, y, a.ldy, pf); break;
    }
  }
}

template <class WL>
HWY_INLINE void Rows(const RowsArgs& a, int64_t r0, int64_t r1) {
  const typename WL::T* wr[kRowTile];
  const typename WL::T* next[kRowTile];
  auto row = [&](int64_t r) { return reinterpret_cast<const typename WL::T*>(a.w + size_t(r) * a.w_stride); };
  int64_t r = r0;
  // Also for one token: four row streams with the next tile prefetched read faster than one row at a time
  // (96 MB bf16, 2 threads: 2.1 against 3.3 ms).
  for (; r + kRowTile <= r1; r += kRowTile) {
    const bool more = r + 2 * kRowTile <= r1;
    for (int k = 0; k < kRowTile; ++k) {
      wr[k] = row(r + k);
      if (more) next[k] = row(r + kRowTile + k);
    }
    RowTile<WL, kRowTile>(a, wr, r, more ? next : nullptr);
  }
  for (; r < r1; ++r) {
    wr[0] = row(r);
    RowTile<WL, 1>(a, wr, r, nullptr);
  }
}

void RowsF32(const RowsArgs& a, int64_t r0, int64_t r1) { Rows<F32W>(a, r0, r1); }
void RowsF16(const RowsArgs& a, int64_t r0, int64_t r1) { Rows<F16W>(a, r0, r1); }
void RowsBF16(const RowsArgs& a, int64_t r0, int64_t r1) { Rows<BF16W>(a, r0, r1); }

}  // namespace dflash::kernels::detail::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dflash::kernels::detail {

HWY_EXPORT(RowsF32);
HWY_EXPORT(RowsF16);
HWY_EXPORT(RowsBF16);

namespace {
void rows_f32(const RowsArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsF32)(a, r0, r1);
}
void rows_f16(const RowsArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsF16)(a, r0, r1);
}
void rows_bf16(const RowsArgs& a, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(RowsBF16)(a, r0, r1);
}
}  // namespace

RowsFn rows_fn_float_simd(tensor::DType t) {
  switch (t) {
    case tensor::DType::kF32:
      return &rows_f32;
    case tensor::DType::kF16:
      return &rows_f16;
    case tensor::DType::kBF16:
      return &rows_bf16;
    default:
      return nullptr;
  }
}

}  // namespace dflash::kernels::detail
#endif  // HWY_ONCE
