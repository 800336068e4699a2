// Row normalisations: RMSNorm (plain and zero-centred), DeltaNet's gated RMSNorm, L2 norm.
//
// All rows are f32. "Heads" variants treat a token row as n_heads slices of head_dim floats at
// x + t*token_stride + h*head_stride, so per-head norms work on interleaved projections
// (e.g. Qwen3.5's [query|gate] q_proj output) without copying.
#pragma once

#include <cstdint>

namespace dflash::util {
class ThreadPool;
}

namespace dflash::kernels {

// kPlain: x̂·w (Qwen3, DFlash drafter, and Qwen3.5 GGUF files, which fold the +1 into w).
// kOffsetOne: x̂·(1+w) (Qwen3.5 HF checkpoints: zero-centred weights).
enum class NormKind { kPlain, kOffsetOne };

// y[r] = x[r] * rsqrt(mean(x[r]²) + eps) * (w | 1+w) for n_rows contiguous rows of dim floats.
// y may equal x. w may be null (no weight: pure normalisation).
void rmsnorm(const float* x, const float* w, float* y, int64_t n_rows, int64_t dim, float eps,
             NormKind kind = NormKind::kPlain, util::ThreadPool* pool = nullptr);

// In-place RMSNorm of every head slice (q_norm / k_norm): n_tokens × n_heads slices of head_dim.
void rmsnorm_heads(float* x, const float* w, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                   int64_t token_stride, int64_t head_stride, float eps,
                   NormKind kind = NormKind::kPlain, util::ThreadPool* pool = nullptr);

// Gated RMSNorm of Gated DeltaNet, per value head: y = rmsnorm(o)·w·silu(z) over rows of dim floats
// (norm before gate; w used as-is). o, z, y: n_rows contiguous rows; y may equal o or z.
void rmsnorm_gated(const float* o, const float* z, const float* w, float* y, int64_t n_rows,
                   int64_t dim, float eps, util::ThreadPool* pool = nullptr);

// In-place L2 norm of every head slice: x = x * rsqrt(Σx² + eps) * scale (eps inside the rsqrt, as
// FLA/HF `l2norm`; scale folds DeltaNet's q·Dk^-0.5).
void l2norm_heads(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                  int64_t token_stride, int64_t head_stride, float eps, float scale = 1.0f);

}  // namespace dflash::kernels
