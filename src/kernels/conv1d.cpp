#include "kernels/hwy_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/conv1d.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/ops_simd-inl.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/conv1d.h"

#ifndef DFLASH_CONV1D_CONSTANTS  // this file is compiled once per SIMD target
#define DFLASH_CONV1D_CONSTANTS
namespace dflash::kernels {
namespace {
constexpr int64_t kMaxK = 16;
constexpr int64_t kCB = 128;  // channels per block: taps transposed to [K][kCB] so every load is contiguous
}  // namespace
}  // namespace dflash::kernels
#endif

HWY_BEFORE_NAMESPACE();
namespace dflash::kernels::HWY_NAMESPACE {
namespace {  // internal linkage: target functions of other kernels may use the same names
using namespace ops_simd;  // NOLINT

// Taps K ≤ kMaxK. Each output is Σ_j w[c][j]·x̃[t+j][c] accumulated in tap order with FMAs, then
// SiLU in the same registers; every token's result is independent of how many tokens the call
// holds (a verify and a one-token decode give the same bits).
void CausalConvImpl(const float* x, int64_t x_stride, const float* w, const float* state, float* out,
                    int64_t out_stride, int64_t T, int64_t C, int64_t K, bool fuse_silu) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const int64_t H = K - 1;
  HWY_ALIGN float wt[kMaxK * kCB];
  for (int64_t c0 = 0; c0 < C; c0 += kCB) {
    const int64_t cb = std::min(kCB, C - c0);
    for (int64_t j = 0; j < K; ++j)
      for (int64_t c = 0; c < cb; ++c) wt[j * kCB + c] = w[(c0 + c) * K + j];
    for (int64_t t = 0; t < T; ++t) {
      const float* rows[kMaxK];
      for (int64_t j = 0; j < K; ++j) {
        const int64_t src = t + j - H;  // < 0: from the state
        rows[j] = (src < 0 ? state + (H + src) * C : x + src * x_stride) + c0;
      }
      float* o = out + t * out_stride + c0;
      int64_t c = 0;
      for (; c + N <= cb; c += N) {
        VF acc = hn::Mul(hn::Load(d, wt + c), hn::LoadU(d, rows[0] + c));
        for (int64_t j = 1; j < K; ++j) acc = hn::MulAdd(hn::Load(d, wt + j * kCB + c), hn::LoadU(d, rows[j] + c), acc);
        if (fuse_silu) acc = hn::Mul(acc, SigmoidV(d, acc));
        hn::StoreU(acc, d, o + c);
      }
      if (c < cb) {  // channel tail through one padded vector, so it rounds like the body
        HWY_ALIGN float buf[hn::MaxLanes(DF())] = {};
        VF acc = hn::Zero(d);
        for (int64_t j = 0; j < K; ++j) {
          for (int64_t i = c; i < cb; ++i) buf[i - c] = rows[j][i];
          const VF xv = hn::Load(d, buf);
          for (int64_t i = c; i < cb; ++i) buf[i - c] = wt[j * kCB + i];
          acc = j == 0 ? hn::Mul(hn::Load(d, buf), xv) : hn::MulAdd(hn::Load(d, buf), xv, acc);
        }
        if (fuse_silu) acc = hn::Mul(acc, SigmoidV(d, acc));
        hn::Store(acc, d, buf);
        for (int64_t i = c; i < cb; ++i) o[i] = buf[i - c];
      }
    }
  }
}

}  // namespace
}  // namespace dflash::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dflash::kernels {
HWY_EXPORT(CausalConvImpl);

void causal_conv1d(const float* x, int64_t x_stride, const float* w, float* state, float* out,
                   int64_t out_stride, int64_t T, int64_t C, int64_t K, bool fuse_silu) {
  if (K < 1 || T <= 0) return;
  const int64_t H = K - 1;  // history rows
  if (K <= kMaxK) {
    HWY_DYNAMIC_DISPATCH(CausalConvImpl)(x, x_stride, w, state, out, out_stride, T, C, K, fuse_silu);
  } else {  // unusual kernel width: direct form
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) {
        float acc = 0;
        for (int64_t j = 0; j < K; ++j) {
          const int64_t src = t + j - H;
          acc += w[c * K + j] * (src < 0 ? state[(H + src) * C + c] : x[src * x_stride + c]);
        }
        out[t * out_stride + c] = fuse_silu ? acc / (1.0f + std::exp(-acc)) : acc;
      }
  }
  causal_conv1d_push(x, x_stride, state, T, C, K);
}

void causal_conv1d_push(const float* x, int64_t x_stride, float* state, int64_t T, int64_t C,
                        int64_t K) {
  const int64_t H = K - 1;
  if (H <= 0 || T <= 0) return;
  if (T >= H) {
    for (int64_t s = 0; s < H; ++s) std::memcpy(state + s * C, x + (T - H + s) * x_stride, size_t(C) * sizeof(float));
    return;
  }
  // Shift the newest H−T state rows to the front, then append the T inputs.
  std::memmove(state, state + T * C, size_t((H - T) * C) * sizeof(float));
  for (int64_t t = 0; t < T; ++t) std::memcpy(state + (H - T + t) * C, x + t * x_stride, size_t(C) * sizeof(float));
}

}  // namespace dflash::kernels
#endif  // HWY_ONCE
