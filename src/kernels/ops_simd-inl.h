// Per-target Highway helpers shared by the op kernels (dot, axpy, scale, vector exp).
// Include after "hwy/highway.h" inside a HWY_TARGET_INCLUDE / foreach_target.h translation unit.
#if defined(DFLASH_KERNELS_OPS_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef DFLASH_KERNELS_OPS_SIMD_INL_H_
#undef DFLASH_KERNELS_OPS_SIMD_INL_H_
#else
#define DFLASH_KERNELS_OPS_SIMD_INL_H_
#endif

#include <cstdint>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
// Helpers live in their own namespace so they cannot collide (ODR) with other kernels' helpers.
namespace dflash::kernels::HWY_NAMESPACE::ops_simd {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Σ a[i]·b[i], f32 with four independent vector accumulators.
HWY_INLINE float Dot(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  VF s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N), s1);
    s2 = hn::MulAdd(hn::LoadU(d, a + i + 2 * N), hn::LoadU(d, b + i + 2 * N), s2);
    s3 = hn::MulAdd(hn::LoadU(d, a + i + 3 * N), hn::LoadU(d, b + i + 3 * N), s3);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
  float r = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  for (; i < n; ++i) r += a[i] * b[i];
  return r;
}

HWY_INLINE float SumSq(const float* HWY_RESTRICT a, int64_t n) { return Dot(a, a, n); }

// y[i] += alpha·x[i]
HWY_INLINE void Axpy(float* HWY_RESTRICT y, float alpha, const float* HWY_RESTRICT x, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const VF va = hn::Set(d, alpha);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// y[i] *= alpha
HWY_INLINE void Scale(float* HWY_RESTRICT y, float alpha, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const VF va = hn::Set(d, alpha);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(va, hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] *= alpha;
}

// Sigmoid without overflow: e = exp(−|x|) ∈ (0, 1]; x ≥ 0 → 1/(1+e), else e/(1+e).
HWY_INLINE VF SigmoidV(DF d, VF x) {
  const VF one = hn::Set(d, 1.0f);
  const VF e = hn::Exp(d, hn::Neg(hn::Abs(x)));
  const VF r = hn::Div(one, hn::Add(one, e));
  return hn::IfThenElse(hn::Lt(x, hn::Zero(d)), hn::Mul(e, r), r);
}

// Applies f(vector) over n floats with a scalar-padded tail (tail goes through a full vector).
template <class F>
HWY_INLINE void MapUnary(const float* HWY_RESTRICT x, float* y, int64_t n, F f) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(f(d, hn::LoadU(d, x + i)), d, y + i);
  if (i < n) {
    HWY_ALIGN float buf[hn::MaxLanes(DF())] = {};
    for (int64_t j = i; j < n; ++j) buf[j - i] = x[j];
    hn::Store(f(d, hn::Load(d, buf)), d, buf);
    for (int64_t j = i; j < n; ++j) y[j] = buf[j - i];
  }
}

}  // namespace dflash::kernels::HWY_NAMESPACE::ops_simd
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
