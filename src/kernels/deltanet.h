// Gated delta rule (the recurrent core of Gated DeltaNet), f32.
//
// Per value head with state S ∈ R^{Dk×Dv}, per token (q, k already L2-normalised, q already scaled by
// Dk^-0.5 — see l2norm_heads; g = log-decay ≤ 0; beta = post-sigmoid):
//   S = S·exp(g);  kv = Sᵀk;  delta = (v − kv)·beta;  S = S + k⊗delta;  o = Sᵀq
//
// State layout: Dk-major, state[h][i][j] = S[i][j] (Hv × Dk × Dv, as transformers/FLA keep it). Every
// column j of S evolves on its own, so the kernel carries panels of columns, in vectors, through a call's
// tokens: Sᵀk and Sᵀq are sums of S's rows scaled by broadcast k_i / q_i, with no horizontal reductions.
//
// Token inputs: q and k of qk-head a at q + t*q_stride + a*Dk (same for k with k_stride); v of value
// head h at v + t*v_stride + h*Dv; g and beta at g[t*Hv + h]; output o at out + t*out_stride + h*Dv.
#pragma once

#include <cstdint>

namespace dflash::util {
class ThreadPool;
}

namespace dflash::kernels {

// Which q/k head serves value head h (r = Hv / Hk):
//   kGrouped: h / r (HF safetensors layout, repeat_interleave)
//   kTiled:   h % Hk (llama.cpp GGUF layout, after its V-head reorder)
enum class HeadMap { kGrouped, kTiled };

struct DeltaShape {
  int64_t n_k_heads = 0;  // Hk
  int64_t n_v_heads = 0;  // Hv, a multiple of Hk
  int64_t dk = 0;
  int64_t dv = 0;
  HeadMap map = HeadMap::kGrouped;
  int64_t qk_head(int64_t h) const {
    return map == HeadMap::kGrouped ? h / (n_v_heads / n_k_heads) : h % n_k_heads;
  }
};

struct DeltaInputs {
  const float* q = nullptr;  // may be null when out is null (tape replay)
  const float* k = nullptr;
  const float* v = nullptr;
  const float* g = nullptr;
  const float* beta = nullptr;
  int64_t q_stride = 0, k_stride = 0, v_stride = 0;  // elements between tokens
  int64_t n_tokens = 0;
};

// Sequential recurrent form over n_tokens tokens. out may be null: state update only (replaying a
// tape of recorded k, v, g, beta onto a restored state). A panel of columns (64 on AVX-512, 16 on AVX2)
// is carried through all the tokens, in an L1 scratch between the first and the last (state memory
// traffic once per call; each broadcast k_i / q_i serves the panel). Feeding T tokens in one call gives the bits
// of T one-token calls. On CPUs this is also the fastest prefill path: for Dk = Dv = 128 and chunk 64
// the chunked form below does more FLOPs than this one (its win on GPUs comes from tensor-core
// matmuls), see bench/ops_bench.cpp.
// state_in (optional): the state before the first token is read from there and the result written
// to state, leaving state_in untouched — a verify runs on top of a checkpoint without copying it.
void delta_rule_recurrent(const DeltaShape& s, float* state, const DeltaInputs& in, float* out,
                          int64_t out_stride, util::ThreadPool* pool = nullptr, const float* state_in = nullptr);

// Chunked (WY / UT-transform) form for prefill: same result as the recurrent form up to rounding.
// Per chunk of C tokens (c = in-chunk cumsum of g, D[i][j] = exp(c_i − c_j)):
//   A = strict_lower(diag(β) K Kᵀ ⊙ D);  (I + A) U = diag(β) V;  (I + A) W = diag(β exp(c)) K
//   V' = U − W S;  O = diag(exp(c)) Q S + (Q Kᵀ ⊙ D ⊙ lower_incl) V'
//   S ← exp(c_last) S + (diag(exp(c_last − c)) K)ᵀ V'
// Uses per-thread scratch that grows on first use.
void delta_rule_chunked(const DeltaShape& s, float* state, const DeltaInputs& in, float* out,
                        int64_t out_stride, int64_t chunk = 64, util::ThreadPool* pool = nullptr);

}  // namespace dflash::kernels
