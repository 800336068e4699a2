#include "kernels/hwy_targets.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/deltanet.cpp"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/ops_simd-inl.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/deltanet.h"
#include "util/aligned.h"
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace dflash::kernels::HWY_NAMESPACE {
namespace {  // internal linkage: target functions of other kernels may use the same names
using namespace ops_simd;  // NOLINT

// The state is Dk-major (S[i][j] at i·Dv + j), so the kernel works on panels of columns: column j of S
// evolves on its own (kv[j], delta[j] and o[j] only involve column j), and within a panel every
// reduction over i — Sᵀk and Sᵀq — is a sum of rows scaled by broadcast k_i / q_i, vertical adds with
// no horizontal reduction and no latency chain through one: the value-major layout before (one row of Sᵀ
// per value, a dot product per row and token) spent a third of its uops and most of its latency on lane
// sums. A panel is carried through all the call's tokens: the first reads the state where it is, the last
// writes it back, the tokens between work on an L1 scratch copy (Dv-strided rows would crowd a few L1 sets).
//
// Panel: kPanelVecs vectors (columns); kAcc accumulators per reduction, interleaved over i (i mod kAcc),
// combined in order. Every column's arithmetic depends on kAcc only, never on the panel or the token's
// place in a call, so a verify of T tokens gives the bits of T one-token decodes.
#if HWY_TARGET <= HWY_AVX3
constexpr int kPanelVecs = 4;
#else
constexpr int kPanelVecs = 2;
#endif
constexpr int kAcc = 2;

// One token on a panel: P ← decay·R + k ⊗ delta (rows ldr / ldp floats apart; R may be P), and, when
// asked, o = Pᵀq and the next token's raw kv = Pᵀk_next.
template <bool kOut, bool kNext>
HWY_INLINE void PanelToken(const float* R, int64_t ldr, float* P, int64_t ldp, int64_t dk, const float* HWY_RESTRICT k,
                           const float* HWY_RESTRICT q, const float* HWY_RESTRICT kn, VF vdec, const VF* delta,
                           VF* o, VF* kv_next) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  VF ao[kPanelVecs][kAcc], an[kPanelVecs][kAcc];
  for (int p = 0; p < kPanelVecs; ++p)
    for (int u = 0; u < kAcc; ++u) ao[p][u] = an[p][u] = hn::Zero(d);
  auto step = [&](int64_t i, int u) HWY_ATTR {
    const VF kb = hn::Set(d, k[i]);
    [[maybe_unused]] const VF qb = kOut ? hn::Set(d, q[i]) : hn::Zero(d);
    [[maybe_unused]] const VF nb = kNext ? hn::Set(d, kn[i]) : hn::Zero(d);
    const float* rrow = R + i * ldr;
    float* row = P + i * ldp;
#pragma GCC unroll 4
    for (int p = 0; p < kPanelVecs; ++p) {
      const VF s = hn::MulAdd(kb, delta[p], hn::Mul(vdec, hn::LoadU(d, rrow + p * N)));
      hn::StoreU(s, d, row + p * N);
      if constexpr (kOut) ao[p][u] = hn::MulAdd(qb, s, ao[p][u]);
      if constexpr (kNext) an[p][u] = hn::MulAdd(nb, s, an[p][u]);
    }
  };
  int64_t i = 0;
  for (; i + 2 <= dk; i += 2) {
    step(i, 0);
    step(i + 1, 1);
  }
  if (i < dk) step(i, 0);
  for (int p = 0; p < kPanelVecs; ++p) {
    if constexpr (kOut) o[p] = hn::Add(ao[p][0], ao[p][1]);
    if constexpr (kNext) kv_next[p] = hn::Add(an[p][0], an[p][1]);
  }
}

// Columns [j0, j0 + w) of one head through all the call's tokens. S0: the state before the first
// token (src or st); the result goes to st. P: dk × W floats of scratch, vector-aligned.
void DeltaPanel(const DeltaShape& sh, int64_t h, int64_t j0, int64_t w, float* st, const float* S0,
                const DeltaInputs& in, float* out, int64_t out_stride, float* HWY_RESTRICT P) {
  static_assert(kAcc == 2, "PanelToken combines two accumulators");
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d)), W = kPanelVecs * N;
  const int64_t dk = sh.dk, dv = sh.dv, a = sh.qk_head(h), Hv = sh.n_v_heads;
  const bool full = w == W;
  // A full panel's first token reads S0 and its last writes st (a one-token call, decoding, never touches
  // the scratch); a partial panel is copied in zero-padded and out again. Same arithmetic either way.
  // The first token's raw kv = Σ_i k_i S[i][j], summed as PanelToken sums (a partial panel: copied in).
  VF kv[kPanelVecs];
  {
    const float* k0 = in.k + a * dk;
    VF acc[kPanelVecs][kAcc];
    for (int p = 0; p < kPanelVecs; ++p)
      for (int u = 0; u < kAcc; ++u) acc[p][u] = hn::Zero(d);
    auto step = [&](int64_t i, int u) HWY_ATTR {
      const float* row = S0 + i * dv + j0;
      if (!full) {
        float* prow = P + i * W;
        for (int64_t x = 0; x < W; ++x) prow[x] = x < w ? row[x] : 0.0f;
        row = prow;
      }
      const VF kb = hn::Set(d, k0[i]);
#pragma GCC unroll 4
      for (int p = 0; p < kPanelVecs; ++p) acc[p][u] = hn::MulAdd(kb, hn::LoadU(d, row + p * N), acc[p][u]);
    };
    int64_t i = 0;
    for (; i + 2 <= dk; i += 2) {
      step(i, 0);
      step(i + 1, 1);
    }
    if (i < dk) step(i, 0);
    for (int p = 0; p < kPanelVecs; ++p) kv[p] = hn::Add(acc[p][0], acc[p][1]);
  }
  HWY_ALIGN float pad[kPanelVecs * 16];  // v and o of a partial panel (≥ W floats)
  for (int64_t t = 0; t < in.n_tokens; ++t) {
    const float* k = in.k + t * in.k_stride + a * dk;
    const float* kn = t + 1 < in.n_tokens ? k + in.k_stride : nullptr;
    const float* q = out ? in.q + t * in.q_stride + a * dk : nullptr;
    const float* v = in.v + t * in.v_stride + h * dv + j0;
    if (!full) {
      for (int64_t x = 0; x < W; ++x) pad[x] = x < w ? v[x] : 0.0f;
      v = pad;
    }
    const VF vdec = hn::Set(d, std::exp(in.g[t * Hv + h]));
    const VF vbeta = hn::Set(d, in.beta[t * Hv + h]);
    VF delta[kPanelVecs], o[kPanelVecs];
    for (int p = 0; p < kPanelVecs; ++p) {
      o[p] = hn::Zero(d);
      delta[p] = hn::Mul(hn::Sub(hn::LoadU(d, v + p * N), hn::Mul(vdec, kv[p])), vbeta);
    }
    const bool first = full && t == 0, last = full && !kn;
    const float* R = first ? S0 + j0 : P;
    float* Wr = last ? st + j0 : P;
    const int64_t ldr = first ? dv : W, ldw = last ? dv : W;
    if (q && kn)
      PanelToken<true, true>(R, ldr, Wr, ldw, dk, k, q, kn, vdec, delta, o, kv);
    else if (q)
      PanelToken<true, false>(R, ldr, Wr, ldw, dk, k, q, kn, vdec, delta, o, kv);
    else if (kn)
      PanelToken<false, true>(R, ldr, Wr, ldw, dk, k, q, kn, vdec, delta, o, kv);
    else
      PanelToken<false, false>(R, ldr, Wr, ldw, dk, k, q, kn, vdec, delta, o, kv);
    if (out) {
      float* orow = out + t * out_stride + h * dv + j0;
      if (full) {
        for (int p = 0; p < kPanelVecs; ++p) hn::StoreU(o[p], d, orow + p * N);
      } else {
        for (int p = 0; p < kPanelVecs; ++p) hn::Store(o[p], d, pad + p * N);
        for (int64_t x = 0; x < w; ++x) orow[x] = pad[x];
      }
    }
  }
  if (full) return;
  for (int64_t i = 0; i < dk; ++i)
    for (int64_t x = 0; x < w; ++x) st[i * dv + j0 + x] = P[i * W + x];
}

// All tokens of one value head, recurrent form. st: Dk rows of Dv; src (may be null): the state
// before the first token when it is not st.
void DeltaRecurrentHead(const DeltaShape& sh, int64_t h, float* st, const float* src, const DeltaInputs& in,
                        float* out, int64_t out_stride, float* scratch) {
  const DF d;
  const int64_t W = kPanelVecs * int64_t(hn::Lanes(d));
  for (int64_t j0 = 0; j0 < sh.dv; j0 += W)
    DeltaPanel(sh, h, j0, std::min(W, sh.dv - j0), st, src ? src : st, in, out, out_stride, scratch);
}

// row = row·decay + Σ_i coef[i]·x_i (x_i = x + i·len, rows of len floats), row held in registers per
// 4-vector slice.
HWY_INLINE void RowAccumulate(float* HWY_RESTRICT row, float decay, const float* HWY_RESTRICT coef,
                              const float* HWY_RESTRICT x, int64_t n_terms, int64_t len) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const VF vdec = hn::Set(d, decay);
  int64_t c0 = 0;
  for (; c0 + 4 * N <= len; c0 += 4 * N) {
    VF a0 = hn::Mul(vdec, hn::LoadU(d, row + c0)), a1 = hn::Mul(vdec, hn::LoadU(d, row + c0 + N));
    VF a2 = hn::Mul(vdec, hn::LoadU(d, row + c0 + 2 * N)), a3 = hn::Mul(vdec, hn::LoadU(d, row + c0 + 3 * N));
    for (int64_t i = 0; i < n_terms; ++i) {
      const VF ci = hn::Set(d, coef[i]);
      const float* xr = x + i * len + c0;
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
  for (; c0 + N <= len; c0 += N) {
    VF a0 = hn::Mul(vdec, hn::LoadU(d, row + c0));
    for (int64_t i = 0; i < n_terms; ++i) a0 = hn::MulAdd(hn::Set(d, coef[i]), hn::LoadU(d, x + i * len + c0), a0);
    hn::StoreU(a0, d, row + c0);
  }
  for (; c0 < len; ++c0) {
    float acc = row[c0] * decay;
    for (int64_t i = 0; i < n_terms; ++i) acc += coef[i] * x[i * len + c0];
    row[c0] = acc;
  }
}

// res[i·dv + j] = row(i) · S[:, j] for i < n (S Dk-major: rows of S scaled by row(i)'s entries and
// summed), 2 token rows × 4 vectors of columns at a time so every loaded S vector feeds two FMAs.
template <class RowFn>
HWY_INLINE void StateProducts(int64_t n, RowFn row, const float* st, int64_t dk, int64_t dv, float* res) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  for (int64_t i = 0; i < n; i += 2) {
    const bool two = i + 1 < n;
    const float* a0 = row(i);
    const float* a1 = two ? row(i + 1) : a0;
    float* r0 = res + i * dv;
    float* r1 = two ? r0 + dv : nullptr;
    int64_t j = 0;
    for (; j + 4 * N <= dv; j += 4 * N) {
      VF c0[4], c1[4];
      for (int u = 0; u < 4; ++u) c0[u] = c1[u] = hn::Zero(d);
      for (int64_t x = 0; x < dk; ++x) {
        const float* sr = st + x * dv + j;
        const VF b0 = hn::Set(d, a0[x]), b1 = hn::Set(d, a1[x]);
        for (int u = 0; u < 4; ++u) {
          const VF sv = hn::LoadU(d, sr + u * N);
          c0[u] = hn::MulAdd(b0, sv, c0[u]);
          c1[u] = hn::MulAdd(b1, sv, c1[u]);
        }
      }
      for (int u = 0; u < 4; ++u) {
        hn::StoreU(c0[u], d, r0 + j + u * N);
        if (two) hn::StoreU(c1[u], d, r1 + j + u * N);
      }
    }
    for (; j + N <= dv; j += N) {
      VF c0 = hn::Zero(d), c1 = hn::Zero(d);
      for (int64_t x = 0; x < dk; ++x) {
        const VF sv = hn::LoadU(d, st + x * dv + j);
        c0 = hn::MulAdd(hn::Set(d, a0[x]), sv, c0);
        c1 = hn::MulAdd(hn::Set(d, a1[x]), sv, c1);
      }
      hn::StoreU(c0, d, r0 + j);
      if (two) hn::StoreU(c1, d, r1 + j);
    }
    for (; j < dv; ++j) {
      float s0 = 0, s1 = 0;
      for (int64_t x = 0; x < dk; ++x) {
        s0 += a0[x] * st[x * dv + j];
        s1 += a1[x] * st[x * dv + j];
      }
      r0[j] = s0;
      if (two) r1[j] = s1;
    }
  }
}

// All tokens of one value head, chunked (WY) form; see deltanet.h for the equations.
// scratch: 3·C + 2·C·dv + C·dk floats.
void DeltaChunkedHead(const DeltaShape& sh, int64_t h, float* st, const DeltaInputs& in, float* out,
                      int64_t out_stride, int64_t C, float* scratch) {
  const int64_t dk = sh.dk, dv = sh.dv, a = sh.qk_head(h), Hv = sh.n_v_heads;
  float* c = scratch;           // C: in-chunk cumsum of g
  float* ec = c + C;            // C: exp(c)
  float* coef = ec + C;         // C
  float* U = coef + C;          // C×dv: U, then V' = U − W S
  float* W = U + C * dv;        // C×dk: W, then kd_i = k_i exp(c_last − c_i)
  float* T = W + C * dk;        // C×dv: products with the state
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
    // V' = U − W S and the inter-chunk output diag(exp(c)) Q S.
    StateProducts(n, [&](int64_t i) { return W + i * dk; }, st, dk, dv, T);
    Axpy(U, -1.0f, T, n * dv);
    if (out) {
      StateProducts(n, qrow, st, dk, dv, T);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < dv; ++j) out[(t0 + i) * out_stride + h * dv + j] = ec[i] * T[i * dv + j];
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
    // S ← exp(c_last) S + Σ_i (k_i exp(c_last − c_i)) ⊗ V'_i, i.e. row x of S gets Σ_i kd_i[x]·V'_i.
    const float clast = c[n - 1];
    for (int64_t i = 0; i < n; ++i) {
      const float f = std::exp(clast - c[i]);
      const float* ki = krow(i);
      float* kd = W + i * dk;
      for (int64_t x = 0; x < dk; ++x) kd[x] = f * ki[x];
    }
    const float elast = ec[n - 1];
    for (int64_t x = 0; x < dk; ++x) {
      for (int64_t i = 0; i < n; ++i) coef[i] = W[i * dk + x];
      RowAccumulate(st + x * dv, elast, coef, U, n, dv);
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
thread_local util::AlignedVector<float> tls_panel_buf;  // one panel: dk rows of up to 4 vectors of 16 floats

template <class F>
void for_heads(util::ThreadPool* pool, int64_t n_heads, F&& f) {
  if (pool && pool->size() > 1 && n_heads > 1)
    pool->parallel_for(n_heads, [&](int64_t h, int) { f(h); });
  else
    for (int64_t h = 0; h < n_heads; ++h) f(h);
}
}  // namespace

void delta_rule_recurrent(const DeltaShape& s, float* state, const DeltaInputs& in, float* out,
                          int64_t out_stride, util::ThreadPool* pool, const float* state_in) {
  if (in.n_tokens <= 0) {
    if (state_in && state_in != state)
      std::memcpy(state, state_in, sizeof(float) * size_t(s.n_v_heads * s.dv * s.dk));
    return;
  }
  if (state_in == state) state_in = nullptr;
  const int64_t head = s.dv * s.dk;
  const size_t panel = size_t(s.dk) * 4 * 16;
  for_heads(pool, s.n_v_heads, [&](int64_t h) {
    if (tls_panel_buf.size() < panel) tls_panel_buf.resize(panel);
    HWY_DYNAMIC_DISPATCH(DeltaRecurrentHead)(s, h, state + h * head, state_in ? state_in + h * head : nullptr, in,
                                             out, out_stride, tls_panel_buf.data());
  });
}

void delta_rule_chunked(const DeltaShape& s, float* state, const DeltaInputs& in, float* out,
                        int64_t out_stride, int64_t chunk, util::ThreadPool* pool) {
  if (in.n_tokens <= 0) return;
  const int64_t C = std::max<int64_t>(1, chunk);
  const size_t need = size_t(3 * C + 2 * C * s.dv + C * s.dk);
  for_heads(pool, s.n_v_heads, [&](int64_t h) {
    if (tls_chunk_buf.size() < need) tls_chunk_buf.resize(need);
    HWY_DYNAMIC_DISPATCH(DeltaChunkedHead)(s, h, state + h * s.dv * s.dk, in, out, out_stride, C,
                                           tls_chunk_buf.data());
  });
}
}  // namespace dflash::kernels
#endif
