// Portable scalar row kernels: the reference dot products (kernels/ref) applied row by row, token
// by token. The weight row stays in L1 across tokens, so even this path reads weights once per
// call.
#include <cstdint>

#include "kernels/matmul_impl.h"
#include "kernels/ref/matmul_ref.h"

namespace dflash::kernels::detail {
namespace {

using namespace dflash::tensor;

template <typename W, typename A, float (*Dot)(const W*, const A*, int64_t)>
void rows(const RowsArgs& a, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const W* wr = reinterpret_cast<const W*>(a.w + size_t(r) * a.w_stride);
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      const A* x = reinterpret_cast<const A*>(a.act + size_t(t) * a.act_stride);
      a.y[t * a.ldy + r] = Dot(wr, x, a.in);
    }
  }
}

}  // namespace

RowsFn rows_fn_scalar(DType t) {
  switch (t) {
    case DType::kF32:
      return &rows<float, float, ref::vec_dot_f32>;
    case DType::kF16:
      return &rows<uint16_t, float, ref::vec_dot_f16>;
    case DType::kBF16:
      return &rows<uint16_t, float, ref::vec_dot_bf16>;
    case DType::kQ8_0:
      return &rows<BlockQ8_0, ActQ8_0, ref::vec_dot_q8_0>;
    case DType::kQ4_K:
      return &rows<BlockQ4_K, BlockQ8_K, ref::vec_dot_q4_k>;
    case DType::kQ5_K:
      return &rows<BlockQ5_K, BlockQ8_K, ref::vec_dot_q5_k>;
    case DType::kQ6_K:
      return &rows<BlockQ6_K, BlockQ8_K, ref::vec_dot_q6_k>;
    default:
      return nullptr;
  }
}

}  // namespace dflash::kernels::detail
