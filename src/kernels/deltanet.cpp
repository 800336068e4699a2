#include "kernels/hwy_targets.h"
#ifndef DFLASH_DELTA_NR
#define DFLASH_DELTA_NR 4
#endif

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
namespace {  // internal linkage: target functions of other kernels may use the same names
using namespace ops_simd;  // NOLINT

// Rows [j0, j0+NR) of one head's value-major state over all tokens. Each row of Sᵀ evolves
// independently of the others (kv[j], delta[j] and o[j] only involve row j), so a few rows are
// carried through the whole token sequence while they sit in L1: the state is read and written once
// per call instead of once per token, and every loaded k/q vector serves NR rows. One pass per
// token computes new = decay·row + delta·k_t, o_t = new·q_t and the next token's new·k_{t+1}.
template <int NR>
HWY_INLINE void DeltaRows(const DeltaShape& sh, int64_t h, int64_t j0, float* st, const DeltaInputs& in,
                          int64_t t0, int64_t t1, const float* decays, float* out, int64_t out_stride) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const int64_t dk = sh.dk, dv = sh.dv, a = sh.qk_head(h), Hv = sh.n_v_heads;
  float* row[NR];
  float rk[NR];  // row · k_t for the coming token
  for (int r = 0; r < NR; ++r) {
    row[r] = st + (j0 + r) * dk;
    rk[r] = Dot(row[r], in.k + t0 * in.k_stride + a * dk, dk);
  }
  for (int64_t t = t0; t < t1; ++t) {
    const float* k = in.k + t * in.k_stride + a * dk;
    const float* kn = t + 1 < t1 ? k + in.k_stride : nullptr;
    const float* q = out ? in.q + t * in.q_stride + a * dk : nullptr;
    const float* v = in.v + t * in.v_stride + h * dv;
    const float decay = decays[t - t0];
    const float beta = in.beta[t * Hv + h];
    float delta[NR];
    for (int r = 0; r < NR; ++r) delta[r] = (v[j0 + r] - decay * rk[r]) * beta;
    const VF vdec = hn::Set(d, decay);
    VF aq[NR], ak[NR];
    for (int r = 0; r < NR; ++r) {
      aq[r] = hn::Zero(d);
      ak[r] = hn::Zero(d);
    }
    int64_t i = 0;
    for (; i + N <= dk; i += N) {
      const VF kv = hn::LoadU(d, k + i);
      const VF qv = q ? hn::LoadU(d, q + i) : hn::Zero(d);
      const VF knv = kn ? hn::LoadU(d, kn + i) : hn::Zero(d);
      for (int r = 0; r < NR; ++r) {
        const VF nw = hn::MulAdd(hn::Set(d, delta[r]), kv, hn::Mul(vdec, hn::LoadU(d, row[r] + i)));
        hn::StoreU(nw, d, row[r] + i);
        aq[r] = hn::MulAdd(nw, qv, aq[r]);
        ak[r] = hn::MulAdd(nw, knv, ak[r]);
      }
    }
    float oq[NR];
    for (int r = 0; r < NR; ++r) {
      oq[r] = hn::GetLane(hn::SumOfLanes(d, aq[r]));
      rk[r] = hn::GetLane(hn::SumOfLanes(d, ak[r]));
    }
    for (; i < dk; ++i)
      for (int r = 0; r < NR; ++r) {
        const float nw = decay * row[r][i] + delta[r] * k[i];
        row[r][i] = nw;
        if (q) oq[r] += nw * q[i];
        if (kn) rk[r] += nw * kn[i];
      }
    if (out)
      for (int r = 0; r < NR; ++r) out[t * out_stride + h * dv + j0 + r] = oq[r];
  }
}

// All tokens of one value head, recurrent form. st: Dv rows of Dk (value-major).
void DeltaRecurrentHead(const DeltaShape& sh, int64_t h, float* st, const DeltaInputs& in, float* out,
                        int64_t out_stride) {
  // Token blocks keep the block's k/q rows (kTokBlock · 2 · Dk floats) in L1 while all state rows
  // pass through; the state goes through L1 once per block.
  constexpr int64_t kTokBlock = 16;
  for (int64_t t0 = 0; t0 < in.n_tokens; t0 += kTokBlock) {
    const int64_t t1 = std::min(in.n_tokens, t0 + kTokBlock);
    float decays[kTokBlock];
    for (int64_t t = t0; t < t1; ++t) decays[t - t0] = std::exp(in.g[t * sh.n_v_heads + h]);
    int64_t j = 0;
    for (; j + DFLASH_DELTA_NR <= sh.dv; j += DFLASH_DELTA_NR)
      DeltaRows<DFLASH_DELTA_NR>(sh, h, j, st, in, t0, t1, decays, out, out_stride);
    for (; j < sh.dv; ++j) DeltaRows<1>(sh, h, j, st, in, t0, t1, decays, out, out_stride);
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
// scratch: 3·C + C·dv + C·dk floats.
void DeltaChunkedHead(const DeltaShape& sh, int64_t h, float* st, const DeltaInputs& in, float* out,
                      int64_t out_stride, int64_t C, float* scratch) {
  const int64_t dk = sh.dk, dv = sh.dv, a = sh.qk_head(h), Hv = sh.n_v_heads;
  float* c = scratch;           // C: in-chunk cumsum of g
  float* ec = c + C;            // C: exp(c)
  float* coef = ec + C;         // C
  float* U = coef + C;          // C×dv: U, then V' = U − W S
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
    // Forward substitution (I + A) U = diag(β) V, (I + A) W = diag(β·exp(c)) K, with
    // A[i][j] = β_i (k_i·k_j) exp(c_i − c_j) for j < i consumed as it is computed.
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

}  // namespace
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
  const size_t need = size_t(3 * C + C * s.dv + C * s.dk);
  for_heads(pool, s.n_v_heads, [&](int64_t h) {
    if (tls_chunk_buf.size() < need) tls_chunk_buf.resize(need);
    HWY_DYNAMIC_DISPATCH(DeltaChunkedHead)(s, h, state + h * s.dv * s.dk, in, out, out_stride, C,
                                           tls_chunk_buf.data());
  });
}
}  // namespace dflash::kernels
#endif
