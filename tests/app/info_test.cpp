// Runs the real executable: `dflash make-demo-gguf` then `dflash info` in its three forms.
#include <gtest/gtest.h>

#include "cli_test_util.h"
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

namespace {

using dflash::app::testing::CmdResult;
CmdResult run(const std::string& args) { return dflash::app::testing::run_dflash(args); }

class InfoCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(std::string(DFLASH_BIN_DIR) + "/dflash")) << "build the dflash target first";
    path_ = (std::filesystem::temp_directory_path() / ("dflash-info-" + std::to_string(getpid()) + ".gguf")).string();
    std::filesystem::remove(path_);
    CmdResult r = run("make-demo-gguf " + path_);
    ASSERT_EQ(r.code, 0) << r.out;
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::string path_;
};

TEST_F(InfoCommand, TextTable) {
  CmdResult r = run("info " + path_);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("GGUF v3, 19 metadata keys, 56 tensors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("general.architecture"), std::string::npos);
  EXPECT_NE(r.out.find("... (512 items)]"), std::string::npos);  // long arrays abbreviated
  EXPECT_EQ(r.out.find("tok511"), std::string::npos);
  EXPECT_NE(r.out.find("blk.3.attn_q_norm.weight"), std::string::npos);
  EXPECT_NE(r.out.find("[64, 512]"), std::string::npos);
  EXPECT_NE(r.out.find("totals: 56 tensors, 274352 bytes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("245484 parameters"), std::string::npos);
  CmdResult full = run("info --full " + path_);
  ASSERT_EQ(full.code, 0);
  EXPECT_NE(full.out.find("\"tok511\"]"), std::string::npos);
}

TEST_F(InfoCommand, Json) {
  CmdResult r = run("info --json " + path_);
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["version"], 3);
  EXPECT_EQ(j["tensors"].size(), 56u);
  EXPECT_EQ(j["totals"]["tensors"], 56);
  EXPECT_EQ(j["totals"]["by_dtype"]["q8_0"]["tensors"], 25);
  uint64_t sum = 0;
  for (const auto& t : j["tensors"]) sum += t["bytes"].get<uint64_t>();
  EXPECT_EQ(j["totals"]["bytes"].get<uint64_t>(), sum);
  bool seen = false;
  for (const auto& kv : j["metadata"]) {
    if (kv["key"] != "tokenizer.ggml.tokens") continue;
    seen = true;
    EXPECT_EQ(kv["type"], "array[string]");
    EXPECT_EQ(kv["value"]["count"], 512);
    EXPECT_EQ(kv["value"]["items"].size(), 8u);
    EXPECT_EQ(kv["value"]["truncated"], true);
  }
  EXPECT_TRUE(seen);
}

TEST_F(InfoCommand, ErrorsAreOneLineAndExitOne) {
  CmdResult r = run("info /nonexistent/x.gguf 2>&1");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "dflash info: /nonexistent/x.gguf: cannot open: No such file or directory\n");
  std::string bad = std::string(DFLASH_TEST_DATA_DIR) + "/gguf/regress/huge_string_array.gguf";
  r = run("info " + bad + " 2>&1");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out.rfind("dflash info: " + bad + ": metadata key 'tokenizer.ggml.tokens'", 0), 0u) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  // The demo writer refuses to overwrite without --force.
  r = run("make-demo-gguf " + path_ + " 2>&1");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("already exists"), std::string::npos);
}

}  // namespace
