// F32 / F16 / BF16 weight rows × f32 activations, written with Highway and compiled for every x86
// target Highway supports (foreach_target), chosen at runtime by HWY_DYNAMIC_DISPATCH.
// For batches, each converted weight vector is reused for a tile of up to kTokenTile tokens.
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

template <class WL, int NT>
HWY_INLINE void DotRow(const typename WL::T* HWY_RESTRICT w, const float* const* x, int64_t n,
                       float* out) {
  const hn::ScalableTag<float> df;
  const int64_t N = int64_t(hn::Lanes(df));
  // Two accumulators per token hide some FMA latency. The summation order is the same for every
  // tile size, so a token's result does not depend on the batch it is computed in.
  constexpr int U = 2;
  using V = hn::Vec<decltype(df)>;
  V acc[U][NT];
  for (int u = 0; u < U; ++u)
    for (int t = 0; t < NT; ++t) acc[u][t] = hn::Zero(df);
  int64_t i = 0;
  for (; i + U * N <= n; i += U * N) {
    // Hardware prefetchers stop at 4 KiB pages; keep the weight stream ~1.5 KiB ahead.
    hwy::Prefetch(reinterpret_cast<const char*>(w + i) + 1536);
    for (int u = 0; u < U; ++u) {
      const V wv = WL::load(df, w + i + u * N);
      for (int t = 0; t < NT; ++t)
        acc[u][t] = hn::MulAdd(wv, hn::LoadU(df, x[t] + i + u * N), acc[u][t]);
    }
  }
  for (; i + N <= n; i += N) {
    const V wv = WL::load(df, w + i);
    for (int t = 0; t < NT; ++t) acc[0][t] = hn::MulAdd(wv, hn::LoadU(df, x[t] + i), acc[0][t]);
  }
  for (int t = 0; t < NT; ++t) {
    const V s = hn::Add(acc[0][t], acc[1][t]);
    float r = hn::GetLane(hn::SumOfLanes(df, s));
    for (int64_t k = i; k < n; ++k) r += WL::scalar(w[k]) * x[t][k];
    out[t] = r;
  }
}

template <class WL>
HWY_INLINE void Rows(const RowsArgs& a, int64_t r0, int64_t r1) {
  const float* xs[kTokenTile];
  float o[kTokenTile];
  for (int64_t r = r0; r < r1; ++r) {
    const auto* wr = reinterpret_cast<const typename WL::T*>(a.w + size_t(r) * a.w_stride);
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokenTile) {
      const int nt = int(std::min<int64_t>(kTokenTile, a.n_tokens - t0));
      for (int i = 0; i < nt; ++i)
        xs[i] = reinterpret_cast<const float*>(a.act + size_t(t0 + i) * a.act_stride);
      switch (nt) {
        case 1:
          DotRow<WL, 1>(wr, xs, a.in, o);
          break;
        case 2:
          DotRow<WL, 2>(wr, xs, a.in, o);
          break;
        case 3:
          DotRow<WL, 3>(wr, xs, a.in, o);
          break;
        default:
          DotRow<WL, 4>(wr, xs, a.in, o);
          break;
      }
      for (int i = 0; i < nt; ++i) a.y[(t0 + i) * a.ldy + r] = o[i];
    }
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
