#include "kernels/hwy_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/activation.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/ops_simd-inl.h"

#include <cmath>
#include <limits>

#include "kernels/activation.h"

HWY_BEFORE_NAMESPACE();
namespace dflash::kernels::HWY_NAMESPACE {
namespace {  // internal linkage: target functions of other kernels may use the same names
using namespace ops_simd;  // NOLINT

void SiluImpl(const float* x, float* y, int64_t n) {
  MapUnary(x, y, n, [](DF d, VF v) HWY_ATTR { return hn::Mul(v, SigmoidV(d, v)); });
}

void SigmoidImpl(const float* x, float* y, int64_t n) {
  MapUnary(x, y, n, [](DF d, VF v) HWY_ATTR { return SigmoidV(d, v); });
}

void SoftplusImpl(const float* x, float* y, int64_t n) {
  MapUnary(x, y, n, [](DF d, VF v) HWY_ATTR {
    const auto above = hn::Gt(v, hn::Set(d, 20.0f));
    const VF e = hn::Exp(d, hn::Min(v, hn::Set(d, 20.0f)));
    return hn::IfThenElse(above, v, hn::Log1p(d, e));
  });
}

// y = f(a, b) element-wise; the tail goes through the same vector math as the body, so an element's
// result does not depend on where it sits in the array (a token's output must not depend on the
// batch it is in).
template <class F>
void MapBinary(const float* a, const float* b, float* y, int64_t n, F f) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(f(d, hn::LoadU(d, a + i), hn::LoadU(d, b + i)), d, y + i);
  if (i < n) {
    HWY_ALIGN float ba[hn::MaxLanes(DF())] = {};
    HWY_ALIGN float bb[hn::MaxLanes(DF())] = {};
    for (int64_t j = i; j < n; ++j) ba[j - i] = a[j], bb[j - i] = b[j];
    hn::Store(f(d, hn::Load(d, ba), hn::Load(d, bb)), d, ba);
    for (int64_t j = i; j < n; ++j) y[j] = ba[j - i];
  }
}

void SwigluImpl(const float* g, const float* u, float* y, int64_t n) {
  MapBinary(g, u, y, n, [](DF d, VF vg, VF vu) HWY_ATTR { return hn::Mul(hn::Mul(vg, SigmoidV(d, vg)), vu); });
}

void MulSigmoidImpl(const float* x, const float* gate, float* y, int64_t n) {
  MapBinary(x, gate, y, n, [](DF d, VF vx, VF vg) HWY_ATTR { return hn::Mul(vx, SigmoidV(d, vg)); });
}

void SoftmaxImpl(float* x, int64_t n_rows, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  for (int64_t r = 0; r < n_rows; ++r) {
    float* p = x + r * n;
    VF vm = hn::Set(d, -std::numeric_limits<float>::infinity());
    int64_t i = 0;
    for (; i + N <= n; i += N) vm = hn::Max(vm, hn::LoadU(d, p + i));
    float m = hn::GetLane(hn::MaxOfLanes(d, vm));
    for (; i < n; ++i) m = p[i] > m ? p[i] : m;
    if (m == -std::numeric_limits<float>::infinity()) {
      for (int64_t j = 0; j < n; ++j) p[j] = 0.0f;
      continue;
    }
    const VF vmax = hn::Set(d, m);
    VF vs = hn::Zero(d);
    i = 0;
    for (; i + N <= n; i += N) {
      const VF e = hn::Exp(d, hn::Sub(hn::LoadU(d, p + i), vmax));
      hn::StoreU(e, d, p + i);
      vs = hn::Add(vs, e);
    }
    float s = hn::GetLane(hn::SumOfLanes(d, vs));
    for (; i < n; ++i) {
      p[i] = std::exp(p[i] - m);
      s += p[i];
    }
    Scale(p, 1.0f / s, n);
  }
}

// The softmax's two passes without the stores: the row's max, then Σ exp(x − max).
float SoftmaxMaxImpl(const float* p, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  VF vm = hn::Set(d, -std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + N <= n; i += N) vm = hn::Max(vm, hn::LoadU(d, p + i));
  float m = hn::GetLane(hn::MaxOfLanes(d, vm));
  for (; i < n; ++i) m = p[i] > m ? p[i] : m;
  if (m == -std::numeric_limits<float>::infinity()) return 0.0f;
  const VF vmax = hn::Set(d, m);
  VF vs = hn::Zero(d);
  i = 0;
  for (; i + N <= n; i += N) vs = hn::Add(vs, hn::Exp(d, hn::Sub(hn::LoadU(d, p + i), vmax)));
  float s = hn::GetLane(hn::SumOfLanes(d, vs));
  for (; i < n; ++i) s += std::exp(p[i] - m);
  return 1.0f / s;
}

}  // namespace
}  // namespace dflash::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dflash::kernels {
HWY_EXPORT(SiluImpl);
HWY_EXPORT(SigmoidImpl);
HWY_EXPORT(SoftplusImpl);
HWY_EXPORT(SwigluImpl);
HWY_EXPORT(SoftmaxImpl);
HWY_EXPORT(SoftmaxMaxImpl);
HWY_EXPORT(MulSigmoidImpl);

void silu(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(SiluImpl)(x, y, n); }
void sigmoid(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(SigmoidImpl)(x, y, n); }
void softplus(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(SoftplusImpl)(x, y, n); }
void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SwigluImpl)(gate, up, y, n);
}
void mul_sigmoid(const float* x, const float* gate, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(MulSigmoidImpl)(x, gate, y, n);
}
void softmax(float* x, int64_t n_rows, int64_t n) { HWY_DYNAMIC_DISPATCH(SoftmaxImpl)(x, n_rows, n); }
float softmax_max(const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(SoftmaxMaxImpl)(x, n); }
}  // namespace dflash::kernels
#endif
