#include "kernels/hwy_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/deltanet.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/ops_simd-inl.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/deltanet.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace dflash::kernels::HWY_NAMESPACE {

// row = row·decay + delta·k, returns row_new·q (q may be null). Uses (decay·row)·k = decay·(row·k)
// so the caller gets kv from one read pass and the update is a single read-write pass.
HWY_INLINE float RowUpdate(float* HWY_RESTRICT row, float decay, float delta, const float* HWY_RESTRICT k,
                           const float* HWY_RESTRICT q, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const VF vdec = hn::Set(d, decay), vdel = hn::Set(d, delta);
  VF s0 = hn::Zero(d), s1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const VF r0 = hn::MulAdd(vdel, hn::LoadU(d, k + i), hn::Mul(vdec, hn::LoadU(d, row + i)));
    const VF r1 = hn::MulAdd(vdel, hn::LoadU(d, k + i + N), hn::Mul(vdec, hn::LoadU(d, row + i + N)));
    hn::StoreU(r0, d, row + i);
    hn::StoreU(r1, d, row + i + N);
    if (q) {
      s0 = hn::MulAdd(r0, hn::LoadU(d, q + i), s0);
      s1 = hn::MulAdd(r1, hn::LoadU(d, q + i + N), s1);
    }
  }
  for (; i + N <= n; i += N) {
    const VF r0 = hn::MulAdd(vdel, hn::LoadU(d, k + i), hn::Mul(vdec, hn::LoadU(d, row + i)));
    hn::StoreU(r0, d, row + i);
    if (q) s0 = hn::MulAdd(r0, hn::LoadU(d, q + i), s0);
  }
  float o = hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
  for (; i < n; ++i) {
    row[i] = row[i] * decay + delta * k[i];
    if (q) o += row[i] * q[i];
  }
  return o;
}

// All tokens of one value head, recurrent form. st: Dv rows of Dk (value-major).
void DeltaRecurrentHead(const DeltaShape& sh, int64_t h, float* st, const DeltaInputs& in, float* out,
                        int64_t out_stride) {
  const int64_t dk = sh.dk, dv = sh.dv, a = sh.qk_head(h);
  for (int64_t t = 0; t < in.n_tokens; ++t) {
    const float* k = in.k + t * in.k_stride + a * dk;
    const float* v = in.v + t * in.v_stride + h * dv;
    const float* q = out ? in.q + t * in.q_stride + a * dk : nullptr;
    const float decay = std::exp(in.g[t * sh.n_v_heads + h]);
    const float beta = in.beta[t * sh.n_v_heads + h];
    float* o = out ? out + t * out_stride + h * dv : nullptr;
    for (int64_t j = 0; j < dv; ++j) {
      float* row = st + j * dk;
      const float kv = decay * Dot(row, k, dk);
      const float delta = (v[j] - kv) * beta;
      const float oj = RowUpdate(row, decay, delta, k, q, dk);
      if (o) o[j] = oj;
    }
  }
}

// row = row·decay + Σ_i coef[i]·x_i (x_i = x + i*dk), row held in registers per 4-vector slice.
HWY_INLINE void RowAccumulate(float* HWY_RESTRICT row, float decay, const float* HWY_RESTRICT coef,
                              const float* HWY_RESTRICT x, int64_t n_terms, int64_t dk) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const VF vdec = hn::Set(d, decay);
  int64_t c0 = 0;
  for (; c0 + 4 * N <= dk; c0 += 4 * N) {
    VF a0 = hn::Mul(vdec, hn::LoadU(d, row + c0)), a1 = hn::Mul(vdec, hn::LoadU(d, row + c0 + N));
    VF a2 = hn::Mul(vdec, hn::LoadU(d, row + c0 + 2 * N)), a3 = hn::Mul(vdec, hn::LoadU(d, row + c0 + 3 * N));
    for (int64_t i = 0; i < n_terms; ++i) {
      const VF ci = hn::Set(d, coef[i]);
      const float* xr = x + i * dk + c0;
      a0 = hn::MulAdd(ci, hn::LoadU(d, xr), a0);
      a1 = hn::MulAdd(ci, hn::LoadU(d, xr + N), a1);
      a2 = hn::MulAdd(ci, hn::LoadU(d, xr + 2 * N), a2);
      a3 = hn::MulAdd(ci, hn::LoadU(d, xr + 3 * N), a3);
    }
    hn::StoreU(a0, d, row + c0);
    hn::StoreU(a1, d, row + c0 + N);
    hn::StoreU(a2, d, row + c0 + 2 * N);
    hn::StoreU(a3, d, row + c0 + 3 * N);
  }
  for (; c0 + N <= dk; c0 += N) {
    VF a0 = hn::Mul(vdec, hn::LoadU(d, row + c0));
    for (int64_t i = 0; i < n_terms; ++i) a0 = hn::MulAdd(hn::Set(d, coef[i]), hn::LoadU(d, x + i * dk + c0), a0);
    hn::StoreU(a0, d, row + c0);
  }
  for (; c0 < dk; ++c0) {
    float acc = row[c0] * decay;
    for (int64_t i = 0; i < n_terms; ++i) acc += coef[i] * x[i * dk + c0];
    row[c0] = acc;
  }
}

// All tokens of one value head, chunked (WY) form; see deltanet.h for the equations.
// scratch: at least DeltaChunkScratch(C, dk, dv) floats.
void DeltaChunkedHead(const DeltaShape& sh, int64_t h, float* st, const DeltaInputs& in, float* out,
                      int64_t out_stride, int64_t C, float* scratch) {
  const int64_t dk = sh.dk, dv = sh.dv, a = sh.qk_head(h), Hv = sh.n_v_heads;
  float* c = scratch;           // C: in-chunk cumsum of g
  float* ec = c + C;            // C: exp(c)
  float* coef = ec + C;         // C
  float* A = coef + C;          // C×C: A[i][j] = β_i (k_i·k_j) exp(c_i − c_j), j < i
  float* QK = A + C * C;        // C×C: (q_i·k_j) exp(c_i − c_j), j ≤ i
  float* U = QK + C * C;        // C×dv: U, then V' = U − W S
  float* W = U + C * dv;        // C×dk: W, then kd_i = k_i exp(c_last − c_i)
  for (int64_t t0 = 0; t0 < in.n_tokens; t0 += C) {
    const int64_t n = std::min(C, in.n_tokens - t0);
    auto krow = [&](int64_t i) { return in.k + (t0 + i) * in.k_stride + a * dk; };
    auto qrow = [&](int64_t i) { return in.q + (t0 + i) * in.q_stride + a * dk; };
    auto vrow = [&](int64_t i) { return in.v + (t0 + i) * in.v_stride + h * dv; };
    float acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      acc += in.g[(t0 + i) * Hv + h];
      c[i] = acc;
      ec[i] = std::exp(acc);
    }
    // A and the forward substitution (I + A) U = diag(β) V, (I + A) W = diag(β·exp(c)) K.
    for (int64_t i = 0; i < n; ++i) {
      const float beta = in.beta[(t0 + i) * Hv + h];
      const float* ki = krow(i);
      float* Ui = U + i * dv;
      float* Wi = W + i * dk;
      for (int64_t x = 0; x < dv; ++x) Ui[x] = beta * vrow(i)[x];
      const float bw = beta * ec[i];
      for (int64_t x = 0; x < dk; ++x) Wi[x] = bw * ki[x];
      for (int64_t j = 0; j < i; ++j) {
        const float aij = beta * Dot(ki, krow(j), dk) * std::exp(c[i] - c[j]);
        A[i * C + j] = aij;
        Axpy(Ui, -aij, U + j * dv, dv);
        Axpy(Wi, -aij, W + j * dk, dk);
      }
    }
    // V' = U − W S and the inter-chunk output diag(exp(c)) Q S, one pass over the state rows.
    for (int64_t j = 0; j < dv; ++j) {
      const float* row = st + j * dk;
      for (int64_t i = 0; i < n; ++i) {
        U[i * dv + j] -= Dot(W + i * dk, row, dk);
        if (out) out[(t0 + i) * out_stride + h * dv + j] = ec[i] * Dot(qrow(i), row, dk);
      }
    }
    // Intra-chunk output: o_i += Σ_{j ≤ i} (q_i·k_j) exp(c_i − c_j) V'_j.
    if (out) {
      for (int64_t i = 0; i < n; ++i) {
        float* o = out + (t0 + i) * out_stride + h * dv;
        for (int64_t j = 0; j <= i; ++j) {
          const float w = Dot(qrow(i), krow(j), dk) * std::exp(c[i] - c[j]);
          QK[i * C + j] = w;
          Axpy(o, w, U + j * dv, dv);
        }
      }
    }
    // S ← exp(c_last) S + Σ_i (k_i exp(c_last − c_i)) ⊗ V'_i, i.e. row j of Sᵀ gets Σ_i V'_i[j]·kd_i.
    const float clast = c[n - 1];
    for (int64_t i = 0; i < n; ++i) {
      const float f = std::exp(clast - c[i]);
      const float* ki = krow(i);
      float* kd = W + i * dk;
      for (int64_t x = 0; x < dk; ++x) kd[x] = f * ki[x];
    }
    const float elast = ec[n - 1];
    for (int64_t j = 0; j < dv; ++j) {
      for (int64_t i = 0; i < n; ++i) coef[i] = U[i * dv + j];
      RowAccumulate(st + j * dk, elast, coef, W, n, dk);
    }
  }
}

}  // namespace dflash::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dflash::kernels {
HWY_EXPORT(DeltaRecurrentHead);
HWY_EXPORT(DeltaChunkedHead);

namespace {
thread_local std::vector<float> tls_chunk_buf;

template <class F>
void for_heads(util::ThreadPool* pool, int64_t n_heads, F&& f) {
  if (pool && pool->size() > 1 && n_heads > 1)
    pool->parallel_for(n_heads, [&](int64_t h, int) { f(h); });
  else
    for (int64_t h = 0; h < n_heads; ++h) f(h);
}
}  // namespace

void delta_rule_recurrent(const DeltaShape& s, float* state, const DeltaInputs& in, float* out,
                          int64_t out_stride, util::ThreadPool* pool) {
  if (in.n_tokens <= 0) return;
  for_heads(pool, s.n_v_heads, [&](int64_t h) {
    HWY_DYNAMIC_DISPATCH(DeltaRecurrentHead)(s, h, state + h * s.dv * s.dk, in, out, out_stride);
  });
}

void delta_rule_chunked(const DeltaShape& s, float* state, const DeltaInputs& in, float* out,
                        int64_t out_stride, int64_t chunk, util::ThreadPool* pool) {
  if (in.n_tokens <= 0) return;
  const int64_t C = std::max<int64_t>(1, chunk);
  const size_t need = size_t(3 * C + 2 * C * C + C * s.dv + C * s.dk);
  for_heads(pool, s.n_v_heads, [&](int64_t h) {
    if (tls_chunk_buf.size() < need) tls_chunk_buf.resize(need);
    HWY_DYNAMIC_DISPATCH(DeltaChunkedHead)(s, h, state + h * s.dv * s.dk, in, out, out_stride, C,
                                           tls_chunk_buf.data());
  });
}
}  // namespace dflash::kernels
#endif
