// Causal depthwise conv1d with carried state (Gated DeltaNet's short convolution).
//
// Channels C, kernel K. Weights w[c*K + j] (GGUF `ssm_conv1d`, ne = {K, C}: row c holds channel c's
// taps, tap K−1 multiplies the current input). State: the last K−1 *pre-activation* inputs,
// time-major state[s*C + c], s = 0 oldest .. K−2 newest (zero for a fresh sequence). Time-major
// keeps every access contiguous over channels, like the [T][C] token rows it is appended from.
//
//   out[t][c] = act( Σ_j w[c][j] · x̃[t + j][c] ),  x̃ = [state rows ; x rows]
// then state ← last K−1 rows of x̃.
#pragma once

#include <cstdint>

namespace dflash::util {
class ThreadPool;
}

namespace dflash::kernels {

// x: T rows of C floats (row stride x_stride ≥ C); out: T rows (out_stride); out must not alias x.
// fuse_silu applies SiLU to the outputs. Fast path for K ≤ 16 (any K ≥ 1 works). pool (optional):
// channel blocks are split over it when the call is big enough (same bits either way).
void causal_conv1d(const float* x, int64_t x_stride, const float* w, float* state, float* out,
                   int64_t out_stride, int64_t T, int64_t C, int64_t K, bool fuse_silu,
                   util::ThreadPool* pool = nullptr);

// State update only (tape replay): appends T input rows to the state without computing outputs.
void causal_conv1d_push(const float* x, int64_t x_stride, float* state, int64_t T, int64_t C,
                        int64_t K);

}  // namespace dflash::kernels
