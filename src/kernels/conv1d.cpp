#include "kernels/conv1d.h"

#include "kernels/activation.h"

#include <algorithm>
#include <cstring>

namespace dflash::kernels {

namespace {
constexpr int64_t kMaxK = 16;
constexpr int64_t kCB = 64;  // channels per block: taps transposed to [K][kCB] so the inner loop is contiguous
}  // namespace

void causal_conv1d(const float* x, int64_t x_stride, const float* w, float* state, float* out,
                   int64_t out_stride, int64_t T, int64_t C, int64_t K, bool fuse_silu) {
  if (K < 1 || T <= 0) return;
  const int64_t H = K - 1;  // history rows
  if (K > kMaxK) {  // unusual kernel width: direct form, no transposed tap block
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) {
        float acc = 0;
        for (int64_t j = 0; j < K; ++j) {
          const int64_t src = t + j - H;
          acc += w[c * K + j] * (src < 0 ? state[(H + src) * C + c] : x[src * x_stride + c]);
        }
        out[t * out_stride + c] = acc;
      }
  }
  for (int64_t c0 = 0; c0 < C && K <= kMaxK; c0 += kCB) {
    const int64_t cb = std::min(kCB, C - c0);
    float wt[kMaxK][kCB];
    for (int64_t j = 0; j < K; ++j)
      for (int64_t c = 0; c < cb; ++c) wt[j][c] = w[(c0 + c) * K + j];
    for (int64_t t = 0; t < T; ++t) {
      float acc[kCB] = {};
      for (int64_t j = 0; j < K; ++j) {
        const int64_t src = t + j - H;  // < 0: from the state
        const float* row = src < 0 ? state + (H + src) * C + c0 : x + src * x_stride + c0;
        for (int64_t c = 0; c < cb; ++c) acc[c] += wt[j][c] * row[c];
      }
      float* o = out + t * out_stride + c0;
      for (int64_t c = 0; c < cb; ++c) o[c] = acc[c];
    }
  }
  // SiLU as a separate vectorised pass: a scalar exp per channel would cost more than the conv.
  if (fuse_silu)
    for (int64_t t = 0; t < T; ++t) silu(out + t * out_stride, out + t * out_stride, C);
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
