#include "tensor/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#if defined(__F16C__) || defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dflash::tensor {
namespace {

__attribute__((target("f16c"))) uint16_t hw_fp32_to_fp16(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float hw_fp16_to_fp32(uint16_t h) { return _cvtsh_ss(h); }

TEST(DType, Fp16ConversionsMatchF16cOnEveryHalf) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C on this CPU";
  for (uint32_t h = 0; h < 65536; ++h) {
    float a = fp16_to_fp32(uint16_t(h)), b = hw_fp16_to_fp32(uint16_t(h));
    if (std::isnan(b)) {
      ASSERT_TRUE(std::isnan(a));
      continue;
    }
    ASSERT_EQ(fp32_to_bits(a), fp32_to_bits(b)) << "h=" << h;
  }
}

TEST(DType, Fp32ToFp16RoundsLikeF16c) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C on this CPU";
  // Every 97th float bit pattern plus the boundaries around subnormals and overflow.
  for (uint64_t w = 0; w < (1ull << 32); w += 97) {
    float f = fp32_from_bits(uint32_t(w));
    uint16_t a = fp32_to_fp16(f), b = hw_fp32_to_fp16(f);
    if (std::isnan(f)) {
      ASSERT_EQ(a & 0x7c00, 0x7c00);
      ASSERT_NE(a & 0x3ff, 0);
      continue;
    }
    ASSERT_EQ(a, b) << "bits=" << w;
  }
}

TEST(DType, Bf16RoundTripsAndRoundsToNearestEven) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_fp32(0x3f80), 1.0f);
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (down).
  EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
}

TEST(DType, InfoMatchesGgufTable) {
  EXPECT_EQ(row_size(DType::kQ4_K, 512), 288u);
  EXPECT_EQ(row_size(DType::kQ8_0, 64), 68u);
  EXPECT_EQ(row_size(DType::kQ6_K, 256), 210u);
  EXPECT_EQ(row_size(DType::kBF16, 10), 20u);
  EXPECT_FALSE(dtype_info(4).has_value());  // removed Q4_2
  EXPECT_EQ(*dtype_from_name("Q4_K"), DType::kQ4_K);
  EXPECT_STREQ(dtype_name(DType::kQ6_K), "q6_K");
}

}  // namespace
}  // namespace dflash::tensor
