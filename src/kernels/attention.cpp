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
#include "util/aligned.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace dflash::kernels::HWY_NAMESPACE {
namespace {  // internal linkage: target functions of other kernels may use the same names
using namespace ops_simd;  // NOLINT

constexpr int64_t kBk = 16;        // keys per tile: K and V tiles of 16 rows stay in L1 across the task's rows
constexpr int64_t kMaxRows = 32;   // query rows per task (see kRowsPerTask below)

// S[r][x] = q_r · k_x for 2 rows × 4 keys at a time: each loaded q and k vector feeds several FMAs
// (a plain dot product is load-bound at one FMA per two loads).
template <int NR, int NK>
HWY_INLINE void DotBlock(const float* const* q, const float* k, int64_t ts, int64_t hd, float* S, int64_t s_stride) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  VF acc[NR][NK];
  for (int r = 0; r < NR; ++r)
    for (int x = 0; x < NK; ++x) acc[r][x] = hn::Zero(d);
  int64_t i = 0;
  for (; i + N <= hd; i += N) {
    VF kv[NK];
    for (int x = 0; x < NK; ++x) kv[x] = hn::LoadU(d, k + x * ts + i);
    for (int r = 0; r < NR; ++r) {
      const VF qv = hn::LoadU(d, q[r] + i);
      for (int x = 0; x < NK; ++x) acc[r][x] = hn::MulAdd(qv, kv[x], acc[r][x]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int x = 0; x < NK; ++x) {
      float v = hn::GetLane(hn::SumOfLanes(d, acc[r][x]));
      for (int64_t t = i; t < hd; ++t) v += q[r][t] * k[x * ts + t];
      S[r * s_stride + x] = v;
    }
}

template <int NR>
HWY_INLINE void DotRows(const float* const* q, const float* k, int64_t ts, int64_t nk, int64_t hd, float* S) {
  int64_t x = 0;
  for (; x + 4 <= nk; x += 4) DotBlock<NR, 4>(q, k + x * ts, ts, hd, S + x, kBk);
  for (; x < nk; ++x) DotBlock<NR, 1>(q, k + x * ts, ts, hd, S + x, kBk);
}

// acc_r[0..hd) += Σ_j p_r[j]·v_j for NR rows sharing every loaded V vector.
template <int NR>
HWY_INLINE void PvRows(float* acc, int64_t hd, const float* P, const float* v, int64_t nk, int64_t ts) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  int64_t d0 = 0;
  for (; d0 + 2 * N <= hd; d0 += 2 * N) {
    VF a[NR][2];
    for (int r = 0; r < NR; ++r) {
      a[r][0] = hn::LoadU(d, acc + r * hd + d0);
      a[r][1] = hn::LoadU(d, acc + r * hd + d0 + N);
    }
    for (int64_t j = 0; j < nk; ++j) {
      const VF v0 = hn::LoadU(d, v + j * ts + d0), v1 = hn::LoadU(d, v + j * ts + d0 + N);
      for (int r = 0; r < NR; ++r) {
        const VF p = hn::Set(d, P[r * kBk + j]);
        a[r][0] = hn::MulAdd(p, v0, a[r][0]);
        a[r][1] = hn::MulAdd(p, v1, a[r][1]);
      }
    }
    for (int r = 0; r < NR; ++r) {
      hn::StoreU(a[r][0], d, acc + r * hd + d0);
      hn::StoreU(a[r][1], d, acc + r * hd + d0 + N);
    }
  }
  for (; d0 + N <= hd; d0 += N) {
    for (int r = 0; r < NR; ++r) {
      VF a0 = hn::LoadU(d, acc + r * hd + d0);
      for (int64_t j = 0; j < nk; ++j) a0 = hn::MulAdd(hn::Set(d, P[r * kBk + j]), hn::LoadU(d, v + j * ts + d0), a0);
      hn::StoreU(a0, d, acc + r * hd + d0);
    }
  }
  for (; d0 < hd; ++d0)
    for (int r = 0; r < NR; ++r)
      for (int64_t j = 0; j < nk; ++j) acc[r * hd + d0] += P[r * kBk + j] * v[j * ts + d0];
}

// Unnormalised online-softmax state of the query rows of tile [i0, i1) × the heads of kv head g over
// keys [kb, ke), heads g·r + [hh0, hh1): acc (R × hd), ml (R × {m, l}); row rho = (i − i0)·nh + (h − g·r − hh0).
// R = (i1 − i0)·(hh1 − hh0) ≤ kMaxRows.
// Per key tile: scores of all rows (blocked dots), mask, per-row max/rescale/exp, then P·V for
// groups of 4 rows. Masked entries become p = 0, so rows share one key range.
void AttnPartial(const AttnArgs& a, const KvView& kv, const AttnMask& mask, int64_t g, int64_t hh0,
                 int64_t hh1, int64_t i0, int64_t i1, int64_t kb, int64_t ke, float* acc, float* ml) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t r = a.n_head / kv.n_kv_head, hd = kv.head_dim, ts = kv.token_stride;
  const int64_t nh = hh1 - hh0, R = (i1 - i0) * nh;
  const float* qp[kMaxRows];
  for (int64_t rho = 0; rho < R; ++rho) {
    ml[2 * rho] = kNegInf;
    ml[2 * rho + 1] = 0.0f;
    std::fill(acc + rho * hd, acc + (rho + 1) * hd, 0.0f);
    const int64_t i = i0 + rho / nh, h = g * r + hh0 + rho % nh;
    qp[rho] = a.q + i * a.q_token_stride + h * a.q_head_stride;
  }
  const float* kbase = kv.k + g * kv.head_stride;
  const float* vbase = kv.v + g * kv.head_stride;
  HWY_ALIGN float S[kMaxRows * kBk];
  for (int64_t t0 = kb; t0 < ke; t0 += kBk) {
    const int64_t nk = std::min(kBk, ke - t0);
    const float* kt = kbase + t0 * ts;
    int64_t rho = 0;
    for (; rho + 2 <= R; rho += 2) DotRows<2>(qp + rho, kt, ts, nk, hd, S + rho * kBk);
    if (rho < R) DotRows<1>(qp + rho, kt, ts, nk, hd, S + rho * kBk);

    for (rho = 0; rho < R; ++rho) {
      const int64_t i = i0 + rho / nh;
      float* s = S + rho * kBk;
      int64_t lo = t0, hi = t0 + nk;
      if (mask.kind == MaskKind::kCausal) {
        const int64_t qpos = mask.q_pos0 + i;
        hi = std::min(hi, qpos + 1);
        if (mask.window > 0) lo = std::max(lo, qpos - mask.window + 1);
      }
      for (int64_t jj = 0; jj < kBk; ++jj) {
        const int64_t j = t0 + jj;
        float v = kNegInf;
        if (j >= lo && j < hi) {
          v = s[jj] * a.scale;
          if (mask.kind == MaskKind::kBool && !mask.allowed[i * mask.mask_stride + j]) v = kNegInf;
          if (mask.kind == MaskKind::kAdditive) v += mask.bias[i * mask.mask_stride + j];
        }
        s[jj] = v;
      }
      VF vmax = hn::Load(d, s);
      for (int64_t jj = N; jj < kBk; jj += N) vmax = hn::Max(vmax, hn::Load(d, s + jj));
      const float tmax = hn::GetLane(hn::MaxOfLanes(d, vmax));
      if (!(tmax > kNegInf)) {  // nothing visible in this tile: contributes nothing
        for (int64_t jj = 0; jj < kBk; ++jj) s[jj] = 0.0f;
        continue;
      }
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
      if (corr != 1.0f) Scale(acc + rho * hd, corr, hd);
    }

    const float* vt = vbase + t0 * ts;
    rho = 0;
    for (; rho + 4 <= R; rho += 4) PvRows<4>(acc + rho * hd, hd, S + rho * kBk, vt, nk, ts);
    switch (R - rho) {
      case 3: PvRows<3>(acc + rho * hd, hd, S + rho * kBk, vt, nk, ts); break;
      case 2: PvRows<2>(acc + rho * hd, hd, S + rho * kBk, vt, nk, ts); break;
      case 1: PvRows<1>(acc + rho * hd, hd, S + rho * kBk, vt, nk, ts); break;
      default: break;
    }
  }
}

}  // namespace
}  // namespace dflash::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dflash::kernels {
HWY_EXPORT(AttnPartial);

namespace {
// Grows on first use, then reused: no allocation in steady state.
float* scratch(util::AlignedVector<float>& buf, size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}
thread_local util::AlignedVector<float> tls_task_buf;  // cache-line aligned rows
thread_local util::AlignedVector<float> tls_split_buf;

// Query rows (queries × heads of a group) per task: each K/V tile read serves them all.
constexpr int64_t kRowsPerTask = 32;
// Long key ranges are processed in segments of this many keys at absolute positions (0, 512, ...),
// each to a partial softmax state, merged in order. The segments depend only on the keys in the
// cache, never on the number of queries or threads, so a query's result is the same bits whether it
// comes alone (decode) or in a block (verify): greedy speculative decoding stays lossless at any
// context length. (The split used to depend on the task count, and verify rows differed from decode
// from ~1k tokens of context on.) The segments also give one-query decoding its parallelism.
constexpr int64_t kKeySegment = 512;

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
  // A task: kv head g × a slice of its query heads × a tile of queries, ≤ kRowsPerTask rows.
  const int64_t hs = std::min(r, kRowsPerTask);
  const int64_t n_hslices = (r + hs - 1) / hs;
  const int64_t qt = std::max<int64_t>(1, std::min<int64_t>(a.n_q, kRowsPerTask / hs));
  const int64_t n_qtiles = (a.n_q + qt - 1) / qt;
  const int64_t base_tasks = kv.n_kv_head * n_hslices * n_qtiles;
  const int threads = pool ? pool->size() : 1;

  struct Task {
    int64_t g, hh0, hh1, i0, i1, kb, ke;
  };
  auto task_of = [&](int64_t base) {
    Task t;
    const int64_t qi = base % n_qtiles, rest = base / n_qtiles;
    t.g = rest / n_hslices;
    t.hh0 = (rest % n_hslices) * hs;
    t.hh1 = std::min(r, t.hh0 + hs);
    t.i0 = qi * qt;
    t.i1 = std::min(a.n_q, t.i0 + qt);
    // Key range: the union of the rows' visible ranges.
    t.kb = 0;
    t.ke = kv.n_tokens;
    if (mask.kind == MaskKind::kCausal) {
      t.ke = std::max<int64_t>(0, std::min(t.ke, mask.q_pos0 + t.i1));
      if (mask.window > 0) t.kb = std::min(t.ke, std::max<int64_t>(0, mask.q_pos0 + t.i0 - mask.window + 1));
    }
    return t;
  };
  auto out_row = [&](const Task& t, int64_t rho) {
    const int64_t nh = t.hh1 - t.hh0;
    const int64_t i = t.i0 + rho / nh, h = t.g * r + t.hh0 + rho % nh;
    return a.out + i * a.out_token_stride + h * hd;
  };

  const int64_t n_split = std::max<int64_t>(1, (kv.n_tokens + kKeySegment - 1) / kKeySegment);
  const int64_t R = qt * hs;
  const int64_t n_tasks = base_tasks * n_split;

  if (n_split == 1) {
    auto run = [&](int64_t task, int) {
      const Task t = task_of(task);
      float* acc = scratch(tls_task_buf, size_t(R * (hd + 2)));
      float* ml = acc + R * hd;
      HWY_DYNAMIC_DISPATCH(AttnPartial)(a, kv, mask, t.g, t.hh0, t.hh1, t.i0, t.i1, t.kb, t.ke, acc, ml);
      for (int64_t rho = 0; rho < (t.i1 - t.i0) * (t.hh1 - t.hh0); ++rho)
        write_normalised(acc + rho * hd, ml + 2 * rho, hd, out_row(t, rho));
    };
    if (pool && threads > 1 && n_tasks > 1)
      pool->parallel_for(n_tasks, [&](int64_t t, int tid) { run(t, tid); });
    else
      for (int64_t t = 0; t < n_tasks; ++t) run(t, 0);
    return;
  }

  // Key segments: each writes its partial state (an empty one: m = −inf); merge afterwards.
  const int64_t per_part = R * (hd + 2);
  float* parts = scratch(tls_split_buf, size_t(n_tasks * per_part));
  auto run_part = [&](int64_t task, int) {
    const int64_t sp = task % n_split;
    const Task t = task_of(task / n_split);
    const int64_t b = std::max(t.kb, sp * kKeySegment), e = std::min(t.ke, (sp + 1) * kKeySegment);
    float* acc = parts + task * per_part;
    if (b >= e) {
      for (int64_t rho = 0; rho < R; ++rho) {
        acc[R * hd + 2 * rho] = -std::numeric_limits<float>::infinity();
        acc[R * hd + 2 * rho + 1] = 0.0f;
      }
      return;
    }
    HWY_DYNAMIC_DISPATCH(AttnPartial)(a, kv, mask, t.g, t.hh0, t.hh1, t.i0, t.i1, b, e, acc, acc + R * hd);
  };
  if (pool && threads > 1)
    pool->parallel_for(n_tasks, run_part);
  else
    for (int64_t t = 0; t < n_tasks; ++t) run_part(t, 0);
  const float kNegInf = -std::numeric_limits<float>::infinity();
  for (int64_t base = 0; base < base_tasks; ++base) {
    const Task t = task_of(base);
    for (int64_t rho = 0; rho < (t.i1 - t.i0) * (t.hh1 - t.hh0); ++rho) {
      float M = kNegInf;
      for (int64_t sp = 0; sp < n_split; ++sp) M = std::max(M, parts[(base * n_split + sp) * per_part + R * hd + 2 * rho]);
      float* o = out_row(t, rho);
      std::fill(o, o + hd, 0.0f);
      if (M == kNegInf) continue;
      float L = 0;
      for (int64_t sp = 0; sp < n_split; ++sp) {
        const float* part = parts + (base * n_split + sp) * per_part;
        const float* ml = part + R * hd + 2 * rho;
        if (ml[0] == kNegInf) continue;
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
