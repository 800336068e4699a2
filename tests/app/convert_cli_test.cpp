// `dflash convert` as a user runs it: every bad input exits non-zero with one actionable line
// (naming the file/field and what to do), and a failed run leaves no output (nor temp) file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>

#include "../convert/convert_fixture_util.h"
#include "cli_test_util.h"

namespace {

namespace fs = std::filesystem;
using dflash::app::testing::CmdResult;
using dflash::convert::testing::copy_fixture;
using dflash::convert::testing::edit_config;
using dflash::convert::testing::edit_safetensors;
using dflash::convert::testing::hf_fixture;
using dflash::convert::testing::StEntry;
using dflash::convert::testing::TempDir;

CmdResult convert(const std::string& args) { return dflash::app::testing::run_dflash("convert -q " + args + " 2>&1"); }

class ConvertCli : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fs::exists(std::string(DFLASH_BIN_DIR) + "/dflash")) << "build the dflash target first"; }

  // Runs a conversion that must fail: exit code 1, exactly one line "dflash convert: ..." holding
  // every `needles`, and nothing left in the output directory.
  void expect_failure(const std::string& in, const std::vector<std::string>& needles, const std::string& extra = "") {
    const std::string out = out_dir_ / "out.gguf";
    const auto before = out_dir_.entries();
    CmdResult r = convert(in + " " + out + " " + extra);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_EQ(r.out.rfind("dflash convert: ", 0), 0u) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line expected:\n" << r.out;
    for (const std::string& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << "'" << n << "' not in: " << r.out;
    EXPECT_EQ(out_dir_.entries(), before) << "a failed run left a file behind";
  }

  TempDir work_, out_dir_;
};

TEST_F(ConvertCli, ConvertsAFixtureAndRefusesToOverwrite) {
  const std::string out = out_dir_ / "a.gguf";
  CmdResult r = convert(hf_fixture("qwen35-dense-a") + " " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("qwen35"), std::string::npos) << r.out;
  const auto size = fs::file_size(out);
  // Existing output without --force: refused before any work, file untouched.
  r = convert(hf_fixture("qwen35-dense-vl") + " " + out);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("already exists"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--force"), std::string::npos) << r.out;
  EXPECT_EQ(fs::file_size(out), size);
  r = convert(hf_fixture("qwen35-dense-vl") + " " + out + " --force");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("skipped 21 vision-tower and 0 MTP tensors"), std::string::npos) << r.out;
  EXPECT_NE(fs::file_size(out), size);
}

TEST_F(ConvertCli, MissingDirectoryOrConfig) {
  expect_failure(work_ / "nope", {"nope", "not a directory"});
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  fs::remove(dir + "/config.json");
  expect_failure(dir, {"config.json", "not found"});
}

TEST_F(ConvertCli, BadJson) {
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  dflash::convert::testing::write_all(dir + "/config.json", "{\"architectures\": [\"Qwen3_5ForCausalLM\"], ");
  expect_failure(dir, {"config.json", "not valid JSON"});
}

TEST_F(ConvertCli, UnknownArchitecture) {
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  edit_config(dir, [](nlohmann::json& j) { j["architectures"] = {"LlamaForCausalLM"}; });
  expect_failure(dir, {"LlamaForCausalLM", "not supported"});
}

TEST_F(ConvertCli, BadConfigFieldIsNamed) {
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  edit_config(dir, [](nlohmann::json& j) { j.erase("linear_num_value_heads"); });
  expect_failure(dir, {"config.json", "'linear_num_value_heads'", "missing"});
  edit_config(dir, [](nlohmann::json& j) { j["linear_num_value_heads"] = "four"; });
  expect_failure(dir, {"'linear_num_value_heads'", "integer"});
}

TEST_F(ConvertCli, MissingTensor) {
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  edit_safetensors(dir, [](std::vector<StEntry>& v) {
    std::erase_if(v, [](const StEntry& e) { return e.name == "model.layers.2.self_attn.k_norm.weight"; });
  });
  expect_failure(dir, {"missing tensor", "layers.2.self_attn.k_norm.weight", "full_attention"});
}

TEST_F(ConvertCli, ShapeMismatch) {
  // config.json and the weights disagree: the message names the tensor, both shapes and the fields.
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  edit_config(dir, [](nlohmann::json& j) { j["intermediate_size"] = 100; });
  expect_failure(dir, {"shape mismatch", "mlp.down_proj", "[64, 96]", "[64, 100]", "intermediate_size"});
}

TEST_F(ConvertCli, LayerTypesThatContradictTheTensors) {
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  edit_config(dir, [](nlohmann::json& j) { j["layer_types"][0] = "full_attention"; });
  expect_failure(dir, {"layers.0.linear_attn", "full_attention"});
}

TEST_F(ConvertCli, UnknownSafetensorsDtype) {
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  edit_safetensors(dir, [](std::vector<StEntry>& v) {
    for (StEntry& e : v)
      if (e.name == "model.norm.weight") e.dtype = "I32";  // same byte size as F32
  });
  expect_failure(dir, {"model.safetensors", "model.norm.weight", "I32"});
}

TEST_F(ConvertCli, TruncatedSafetensors) {
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  const std::string p = dir + "/model.safetensors";
  fs::resize_file(p, fs::file_size(p) / 2);
  expect_failure(dir, {"model.safetensors"});
}

TEST_F(ConvertCli, LyingSafetensorsHeader) {
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  const std::string p = dir + "/model.safetensors";
  std::string b = dflash::convert::testing::read_all(p);
  const uint64_t huge = 1ull << 40;  // header length far past the end of the file
  std::memcpy(b.data(), &huge, 8);
  dflash::convert::testing::write_all(p, b);
  expect_failure(dir, {"model.safetensors", "header"});
}

TEST_F(ConvertCli, LyingSafetensorsOffsets) {
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  edit_safetensors(dir, [](std::vector<StEntry>& v) {
    for (StEntry& e : v)
      if (e.name == "model.norm.weight") e.shape = {65};  // shape says 260 bytes, data is 256
  });
  expect_failure(dir, {"model.safetensors", "model.norm.weight"});
}

TEST_F(ConvertCli, MissingTokenizer) {
  const std::string dir = copy_fixture("qwen35-dense-a", work_.path());
  fs::remove(dir + "/tokenizer.json");
  expect_failure(dir, {"tokenizer.json", "--no-tokenizer"});
  CmdResult r = convert(dir + " " + (out_dir_ / "nt.gguf") + " --no-tokenizer");
  EXPECT_EQ(r.code, 0) << r.out;
  fs::remove(out_dir_ / "nt.gguf");
}

TEST_F(ConvertCli, DrafterWithoutTokenizerSaysToUseTheTarget) {
  const std::string dir = copy_fixture("dflash-b8-l3", work_.path());
  fs::remove(dir + "/tokenizer.json");
  fs::remove(dir + "/tokenizer_config.json");
  expect_failure(dir, {"DFlash drafters ship no tokenizer", "--tokenizer-from TARGET_DIR"});
  expect_failure(dir, {"--tokenizer-from", "no tokenizer.json"}, "--tokenizer-from " + work_.path());
  CmdResult r = convert(dir + " " + (out_dir_ / "d.gguf") + " --tokenizer-from " + hf_fixture("qwen35-dense-a"));
  EXPECT_EQ(r.code, 0) << r.out;
  fs::remove(out_dir_ / "d.gguf");
}

TEST_F(ConvertCli, DrafterWithoutRopeTheta) {
  expect_failure(hf_fixture("dflash-b8-l2-moe"), {"config.json", "rope_theta", "--rope-theta"});
  CmdResult r = convert(hf_fixture("dflash-b8-l2-moe") + " " + (out_dir_ / "d.gguf") + " --rope-theta 10000");
  EXPECT_EQ(r.code, 0) << r.out;
  fs::remove(out_dir_ / "d.gguf");
}

TEST_F(ConvertCli, DrafterWithoutMaskToken) {
  const std::string dir = copy_fixture("dflash-b8-l3", work_.path());
  edit_config(dir, [](nlohmann::json& j) { j.erase("mask_token_id"); });
  expect_failure(dir, {"'mask_token_id'", "missing"});
}

TEST_F(ConvertCli, BadOptions) {
  expect_failure(hf_fixture("qwen35-dense-a"), {"--outtype", "q4_k_m"}, "--outtype q3_k");
  expect_failure(hf_fixture("dflash-b8-l3"), {"--draft-format", "dflash-draft"}, "--draft-format eagle3");
}

TEST_F(ConvertCli, UnwritableOutputLeavesNothing) {
  CmdResult r = convert(hf_fixture("qwen35-dense-a") + " " + (work_ / "no/such/dir/out.gguf"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(r.out.rfind("dflash convert: ", 0), 0u) << r.out;
  EXPECT_FALSE(fs::exists(work_ / "no"));
}

}  // namespace
