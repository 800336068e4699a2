#include <gtest/gtest.h>

#include <string>

#include "cli_test_util.h"

namespace dflash::app {
namespace {

using testing::run_dflash;

// The ISA line of `dflash version`, e.g. "avx512vnni".
std::string isa_of(const std::string& out) {
  const std::string key = "quantised matmul: ";
  const size_t p = out.find(key);
  if (p == std::string::npos) return "";
  return out.substr(p + key.size(), out.find('\n', p) - p - key.size());
}

TEST(VersionCli, MatmulIsaFollowsTheEnvironment) {
  const auto best = run_dflash("version");
  ASSERT_EQ(best.code, 0) << best.out;
  const std::string best_isa = isa_of(best.out);
  ASSERT_FALSE(best_isa.empty()) << best.out;

  // Lowering to scalar always works; asking for more than the CPU has is clamped to the best.
  EXPECT_EQ(isa_of(run_dflash("version", "DFLASH_MATMUL_ISA=scalar").out), "scalar");
  EXPECT_EQ(isa_of(run_dflash("version", "DFLASH_MATMUL_ISA=amx").out), best_isa);
  if (best_isa == "amx") {
    EXPECT_EQ(isa_of(run_dflash("version", "DFLASH_MATMUL_ISA=avx512vnni").out), "avx512vnni");
  } else {
    EXPECT_EQ(isa_of(run_dflash("version", "DFLASH_MATMUL_ISA=avx512vnni").out), best_isa);
  }
  if (best_isa != "scalar") {
    EXPECT_EQ(isa_of(run_dflash("version", "DFLASH_MATMUL_ISA=avx2").out), "avx2");
  }

  // An unknown name warns (naming the variable and the accepted values) and keeps the best.
  const auto bad = run_dflash("version 2>&1", "DFLASH_MATMUL_ISA=avx9");
  EXPECT_EQ(bad.code, 0) << bad.out;
  EXPECT_NE(bad.out.find("DFLASH_MATMUL_ISA=avx9"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("avx512vnni, amx"), std::string::npos) << bad.out;
  EXPECT_EQ(isa_of(bad.out), best_isa);
}

}  // namespace
}  // namespace dflash::app
