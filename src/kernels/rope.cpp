#include "kernels/rope.h"

#include <algorithm>
#include <cmath>

#include "util/thread_pool.h"

namespace dflash::kernels {

namespace {
constexpr int64_t kMaxRot = 1024;

// Half-row rotation; plain loops that the compiler vectorises (the pair partner is half a row away).
inline void rotate(float* __restrict p, const float* __restrict cs, int64_t half) {
  const float* c = cs;
  const float* s = cs + half;
  float* a = p;
  float* b = p + half;
  for (int64_t i = 0; i < half; ++i) {
    const float x0 = a[i], x1 = b[i];
    a[i] = x0 * c[i] - x1 * s[i];
    b[i] = x1 * c[i] + x0 * s[i];
  }
}

void table_row(int64_t pos, int64_t n_rot, float theta, float* row) {
  const int64_t half = n_rot / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float inv_freq = 1.0f / std::pow(theta, float(2 * i) / float(n_rot));
    const float angle = float(pos) * inv_freq;
    row[i] = float(std::cos(double(angle)));
    row[half + i] = float(std::sin(double(angle)));
  }
}
}  // namespace

void rope_table(const int64_t* positions, int64_t n_tokens, int64_t n_rot, float theta, float* table) {
  for (int64_t t = 0; t < n_tokens; ++t) table_row(positions[t], n_rot, theta, table + t * n_rot);
}

void rope_apply(float* x, int64_t n_tokens, int64_t n_heads, int64_t token_stride,
                int64_t head_stride, int64_t n_rot, const float* table, util::ThreadPool* pool) {
  auto run = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t h = 0; h < n_heads; ++h)
        rotate(x + t * token_stride + h * head_stride, table + t * n_rot, n_rot / 2);
  };
  if (pool && pool->size() > 1 && n_tokens * n_heads * n_rot >= (1 << 15))
    pool->parallel_range(n_tokens, 1, [&](int64_t b, int64_t e, int) { run(b, e); });
  else
    run(0, n_tokens);
}

void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t token_stride, int64_t head_stride,
          int64_t n_rot, const int64_t* positions, float theta) {
  // Pairs are rotated in slices of kMaxRot/2 so the on-stack table stays small for any n_rot.
  const int64_t half = n_rot / 2;
  float cs[kMaxRot];
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t i0 = 0; i0 < half; i0 += kMaxRot / 2) {
      const int64_t cnt = std::min<int64_t>(kMaxRot / 2, half - i0);
      for (int64_t i = 0; i < cnt; ++i) {
        const float inv_freq = 1.0f / std::pow(theta, float(2 * (i0 + i)) / float(n_rot));
        const float angle = float(positions[t]) * inv_freq;
        cs[i] = float(std::cos(double(angle)));
        cs[cnt + i] = float(std::sin(double(angle)));
      }
      for (int64_t h = 0; h < n_heads; ++h) {
        float* p = x + t * token_stride + h * head_stride + i0;
        const float* c = cs;
        const float* s = cs + cnt;
        for (int64_t i = 0; i < cnt; ++i) {
          const float x0 = p[i], x1 = p[half + i];
          p[i] = x0 * c[i] - x1 * s[i];
          p[half + i] = x1 * c[i] + x0 * s[i];
        }
      }
    }
}

}  // namespace dflash::kernels
