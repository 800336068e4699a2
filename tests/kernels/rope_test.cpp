#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kernels/ref/ops_ref.h"
#include "ops_test_util.h"
#include "util/thread_pool.h"

namespace dflash::kernels {
namespace {
using testing::all_close;

struct Shape {
  int64_t head_dim, n_rot, n_heads;
};

TEST(Rope, FastMatchesReference) {
  util::ThreadPool pool(2);
  const int64_t positions[] = {0, 1, 2, 17, 4095, 4096, 100000, 262143};
  const int64_t T = 8;
  for (Shape s : {Shape{256, 64, 8}, Shape{128, 128, 3}, Shape{10, 6, 5}, Shape{64, 2, 1}, Shape{3000, 2048, 1}}) {
    const int64_t head_stride = s.head_dim + 3, token_stride = s.n_heads * head_stride;
    auto x = testing::randn(size_t(T * token_stride), uint32_t(s.head_dim));
    auto want = x, got1 = x, got2 = x;
    ref::rope(want.data(), T, s.n_heads, token_stride, head_stride, s.n_rot, positions, 1e7f);
    rope(got1.data(), T, s.n_heads, token_stride, head_stride, s.n_rot, positions, 1e7f);
    std::vector<float> table(size_t(T * s.n_rot));
    rope_table(positions, T, s.n_rot, 1e7f, table.data());
    rope_apply(got2.data(), T, s.n_heads, token_stride, head_stride, s.n_rot, table.data(), &pool);
    EXPECT_TRUE(all_close(got1, want, 1e-6, 1e-6)) << s.head_dim << "/" << s.n_rot;
    EXPECT_TRUE(all_close(got2, got1, 0, 0)) << s.head_dim << "/" << s.n_rot;
    // Dims past n_rot (and the padding between heads) pass through.
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < s.n_heads; ++h)
        for (int64_t i = s.n_rot; i < head_stride; ++i) {
          const size_t at = size_t(t * token_stride + h * head_stride + i);
          ASSERT_EQ(got1[at], x[at]);
        }
  }
}

TEST(Rope, KnownValueAndNormPreserved) {
  // n_rot 2: one pair with inv_freq = 1, so the angle is the position.
  std::vector<float> x = {1.0f, 2.0f, 5.0f};
  const int64_t pos = 3;
  rope(x.data(), 1, 1, 3, 3, 2, &pos, 10000.0f);
  EXPECT_NEAR(x[0], std::cos(3.0) - 2 * std::sin(3.0), 1e-6);
  EXPECT_NEAR(x[1], 2 * std::cos(3.0) + std::sin(3.0), 1e-6);
  EXPECT_EQ(x[2], 5.0f);

  const int64_t hd = 128, n_rot = 64;
  auto v = testing::randn(hd, 3);
  const int64_t p = 123457;
  auto r = v;
  rope(r.data(), 1, 1, hd, hd, n_rot, &p, 1e7f);
  double n0 = 0, n1 = 0;
  for (int64_t i = 0; i < hd; ++i) {
    n0 += double(v[size_t(i)]) * v[size_t(i)];
    n1 += double(r[size_t(i)]) * r[size_t(i)];
  }
  EXPECT_NEAR(n1, n0, 1e-5 * n0);
}

TEST(Rope, RelativePositionAndComposition) {
  const int64_t hd = 64, n_rot = 64;
  auto a = testing::randn(hd, 7), b = testing::randn(hd, 8);
  auto dot = [&](const std::vector<float>& x, const std::vector<float>& y) {
    double s = 0;
    for (int64_t i = 0; i < hd; ++i) s += double(x[size_t(i)]) * y[size_t(i)];
    return s;
  };
  auto rot = [&](std::vector<float> x, int64_t pos) {
    rope(x.data(), 1, 1, hd, hd, n_rot, &pos, 10000.0f);
    return x;
  };
  // <R_p a, R_{p+d} b> depends only on d.
  const double base = dot(rot(a, 0), rot(b, 5));
  for (int64_t p : {1, 10, 300, 1000}) EXPECT_NEAR(dot(rot(a, p), rot(b, p + 5)), base, 2e-4 * std::fabs(base) + 1e-4) << p;
  // Rotating by p then by q equals rotating by p + q.
  for (auto [p, q] : {std::pair<int64_t, int64_t>{3, 4}, {100, 27}, {1000, 999}}) {
    auto twice = rot(rot(a, p), q), once = rot(a, p + q);
    EXPECT_TRUE(all_close(twice, once, 1e-3, 1e-3)) << p << "+" << q;
  }
  // And is not the identity (the test can fail).
  EXPECT_FALSE(all_close(rot(a, 5), a, 1e-3, 1e-3));
}

}  // namespace
}  // namespace dflash::kernels
