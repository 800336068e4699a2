#include "spec/sampler.h"

#include <gtest/gtest.h>

#include <cmath>

namespace dflash::spec {
namespace {

TEST(Sampler, ArgmaxTakesFirstIndexOnTies) {
  float l[] = {1, 3, 3, 2};
  EXPECT_EQ(argmax(l, 4), 1);
}

TEST(Sampler, DistributionFollowsTemperatureTopKSoftmaxTopP) {
  // Worked by hand: logits / T = {2, 1, 0, -1}; top_k = 3 keeps {0,1,2};
  // softmax = e^{2,1,0} / (e^2 + e + 1) = {0.6652, 0.2447, 0.0900};
  // top_p = 0.8: keep while the mass before a token is < 0.8 → tokens 0 and 1 (0.6652 < 0.8,
  // 0.9099 ≥ 0.8 stops before token 2); renormalised {0.7311, 0.2689}.
  float logits[] = {4, 2, 0, -2};
  Sampler s({2.0f, 3, 0.8f, 0.0f, 0}, 4);
  Distribution d;
  s.distribution(logits, &d);
  ASSERT_EQ(d.ids, (std::vector<int32_t>{0, 1}));
  EXPECT_NEAR(d.probs[0], 0.731059, 1e-5);
  EXPECT_NEAR(d.probs[1], 0.268941, 1e-5);
  EXPECT_EQ(d.prob(2), 0.0f);
}

TEST(Sampler, MinPDropsTokensBelowAFractionOfTheTop) {
  float logits[] = {0, std::log(0.5f), std::log(0.05f)};
  Sampler s({1.0f, 0, 1.0f, 0.1f, 0}, 3);
  Distribution d;
  s.distribution(logits, &d);
  ASSERT_EQ(d.ids.size(), 2u);  // 0.05 < 0.1 × 1
  EXPECT_NEAR(d.probs[0], 1 / 1.5, 1e-6);
}

TEST(Sampler, SampleFrequenciesFollowTheDistribution) {
  float logits[] = {0, std::log(3.0f)};
  Sampler s({1.0f, 0, 1.0f, 0.0f, 42}, 2);
  int ones = 0;
  for (int i = 0; i < 40000; ++i) ones += s.sample_logits(logits) == 1;
  EXPECT_NEAR(ones / 40000.0, 0.75, 0.01);
}

TEST(Sampler, ResidualSamplesOnlyWhereTargetExceedsDraft) {
  Sampler s({1.0f, 0, 1.0f, 0.0f, 1}, 3);
  Distribution p, q;
  float lp[] = {0, 0, 0};
  float lq[] = {5, -5, -5};
  s.distribution(lp, &p);
  s.distribution(lq, &q);
  for (int i = 0; i < 1000; ++i) EXPECT_NE(s.sample_residual(p, q), 0);
}

}  // namespace
}  // namespace dflash::spec
