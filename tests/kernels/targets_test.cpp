// Runs a compact fast-vs-reference check of every SIMD kernel once per CPU target this machine
// supports (e.g. AVX2 and the scalar baseline), so code paths the best target never takes — one-lane
// loops, other tail handling — are tested too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "hwy/targets.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/deltanet.h"
#include "kernels/norm.h"
#include "kernels/ref/ops_ref.h"
#include "kernels/select.h"
#include "ops_test_util.h"
#include "util/thread_pool.h"

namespace dflash::kernels {
namespace {
using testing::all_close;

void check_all_ops() {
  util::ThreadPool pool(2);
  {  // rmsnorm, gated, l2
    const int64_t rows = 3, dim = 37;
    auto x = testing::randn(size_t(rows * dim), 1, 2.0f), z = testing::randn(size_t(rows * dim), 2);
    auto w = testing::randn(dim, 3);
    std::vector<float> got(x.size()), want(x.size());
    rmsnorm(x.data(), w.data(), got.data(), rows, dim, 1e-6f, NormKind::kOffsetOne);
    ref::rmsnorm(x.data(), w.data(), want.data(), rows, dim, 1e-6f, NormKind::kOffsetOne);
    EXPECT_TRUE(all_close(got, want, 1e-6, 2e-6)) << "rmsnorm";
    rmsnorm_gated(x.data(), z.data(), w.data(), got.data(), rows, dim, 1e-6f);
    ref::rmsnorm_gated(x.data(), z.data(), w.data(), want.data(), rows, dim, 1e-6f);
    EXPECT_TRUE(all_close(got, want, 1e-6, 4e-6)) << "gated";
    got = x;
    want = x;
    l2norm_heads(got.data(), rows, 1, dim, dim, dim, 1e-6f, 0.5f);
    ref::l2norm_heads(want.data(), rows, 1, dim, dim, dim, 1e-6f, 0.5f);
    EXPECT_TRUE(all_close(got, want, 1e-7, 2e-6)) << "l2norm";
  }
  {  // activations, softmax
    auto x = testing::uniform(45, 4, -40.0f, 40.0f);
    std::vector<float> got(x.size()), want(x.size());
    silu(x.data(), got.data(), 45);
    for (size_t i = 0; i < x.size(); ++i) want[i] = ref::silu(x[i]);
    EXPECT_TRUE(all_close(got, want, 1e-30, 2e-6)) << "silu";
    softplus(x.data(), got.data(), 45);
    for (size_t i = 0; i < x.size(); ++i) want[i] = ref::softplus(x[i]);
    EXPECT_TRUE(all_close(got, want, 1e-30, 2e-6)) << "softplus";
    got = x;
    want = x;
    softmax(got.data(), 3, 15);
    ref::softmax(want.data(), 3, 15);
    EXPECT_TRUE(all_close(got, want, 1e-7, 1e-5)) << "softmax";
  }
  {  // attention, causal + split path
    for (int64_t nt : {int64_t(45), int64_t(1100)}) {
      const int64_t n_q = 3, nh = 4, nkv = 2, hd = 19;
      auto q = testing::randn(size_t(n_q * nh * hd), 5), k = testing::randn(size_t(nt * nkv * hd), 6),
           v = testing::randn(size_t(nt * nkv * hd), 7);
      KvView kv{k.data(), v.data(), nt, nkv, hd, nkv * hd, hd};
      std::vector<float> got(size_t(n_q * nh * hd)), want(got.size());
      AttnArgs a{q.data(), n_q, nh, nh * hd, hd, got.data(), nh * hd, 0.3f};
      AttnMask m;
      m.kind = MaskKind::kCausal;
      m.q_pos0 = nt - n_q;
      attention(a, kv, m, &pool);
      a.out = want.data();
      ref::attention(a, kv, m);
      EXPECT_TRUE(all_close(got, want, 2e-6, 2e-5)) << "attention " << nt;
    }
  }
  {  // delta rule: recurrent vs reference, chunked vs recurrent
    DeltaShape s{1, 2, 13, 11, HeadMap::kGrouped};
    const int64_t T = 70, stride = 2 * 13 + 2 * 11;
    auto row = testing::randn(size_t(T * stride), 8);
    l2norm_heads(row.data(), T, 2, 13, stride, 13, 1e-6f);
    auto g = testing::uniform(size_t(T * 2), 9, -1.0f, 0.0f), beta = testing::uniform(size_t(T * 2), 10, 0.0f, 1.0f);
    DeltaInputs in{row.data(), row.data() + 13, row.data() + 26, g.data(), beta.data(), stride, stride, stride, T};
    std::vector<float> st(size_t(2 * 13 * 11), 0.0f), st_ref(st.size(), 0.0f), st_chk(st.size(), 0.0f);
    std::vector<float> o(size_t(T * 22)), o_ref(o.size()), o_chk(o.size());
    delta_rule_recurrent(s, st.data(), in, o.data(), 22, &pool);
    ref::delta_rule_recurrent(s, st_ref.data(), in, o_ref.data(), 22);
    delta_rule_chunked(s, st_chk.data(), in, o_chk.data(), 22, 16, &pool);
    EXPECT_TRUE(all_close(o, o_ref, 1e-6, 1e-5)) << "delta recurrent";
    EXPECT_LT(testing::rel_err(o_chk, o), 1e-5) << "delta chunked";
  }
  {  // delta rule with full column panels on every ISA (Dv = 80: 16-wide panels and a partial 64-wide one),
     // from a checkpoint; 5 tokens in one call must give the bits of 5 one-token calls
    const int64_t dk = 32, dv = 80, T = 5, stride = 2 * dk + 2 * dv;
    DeltaShape s{1, 2, dk, dv, HeadMap::kTiled};
    auto row = testing::randn(size_t(T * stride), 12);
    l2norm_heads(row.data(), T, 2, dk, stride, dk, 1e-6f);
    auto g = testing::uniform(size_t(T * 2), 13, -1.0f, 0.0f), beta = testing::uniform(size_t(T * 2), 14, 0.0f, 1.0f);
    DeltaInputs in{row.data(), row.data() + dk, row.data() + 2 * dk, g.data(), beta.data(), stride, stride, stride, T};
    const auto st0 = testing::randn(size_t(2 * dk * dv), 15, 0.1f);
    std::vector<float> st(st0.size()), st_ref = st0, steps = st0;
    std::vector<float> o(size_t(T * 2 * dv)), o_ref(o.size()), o_steps(o.size());
    delta_rule_recurrent(s, st.data(), in, o.data(), 2 * dv, &pool, st0.data());
    ref::delta_rule_recurrent(s, st_ref.data(), in, o_ref.data(), 2 * dv);
    EXPECT_TRUE(all_close(o, o_ref, 1e-6, 1e-5)) << "delta recurrent, full panels";
    EXPECT_TRUE(all_close(st, st_ref, 1e-6, 1e-5)) << "delta state, full panels";
    for (int64_t t = 0; t < T; ++t) {
      DeltaInputs one = in;
      one.q += t * stride;
      one.k += t * stride;
      one.v += t * stride;
      one.g += t * 2;
      one.beta += t * 2;
      one.n_tokens = 1;
      delta_rule_recurrent(s, steps.data(), one, o_steps.data() + t * 2 * dv, 2 * dv, &pool);
    }
    EXPECT_EQ(o, o_steps) << "delta: one call against token by token";
    EXPECT_EQ(st, steps) << "delta state: one call against token by token";
  }
  {  // argmax / top-k
    auto x = testing::randn(1001, 11);
    for (auto& f : x) f = std::round(f * 3.0f);
    EXPECT_EQ(argmax(x.data(), 1001), ref::argmax(x.data(), 1001));
    float gv[64], wv[64];
    int32_t gi[64], wi[64];
    ASSERT_EQ(topk(x.data(), 1001, 40, gv, gi), ref::topk(x.data(), 1001, 40, wv, wi));
    for (int i = 0; i < 40; ++i) EXPECT_EQ(gi[i], wi[i]) << "topk @" << i;
  }
}

TEST(KernelTargets, EverySupportedTargetMatchesReference) {
  const int64_t supported = hwy::SupportedTargets();
  int tested = 0;
  for (int64_t bit = 1; bit != 0 && bit <= supported; bit <<= 1) {
    if (!(supported & bit)) continue;
    hwy::SetSupportedTargetsForTest(bit);
    SCOPED_TRACE(hwy::TargetName(bit));
    std::printf("[ target   ] %s\n", hwy::TargetName(bit));
    check_all_ops();
    ++tested;
  }
  hwy::SetSupportedTargetsForTest(0);  // back to normal dispatch
  EXPECT_GE(tested, 1);
}

}  // namespace
}  // namespace dflash::kernels
