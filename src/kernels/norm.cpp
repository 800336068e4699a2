#include "kernels/hwy_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/norm.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/ops_simd-inl.h"

#include <cmath>

#include "kernels/norm.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace dflash::kernels::HWY_NAMESPACE {
namespace {  // internal linkage: target functions of other kernels may use the same names
using namespace ops_simd;  // NOLINT

// y = x·inv·(w | 1+w | 1), one row.
HWY_INLINE void NormRow(const float* x, const float* w, float* y, int64_t n, float inv, NormKind kind) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const VF vinv = hn::Set(d, inv);
  const VF one = hn::Set(d, kind == NormKind::kOffsetOne ? 1.0f : 0.0f);
  int64_t i = 0;
  if (w) {
    for (; i + N <= n; i += N)
      hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(d, x + i), vinv), hn::Add(one, hn::LoadU(d, w + i))), d, y + i);
    const float o = kind == NormKind::kOffsetOne ? 1.0f : 0.0f;
    for (; i < n; ++i) y[i] = x[i] * inv * (o + w[i]);
  } else {
    for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(d, x + i), vinv), d, y + i);
    for (; i < n; ++i) y[i] = x[i] * inv;
  }
}

HWY_INLINE float RmsInv(const float* x, int64_t n, float eps) {
  return 1.0f / std::sqrt(SumSq(x, n) / float(n) + eps);
}

void RmsnormRows(const float* x, const float* w, float* y, int64_t r0, int64_t r1, int64_t dim,
                 float eps, NormKind kind) {
  for (int64_t r = r0; r < r1; ++r) NormRow(x + r * dim, w, y + r * dim, dim, RmsInv(x + r * dim, dim, eps), kind);
}

void RmsnormHeads(float* x, const float* w, int64_t t0, int64_t t1, int64_t n_heads, int64_t head_dim,
                  int64_t token_stride, int64_t head_stride, float eps, NormKind kind) {
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      float* p = x + t * token_stride + h * head_stride;
      NormRow(p, w, p, head_dim, RmsInv(p, head_dim, eps), kind);
    }
}

void RmsnormGatedRows(const float* o, const float* z, const float* w, float* y, int64_t r0, int64_t r1,
                      int64_t dim, float eps) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  for (int64_t r = r0; r < r1; ++r) {
    const float* orow = o + r * dim;
    const float* zr = z + r * dim;
    float* yr = y + r * dim;
    const float inv = RmsInv(orow, dim, eps);
    const VF vinv = hn::Set(d, inv);
    int64_t i = 0;
    for (; i + N <= dim; i += N) {
      const VF vz = hn::LoadU(d, zr + i);
      const VF gate = hn::Mul(vz, SigmoidV(d, vz));
      hn::StoreU(hn::Mul(hn::Mul(hn::Mul(hn::LoadU(d, orow + i), vinv), hn::LoadU(d, w + i)), gate), d, yr + i);
    }
    for (; i < dim; ++i) {
      const float gate = zr[i] / (1.0f + std::exp(-zr[i]));
      yr[i] = orow[i] * inv * w[i] * gate;
    }
  }
}

void L2normHeads(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t token_stride,
                 int64_t head_stride, float eps, float scale) {
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      float* p = x + t * token_stride + h * head_stride;
      Scale(p, scale / std::sqrt(SumSq(p, head_dim) + eps), head_dim);
    }
}

}  // namespace
}  // namespace dflash::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dflash::kernels {
HWY_EXPORT(RmsnormRows);
HWY_EXPORT(RmsnormHeads);
HWY_EXPORT(RmsnormGatedRows);
HWY_EXPORT(L2normHeads);

namespace {
// Rows are only spread over threads when there is enough work to pay for a dispatch.
constexpr int64_t kParallelMinElems = 1 << 15;

template <class F>
void for_rows(util::ThreadPool* pool, int64_t n_rows, int64_t dim, F&& f) {
  if (!pool || pool->size() == 1 || n_rows < 2 || n_rows * dim < kParallelMinElems) {
    f(int64_t(0), n_rows);
    return;
  }
  pool->parallel_range(n_rows, 1, [&](int64_t b, int64_t e, int) { f(b, e); });
}
}  // namespace

void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps,
             NormKind kind, util::ThreadPool* pool) {
  for_rows(pool, n_rows, dim, [&](int64_t b, int64_t e) {
    HWY_DYNAMIC_DISPATCH(RmsnormRows)(x, w, y, b, e, dim, eps, kind);
  });
}

void rmsnorm_heads(float* x, const float* w, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                   int64_t token_stride, int64_t head_stride, float eps, NormKind kind,
                   util::ThreadPool* pool) {
  for_rows(pool, n_tokens, n_heads * head_dim, [&](int64_t b, int64_t e) {
    HWY_DYNAMIC_DISPATCH(RmsnormHeads)(x, w, b, e, n_heads, head_dim, token_stride, head_stride, eps, kind);
  });
}

void rmsnorm_gated(const float* o, const float* z, const float* w, float* y, int64_t n_rows,
                   int64_t dim, float eps, util::ThreadPool* pool) {
  for_rows(pool, n_rows, dim, [&](int64_t b, int64_t e) {
    HWY_DYNAMIC_DISPATCH(RmsnormGatedRows)(o, z, w, y, b, e, dim, eps);
  });
}

void l2norm_heads(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                  int64_t token_stride, int64_t head_stride, float eps, float scale) {
  HWY_DYNAMIC_DISPATCH(L2normHeads)(x, n_tokens, n_heads, head_dim, token_stride, head_stride, eps, scale);
}
}  // namespace dflash::kernels
#endif
