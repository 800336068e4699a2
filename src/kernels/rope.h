// Rotary position embedding, NeoX / rotate-half style, with partial rotary dims.
//
// For each head slice x[0..head_dim): dims [0, n_rot) rotate in pairs (i, i + n_rot/2),
//   x'[i]         = x[i]·cos(a_i) − x[i+n_rot/2]·sin(a_i)
//   x'[i+n_rot/2] = x[i+n_rot/2]·cos(a_i) + x[i]·sin(a_i),        i < n_rot/2
// dims [n_rot, head_dim) pass through.
//
// Precision (matches HF's fp32 path): inv_freq_i = 1 / theta^(2i/n_rot) computed in f32
// (exponent (float)(2i)/(float)n_rot, powf), angle a_i = (float)pos · inv_freq_i rounded to f32 (one f32
// multiply, as torch's fp32 matmul of positions × inv_freq), then cos/sin of that f32 angle
// evaluated in double and rounded to f32 (correctly rounded for practical purposes).
#pragma once

#include <cstdint>

namespace dflash::util {
class ThreadPool;
}

namespace dflash::kernels {

// table[t*n_rot + i] = cos(a_i), table[t*n_rot + n_rot/2 + i] = sin(a_i), i < n_rot/2, for positions[t].
// Compute once per forward and reuse for q and k of every layer. n_rot must be even.
void rope_table(const int64_t* positions, int64_t n_tokens, int64_t n_rot, float theta, float* table);

// Applies a rope_table in place to n_tokens × n_heads head slices at x + t*token_stride + h*head_stride.
void rope_apply(float* x, int64_t n_tokens, int64_t n_heads, int64_t token_stride,
                int64_t head_stride, int64_t n_rot, const float* table,
                util::ThreadPool* pool = nullptr);

// Convenience: cos/sin computed inline per token (same values as rope_table), then applied.
void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t token_stride, int64_t head_stride,
          int64_t n_rot, const int64_t* positions, float theta);

}  // namespace dflash::kernels
