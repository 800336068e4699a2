#include "kernels/norm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kernels/ref/ops_ref.h"
#include "ops_test_util.h"
#include "util/thread_pool.h"

namespace dflash::kernels {
namespace {
using testing::all_close;
using testing::randn;

TEST(RmsNorm, MatchesReferenceOnOddSizes) {
  util::ThreadPool pool(3);
  for (int64_t dim : {1, 7, 33, 128, 1000, 1025}) {
    for (int64_t rows : {1, 3, 40}) {
      for (NormKind kind : {NormKind::kPlain, NormKind::kOffsetOne}) {
        auto x = randn(size_t(rows * dim), uint32_t(dim * 7 + rows), 3.0f);
        auto w = randn(size_t(dim), 11, 0.5f);
        std::vector<float> want(x.size()), got(x.size());
        ref::rmsnorm(x.data(), w.data(), want.data(), rows, dim, 1e-6f, kind);
        rmsnorm(x.data(), w.data(), got.data(), rows, dim, 1e-6f, kind, &pool);
        EXPECT_TRUE(all_close(got, want, 1e-6, 2e-6)) << "dim " << dim << " rows " << rows;
        // In place gives the same answer.
        std::vector<float> inplace = x;
        rmsnorm(inplace.data(), w.data(), inplace.data(), rows, dim, 1e-6f, kind);
        EXPECT_TRUE(all_close(inplace, got, 0, 0));
      }
    }
  }
}

TEST(RmsNorm, NormalisesToUnitRmsAndOffsetOneMeansOnePlusW) {
  const int64_t dim = 257;
  auto x = randn(dim, 5, 10.0f);
  std::vector<float> ones(dim, 1.0f), zeros(dim, 0.0f), a(dim), b(dim), c(dim);
  rmsnorm(x.data(), ones.data(), a.data(), 1, dim, 1e-6f, NormKind::kPlain);
  double ms = 0;
  for (float v : a) ms += double(v) * v;
  EXPECT_NEAR(ms / dim, 1.0, 1e-5);
  rmsnorm(x.data(), zeros.data(), b.data(), 1, dim, 1e-6f, NormKind::kOffsetOne);
  EXPECT_TRUE(all_close(b, a, 0, 1e-7));
  rmsnorm(x.data(), nullptr, c.data(), 1, dim, 1e-6f);
  EXPECT_TRUE(all_close(c, a, 0, 1e-7));
  // eps dominates a zero row instead of dividing by zero.
  std::vector<float> z(dim, 0.0f), out(dim, 1.0f);
  rmsnorm(z.data(), ones.data(), out.data(), 1, dim, 1e-6f);
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

TEST(RmsNorm, PerHeadOnInterleavedLayoutLeavesGapsAlone) {
  // Qwen3.5 q_proj rows: per head [query(hd) | gate(hd)]; normalise only the query halves.
  const int64_t T = 3, H = 5, hd = 36, head_stride = 2 * hd, token_stride = H * 2 * hd + 4;
  auto x = randn(size_t(T * token_stride), 9, 2.0f);
  auto w = randn(hd, 10);
  auto want = x, got = x;
  ref::rmsnorm_heads(want.data(), w.data(), T, H, hd, token_stride, head_stride, 1e-6f, NormKind::kOffsetOne);
  rmsnorm_heads(got.data(), w.data(), T, H, hd, token_stride, head_stride, 1e-6f, NormKind::kOffsetOne);
  EXPECT_TRUE(all_close(got, want, 1e-6, 2e-6));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = hd; i < 2 * hd; ++i) {
        const size_t at = size_t(t * token_stride + h * head_stride + i);
        EXPECT_EQ(got[at], x[at]);
      }
}

TEST(RmsNormGated, MatchesReferenceAndGateZeroGivesZero) {
  for (int64_t dim : {5, 128, 131}) {
    const int64_t rows = 7;
    auto o = randn(size_t(rows * dim), 1, 2.0f), z = randn(size_t(rows * dim), 2, 3.0f);
    auto w = randn(dim, 3);
    std::vector<float> want(o.size()), got(o.size());
    ref::rmsnorm_gated(o.data(), z.data(), w.data(), want.data(), rows, dim, 1e-6f);
    rmsnorm_gated(o.data(), z.data(), w.data(), got.data(), rows, dim, 1e-6f);
    EXPECT_TRUE(all_close(got, want, 1e-6, 4e-6)) << dim;
    std::vector<float> zero(o.size(), 0.0f);
    rmsnorm_gated(o.data(), zero.data(), w.data(), got.data(), rows, dim, 1e-6f);
    for (float v : got) EXPECT_EQ(v, 0.0f);
  }
}

TEST(L2Norm, UnitNormTimesScaleAndMatchesReference) {
  const int64_t T = 4, H = 3, hd = 129, token_stride = 2 * H * hd;
  auto x = randn(size_t(T * token_stride), 4, 5.0f);
  auto want = x, got = x;
  const float scale = 1.0f / std::sqrt(128.0f);
  ref::l2norm_heads(want.data(), T, H, hd, token_stride, hd, 1e-6f, scale);
  l2norm_heads(got.data(), T, H, hd, token_stride, hd, 1e-6f, scale);
  EXPECT_TRUE(all_close(got, want, 1e-7, 2e-6));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      double ss = 0;
      for (int64_t i = 0; i < hd; ++i) ss += std::pow(double(got[size_t(t * token_stride + h * hd + i)]), 2);
      EXPECT_NEAR(std::sqrt(ss), scale, 1e-6);
    }
  // Second half of each token row untouched.
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = H * hd; i < token_stride; ++i) EXPECT_EQ(got[size_t(t * token_stride + i)], x[size_t(t * token_stride + i)]);
  // eps inside the rsqrt: a tiny vector is not blown up to unit length.
  std::vector<float> tiny(8, 1e-6f);
  l2norm_heads(tiny.data(), 1, 1, 8, 8, 8, 1e-6f);
  EXPECT_NEAR(tiny[0], 1e-6 / std::sqrt(8e-12 + 1e-6), 1e-9);
}

}  // namespace
}  // namespace dflash::kernels
