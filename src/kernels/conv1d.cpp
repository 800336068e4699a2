#include "kernels/hwy_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/conv1d.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/ops_simd-inl.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/conv1d.h"
#include "util/thread_pool.h"

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

// Taps K ≤ kMaxK, channels [cb0, cb1) (multiples of kCB apart from the last end). Each output is
// Σ_j w[c][j]·x̃[t+j][c] accumulated in tap order with FMAs, then SiLU in the same registers; every
// token's result is independent of how many tokens the call holds (a verify and a one-token decode
// give the same bits) and of which channel range computes it. Token blocks outer, channel blocks inner:
// a prefill chunk's rows are read front to back instead of one 512-byte column strip per row. Width 4
// (Qwen3.5) de-interleaves each channel vector's taps from w in registers: the transposed copy of the taps
// this function makes for other widths cost half of a one-token call (6144 channels: 15.8 → 7.8 µs).
void CausalConvImpl(const float* x, int64_t x_stride, const float* w, const float* state, float* out,
                    int64_t out_stride, int64_t T, int64_t C, int64_t K, bool fuse_silu, int64_t cb0, int64_t cb1) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const int64_t H = K - 1;
  constexpr int64_t kTB = 32;  // tokens per block
  if (K == 4) {  // Qwen3.5's width: the taps of N channels de-interleaved in registers, no transposed copy
    for (int64_t tb = 0; tb < T; tb += kTB) {
      const int64_t te = std::min(T, tb + kTB);
      // kV channel vectors at c0 for every token of the block (kV = 4: 16 tap registers; each token reads
      // 4 rows × 4 vectors contiguously).
      auto vectors = [&](auto nv, int64_t c0) HWY_ATTR {
        constexpr int kV = decltype(nv)::value;
        VF wv[kV][4];
        for (int v = 0; v < kV; ++v) hn::LoadInterleaved4(d, w + (c0 + v * N) * 4, wv[v][0], wv[v][1], wv[v][2], wv[v][3]);
        for (int64_t t = tb; t < te; ++t) {
          const float* rows[4];
          for (int64_t j = 0; j < 4; ++j) {  // src < 0: from the state
            const int64_t src = t + j - H;
            rows[j] = (src < 0 ? state + (H + src) * C : x + src * x_stride) + c0;
          }
          for (int v = 0; v < kV; ++v) {
            VF acc = hn::Mul(wv[v][0], hn::LoadU(d, rows[0] + v * N));
            acc = hn::MulAdd(wv[v][1], hn::LoadU(d, rows[1] + v * N), acc);
            acc = hn::MulAdd(wv[v][2], hn::LoadU(d, rows[2] + v * N), acc);
            acc = hn::MulAdd(wv[v][3], hn::LoadU(d, rows[3] + v * N), acc);
            if (fuse_silu) acc = hn::Mul(acc, SigmoidV(d, acc));
            hn::StoreU(acc, d, out + t * out_stride + c0 + v * N);
          }
        }
      };
      int64_t c = cb0;
      for (; c + 4 * N <= cb1; c += 4 * N) vectors(std::integral_constant<int, 4>(), c);
      for (; c + N <= cb1; c += N) vectors(std::integral_constant<int, 1>(), c);
      if (c < cb1) {  // channel tail through one padded vector, so it rounds like the body
        for (int64_t t = tb; t < te; ++t) {
          HWY_ALIGN float buf[hn::MaxLanes(DF())] = {};
          VF acc = hn::Zero(d);
          for (int64_t j = 0; j < K; ++j) {
            const int64_t src = t + j - H;
            const float* r = (src < 0 ? state + (H + src) * C : x + src * x_stride);
            for (int64_t i = c; i < cb1; ++i) buf[i - c] = r[i];
            const VF xv = hn::Load(d, buf);
            for (int64_t i = c; i < cb1; ++i) buf[i - c] = w[i * K + j];
            acc = j == 0 ? hn::Mul(hn::Load(d, buf), xv) : hn::MulAdd(hn::Load(d, buf), xv, acc);
          }
          if (fuse_silu) acc = hn::Mul(acc, SigmoidV(d, acc));
          hn::Store(acc, d, buf);
          for (int64_t i = c; i < cb1; ++i) out[t * out_stride + i] = buf[i - c];
        }
      }
    }
    return;
  }
  // The range's taps transposed to [channel block][K][kCB] so every load is contiguous.
  thread_local std::vector<float> wt_all;
  const int64_t nblk = (cb1 - cb0 + kCB - 1) / kCB;
  if (wt_all.size() < size_t(nblk * K * kCB)) wt_all.resize(size_t(nblk * K * kCB));
  for (int64_t bi = 0; bi < nblk; ++bi) {
    const int64_t c0 = cb0 + bi * kCB, cb = std::min(kCB, cb1 - c0);
    float* wt = wt_all.data() + bi * K * kCB;
    for (int64_t j = 0; j < K; ++j)
      for (int64_t c = 0; c < cb; ++c) wt[j * kCB + c] = w[(c0 + c) * K + j];
  }
  for (int64_t tb = 0; tb < T; tb += kTB) {
    const int64_t te = std::min(T, tb + kTB);
    for (int64_t bi = 0; bi < nblk; ++bi) {
      const int64_t c0 = cb0 + bi * kCB, cb = std::min(kCB, cb1 - c0);
      const float* wt = wt_all.data() + bi * K * kCB;
      for (int64_t t = tb; t < te; ++t) {
        const float* rows[kMaxK];
        for (int64_t j = 0; j < K; ++j) {
          const int64_t src = t + j - H;  // < 0: from the state
          rows[j] = (src < 0 ? state + (H + src) * C : x + src * x_stride) + c0;
        }
        float* o = out + t * out_stride + c0;
        int64_t c = 0;
        for (; c + N <= cb; c += N) {
          VF acc = hn::Mul(hn::LoadU(d, wt + c), hn::LoadU(d, rows[0] + c));
          for (int64_t j = 1; j < K; ++j)
            acc = hn::MulAdd(hn::LoadU(d, wt + j * kCB + c), hn::LoadU(d, rows[j] + c), acc);
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
}

}  // namespace
}  // namespace dflash::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dflash::kernels {
HWY_EXPORT(CausalConvImpl);

void causal_conv1d(const float* x, int64_t x_stride, const float* w, float* state, float* out,
                   int64_t out_stride, int64_t T, int64_t C, int64_t K, bool fuse_silu, util::ThreadPool* pool) {
  if (K < 1 || T <= 0) return;
  const int64_t H = K - 1;  // history rows
  if (K <= kMaxK) {
    // Channel blocks over the pool when there is enough work to repay a dispatch (each output's bits
    // do not depend on the split).
    const int64_t nblk = (C + kCB - 1) / kCB;
    auto run = [&](int64_t b0, int64_t b1, int) {
      HWY_DYNAMIC_DISPATCH(CausalConvImpl)(x, x_stride, w, state, out, out_stride, T, C, K, fuse_silu, b0 * kCB,
                                           std::min(C, b1 * kCB));
    };
    constexpr int64_t kMinOutputs = 16384;
    if (pool && pool->size() > 1 && nblk > 1 && T * C >= kMinOutputs)
      pool->parallel_range(nblk, std::max<int64_t>(1, kMinOutputs / 2 / (T * kCB)), run);
    else
      run(0, nblk, 0);
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
