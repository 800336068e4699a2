// Argmax and top-k over a vocabulary row (f32).
#pragma once

#include <cstdint>

namespace dflash::util {
class ThreadPool;
}

namespace dflash::kernels {

// Index of the maximum; the first one on ties (torch.argmax). NaNs are ignored unless the row is
// all NaN (then 0). n ≥ 1.
int64_t argmax(const float* x, int64_t n);

// argmax of n_rows contiguous rows of n floats: idx[r].
void argmax_rows(const float* x, int64_t n_rows, int64_t n, int64_t* idx,
                 util::ThreadPool* pool = nullptr);

// The k largest values (k ≤ min(n, kTopKMax)) sorted descending, ties by lower index; NaNs ignored.
// Returns the number written (min(k, n, non-NaN count)).
inline constexpr int kTopKMax = 64;
int topk(const float* x, int64_t n, int k, float* values, int32_t* indices);

}  // namespace dflash::kernels
