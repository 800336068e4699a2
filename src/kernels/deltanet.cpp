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
#include "util/thread_pool.h"

HWY_BEFORE_NAMESPACE();
namespace dflash::kernels::HWY_NAMESPACE {
namespace {  // internal linkage: target functions of other kernels may use the same names
using namespace ops_simd;  // NOLINT

// row · k summed exactly as DeltaRows' fused pass sums the next token's row · k (one vector
// accumulator over the chunks in order, then the lanes, then the tail with fma): a token's kv must be
// the same bits whether the token starts a call (decode: every token) or follows another in it
// (verify), or greedy speculative decoding stops being lossless. (Dot's four accumulators differ in
// the last bits.)
HWY_INLINE float DotAsFused(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  VF acc = hn::Zero(d);
  int64_t i = 0;
  for (; i + N <= n; i += N) acc = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), acc);
  float r = hn::GetLane(hn::SumOfLanes(d, acc));
  for (; i < n; ++i) r = std::fma(a[i], b[i], r);
  return r;
}

// Rows [j0, j0+NR) of one head's value-major state over all tokens. Each row of Sᵀ evolves
// independently of the others (kv[j], delta[j] and o[j] only involve row j), so a few rows are
// carried through the whole token sequence while they sit in L1: the state is read and written once
// per call instead of once per token, and every loaded k/q vector serves NR rows. One pass per
// token computes new = decay·row + delta·k_t, o_t = new·q_t and the next token's new·k_{t+1}.
// src (may be null) holds the rows before token t0 when they are not in st yet: the first token
// reads them from src and writes st, so a checkpointed state is never copied.
template <int NR>
HWY_INLINE void DeltaRows(const DeltaShape& sh, int64_t h, int64_t j0, float* st, const float* src,
                          const DeltaInputs& in, int64_t t0, int64_t t1, const float* decays, float* out,
                          int64_t out_stride) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const int64_t dk = sh.dk, dv = sh.dv, a = sh.qk_head(h), Hv = sh.n_v_heads;
  float* row[NR];
  const float* rd[NR];  // where this token's old row is read from
  float rk[NR];  // row · k_t for the coming token
  for (int r = 0; r < NR; ++r) {
    row[r] = st + (j0 + r) * dk;
    rd[r] = src ? src + (j0 + r) * dk : row[r];
    rk[r] = DotAsFused(rd[r], in.k + t0 * in.k_stride + a * dk, dk);
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
        const VF nw = hn::MulAdd(hn::Set(d, delta[r]), kv, hn::Mul(vdec, hn::LoadU(d, rd[r] + i)));
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
        const float nw = decay * rd[r][i] + delta[r] * k[i];
        row[r][i] = nw;
        if (q) oq[r] += nw * q[i];
        if (kn) rk[r] = std::fma(nw, kn[i], rk[r]);
      }
    if (out)
      for (int r = 0; r < NR; ++r) out[t * out_stride + h * dv + j0 + r] = oq[r];
    for (int r = 0; r < NR; ++r) rd[r] = row[r];
  }
}

// All tokens of one value head, recurrent form. st: Dv rows of Dk (value-major).
void DeltaRecurrentHead(const DeltaShape& sh, int64_t h, float* st, const float* src, const DeltaInputs& in,
                        float* out, int64_t out_stride) {
  // Token blocks keep the block's k/q rows (kTokBlock · 2 · Dk floats) in L1 while all state rows
  // pass through; the state goes through L1 once per block.
  constexpr int64_t kTokBlock = 16;
  for (int64_t t0 = 0; t0 < in.n_tokens; t0 += kTokBlock) {
    const int64_t t1 = std::min(in.n_tokens, t0 + kTokBlock);
    float decays[kTokBlock];
    for (int64_t t = t0; t < t1; ++t) decays[t - t0] = std::exp(in.g[t * sh.n_v_heads + h]);
    int64_t j = 0;
    const float* from = t0 == 0 ? src : nullptr;
    // Rows carried together: every token's kv and o reductions of a row wait on that row's previous
    // token, so more rows in flight hide that latency. AVX-512 (32 registers) holds 8 rows' 16
    // accumulators (16 heads of 128², 16 tokens in place, 1 thread: 504 → 419 µs; the 0.8B shape's
    // decode 85 → 77–79 µs per layer); AVX2's 16 registers hold 4. A block that reads its rows from a
    // checkpoint (src: a verify) keeps 4: 8 source plus 8 destination rows streaming at once made the
    // 0.8B shape's 16-token verify slower (337 → 419–443 µs per layer). Each row's arithmetic is the
    // same either way, so are the bits.
#if HWY_TARGET <= HWY_AVX3
    constexpr int kRowsTogether = 8;
#else
    constexpr int kRowsTogether = 4;
#endif
    if (from) {
      for (; j + 4 <= sh.dv; j += 4) DeltaRows<4>(sh, h, j, st, from, in, t0, t1, decays, out, out_stride);
    } else {
      for (; j + kRowsTogether <= sh.dv; j += kRowsTogether)
        DeltaRows<kRowsTogether>(sh, h, j, st, from, in, t0, t1, decays, out, out_stride);
    }
    for (; j < sh.dv; ++j) DeltaRows<1>(sh, h, j, st, from, in, t0, t1, decays, out, out_stride);
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

// res[x·NJ + y] = a_x · b_y for NI rows a and NJ rows b (b_y = b + y·b_stride), length n.
template <int NI, int NJ>
HWY_INLINE void DotTile(const float* const* a, const float* b, int64_t b_stride, int64_t n, float* res) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  VF acc[NI][NJ];
  for (int x = 0; x < NI; ++x)
    for (int y = 0; y < NJ; ++y) acc[x][y] = hn::Zero(d);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    VF bv[NJ];
    for (int y = 0; y < NJ; ++y) bv[y] = hn::LoadU(d, b + y * b_stride + i);
    for (int x = 0; x < NI; ++x) {
      const VF av = hn::LoadU(d, a[x] + i);
      for (int y = 0; y < NJ; ++y) acc[x][y] = hn::MulAdd(av, bv[y], acc[x][y]);
    }
  }
  for (int x = 0; x < NI; ++x)
    for (int y = 0; y < NJ; ++y) {
      float v = hn::GetLane(hn::SumOfLanes(d, acc[x][y]));
      for (int64_t t = i; t < n; ++t) v += a[x][t] * b[y * b_stride + t];
      res[x * NJ + y] = v;
    }
}

// emit(i, j, row_i · st_j) for i < n (rows from row(i)) and every state row j < dv.
template <class RowFn, class Emit>
HWY_INLINE void RowProducts(int64_t n, RowFn row, const float* st, int64_t dk, int64_t dv, Emit emit) {
  float res[8];
  int64_t j = 0;
  for (; j + 4 <= dv; j += 4) {
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
      const float* a[2] = {row(i), row(i + 1)};
      DotTile<2, 4>(a, st + j * dk, dk, dk, res);
      for (int x = 0; x < 2; ++x)
        for (int y = 0; y < 4; ++y) emit(i + x, j + y, res[x * 4 + y]);
    }
    if (i < n) {
      const float* a[1] = {row(i)};
      DotTile<1, 4>(a, st + j * dk, dk, dk, res);
      for (int y = 0; y < 4; ++y) emit(i, j + y, res[y]);
    }
  }
  for (; j < dv; ++j)
    for (int64_t i = 0; i < n; ++i) {
      const float* a[1] = {row(i)};
      DotTile<1, 1>(a, st + j * dk, dk, dk, res);
      emit(i, j, res[0]);
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
    // V' = U − W S and the inter-chunk output diag(exp(c)) Q S: dots of token rows with state rows,
    // 2 × 4 at a time so every loaded vector feeds several FMAs.
    RowProducts(n, [&](int64_t i) { return W + i * dk; }, st, dk, dv,
                [&](int64_t i, int64_t j, float x) { U[i * dv + j] -= x; });
    if (out)
      RowProducts(n, qrow, st, dk, dv, [&](int64_t i, int64_t j, float x) {
        out[(t0 + i) * out_stride + h * dv + j] = ec[i] * x;
      });
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
                          int64_t out_stride, util::ThreadPool* pool, const float* state_in) {
  if (in.n_tokens <= 0) {
    if (state_in && state_in != state)
      std::memcpy(state, state_in, sizeof(float) * size_t(s.n_v_heads * s.dv * s.dk));
    return;
  }
  if (state_in == state) state_in = nullptr;
  const int64_t head = s.dv * s.dk;
  for_heads(pool, s.n_v_heads, [&](int64_t h) {
    HWY_DYNAMIC_DISPATCH(DeltaRecurrentHead)(s, h, state + h * head, state_in ? state_in + h * head : nullptr, in,
                                             out, out_stride);
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
