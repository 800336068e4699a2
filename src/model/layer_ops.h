// The operations the Qwen3.5 and DFlash forwards are written in. Each is one step of the equations;
// the heavy ones (matmul, attention, delta rule, conv) forward to kernels/, the rest is glue that
// fixes the Qwen3.5 data layout (which slice of qkv is q, tiled value heads, interleaved q/gate).
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.h"
#include "util/thread_pool.h"

namespace dflash::model::ops {

// y[m][out] = x[m][in] · Wᵀ  (W ne = {in, out})
void matmul(const tensor::Tensor& w, const float* x, int64_t m, float* y, util::ThreadPool& pool);
// Rows of an embedding table (any supported dtype) → f32.
void embed(const tensor::Tensor& table, const int32_t* tokens, int64_t m, float* out);
// out = x̂ · w over rows of n (w already holds the +1 of zero-centred norms). In place allowed.
void rmsnorm(const float* x, const float* w, int64_t rows, int64_t n, float eps, float* out);
void add(float* x, const float* y, int64_t n);
// With a pool, large arrays are split over its threads (same results).
void mul_sigmoid(float* x, const float* gate, int64_t n, util::ThreadPool* pool = nullptr);
// out = silu(g) · u
void swiglu(const float* g, const float* u, int64_t n, float* out, util::ThreadPool* pool = nullptr);

// ---- Gated DeltaNet ----
// beta = σ(b); g = softplus(a + dt_bias) · ssm_a, per token and value head. beta may alias b.
void deltanet_gates(const float* b, const float* a, const float* dt_bias, const float* ssm_a, int64_t m,
                    int64_t hv, float* beta, float* g);
// Causal depthwise conv (kernel K, weights [C][K]) over [window ; x], then SiLU. The window holds
// the previous K−1 pre-conv rows and is advanced past x.
void conv1d_silu(const float* x, int64_t m, int64_t c, const float* w, int64_t k, float* window, float* out,
                 util::ThreadPool* pool = nullptr);
// The window after feeding n more rows of x onto `window` (without computing outputs).
void conv_window_after(const float* window, const float* x, int64_t n, int64_t c, int64_t k, float* out);
// In rows of [q (Hk·Dk) | k (Hk·Dk) | v (…)]: l2-normalise q and k per head, then q *= 1/sqrt(Dk).
void deltanet_qk_norm(float* qkv, int64_t m, int64_t row, int64_t hk, int64_t dk, float eps);
// Recurrent gated delta rule over m tokens (rows of qkv as above), state S [Hv][Dk][Dv], value
// head j reading q/k head j mod Hk. o: [m][Hv][Dv]. If inter is set, the state after every token
// is appended to it. S_in (optional): read the starting state from there and write S (a verify on
// top of a checkpoint, which stays untouched and uncopied).
void deltanet_recurrent(const float* qkv, int64_t m, int64_t row, int64_t hk, int64_t hv, int64_t dk, int64_t dv,
                        const float* g, const float* beta, float* S, float* o, std::vector<float>* inter,
                        util::ThreadPool& pool, const float* S_in = nullptr);
// Same result (to rounding) by the chunked algorithm, for prefill.
void deltanet_chunked(const float* qkv, int64_t m, int64_t row, int64_t hk, int64_t hv, int64_t dk, int64_t dv,
                      const float* g, const float* beta, float* S, float* o, int chunk, util::ThreadPool& pool);
// State updates only, from recorded k [n][Hk][Dk], v [n][Hv][Dv], g, beta [n][Hv] (tape replay).
void deltanet_replay(const float* k, const float* v, const float* g, const float* beta, int64_t n, int64_t hk,
                     int64_t hv, int64_t dk, int64_t dv, float* S, util::ThreadPool& pool);
// out = rmsnorm(o)·w·silu(z) per row of d (rows = tokens × heads). In place allowed.
void gated_rmsnorm(const float* o, const float* z, const float* w, int64_t rows, int64_t d, float eps, float* out,
                   util::ThreadPool* pool = nullptr);

// ---- attention ----
// attn_q rows hold per head [query (hd) | gate (hd)]; split into q [m][nh][hd] and gate.
void split_query_gate(const float* qg, int64_t m, int64_t nh, int64_t hd, float* q, float* gate);
// RMSNorm of every head slice of [m][nheads][hd] in place (q_norm / k_norm).
void head_rmsnorm(float* x, const float* w, int64_t m, int64_t nheads, int64_t hd, float eps);
// NeoX RoPE on the first n_rot dims of each head, token t at position pos0 + t.
void rope_neox(float* x, int64_t m, int64_t nheads, int64_t hd, int64_t n_rot, int64_t pos0, float theta);
// KV caches are head-major [n_kv][capacity][hd] (kernels/attention.h says why). Appends m token
// rows [m][n_kv][hd] at positions pos0...
void kv_append(float* cache, const float* rows, int64_t m, int64_t nkv, int64_t hd, int64_t capacity, int64_t pos0);
// Causal attention of m queries at positions pos0.. over the cache rows [0, pos0 + m), GQA.
void attention_causal(const float* q, int64_t m, int64_t nh, int64_t hd, const float* kcache, const float* vcache,
                      int64_t nkv, int64_t capacity, int64_t pos0, float* out, util::ThreadPool& pool);

// Attention of m block queries at positions pos0.. over cache keys [0, n_keys) (the block's own
// keys included). window == 0: no mask (every query sees every key, the DFlash drafter);
// window > 0: causal with a sliding window (drafter sliding_attention layers).
void attention_block(const float* q, int64_t m, int64_t nh, int64_t hd, const float* kcache, const float* vcache,
                     int64_t nkv, int64_t capacity, int64_t n_keys, int64_t pos0, int64_t window, float* out,
                     util::ThreadPool& pool);

// ---- MoE FFN: softmax router, top-k renormalised, SwiGLU experts, sigmoid-gated shared expert ----
void moe_ffn(const tensor::Tensor& gate_inp, const tensor::Tensor& gate_exps, const tensor::Tensor& up_exps,
             const tensor::Tensor& down_exps, int64_t n_used, const tensor::Tensor* gate_sh,
             const tensor::Tensor* up_sh, const tensor::Tensor* down_sh, const tensor::Tensor* gate_inp_sh,
             const float* x, int64_t m, int64_t n_embd, float* out, float* buf_a, float* buf_b, float* router,
             util::ThreadPool& pool);

}  // namespace dflash::model::ops
