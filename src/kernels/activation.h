// Element-wise activations and row softmax (f32). Outputs may alias inputs.
#pragma once

#include <cstdint>

namespace dflash::kernels {

void silu(const float* x, float* y, int64_t n);      // x·sigmoid(x)
void sigmoid(const float* x, float* y, int64_t n);   // 1/(1+e^-x), overflow-free for any x
void softplus(const float* x, float* y, int64_t n);  // log(1+e^x); x > 20 → x (torch threshold)
void swiglu(const float* gate, const float* up, float* y, int64_t n);  // silu(gate)·up
void mul_sigmoid(const float* x, const float* gate, float* y, int64_t n);  // x·sigmoid(gate)

// Numerically stable softmax of n_rows contiguous rows of n floats, in place. -inf entries get 0;
// a row that is entirely -inf becomes all zeros (instead of NaN).
void softmax(float* x, int64_t n_rows, int64_t n);
// The largest entry of a row's softmax, 1 / Σ exp(x_i − max x), without writing the row (a drafter's confidence
// in its argmax); 0 for a row that is entirely -inf.
float softmax_max(const float* x, int64_t n);

}  // namespace dflash::kernels
