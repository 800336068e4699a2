// Runs the real executable: dflash run / bench on the tiny reference pair, and their errors.
#include <gtest/gtest.h>

#include "cli_test_util.h"
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace {

using dflash::app::testing::CmdResult;
CmdResult sh(const std::string& args) { return dflash::app::testing::run_dflash(args + " 2>&1", "DFLASH_LOG=error"); }

const std::string kData = DFLASH_TEST_DATA_DIR;
const std::string kPair = "-m " + kData + "/gguf/qwen35-dense-a.gguf -md " + kData + "/gguf/dflash-b8-l3.gguf";

TEST(RunCommand, CompareReportsIdenticalOutputsAndStatistics) {
  CmdResult r = sh("run " + kPair + " -p 'def f(x):' -n 24 --compare --draft-min-conf 0");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* want : {"[ar]", "[dflash]", "drafted", "accepted", "tau", "tok/s", "outputs identical"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  // By default drafts the (random-weight) drafter doubts are not verified: said, and still identical.
  CmdResult d = sh("run " + kPair + " -p 'def f(x):' -n 24 --compare");
  ASSERT_EQ(d.code, 0) << d.out;
  for (const char* want : {"below --draft-min-conf not verified", "outputs identical"})
    EXPECT_NE(d.out.find(want), std::string::npos) << want << "\n" << d.out;
  EXPECT_NE(sh("run " + kPair + " -p x -n 4 --draft-min-conf 1.5").code, 0);
}

// --profile: per-op table grouped by tokens per forward: decode (1), the verify block (8, the
// drafter's), the draft ops apart from the target's, the round envelopes.
TEST(RunCommand, ProfileTablesPerTokenCount) {
  CmdResult r = sh("run " + kPair + " -p 'def f(x):' -n 24 --profile --compare -q --draft-min-conf 0");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* want : {"profile: calls with 1 token", "profile: calls with 8 tokens", "[forward]", "[round]",
                           "[prefill]", "[draft]", "draft/attn_q.weight", "attn_qkv.weight", "deltanet_recurrent", "checkpoint",
                           "us/call"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  CmdResult off = sh("run " + kPair + " -p 'def f(x):' -n 8 -q");
  ASSERT_EQ(off.code, 0) << off.out;
  EXPECT_EQ(off.out.find("profile:"), std::string::npos) << off.out;
  EXPECT_EQ(r.out.find("calls with 0 tokens"), std::string::npos) << r.out;  // everything inside an envelope
}

// --lookup drafts from the prompt and output with no drafter model; output identical at T = 0.
TEST(RunCommand, LookupNeedsNoDrafterAndStaysIdentical) {
  const std::string target = "-m " + kData + "/gguf/qwen35-dense-a.gguf";
  CmdResult r = sh("run " + target + " -p 'a b a b a b a b' -n 32 --lookup 3 --compare");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* want : {"[ar]", "[lookup]", "drafted", "outputs identical"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
  CmdResult bad = sh("run " + target + " -p x -n 4 --lookup 0");
  EXPECT_NE(bad.code, 0) << bad.out;
  CmdResult big = sh("run " + target + " -p x -n 4 --lookup 3 --block-size 100");
  EXPECT_NE(big.code, 0) << big.out;
  EXPECT_NE(big.out.find("largest verify block"), std::string::npos) << big.out;
  CmdResult none = sh("run " + target + " -p x -n 4 --compare");
  EXPECT_NE(none.out.find("--lookup"), std::string::npos) << none.out;
}

TEST(RunCommand, TokenPromptsAndErrors) {
  CmdResult ok = sh("run -m " + kData + "/gguf/qwen35-dense-a.gguf --tokens 1,2,3 -n 5 -q");
  EXPECT_EQ(ok.code, 0) << ok.out;
  CmdResult both = sh("run -m " + kData + "/gguf/qwen35-dense-a.gguf --tokens 1 -p hi");
  EXPECT_NE(both.code, 0);
  EXPECT_NE(both.out.find("exactly one of"), std::string::npos) << both.out;
  CmdResult bad_id = sh("run -m " + kData + "/gguf/qwen35-dense-a.gguf --tokens 1,99999");
  EXPECT_NE(bad_id.code, 0);
  EXPECT_NE(bad_id.out.find("99999"), std::string::npos) << bad_id.out;
  CmdResult missing = sh("run -m /nonexistent/model.gguf -p hi");
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.out.find("/nonexistent/model.gguf"), std::string::npos) << missing.out;
  CmdResult too_long = sh("run -m " + kData + "/gguf/qwen35-dense-a.gguf -c 8 --tokens 1,2,3,4,5,6,7,8,9");
  EXPECT_NE(too_long.code, 0);
  EXPECT_NE(too_long.out.find("ctx-size"), std::string::npos) << too_long.out;
}

// Target mode: prefill, decode and c(B) for every requested block, with and without rejection.
TEST(BenchCommand, TargetModeReportsDecodePrefillAndVerifyCostPerBlock) {
  CmdResult r = sh("bench -m " + kData +
                   "/gguf/qwen35-dense-a.gguf --blocks 1,2,4 --reps 2 -n 4 --prefill 16 --no-bandwidth --json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find("{\"")), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_GT(j["decode_tok_s"].get<double>(), 0.0);
  EXPECT_GT(j["prefill_tok_s"].get<double>(), 0.0);
  EXPECT_FALSE(j.contains("bandwidth_gb_s"));
  for (const char* b : {"1", "2", "4"}) {
    ASSERT_TRUE(j["c_of_b"].contains(b)) << r.out;
    EXPECT_GT(j["c_of_b"][b]["c"].get<double>(), 0.0);
    EXPECT_GT(j["c_of_b"][b]["c_half_rejected"].get<double>(), 0.0);
    EXPECT_GT(j["c_of_b"][b]["c_one_kept_lazy_head"].get<double>(), 0.0);
    EXPECT_GT(j["c_of_b"][b]["verify_ms"].get<double>(), 0.0);
  }
  EXPECT_EQ(j["c_of_b"].size(), 3u);
}

TEST(BenchCommand, PairJsonHasTheDocumentedKeys) {
  const std::string prompts = (std::filesystem::temp_directory_path() /
                               ("dflash-prompts-" + std::to_string(getpid()) + ".txt")).string();
  {
    std::ofstream f(prompts);
    f << "def add(a, b):\\n    return a + b\n" << "Once upon a time\n";
  }
  CmdResult r = sh("bench " + kPair + " --prompts " + prompts + " -n 16 --json");
  std::filesystem::remove(prompts);
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find("{\"")), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  for (const char* k : {"ar_tok_s", "dflash_tok_s", "speedup", "tau", "acceptance", "identical"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_TRUE(j["identical"].get<bool>());
  EXPECT_EQ(j["prompts"].get<int>(), 2);
  EXPECT_FALSE(j["chat"].get<bool>());
}

TEST(BenchCommand, PairBlocksAndAdaptiveReportSpeedAndTauPerConfiguration) {
  const std::string prompts = (std::filesystem::temp_directory_path() /
                               ("dflash-blocks-prompts-" + std::to_string(getpid()) + ".txt")).string();
  {
    std::ofstream f(prompts);
    f << "def add(a, b):\\n    return a + b\n";
  }
  CmdResult r =
      sh("bench " + kPair + " --prompts " + prompts + " -n 16 --pair-blocks 2,4 --adaptive --lookup 3 --pair-reps 2 --json");
  std::filesystem::remove(prompts);
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find("{\"")), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  for (const char* b : {"2", "4"}) {
    ASSERT_TRUE(j["fixed_block_tok_s"].contains(b)) << r.out;
    EXPECT_GT(j["fixed_block_tok_s"][b].get<double>(), 0.0);
    // Every round commits at least one token and at most a block.
    const double tau = j["fixed_block_tau"][b].get<double>();
    EXPECT_GE(tau, 1.0);
    EXPECT_LE(tau, std::stod(b));
  }
  EXPECT_GT(j["adaptive_tok_s"].get<double>(), 0.0);
  EXPECT_GE(j["adaptive_tau"].get<double>(), 1.0);
  // The adaptive policy's verified blocks: sizes 1..16, a round count each, at least one round in all.
  ASSERT_TRUE(j["adaptive_verify_sizes"].is_object()) << r.out;
  int64_t adaptive_rounds = 0;
  for (const auto& [b, n] : j["adaptive_verify_sizes"].items()) {
    EXPECT_GE(std::stoi(b), 1);
    EXPECT_LE(std::stoi(b), 16);
    EXPECT_GT(n.get<int64_t>(), 0);
    adaptive_rounds += n.get<int64_t>();
  }
  EXPECT_GT(adaptive_rounds, 0);
  // Its drafting rounds' cost against plain decoding: a share of its decode time (negative where drafting
  // paid; a drafting round cannot take less than no time, so never below −(tokens it committed) shares).
  for (const char* k : {"adaptive_drafting_loss", "hybrid_adaptive_drafting_loss"}) {
    ASSERT_TRUE(j[k].is_number()) << k << ": " << r.out;
    EXPECT_LT(std::fabs(j[k].get<double>()), 16.0) << k;
  }
  // The best fixed block is one of those timed (plain decoding = 1, the drafter's own block, --pair-blocks),
  // and the ratios are the adaptive rate over theirs.
  const int best = j["best_fixed_block"].get<int>(), own = j["block_size"].get<int>();
  EXPECT_TRUE(best == 1 || best == own || best == 2 || best == 4) << best;
  const double best_tok_s = best == 1     ? j["ar_tok_s"].get<double>()
                            : best == own ? j["dflash_tok_s"].get<double>()
                                          : j["fixed_block_tok_s"][std::to_string(best)].get<double>();
  EXPECT_DOUBLE_EQ(j["best_fixed_tok_s"].get<double>(), best_tok_s);
  for (double v : {j["ar_tok_s"].get<double>(), j["dflash_tok_s"].get<double>(),
                   j["fixed_block_tok_s"]["2"].get<double>(), j["fixed_block_tok_s"]["4"].get<double>()})
    EXPECT_LE(v, best_tok_s);
  EXPECT_NEAR(j["adaptive_vs_best_fixed"].get<double>(), j["adaptive_tok_s"].get<double>() / best_tok_s, 1e-9);
  EXPECT_NEAR(j["adaptive_vs_main_block"].get<double>(),
              j["adaptive_tok_s"].get<double>() / j["dflash_tok_s"].get<double>(), 1e-9);
  EXPECT_EQ(j["pair_reps"].get<int>(), 2);
  for (const char* k : {"lookup", "lookup_adaptive"}) {
    EXPECT_GT(j[std::string(k) + "_tok_s"].get<double>(), 0.0) << k;
    EXPECT_GE(j[std::string(k) + "_tau"].get<double>(), 1.0) << k;
  }
  EXPECT_EQ(j["lookup_ngram"].get<int>(), 3);
  const auto& share = j["dflash_time_share"];
  const double sum = share["draft"].get<double>() + share["verify"].get<double>() + share["rollback"].get<double>();
  EXPECT_GT(share["verify"].get<double>(), 0.0);
  EXPECT_LE(sum, 1.0 + 1e-9);
  EXPECT_TRUE(j["identical"].get<bool>());
}

TEST(BenchCommand, PairWithChatTemplateStaysIdentical) {
  const std::string prompts = (std::filesystem::temp_directory_path() /
                               ("dflash-chat-prompts-" + std::to_string(getpid()) + ".txt")).string();
  {
    std::ofstream f(prompts);
    f << "Write a function that adds two numbers.\\n\\nKeep it short.\n" << "Hi\n";
  }
  CmdResult r = sh("bench " + kPair + " --prompts " + prompts + " -n 12 --chat --system Brief --no-think --json");
  std::filesystem::remove(prompts);
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find("{\"")), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_TRUE(j["chat"].get<bool>());
  EXPECT_TRUE(j["identical"].get<bool>());
  EXPECT_EQ(j["prompts"].get<int>(), 2);
}

TEST(ServeCommand, UnusableAddressIsAClearError) {
  CmdResult r = sh("serve -m " + kData + "/gguf/qwen35-dense-a.gguf --host 203.0.113.7 --port 8080");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("cannot listen on 203.0.113.7:8080"), std::string::npos) << r.out;
  CmdResult missing = sh("serve -m /nonexistent/model.gguf");
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.out.find("/nonexistent/model.gguf"), std::string::npos) << missing.out;
}

}  // namespace
