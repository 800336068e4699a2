// Plain scalar references for the kernels in src/kernels/ (same contracts as the fast versions,
// no threads, no SIMD). Written to be obviously right, not fast; tests compare against them.
#pragma once

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/deltanet.h"
#include "kernels/norm.h"

namespace dflash::kernels::ref {

void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps,
             NormKind kind);
void rmsnorm_heads(float* x, const float* w, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                   int64_t token_stride, int64_t head_stride, float eps, NormKind kind);
void rmsnorm_gated(const float* o, const float* z, const float* w, float* y, int64_t n_rows,
                   int64_t dim, float eps);
void l2norm_heads(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                  int64_t token_stride, int64_t head_stride, float eps, float scale);

float silu(float x);
float sigmoid(float x);
float softplus(float x);
void softmax(float* x, int64_t n_rows, int64_t n);
float softmax_max(const float* x, int64_t n);

void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t token_stride, int64_t head_stride,
          int64_t n_rot, const int64_t* positions, float theta);

void attention(const AttnArgs& a, const KvView& kv, const AttnMask& mask);

void causal_conv1d(const float* x, int64_t x_stride, const float* w, float* state, float* out,
                   int64_t out_stride, int64_t T, int64_t C, int64_t K, bool fuse_silu);

// Textbook form on a Dk-major state S[i][j] (i < Dk, j < Dv) per head — deliberately not the fast
// kernel's layout; state_dk_major is Hv × Dk × Dv.
void delta_rule_recurrent(const DeltaShape& s, float* state_dk_major, const DeltaInputs& in,
                          float* out, int64_t out_stride);

int64_t argmax(const float* x, int64_t n);
int topk(const float* x, int64_t n, int k, float* values, int32_t* indices);

}  // namespace dflash::kernels::ref
