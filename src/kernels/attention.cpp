#include "kernels/hwy_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attention.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/ops_simd-inl.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace dflash::kernels::HWY_NAMESPACE {

constexpr int64_t kBk = 16;  // keys per tile: K and V tiles of 16 rows stay in L1 across the task's rows

// acc[0..hd) += Σ_j p[j]·v_j, v_j = v + j*ts; acc held in registers across the key tile.
HWY_INLINE void AccumulateV(float* HWY_RESTRICT acc, const float* HWY_RESTRICT p, const float* v,
                            int64_t nk, int64_t ts, int64_t hd) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  int64_t d0 = 0;
  for (; d0 + 4 * N <= hd; d0 += 4 * N) {
    VF a0 = hn::LoadU(d, acc + d0), a1 = hn::LoadU(d, acc + d0 + N);
    VF a2 = hn::LoadU(d, acc + d0 + 2 * N), a3 = hn::LoadU(d, acc + d0 + 3 * N);
    for (int64_t j = 0; j < nk; ++j) {
      const VF pj = hn::Set(d, p[j]);
      const float* vr = v + j * ts + d0;
      a0 = hn::MulAdd(pj, hn::LoadU(d, vr), a0);
      a1 = hn::MulAdd(pj, hn::LoadU(d, vr + N), a1);
      a2 = hn::MulAdd(pj, hn::LoadU(d, vr + 2 * N), a2);
      a3 = hn::MulAdd(pj, hn::LoadU(d, vr + 3 * N), a3);
    }
    hn::StoreU(a0, d, acc + d0);
    hn::StoreU(a1, d, acc + d0 + N);
    hn::StoreU(a2, d, acc + d0 + 2 * N);
    hn::StoreU(a3, d, acc + d0 + 3 * N);
  }
  for (; d0 + N <= hd; d0 += N) {
    VF a0 = hn::LoadU(d, acc + d0);
    for (int64_t j = 0; j < nk; ++j) a0 = hn::MulAdd(hn::Set(d, p[j]), hn::LoadU(d, v + j * ts + d0), a0);
    hn::StoreU(a0, d, acc + d0);
  }
  for (; d0 < hd; ++d0)
    for (int64_t j = 0; j < nk; ++j) acc[d0] += p[j] * v[j * ts + d0];
}

// Unnormalised online-softmax state of the query rows of tile [i0, i1) × the heads of kv head g over
// keys [kb, ke): acc (R × hd), ml (R × {m, l}); row rho = (i − i0)·r + head-in-group.
void AttnPartial(const AttnArgs& a, const KvView& kv, const AttnMask& mask, int64_t g, int64_t i0,
                 int64_t i1, int64_t kb, int64_t ke, float* acc, float* ml) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t r = a.n_head / kv.n_kv_head, hd = kv.head_dim, ts = kv.token_stride;
  const int64_t R = (i1 - i0) * r;
  for (int64_t rho = 0; rho < R; ++rho) {
    ml[2 * rho] = kNegInf;
    ml[2 * rho + 1] = 0.0f;
    std::fill(acc + rho * hd, acc + (rho + 1) * hd, 0.0f);
  }
  const float* kbase = kv.k + g * kv.head_stride;
  const float* vbase = kv.v + g * kv.head_stride;
  HWY_ALIGN float s[kBk];
  for (int64_t t0 = kb; t0 < ke; t0 += kBk) {
    const int64_t nk = std::min(kBk, ke - t0);
    for (int64_t rho = 0; rho < R; ++rho) {
      const int64_t i = i0 + rho / r, h = g * r + rho % r;
      int64_t lo = t0, hi = t0 + nk;
      if (mask.kind == MaskKind::kCausal) {
        const int64_t qp = mask.q_pos0 + i;
        hi = std::min(hi, qp + 1);
        if (mask.window > 0) lo = std::max(lo, qp - mask.window + 1);
      }
      if (lo >= hi) continue;
      const float* q = a.q + i * a.q_token_stride + h * a.q_head_stride;
      for (int64_t jj = 0; jj < kBk; ++jj) s[jj] = kNegInf;
      for (int64_t j = lo; j < hi; ++j) {
        if (mask.kind == MaskKind::kBool && !mask.allowed[i * mask.mask_stride + j]) continue;
        float sc = Dot(q, kbase + j * ts, hd) * a.scale;
        if (mask.kind == MaskKind::kAdditive) sc += mask.bias[i * mask.mask_stride + j];
        s[j - t0] = sc;
      }
      VF vmax = hn::Load(d, s);
      for (int64_t jj = N; jj < kBk; jj += N) vmax = hn::Max(vmax, hn::Load(d, s + jj));
      const float tmax = hn::GetLane(hn::MaxOfLanes(d, vmax));
      if (!(tmax > kNegInf)) continue;  // nothing visible in this tile (or NaN)
      float& m = ml[2 * rho];
      float& l = ml[2 * rho + 1];
      const float m_new = std::max(m, tmax);
      const float corr = m == kNegInf ? 0.0f : std::exp(m - m_new);
      const VF vm = hn::Set(d, m_new);
      VF vsum = hn::Zero(d);
      for (int64_t jj = 0; jj < kBk; jj += N) {
        const VF e = hn::Exp(d, hn::Sub(hn::Load(d, s + jj), vm));
        hn::Store(e, d, s + jj);
        vsum = hn::Add(vsum, e);
      }
      l = l * corr + hn::GetLane(hn::SumOfLanes(d, vsum));
      m = m_new;
      float* ar = acc + rho * hd;
      if (corr != 1.0f) Scale(ar, corr, hd);
      AccumulateV(ar, s + (lo - t0), vbase + lo * ts, hi - lo, ts, hd);
    }
  }
}

}  // namespace dflash::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dflash::kernels {
HWY_EXPORT(AttnPartial);

namespace {
// Grows on first use, then reused: no allocation in steady state.
float* scratch(std::vector<float>& buf, size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}
thread_local std::vector<float> tls_task_buf;
thread_local std::vector<float> tls_split_buf;

constexpr int64_t kRowsPerTask = 16;     // query rows (queries × heads of a group) per task
constexpr int64_t kMinKeysPerSplit = 512;

void write_normalised(const float* acc, const float* ml, int64_t hd, float* o) {
  const float l = ml[1];
  if (l > 0.0f) {
    const float inv = 1.0f / l;
    for (int64_t x = 0; x < hd; ++x) o[x] = acc[x] * inv;
  } else {
    std::fill(o, o + hd, 0.0f);
  }
}
}  // namespace

void attention(const AttnArgs& a, const KvView& kv, const AttnMask& mask, util::ThreadPool* pool) {
  if (a.n_q <= 0 || a.n_head <= 0 || kv.n_kv_head <= 0) return;
  const int64_t r = a.n_head / kv.n_kv_head, hd = kv.head_dim;
  const int64_t qt = std::max<int64_t>(1, std::min<int64_t>(a.n_q, kRowsPerTask / std::max<int64_t>(r, 1)));
  const int64_t n_qtiles = (a.n_q + qt - 1) / qt;
  const int64_t base_tasks = kv.n_kv_head * n_qtiles;
  const int threads = pool ? pool->size() : 1;

  // Key range of a query tile: the union of its rows' visible ranges.
  auto key_range = [&](int64_t i0, int64_t i1, int64_t& kb, int64_t& ke) {
    kb = 0;
    ke = kv.n_tokens;
    if (mask.kind == MaskKind::kCausal) {
      ke = std::min(ke, mask.q_pos0 + i1);
      if (mask.window > 0) kb = std::max<int64_t>(0, mask.q_pos0 + i0 - mask.window + 1);
    }
  };

  int64_t n_split = 1;
  if (threads > 1 && base_tasks < 2 * int64_t(threads)) {
    const int64_t want = (4 * int64_t(threads) + base_tasks - 1) / base_tasks;
    n_split = std::max<int64_t>(1, std::min(want, kv.n_tokens / kMinKeysPerSplit));
  }
  const int64_t R = qt * r;
  const int64_t n_tasks = base_tasks * n_split;

  if (n_split == 1) {
    auto run = [&](int64_t task, int) {
      const int64_t g = task / n_qtiles, qi = task % n_qtiles;
      const int64_t i0 = qi * qt, i1 = std::min(a.n_q, i0 + qt);
      int64_t kb, ke;
      key_range(i0, i1, kb, ke);
      float* acc = scratch(tls_task_buf, size_t(R * (hd + 2)));
      float* ml = acc + R * hd;
      HWY_DYNAMIC_DISPATCH(AttnPartial)(a, kv, mask, g, i0, i1, kb, ke, acc, ml);
      for (int64_t rho = 0; rho < (i1 - i0) * r; ++rho) {
        const int64_t i = i0 + rho / r, h = g * r + rho % r;
        write_normalised(acc + rho * hd, ml + 2 * rho, hd, a.out + i * a.out_token_stride + h * hd);
      }
    };
    if (pool && threads > 1 && n_tasks > 1)
      pool->parallel_for(n_tasks, [&](int64_t t, int tid) { run(t, tid); });
    else
      for (int64_t t = 0; t < n_tasks; ++t) run(t, 0);
    return;
  }

  // Flash-decoding: each split writes its partial state; merge afterwards.
  const int64_t per_part = R * (hd + 2);
  float* parts = scratch(tls_split_buf, size_t(n_tasks * per_part));
  pool->parallel_for(n_tasks, [&](int64_t task, int) {
    const int64_t sp = task % n_split, base = task / n_split;
    const int64_t g = base / n_qtiles, qi = base % n_qtiles;
    const int64_t i0 = qi * qt, i1 = std::min(a.n_q, i0 + qt);
    int64_t kb, ke;
    key_range(i0, i1, kb, ke);
    const int64_t chunk = ((ke - kb + n_split - 1) / n_split + 15) / 16 * 16;
    const int64_t b = std::min(ke, kb + sp * chunk), e = std::min(ke, b + chunk);
    float* acc = parts + task * per_part;
    HWY_DYNAMIC_DISPATCH(AttnPartial)(a, kv, mask, g, i0, i1, b, e, acc, acc + R * hd);
  });
  for (int64_t base = 0; base < base_tasks; ++base) {
    const int64_t g = base / n_qtiles, qi = base % n_qtiles;
    const int64_t i0 = qi * qt, i1 = std::min(a.n_q, i0 + qt);
    for (int64_t rho = 0; rho < (i1 - i0) * r; ++rho) {
      const int64_t i = i0 + rho / r, h = g * r + rho % r;
      float M = -std::numeric_limits<float>::infinity();
      for (int64_t sp = 0; sp < n_split; ++sp) {
        const float* ml = parts + (base * n_split + sp) * per_part + R * hd + 2 * rho;
        M = std::max(M, ml[0]);
      }
      float* o = a.out + i * a.out_token_stride + h * hd;
      std::fill(o, o + hd, 0.0f);
      if (M == -std::numeric_limits<float>::infinity()) continue;
      float L = 0;
      for (int64_t sp = 0; sp < n_split; ++sp) {
        const float* part = parts + (base * n_split + sp) * per_part;
        const float* ml = part + R * hd + 2 * rho;
        if (ml[0] == -std::numeric_limits<float>::infinity()) continue;
        const float w = std::exp(ml[0] - M);
        L += ml[1] * w;
        const float* acc = part + rho * hd;
        for (int64_t x = 0; x < hd; ++x) o[x] += w * acc[x];
      }
      const float inv = 1.0f / L;
      for (int64_t x = 0; x < hd; ++x) o[x] *= inv;
    }
  }
}
}  // namespace dflash::kernels
#endif
