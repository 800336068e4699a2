// Model-side glue over kernels/: the heavy loops are the kernels'; what is here fixes Qwen3.5's data
// layout (qkv row slices, tiled value heads, interleaved q/gate, expert slices).
#include "model/layer_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/quant.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/conv1d.h"
#include "kernels/deltanet.h"
#include "kernels/matmul.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "util/profile.h"

namespace dflash::model::ops {

using tensor::DType;
using tensor::Tensor;

namespace {
inline float sigmoid1(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float softplus1(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

kernels::DeltaShape delta_shape(int64_t hk, int64_t hv, int64_t dk, int64_t dv) {
  kernels::DeltaShape s;
  s.n_k_heads = hk;
  s.n_v_heads = hv;
  s.dk = dk;
  s.dv = dv;
  s.map = kernels::HeadMap::kTiled;  // GGUF order: value head j reads q/k head j mod Hk
  return s;
}

// "blk.7.ffn_up.weight" → "ffn_up.weight": one profile row per weight role, summed over layers.
std::string_view role(const std::string& name) {
  std::string_view v(name);
  if (v.substr(0, 4) != "blk.") return v.empty() ? std::string_view("matmul") : v;
  const size_t dot = v.find('.', 4);
  return dot == std::string_view::npos ? v : v.substr(dot + 1);
}
}  // namespace

void matmul(const Tensor& w, const float* x, int64_t m, float* y, util::ThreadPool& pool) {
  util::profile::Scope ps(util::profile::enabled() ? role(w.name) : std::string_view());
  kernels::matmul(w, x, m, y, pool);
}

void embed(const Tensor& table, const int32_t* tokens, int64_t m, float* out) {
  util::profile::Scope ps("embed");
  const int64_t n = table.ne[0];
  for (int64_t t = 0; t < m; ++t) formats::dequantize_row(table.dtype, table.row(tokens[t]), out + t * n, n);
}

void rmsnorm(const float* x, const float* w, int64_t rows, int64_t n, float eps, float* out) {
  util::profile::Scope ps("rmsnorm");
  kernels::rmsnorm(x, w, out, rows, n, eps);
}

void add(float* x, const float* y, int64_t n) {
  util::profile::Scope ps("add");
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

namespace {
// Element-wise work of a verify block or a prefill chunk (tens of thousands of elements, each an exp
// and a divide) is split over the pool; a decode step's few thousand are not worth a dispatch. Each
// element's result is the same in any chunk (the kernels' tails use the body's vector math).
constexpr int64_t kParallelElems = 8192;
template <class F>
void split_elems(util::ThreadPool* pool, int64_t n, int64_t unit, F&& f) {
  if (!pool || pool->size() < 2 || n * unit < kParallelElems) {
    f(int64_t(0), n);
    return;
  }
  pool->parallel_range(n, std::max<int64_t>(1, kParallelElems / 2 / unit), [&](int64_t b, int64_t e, int) { f(b, e); });
}
}  // namespace

void mul_sigmoid(float* x, const float* gate, int64_t n, util::ThreadPool* pool) {
  util::profile::Scope ps("mul_sigmoid");
  split_elems(pool, n, 1, [&](int64_t b, int64_t e) { kernels::mul_sigmoid(x + b, gate + b, x + b, e - b); });
}

void swiglu(const float* g, const float* u, int64_t n, float* out, util::ThreadPool* pool) {
  util::profile::Scope ps("swiglu");
  split_elems(pool, n, 1, [&](int64_t b, int64_t e) { kernels::swiglu(g + b, u + b, out + b, e - b); });
}

void deltanet_gates(const float* b, const float* a, const float* dt_bias, const float* ssm_a, int64_t m,
                    int64_t hv, float* beta, float* g) {
  util::profile::Scope ps("deltanet_gates");
  for (int64_t t = 0; t < m; ++t)
    for (int64_t j = 0; j < hv; ++j) {
      const int64_t i = t * hv + j;
      g[i] = softplus1(a[i] + dt_bias[j]) * ssm_a[j];
      beta[i] = sigmoid1(b[i]);
    }
}

void conv1d_silu(const float* x, int64_t m, int64_t c, const float* w, int64_t k, float* window, float* out,
                 util::ThreadPool* pool) {
  util::profile::Scope ps("conv1d_silu");
  kernels::causal_conv1d(x, c, w, window, out, c, m, c, k, /*fuse_silu=*/true, pool);
}

void conv_window_after(const float* window, const float* x, int64_t n, int64_t c, int64_t k, float* out) {
  util::profile::Scope ps("conv_window_after");
  if (out != window) std::memcpy(out, window, static_cast<size_t>((k - 1) * c) * sizeof(float));
  kernels::causal_conv1d_push(x, c, out, n, c, k);
}

void deltanet_qk_norm(float* qkv, int64_t m, int64_t row, int64_t hk, int64_t dk, float eps) {
  util::profile::Scope ps("deltanet_qk_norm");
  kernels::l2norm_heads(qkv, m, hk, dk, row, dk, eps, 1.0f / std::sqrt(static_cast<float>(dk)));
  kernels::l2norm_heads(qkv + hk * dk, m, hk, dk, row, dk, eps, 1.0f);
}

void deltanet_recurrent(const float* qkv, int64_t m, int64_t row, int64_t hk, int64_t hv, int64_t dk, int64_t dv,
                        const float* g, const float* beta, float* S, float* o, std::vector<float>* inter,
                        util::ThreadPool& pool, const float* S_in) {
  util::profile::Scope ps("deltanet_recurrent");
  const kernels::DeltaShape s = delta_shape(hk, hv, dk, dv);
  const int64_t kd = hk * dk;
  auto inputs = [&](int64_t t0, int64_t n) {
    kernels::DeltaInputs in;
    in.q = qkv + t0 * row;
    in.k = qkv + t0 * row + kd;
    in.v = qkv + t0 * row + 2 * kd;
    in.g = g + t0 * hv;
    in.beta = beta + t0 * hv;
    in.q_stride = in.k_stride = in.v_stride = row;
    in.n_tokens = n;
    return in;
  };
  if (!inter) {
    kernels::delta_rule_recurrent(s, S, inputs(0, m), o, hv * dv, &pool, S_in);
    return;
  }
  // Oracle mode: one token at a time, keeping every intermediate state.
  const size_t state = static_cast<size_t>(hv * dk * dv);
  if (S_in && S_in != S) std::memcpy(S, S_in, state * sizeof(float));
  for (int64_t t = 0; t < m; ++t) {
    kernels::delta_rule_recurrent(s, S, inputs(t, 1), o + t * hv * dv, hv * dv, &pool);
    inter->insert(inter->end(), S, S + state);
  }
}

void deltanet_chunked(const float* qkv, int64_t m, int64_t row, int64_t hk, int64_t hv, int64_t dk, int64_t dv,
                      const float* g, const float* beta, float* S, float* o, int chunk, util::ThreadPool& pool) {
  util::profile::Scope ps("deltanet_chunked");
  const int64_t kd = hk * dk;
  kernels::DeltaInputs in;
  in.q = qkv;
  in.k = qkv + kd;
  in.v = qkv + 2 * kd;
  in.g = g;
  in.beta = beta;
  in.q_stride = in.k_stride = in.v_stride = row;
  in.n_tokens = m;
  kernels::delta_rule_chunked(delta_shape(hk, hv, dk, dv), S, in, o, hv * dv, chunk, &pool);
}

void deltanet_replay(const float* k, const float* v, const float* g, const float* beta, int64_t n, int64_t hk,
                     int64_t hv, int64_t dk, int64_t dv, float* S, util::ThreadPool& pool) {
  util::profile::Scope ps("deltanet_replay");
  kernels::DeltaInputs in;
  in.k = k;
  in.v = v;
  in.g = g;
  in.beta = beta;
  in.k_stride = hk * dk;
  in.v_stride = hv * dv;
  in.n_tokens = n;
  kernels::delta_rule_recurrent(delta_shape(hk, hv, dk, dv), S, in, nullptr, 0, &pool);
}

void gated_rmsnorm(const float* o, const float* z, const float* w, int64_t rows, int64_t d, float eps, float* out,
                   util::ThreadPool* pool) {
  util::profile::Scope ps("gated_rmsnorm");
  split_elems(pool, rows, d, [&](int64_t b, int64_t e) {
    kernels::rmsnorm_gated(o + b * d, z + b * d, w, out + b * d, e - b, d, eps);
  });
}

void split_query_gate(const float* qg, int64_t m, int64_t nh, int64_t hd, float* q, float* gate) {
  util::profile::Scope ps("split_query_gate");
  for (int64_t t = 0; t < m; ++t)
    for (int64_t h = 0; h < nh; ++h) {
      const float* src = qg + (t * nh + h) * 2 * hd;
      std::memcpy(q + (t * nh + h) * hd, src, static_cast<size_t>(hd) * sizeof(float));
      std::memcpy(gate + (t * nh + h) * hd, src + hd, static_cast<size_t>(hd) * sizeof(float));
    }
}

void head_rmsnorm(float* x, const float* w, int64_t m, int64_t nheads, int64_t hd, float eps) {
  util::profile::Scope ps("head_rmsnorm");
  kernels::rmsnorm_heads(x, w, m, nheads, hd, nheads * hd, hd, eps);
}

void rope_neox(float* x, int64_t m, int64_t nheads, int64_t hd, int64_t n_rot, int64_t pos0, float theta) {
  util::profile::Scope ps("rope_neox");
  // q and k of every attention layer of a forward rotate the same positions, so the cos/sin table (a
  // pow, a cos and a sin per pair and position: most of the op, 25 µs per drafter call at 16 × 64
  // pairs) is kept for the last two position ranges instead of being rebuilt per call.
  struct Table {
    int64_t pos0 = -1, m = 0, n_rot = 0;
    float theta = 0.0f;
    std::vector<float> cs;
  };
  thread_local Table cache[2];
  thread_local int victim = 0;
  Table* t = nullptr;
  for (Table& c : cache)
    if (c.pos0 == pos0 && c.m == m && c.n_rot == n_rot && c.theta == theta) t = &c;
  if (!t) {
    t = &cache[victim];
    victim ^= 1;
    thread_local std::vector<int64_t> pos;  // a new range comes every forward: no allocation then
    pos.resize(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) pos[static_cast<size_t>(i)] = pos0 + i;
    t->cs.resize(static_cast<size_t>(m * n_rot));
    kernels::rope_table(pos.data(), m, n_rot, theta, t->cs.data());
    t->pos0 = pos0;
    t->m = m;
    t->n_rot = n_rot;
    t->theta = theta;
  }
  kernels::rope_apply(x, m, nheads, nheads * hd, hd, n_rot, t->cs.data());
}

void kv_append(float* cache, const float* rows, int64_t m, int64_t nkv, int64_t hd, int64_t capacity, int64_t pos0) {
  util::profile::Scope ps("kv_append");
  for (int64_t t = 0; t < m; ++t)
    for (int64_t g = 0; g < nkv; ++g)
      std::memcpy(cache + (g * capacity + pos0 + t) * hd, rows + (t * nkv + g) * hd,
                  static_cast<size_t>(hd) * sizeof(float));
}

namespace {
// Queries [m][nh][hd] over a head-major cache [nkv][capacity][hd] holding n_keys keys.
void attend(const float* q, int64_t m, int64_t nh, int64_t hd, const float* kcache, const float* vcache, int64_t nkv,
            int64_t capacity, int64_t n_keys, const kernels::AttnMask& mask, float* out, util::ThreadPool& pool) {
  kernels::AttnArgs a;
  a.q = q;
  a.n_q = m;
  a.n_head = nh;
  a.q_token_stride = nh * hd;
  a.q_head_stride = hd;
  a.out = out;
  a.out_token_stride = nh * hd;
  a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  kernels::KvView kv;
  kv.k = kcache;
  kv.v = vcache;
  kv.n_tokens = n_keys;
  kv.n_kv_head = nkv;
  kv.head_dim = hd;
  kv.token_stride = hd;
  kv.head_stride = capacity * hd;
  kernels::attention(a, kv, mask, &pool);
}
}  // namespace

void attention_causal(const float* q, int64_t m, int64_t nh, int64_t hd, const float* kcache, const float* vcache,
                      int64_t nkv, int64_t capacity, int64_t pos0, float* out, util::ThreadPool& pool) {
  util::profile::Scope ps("attention_causal");
  kernels::AttnMask mask;
  mask.kind = kernels::MaskKind::kCausal;
  mask.q_pos0 = pos0;
  attend(q, m, nh, hd, kcache, vcache, nkv, capacity, pos0 + m, mask, out, pool);
}

void attention_block(const float* q, int64_t m, int64_t nh, int64_t hd, const float* kcache, const float* vcache,
                     int64_t nkv, int64_t capacity, int64_t n_keys, int64_t pos0, int64_t window, float* out,
                     util::ThreadPool& pool) {
  util::profile::Scope ps("attention_block");
  kernels::AttnMask mask;
  if (window > 0) {
    mask.kind = kernels::MaskKind::kCausal;
    mask.q_pos0 = pos0;
    mask.window = window;
  }
  attend(q, m, nh, hd, kcache, vcache, nkv, capacity, n_keys, mask, out, pool);
}

void moe_ffn(const Tensor& gate_inp, const Tensor& gate_exps, const Tensor& up_exps, const Tensor& down_exps,
             int64_t n_used, const Tensor* gate_sh, const Tensor* up_sh, const Tensor* down_sh,
             const Tensor* gate_inp_sh, const float* x, int64_t m, int64_t n_embd, float* out, float* buf_a,
             float* buf_b, float* router, util::ThreadPool& pool) {
  util::profile::Scope ps("moe_ffn");
  const int64_t E = gate_inp.ne[1];
  const int64_t F = gate_exps.ne[1];
  kernels::matmul(gate_inp, x, m, router, pool);
  // Routing for the whole block first, then each expert runs once over all the tokens routed to it:
  // its weights are streamed once per block instead of once per token, which is what keeps a
  // B-token verify of a MoE model close to the cost of one decode.
  thread_local std::vector<int32_t> order, route, tok_of;
  thread_local std::vector<float> route_w, wgt_of, xg, yg;
  thread_local std::vector<int64_t> start, fill;
  order.resize(static_cast<size_t>(E));
  start.assign(static_cast<size_t>(E + 1), 0);
  route.resize(static_cast<size_t>(m * n_used));    // [m][n_used] expert ids
  route_w.resize(static_cast<size_t>(m * n_used));  // their renormalised weights
  for (int64_t t = 0; t < m; ++t) {
    // Softmax over all experts, top-k by probability (lower index on ties), renormalised
    // (Qwen3.5-MoE always renormalises; qwen35.md §5.3).
    float* p = router + t * E;
    float mx = *std::max_element(p, p + E), sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) sum += (p[e] = std::exp(p[e] - mx));
    for (int64_t e = 0; e < E; ++e) p[e] /= sum;
    for (int64_t e = 0; e < E; ++e) order[static_cast<size_t>(e)] = static_cast<int32_t>(e);
    std::partial_sort(order.begin(), order.begin() + n_used, order.end(),
                      [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    float wsum = 0.0f;
    for (int64_t i = 0; i < n_used; ++i) wsum += p[order[static_cast<size_t>(i)]];
    for (int64_t i = 0; i < n_used; ++i) {
      const int32_t e = order[static_cast<size_t>(i)];
      route[static_cast<size_t>(t * n_used + i)] = e;
      route_w[static_cast<size_t>(t * n_used + i)] = p[e] / wsum;
      ++start[static_cast<size_t>(e + 1)];
    }
  }
  for (int64_t e = 0; e < E; ++e) start[static_cast<size_t>(e + 1)] += start[static_cast<size_t>(e)];
  // Tokens of each expert, in increasing token order (counting sort).
  tok_of.resize(static_cast<size_t>(m * n_used));
  wgt_of.resize(static_cast<size_t>(std::max(m * n_used, m)));
  fill.assign(start.begin(), start.end() - 1);
  for (int64_t t = 0; t < m; ++t)
    for (int64_t i = 0; i < n_used; ++i) {
      const int32_t e = route[static_cast<size_t>(t * n_used + i)];
      const int64_t at = fill[static_cast<size_t>(e)]++;
      tok_of[static_cast<size_t>(at)] = static_cast<int32_t>(t);
      wgt_of[static_cast<size_t>(at)] = route_w[static_cast<size_t>(t * n_used + i)];
    }
  xg.resize(static_cast<size_t>(m * n_embd));
  yg.resize(static_cast<size_t>(m * n_embd));
  std::fill(out, out + m * n_embd, 0.0f);
  // Experts in increasing index order: every token accumulates its experts in expert-index order, as
  // the reference does, and the per-token matmul results do not depend on how many tokens share the
  // call — so the output is bitwise the same as running each token alone.
  for (int64_t e = 0; e < E; ++e) {
    const int64_t b = start[static_cast<size_t>(e)], n = start[static_cast<size_t>(e + 1)] - b;
    if (n == 0) continue;
    for (int64_t j = 0; j < n; ++j)
      std::memcpy(xg.data() + j * n_embd, x + tok_of[static_cast<size_t>(b + j)] * n_embd,
                  static_cast<size_t>(n_embd) * sizeof(float));
    kernels::matmul_expert(gate_exps, e, xg.data(), n, buf_a, pool);
    kernels::matmul_expert(up_exps, e, xg.data(), n, buf_b, pool);
    kernels::swiglu(buf_a, buf_b, buf_a, n * F);  // elementwise: position-independent
    kernels::matmul_expert(down_exps, e, buf_a, n, yg.data(), pool);
    for (int64_t j = 0; j < n; ++j) {
      float* ot = out + tok_of[static_cast<size_t>(b + j)] * n_embd;
      const float w = wgt_of[static_cast<size_t>(b + j)];
      const float* yt = yg.data() + j * n_embd;
      for (int64_t k = 0; k < n_embd; ++k) ot[k] += w * yt[k];
    }
  }
  if (gate_sh) {
    const int64_t Fs = gate_sh->ne[1];
    kernels::matmul(*gate_sh, x, m, buf_a, pool);
    kernels::matmul(*up_sh, x, m, buf_b, pool);
    kernels::swiglu(buf_a, buf_b, buf_a, m * Fs);
    kernels::matmul(*down_sh, buf_a, m, yg.data(), pool);
    float* gs = wgt_of.data();  // per-token shared-expert gate (routing weights are no longer needed)
    kernels::matmul(*gate_inp_sh, x, m, gs, pool);
    for (int64_t t = 0; t < m; ++t) {
      const float g = sigmoid1(gs[t]);
      float* ot = out + t * n_embd;
      const float* yt = yg.data() + t * n_embd;
      for (int64_t k = 0; k < n_embd; ++k) ot[k] += g * yt[k];
    }
  }
}

}  // namespace dflash::model::ops
