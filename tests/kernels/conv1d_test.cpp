#include "kernels/conv1d.h"

#include <gtest/gtest.h>

#include "kernels/ref/ops_ref.h"
#include "ops_test_util.h"
#include "util/thread_pool.h"

namespace dflash::kernels {
namespace {
using testing::all_close;

TEST(CausalConv1d, MatchesReferenceWithCarriedState) {
  for (int64_t C : {1, 5, 70, 130})
    for (int64_t K : {1, 2, 4, 5, 19})
      for (int64_t T : {1, 2, 3, 7, 50})
        for (bool act : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "C " << C << " K " << K << " T " << T << " silu " << act);
          const int64_t x_stride = C + 3, out_stride = C + 1;
          auto x = testing::randn(size_t(T * x_stride), uint32_t(C * 100 + K * 10 + T));
          auto w = testing::randn(size_t(C * K), 3);
          auto st0 = testing::randn(size_t((K - 1) * C), 4);
          auto st_ref = st0, st_fast = st0;
          std::vector<float> want(size_t(T * out_stride), 0.0f), got(want.size(), 0.0f);
          ref::causal_conv1d(x.data(), x_stride, w.data(), st_ref.data(), want.data(), out_stride, T, C, K, act);
          causal_conv1d(x.data(), x_stride, w.data(), st_fast.data(), got.data(), out_stride, T, C, K, act);
          EXPECT_TRUE(all_close(got, want, 1e-6, 1e-5));
          EXPECT_TRUE(all_close(st_fast, st_ref, 0, 0));
          // Same sequence fed in two pieces gives the same outputs and final state.
          if (T >= 2) {
            auto st = st0;
            std::vector<float> split(want.size(), 0.0f);
            const int64_t t1 = T / 2;
            causal_conv1d(x.data(), x_stride, w.data(), st.data(), split.data(), out_stride, t1, C, K, act);
            causal_conv1d(x.data() + t1 * x_stride, x_stride, w.data(), st.data(), split.data() + t1 * out_stride,
                          out_stride, T - t1, C, K, act);
            EXPECT_TRUE(all_close(split, got, 0, 0));  // per-token results do not depend on the call's T
            EXPECT_TRUE(all_close(st, st_fast, 0, 0));
            // push only (tape replay) reaches the same state.
            auto st_push = st0;
            causal_conv1d_push(x.data(), x_stride, st_push.data(), t1, C, K);
            causal_conv1d_push(x.data() + t1 * x_stride, x_stride, st_push.data(), T - t1, C, K);
            EXPECT_TRUE(all_close(st_push, st_fast, 0, 0));
          }
        }
}

TEST(CausalConv1d, ThreadPoolSplitGivesTheSameBits) {
  // Big enough calls split their channel blocks over the pool; a channel count off the block size and
  // token counts across the kernel's token blocks must still give every output's single-thread bits.
  util::ThreadPool pool2(2), pool3(3);
  const int64_t K = 4;
  for (int64_t C : {1000, 6144 + 17})
    for (int64_t T : {5, 33, 70}) {
      SCOPED_TRACE(::testing::Message() << "C " << C << " T " << T);
      auto x = testing::randn(size_t(T * C), uint32_t(C + T));
      auto w = testing::randn(size_t(C * K), 3);
      auto st0 = testing::randn(size_t((K - 1) * C), 4);
      auto st1 = st0, st_ref = st0;
      std::vector<float> one(size_t(T * C)), want(one.size());
      ref::causal_conv1d(x.data(), C, w.data(), st_ref.data(), want.data(), C, T, C, K, true);
      causal_conv1d(x.data(), C, w.data(), st1.data(), one.data(), C, T, C, K, true);
      EXPECT_TRUE(all_close(one, want, 1e-6, 1e-5));
      for (util::ThreadPool* p : {&pool2, &pool3}) {
        auto st = st0;
        std::vector<float> got(one.size(), -1.0f);
        causal_conv1d(x.data(), C, w.data(), st.data(), got.data(), C, T, C, K, true, p);
        EXPECT_TRUE(all_close(got, one, 0, 0));
        EXPECT_TRUE(all_close(st, st1, 0, 0));
      }
    }
}

TEST(CausalConv1d, OneHotKernelShiftsInput) {
  // Tap j = K−1−s selects the input s steps back; fresh (zero) state supplies the zeros.
  const int64_t C = 9, K = 4, T = 11;
  auto x = testing::randn(size_t(T * C), 8);
  for (int64_t s = 0; s < K; ++s) {
    std::vector<float> w(size_t(C * K), 0.0f), st(size_t((K - 1) * C), 0.0f), out(size_t(T * C));
    for (int64_t c = 0; c < C; ++c) w[size_t(c * K + (K - 1 - s))] = 1.0f;
    causal_conv1d(x.data(), C, w.data(), st.data(), out.data(), C, T, C, K, false);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c)
        ASSERT_EQ(out[size_t(t * C + c)], t - s >= 0 ? x[size_t((t - s) * C + c)] : 0.0f) << s << " " << t;
  }
}

}  // namespace
}  // namespace dflash::kernels
