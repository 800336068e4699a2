#include "kernels/select.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels/ref/ops_ref.h"
#include "ops_test_util.h"
#include "util/thread_pool.h"

namespace dflash::kernels {
namespace {

TEST(Argmax, FirstIndexOnTiesAndMatchesReference) {
  std::vector<float> x = {1.0f, 3.0f, 2.0f, 3.0f, 3.0f};
  EXPECT_EQ(argmax(x.data(), int64_t(x.size())), 1);
  for (int64_t n : {1, 2, 15, 16, 17, 100, 248320}) {
    auto v = testing::randn(size_t(n), uint32_t(n));
    for (auto& f : v) f = std::round(f * 2.0f);  // many ties
    EXPECT_EQ(argmax(v.data(), n), ref::argmax(v.data(), n)) << n;
    // Max placed last and duplicated at a late position.
    v[size_t(n - 1)] = 100.0f;
    EXPECT_EQ(argmax(v.data(), n), n - 1);
    if (n > 3) {
      v[size_t(n - 3)] = 100.0f;
      EXPECT_EQ(argmax(v.data(), n), n - 3);
    }
  }
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> w = {nan, -inf, 2.0f, nan, 2.0f};
  EXPECT_EQ(argmax(w.data(), 5), 2);
  std::vector<float> all_neg_inf(20, -inf);
  EXPECT_EQ(argmax(all_neg_inf.data(), 20), 0);
}

TEST(Argmax, RowsWithPool) {
  util::ThreadPool pool(3);
  const int64_t rows = 5, n = 1001;
  auto v = testing::randn(size_t(rows * n), 3);
  std::vector<int64_t> idx(rows);
  argmax_rows(v.data(), rows, n, idx.data(), &pool);
  for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(idx[size_t(r)], ref::argmax(v.data() + r * n, n));
}

TEST(TopK, SortedDescendingTiesByLowerIndex) {
  for (int64_t n : {1, 5, 63, 64, 65, 1000, 50000})
    for (int k : {1, 5, 64}) {
      auto v = testing::randn(size_t(n), uint32_t(n + k));
      for (auto& f : v) f = std::round(f * 3.0f);  // ties
      std::vector<float> gv(64), wv(64);
      std::vector<int32_t> gi(64), wi(64);
      const int got = topk(v.data(), n, k, gv.data(), gi.data());
      const int want = ref::topk(v.data(), n, k, wv.data(), wi.data());
      ASSERT_EQ(got, want) << n << " " << k;
      for (int i = 0; i < got; ++i) {
        EXPECT_EQ(gi[size_t(i)], wi[size_t(i)]) << n << " " << k << " @" << i;
        EXPECT_EQ(gv[size_t(i)], wv[size_t(i)]);
      }
    }
  std::vector<float> x = {0.5f, 2.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f, 1.0f};
  float val[3];
  int32_t idx[3];
  ASSERT_EQ(topk(x.data(), 5, 3, val, idx), 3);
  EXPECT_EQ(idx[0], 1);
  EXPECT_EQ(idx[1], 3);
  EXPECT_EQ(idx[2], 4);
  EXPECT_EQ(val[2], 1.0f);
  float val64[64];
  int32_t idx64[64];
  EXPECT_EQ(topk(x.data(), 5, 10, val64, idx64), 4);  // k > n: every non-NaN value
  EXPECT_EQ(idx64[3], 0);
}

}  // namespace
}  // namespace dflash::kernels
