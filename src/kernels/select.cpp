#include "kernels/hwy_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/select.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/ops_simd-inl.h"

#include <cmath>
#include <limits>

#include "kernels/select.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace dflash::kernels::HWY_NAMESPACE {
namespace {  // internal linkage: target functions of other kernels may use the same names
using namespace ops_simd;  // NOLINT

// Two passes: vector max (NaN lanes never win a Max against a number here because we replace them
// with −inf first), then the first index holding it (early exit).
int64_t ArgmaxImpl(const float* x, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const VF ninf = hn::Set(d, kNegInf);
  VF m0 = ninf, m1 = ninf;
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const VF a = hn::LoadU(d, x + i), b = hn::LoadU(d, x + i + N);
    m0 = hn::Max(m0, hn::IfThenElse(hn::IsNaN(a), ninf, a));
    m1 = hn::Max(m1, hn::IfThenElse(hn::IsNaN(b), ninf, b));
  }
  float m = hn::GetLane(hn::MaxOfLanes(d, hn::Max(m0, m1)));
  for (; i < n; ++i)
    if (x[i] > m) m = x[i];
  const VF vm = hn::Set(d, m);
  int64_t j = 0;
  for (; j + N <= n; j += N) {
    const auto eq = hn::Eq(hn::LoadU(d, x + j), vm);
    if (!hn::AllFalse(d, eq)) return j + int64_t(hn::FindFirstTrue(d, eq));
  }
  for (; j < n; ++j)
    if (x[j] == m) return j;
  return 0;  // all NaN (or all −inf: first −inf is found above)
}


// Keeps a descending list of the best k; an element enters only if it beats the current k-th (ties
// keep the earlier index because later equal values do not beat it). Once the list is full, whole
// vector blocks whose maximum does not beat the k-th are skipped, so most of a vocabulary row costs
// one vector compare per 4 vectors.
int TopkImpl(const float* x, int64_t n, int k, float* values, int32_t* indices) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const VF ninf = hn::Set(d, kNegInf);
  int cnt = 0;
  float kth = kNegInf;
  auto consider = [&](int64_t i) {
    const float v = x[i];
    if (cnt == k && !(v > kth)) return;  // also skips NaN
    if (std::isnan(v)) return;
    int pos = cnt < k ? cnt : k - 1;
    while (pos > 0 && values[pos - 1] < v) {  // equal entries stay ahead (lower index)
      values[pos] = values[pos - 1];
      indices[pos] = indices[pos - 1];
      --pos;
    }
    values[pos] = v;
    indices[pos] = int32_t(i);
    if (cnt < k) ++cnt;
    if (cnt == k) kth = values[k - 1];
  };
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    if (cnt == k) {
      auto clean = [&](VF v) HWY_ATTR { return hn::IfThenElse(hn::IsNaN(v), ninf, v); };
      const VF m = hn::Max(hn::Max(clean(hn::LoadU(d, x + i)), clean(hn::LoadU(d, x + i + N))),
                           hn::Max(clean(hn::LoadU(d, x + i + 2 * N)), clean(hn::LoadU(d, x + i + 3 * N))));
      if (hn::AllFalse(d, hn::Gt(m, hn::Set(d, kth)))) continue;
    }
    for (int64_t j = i; j < i + 4 * N; ++j) consider(j);
  }
  for (; i < n; ++i) consider(i);
  return cnt;
}

}  // namespace
}  // namespace dflash::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dflash::kernels {
HWY_EXPORT(ArgmaxImpl);
HWY_EXPORT(TopkImpl);

int64_t argmax(const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(ArgmaxImpl)(x, n); }

void argmax_rows(const float* x, int64_t n_rows, int64_t n, int64_t* idx, util::ThreadPool* pool) {
  if (!pool || pool->size() == 1 || n_rows < 2) {
    for (int64_t r = 0; r < n_rows; ++r) idx[r] = argmax(x + r * n, n);
    return;
  }
  pool->parallel_for(n_rows, [&](int64_t r, int) { idx[r] = argmax(x + r * n, n); });
}

int topk(const float* x, int64_t n, int k, float* values, int32_t* indices) {
  if (k > kTopKMax) k = kTopKMax;
  if (k <= 0 || n <= 0) return 0;
  return HWY_DYNAMIC_DISPATCH(TopkImpl)(x, n, k, values, indices);
}
}  // namespace dflash::kernels
#endif
