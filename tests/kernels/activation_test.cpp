#include "kernels/activation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels/ref/ops_ref.h"
#include "ops_test_util.h"

namespace dflash::kernels {
namespace {
using testing::all_close;

std::vector<float> test_inputs(size_t n, uint32_t seed) {
  auto x = testing::uniform(n, seed, -30.0f, 30.0f);
  const float extremes[] = {0.0f, -0.0f, 1e4f, -1e4f, 88.0f, -88.0f, 89.0f, -104.0f, 20.0f, 20.5f, -20.0f, 1e-8f, 1e30f, -1e30f};
  for (size_t i = 0; i < sizeof(extremes) / sizeof(float) && i < n; ++i) x[i * 3 % n] = extremes[i];
  return x;
}

TEST(Activations, MatchReferenceOnOddSizesAndExtremes) {
  for (size_t n : {1u, 3u, 17u, 100u, 1027u}) {
    auto x = test_inputs(n, uint32_t(n));
    std::vector<float> got(n), want(n);
    silu(x.data(), got.data(), n);
    for (size_t i = 0; i < n; ++i) want[i] = ref::silu(x[i]);
    EXPECT_TRUE(all_close(got, want, 1e-30, 2e-6)) << "silu n=" << n;
    sigmoid(x.data(), got.data(), n);
    for (size_t i = 0; i < n; ++i) want[i] = ref::sigmoid(x[i]);
    EXPECT_TRUE(all_close(got, want, 1e-30, 2e-6)) << "sigmoid n=" << n;
    softplus(x.data(), got.data(), n);
    for (size_t i = 0; i < n; ++i) want[i] = ref::softplus(x[i]);
    EXPECT_TRUE(all_close(got, want, 1e-30, 2e-6)) << "softplus n=" << n;
    auto u = testing::randn(n, 99);
    swiglu(x.data(), u.data(), got.data(), n);
    for (size_t i = 0; i < n; ++i) want[i] = ref::silu(x[i]) * u[i];
    EXPECT_TRUE(all_close(got, want, 1e-30, 3e-6)) << "swiglu n=" << n;
    mul_sigmoid(u.data(), x.data(), got.data(), n);
    for (size_t i = 0; i < n; ++i) want[i] = u[i] * ref::sigmoid(x[i]);
    EXPECT_TRUE(all_close(got, want, 1e-30, 3e-6)) << "mul_sigmoid n=" << n;
    // An element's result does not depend on its position (body or tail): verify == decode.
    std::vector<float> sw(n);
    swiglu(x.data(), u.data(), sw.data(), n);
    for (size_t i = 0; i < n; ++i) {
      float one = 0.0f;
      mul_sigmoid(&u[i], &x[i], &one, 1);
      ASSERT_EQ(one, got[i]) << "mul_sigmoid element " << i << " of " << n;
      swiglu(&x[i], &u[i], &one, 1);
      ASSERT_EQ(one, sw[i]) << "swiglu element " << i << " of " << n;
    }
    for (float v : got) EXPECT_FALSE(std::isnan(v));
  }
}

TEST(Activations, KnownValuesAndInPlace) {
  std::vector<float> x = {0.0f, 25.0f, 20.5f, -1e4f, 1e4f, 1.0f, std::log(std::exp(1.0f) - 1.0f)};
  std::vector<float> y(x.size());
  softplus(x.data(), y.data(), x.size());
  EXPECT_NEAR(y[0], std::log(2.0), 1e-7);
  EXPECT_EQ(y[1], 25.0f);   // threshold: x > 20 → x exactly
  EXPECT_EQ(y[2], 20.5f);
  EXPECT_EQ(y[3], 0.0f);
  EXPECT_EQ(y[4], 1e4f);
  EXPECT_NEAR(y[6], 1.0, 1e-6);
  sigmoid(x.data(), y.data(), x.size());
  EXPECT_EQ(y[0], 0.5f);
  EXPECT_EQ(y[3], 0.0f);
  EXPECT_EQ(y[4], 1.0f);
  EXPECT_NEAR(y[5], 1.0 / (1.0 + std::exp(-1.0)), 1e-7);
  auto z = x;
  silu(z.data(), z.data(), z.size());
  EXPECT_EQ(z[0], 0.0f);
  EXPECT_EQ(z[3], -0.0f);
  EXPECT_EQ(z[4], 1e4f);
}

TEST(Softmax, MatchesReferenceAndSumsToOneOnExtremes) {
  for (int64_t n : {1, 2, 7, 16, 33, 1000}) {
    const int64_t rows = 5;
    auto x = testing::uniform(size_t(rows * n), uint32_t(n), -1e4f, 1e4f);
    // Row 1: moderate values so many entries are non-zero.
    for (int64_t i = 0; i < n; ++i) x[size_t(n + i)] = float(i % 7) - 3.0f;
    // Row 2: with −inf entries.
    for (int64_t i = 0; i < n; i += 2) x[size_t(2 * n + i)] = -std::numeric_limits<float>::infinity();
    // Row 3: all equal huge values.
    for (int64_t i = 0; i < n; ++i) x[size_t(3 * n + i)] = 1e4f;
    auto got = x, want = x;
    softmax(got.data(), rows, n);
    ref::softmax(want.data(), rows, n);
    EXPECT_TRUE(all_close(got, want, 1e-7, 1e-5)) << n;
    for (int64_t r = 0; r < rows; ++r) {
      if (r == 2 && n == 1) continue;  // that row is entirely −inf: all zeros, checked below
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += got[size_t(r * n + i)];
      EXPECT_NEAR(s, 1.0, 1e-5) << "row " << r << " n " << n;
    }
    for (int64_t i = 0; i < n; i += 2) EXPECT_EQ(got[size_t(2 * n + i)], 0.0f);
    if (n > 1) {
      EXPECT_NEAR(got[size_t(2 * n + 1)], want[size_t(2 * n + 1)], 1e-6);
    }
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(got[size_t(3 * n + i)], 1.0 / n, 1e-6);
    // softmax_max: the row's largest probability without writing it, against the reference and the softmax.
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x.data() + r * n;
      const float m = softmax_max(row, n);
      EXPECT_NEAR(m, ref::softmax_max(row, n), 1e-6) << "row " << r << " n " << n;
      EXPECT_NEAR(m, *std::max_element(got.begin() + r * n, got.begin() + (r + 1) * n), 1e-6) << "row " << r;
    }
  }
  EXPECT_EQ(softmax_max(std::vector<float>(5, -std::numeric_limits<float>::infinity()).data(), 5), 0.0f);
  std::vector<float> all_masked(5, -std::numeric_limits<float>::infinity());
  softmax(all_masked.data(), 1, 5);
  for (float v : all_masked) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace dflash::kernels
