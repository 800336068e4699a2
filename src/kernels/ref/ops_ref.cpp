#include "kernels/ref/ops_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace dflash::kernels::ref {

namespace {
float norm_weight(const float* w, int64_t i, NormKind kind) {
  if (!w) return 1.0f;
  return kind == NormKind::kOffsetOne ? 1.0f + w[i] : w[i];
}
}  // namespace

void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps,
             NormKind kind) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
    float inv = float(1.0 / std::sqrt(ss / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * norm_weight(w, i, kind);
  }
}

void rmsnorm_heads(float* x, const float* w, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                   int64_t token_stride, int64_t head_stride, float eps, NormKind kind) {
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      float* p = x + t * token_stride + h * head_stride;
      ref::rmsnorm(p, w, p, 1, head_dim, eps, kind);
    }
}

void rmsnorm_gated(const float* o, const float* z, const float* w, float* y, int64_t n_rows,
                   int64_t dim, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* orow = o + r * dim;
    const float* zr = z + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(orow[i]) * orow[i];
    float inv = float(1.0 / std::sqrt(ss / double(dim) + double(eps)));
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = orow[i] * inv * w[i] * silu(zr[i]);
  }
}

void l2norm_heads(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                  int64_t token_stride, int64_t head_stride, float eps, float scale) {
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      float* p = x + t * token_stride + h * head_stride;
      double ss = 0;
      for (int64_t i = 0; i < head_dim; ++i) ss += double(p[i]) * p[i];
      float inv = float(1.0 / std::sqrt(ss + double(eps)));
      for (int64_t i = 0; i < head_dim; ++i) p[i] = p[i] * inv * scale;
    }
}

float sigmoid(float x) { return float(1.0 / (1.0 + std::exp(-double(x)))); }
float silu(float x) { return x * sigmoid(x); }
float softplus(float x) { return x > 20.0f ? x : float(std::log1p(std::exp(double(x)))); }

void softmax(float* x, int64_t n_rows, int64_t n) {
  for (int64_t r = 0; r < n_rows; ++r) {
    float* p = x + r * n;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, p[i]);
    if (m == -std::numeric_limits<float>::infinity()) {
      std::fill(p, p + n, 0.0f);
      continue;
    }
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::exp(double(p[i]) - m);
    for (int64_t i = 0; i < n; ++i) p[i] = float(std::exp(double(p[i]) - m) / s);
  }
}

float softmax_max(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  if (m == -std::numeric_limits<float>::infinity()) return 0.0f;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(double(x[i]) - m);
  return float(1.0 / s);
}

void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t token_stride, int64_t head_stride,
          int64_t n_rot, const int64_t* positions, float theta) {
  const int64_t half = n_rot / 2;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      float* p = x + t * token_stride + h * head_stride;
      for (int64_t i = 0; i < half; ++i) {
        float inv_freq = 1.0f / std::pow(theta, float(2 * i) / float(n_rot));
        float angle = float(positions[t]) * inv_freq;
        float c = float(std::cos(double(angle))), s = float(std::sin(double(angle)));
        float a = p[i], b = p[i + half];
        p[i] = a * c - b * s;
        p[i + half] = b * c + a * s;
      }
    }
}

void attention(const AttnArgs& a, const KvView& kv, const AttnMask& mask) {
  const int64_t hd = kv.head_dim, group = a.n_head / kv.n_kv_head;
  std::vector<double> s(size_t(kv.n_tokens));
  for (int64_t i = 0; i < a.n_q; ++i)
    for (int64_t h = 0; h < a.n_head; ++h) {
      const float* q = a.q + i * a.q_token_stride + h * a.q_head_stride;
      const int64_t g = h / group;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < kv.n_tokens; ++j) {
        const float* k = kv.k + g * kv.head_stride + j * kv.token_stride;
        double dot = 0;
        for (int64_t d = 0; d < hd; ++d) dot += double(q[d]) * k[d];
        double sc = dot * a.scale;
        bool visible = true;
        switch (mask.kind) {
          case MaskKind::kNone: break;
          case MaskKind::kCausal: {
            int64_t qp = mask.q_pos0 + i;
            visible = j <= qp && (mask.window <= 0 || j > qp - mask.window);
            break;
          }
          case MaskKind::kBool: visible = mask.allowed[i * mask.mask_stride + j] != 0; break;
          case MaskKind::kAdditive: sc += mask.bias[i * mask.mask_stride + j]; break;
        }
        s[size_t(j)] = visible ? sc : -std::numeric_limits<double>::infinity();
        m = std::max(m, s[size_t(j)]);
      }
      float* o = a.out + i * a.out_token_stride + h * hd;
      if (m == -std::numeric_limits<double>::infinity()) {
        std::fill(o, o + hd, 0.0f);
        continue;
      }
      double l = 0;
      std::vector<double> acc(size_t(hd), 0.0);
      for (int64_t j = 0; j < kv.n_tokens; ++j) {
        double p = std::exp(s[size_t(j)] - m);
        l += p;
        const float* v = kv.v + g * kv.head_stride + j * kv.token_stride;
        for (int64_t d = 0; d < hd; ++d) acc[size_t(d)] += p * v[d];
      }
      for (int64_t d = 0; d < hd; ++d) o[d] = float(acc[size_t(d)] / l);
    }
}

void causal_conv1d(const float* x, int64_t x_stride, const float* w, float* state, float* out,
                   int64_t out_stride, int64_t T, int64_t C, int64_t K, bool fuse_silu) {
  // x̃ = [state ; x], per channel.
  std::vector<float> xt(size_t((K - 1 + T) * C));
  for (int64_t s = 0; s < K - 1; ++s)
    for (int64_t c = 0; c < C; ++c) xt[size_t(s * C + c)] = state[s * C + c];
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) xt[size_t((K - 1 + t) * C + c)] = x[t * x_stride + c];
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) {
      float acc = 0;
      for (int64_t j = 0; j < K; ++j) acc += w[c * K + j] * xt[size_t((t + j) * C + c)];
      out[t * out_stride + c] = fuse_silu ? silu(acc) : acc;
    }
  for (int64_t s = 0; s < K - 1; ++s)
    for (int64_t c = 0; c < C; ++c) state[s * C + c] = xt[size_t((T + s) * C + c)];
}

void delta_rule_recurrent(const DeltaShape& sh, float* state, const DeltaInputs& in, float* out,
                          int64_t out_stride) {
  const int64_t dk = sh.dk, dv = sh.dv;
  std::vector<float> kv(static_cast<size_t>(dv)), delta(static_cast<size_t>(dv));
  for (int64_t t = 0; t < in.n_tokens; ++t)
    for (int64_t h = 0; h < sh.n_v_heads; ++h) {
      const int64_t a = sh.qk_head(h);
      float* S = state + h * dk * dv;  // S[i*dv + j]
      const float* k = in.k + t * in.k_stride + a * dk;
      const float* v = in.v + t * in.v_stride + h * dv;
      const float decay = std::exp(in.g[t * sh.n_v_heads + h]);
      const float beta = in.beta[t * sh.n_v_heads + h];
      for (int64_t i = 0; i < dk * dv; ++i) S[i] *= decay;
      for (int64_t j = 0; j < dv; ++j) {
        float acc = 0;
        for (int64_t i = 0; i < dk; ++i) acc += S[i * dv + j] * k[i];
        kv[size_t(j)] = acc;
      }
      for (int64_t j = 0; j < dv; ++j) delta[size_t(j)] = (v[j] - kv[size_t(j)]) * beta;
      for (int64_t i = 0; i < dk; ++i)
        for (int64_t j = 0; j < dv; ++j) S[i * dv + j] += k[i] * delta[size_t(j)];
      if (out) {
        const float* q = in.q + t * in.q_stride + a * dk;
        for (int64_t j = 0; j < dv; ++j) {
          float acc = 0;
          for (int64_t i = 0; i < dk; ++i) acc += S[i * dv + j] * q[i];
          out[t * out_stride + h * dv + j] = acc;
        }
      }
    }
}

int64_t argmax(const float* x, int64_t n) {
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) continue;
    if (best < 0 || x[i] > x[best]) best = i;
  }
  return best < 0 ? 0 : best;
}

int topk(const float* x, int64_t n, int k, float* values, int32_t* indices) {
  std::vector<int32_t> idx;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isnan(x[i])) idx.push_back(int32_t(i));
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
  int m = int(std::min<size_t>(size_t(std::max(k, 0)), idx.size()));
  for (int i = 0; i < m; ++i) {
    values[i] = x[idx[size_t(i)]];
    indices[i] = idx[size_t(i)];
  }
  return m;
}

}  // namespace dflash::kernels::ref
