// `dflash quantize` and `dflash export-hf` as a user runs them: the happy paths, and every bad input
// exiting 1 with one line that names the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "cli_test_util.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

namespace {

namespace fs = std::filesystem;
using dflash::app::testing::CmdResult;
CmdResult run(const std::string& args) { return dflash::app::testing::run_dflash(args); }

std::string data(const std::string& rel) { return std::string(DFLASH_TEST_DATA_DIR) + "/" + rel; }

class QuantizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(std::string(DFLASH_BIN_DIR) + "/dflash")) << "build the dflash target first";
    dir_ = (fs::temp_directory_path() / ("dflash-qcli-" + std::to_string(getpid()))).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string p(const std::string& leaf) const { return dir_ + "/" + leaf; }
  // A copy of `src` cut to `n` bytes, or with its first bytes replaced.
  std::string truncated(const std::string& src, size_t n, const std::string& leaf) {
    std::ifstream in(src, std::ios::binary);
    std::string b((std::istreambuf_iterator<char>(in)), {});
    b.resize(std::min(n, b.size()));
    std::ofstream(p(leaf), std::ios::binary) << b;
    return p(leaf);
  }
  std::string with_magic(const std::string& src, const std::string& magic, const std::string& leaf) {
    std::ifstream in(src, std::ios::binary);
    std::string b((std::istreambuf_iterator<char>(in)), {});
    b.replace(0, magic.size(), magic);
    std::ofstream(p(leaf), std::ios::binary) << b;
    return p(leaf);
  }
  std::string dir_;
};

// Exit code 1, exactly one line, prefixed by the command and naming `file`.
void expect_one_line_error(const CmdResult& r, const std::string& cmd, const std::string& file,
                           const std::string& fragment) {
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_EQ(r.out.rfind("dflash " + cmd + ": ", 0), 0u) << r.out;
  if (!file.empty()) {
    EXPECT_NE(r.out.find(file), std::string::npos) << "the message must name " << file << ": " << r.out;
  }
  EXPECT_NE(r.out.find(fragment), std::string::npos) << r.out;
}

TEST_F(QuantizeCli, QuantizeWritesTheMixAndDryRunWritesNothing) {
  const std::string in = data("gguf/qwen35-dense-a.gguf");
  CmdResult dry = run("quantize " + in + " " + p("q.gguf") + " q4_k_m --dry-run 2>&1");
  ASSERT_EQ(dry.code, 0) << dry.out;
  EXPECT_FALSE(fs::exists(p("q.gguf")));
  EXPECT_NE(dry.out.find("blk.0.attn_qkv.weight"), std::string::npos);
  EXPECT_NE(dry.out.find("f32    -> q8_0"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("row 64 % 256 != 0: K-quant fallback"), std::string::npos);
  const size_t at = dry.out.find("output ");
  ASSERT_NE(at, std::string::npos);
  const uint64_t planned = std::stoull(dry.out.substr(at + 7));

  CmdResult r = run("quantize -q --threads 2 " + in + " " + p("q.gguf") + " Q4_K_M 2>&1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("wrote " + p("q.gguf") + " (Q4_K_M, " + std::to_string(planned) + " bytes"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(fs::file_size(p("q.gguf")), planned);
  auto f = dflash::formats::GgufFile::open(p("q.gguf"));
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ(*f->get_u32("general.file_type"), 15u);

  // Without -q and not on a terminal: plain progress lines on stderr, the result on stdout.
  r = run("quantize " + in + " " + p("q2.gguf") + " F16 2>/dev/null");
  ASSERT_EQ(r.code, 0);
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.1f%%", 100.0 * double(fs::file_size(p("q2.gguf"))) / double(fs::file_size(in)));
  EXPECT_EQ(r.out, "wrote " + p("q2.gguf") + " (F16, " + std::to_string(fs::file_size(p("q2.gguf"))) + " bytes, " +
                       pct + " of the input)\n");
}

TEST_F(QuantizeCli, QuantizeBadInputs) {
  const std::string good = data("gguf/qwen35-dense-a.gguf");
  const std::string out = p("out.gguf");
  // Truncated inside the metadata, truncated inside the tensor data, wrong magic, missing.
  std::string t1 = truncated(good, 5000, "trunc-meta.gguf");
  expect_one_line_error(run("quantize " + t1 + " " + out + " Q8_0 2>&1"), "quantize", t1, "cannot fit");
  std::string t2 = truncated(good, fs::file_size(good) - 1000, "trunc-data.gguf");
  expect_one_line_error(run("quantize " + t2 + " " + out + " Q8_0 2>&1"), "quantize", t2, "");
  std::string c = with_magic(good, "GGUX", "corrupt.gguf");
  expect_one_line_error(run("quantize " + c + " " + out + " Q8_0 2>&1"), "quantize", c, "not a GGUF file");
  expect_one_line_error(run("quantize " + p("missing.gguf") + " " + out + " Q8_0 2>&1"), "quantize",
                        p("missing.gguf"), "cannot open");
  // A type we do not produce.
  expect_one_line_error(run("quantize " + good + " " + out + " Q3_K_S 2>&1"), "quantize", "",
                        "unknown type 'Q3_K_S' (Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16, BF16, F32)");
  // Output exists: refused before any work, file untouched; --force replaces it.
  std::ofstream(out) << "precious";
  expect_one_line_error(run("quantize " + good + " " + out + " Q8_0 2>&1"), "quantize", out,
                        "already exists (pass --force to overwrite)");
  EXPECT_EQ(fs::file_size(out), 8u);
  EXPECT_EQ(run("quantize -q --force " + good + " " + out + " Q8_0 >/dev/null 2>&1").code, 0);
  EXPECT_GT(fs::file_size(out), 8u);
  // Output directory missing / not a directory.
  expect_one_line_error(run("quantize -q " + good + " " + p("no/such/dir/o.gguf") + " Q8_0 2>&1"), "quantize",
                        p("no/such/dir/o.gguf"), "cannot create temporary file");
  expect_one_line_error(run("quantize -q " + good + " " + out + "/o.gguf Q8_0 2>&1"), "quantize", out + "/o.gguf",
                        "Not a directory");
  if (geteuid() != 0) {  // permission bits do not stop root
    fs::create_directories(p("ro"));
    fs::permissions(p("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    expect_one_line_error(run("quantize -q " + good + " " + p("ro/o.gguf") + " Q8_0 2>&1"), "quantize",
                          p("ro/o.gguf"), "Permission denied");
    fs::permissions(p("ro"), fs::perms::owner_all);
  }
  // Already quantized input: refused without --allow-requantize (needs 256-wide rows: the synth model).
  ASSERT_EQ(run("synth --shape tiny --type Q8_0 " + p("s8.gguf") + " >/dev/null 2>&1").code, 0);
  expect_one_line_error(run("quantize -q " + p("s8.gguf") + " " + p("s4.gguf") + " Q4_K_M 2>&1"), "quantize",
                        p("s8.gguf"), "pass --allow-requantize");
  EXPECT_FALSE(fs::exists(p("s4.gguf")));
  CmdResult r = run("quantize -q --allow-requantize " + p("s8.gguf") + " " + p("s4.gguf") + " Q4_K_M 2>&1");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("warning: "), std::string::npos) << r.out;
  // Nothing but the outputs asked for is left in the directory (no temp files).
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST_F(QuantizeCli, ExportHfWritesTheZLabLayout) {
  const std::string in = data("gguf/dflash-b8-l3.gguf");
  CmdResult r = run("export-hf " + in + " " + p("hf") + " --num-target-layers 6 2>/dev/null");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "wrote " + p("hf") + "/config.json and " + p("hf") + "/model.safetensors (36 tensors, float32)\n");
  auto st = dflash::formats::SafetensorsFile::open(p("hf/model.safetensors"));
  ASSERT_TRUE(st.is_ok()) << st.status().to_string();
  EXPECT_NE(st->find("layers.2.self_attn.q_proj.weight"), nullptr);
  r = run("export-hf -q --dtype BF16 --force " + in + " " + p("hf") + " 2>&1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("warning: 36 F32 tensors of " + in + " changed when stored as bfloat16"), std::string::npos)
      << r.out;
  st = dflash::formats::SafetensorsFile::open(p("hf/model.safetensors"));
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st->find("fc.weight")->dtype, dflash::tensor::DType::kBF16);
}

TEST_F(QuantizeCli, ExportHfBadInputs) {
  const std::string good = data("gguf/dflash-b8-l3.gguf");
  const std::string target = data("gguf/qwen35-dense-a.gguf");
  expect_one_line_error(run("export-hf " + target + " " + p("x") + " 2>&1"), "export-hf", target,
                        "architecture 'qwen35' is not a DFlash drafter");
  EXPECT_FALSE(fs::exists(p("x"))) << "a refused export must not leave its directory behind";
  std::string t = truncated(good, fs::file_size(good) / 2, "trunc.gguf");
  expect_one_line_error(run("export-hf " + t + " " + p("x") + " 2>&1"), "export-hf", t, "");
  std::string c = with_magic(good, "XXXX", "corrupt.gguf");
  expect_one_line_error(run("export-hf " + c + " " + p("x") + " 2>&1"), "export-hf", c, "bad magic");
  expect_one_line_error(run("export-hf " + good + " " + p("x") + " --dtype q8_0 2>&1"), "export-hf", "",
                        "unknown --dtype 'q8_0' (bf16, f16 or f32)");
  // Output: an existing file where the directory should be, a directory under a file, existing outputs.
  std::ofstream(p("file")) << "x";
  expect_one_line_error(run("export-hf -q " + good + " " + p("file") + " 2>&1"), "export-hf", p("file"),
                        "exists and is not a directory");
  expect_one_line_error(run("export-hf -q " + good + " " + p("file/sub") + " 2>&1"), "export-hf", p("file/sub"),
                        "cannot create the output directory");
  ASSERT_EQ(run("export-hf -q " + good + " " + p("hf") + " >/dev/null 2>&1").code, 0);
  expect_one_line_error(run("export-hf -q " + good + " " + p("hf") + " 2>&1"), "export-hf",
                        p("hf") + "/model.safetensors", "already exists (pass --force to overwrite)");
  fs::remove(p("hf/model.safetensors"));
  expect_one_line_error(run("export-hf -q " + good + " " + p("hf") + " 2>&1"), "export-hf", p("hf") + "/config.json",
                        "already exists");
  EXPECT_FALSE(fs::exists(p("hf/model.safetensors"))) << "a refused export writes nothing";
  if (geteuid() != 0) {
    fs::create_directories(p("ro"));
    fs::permissions(p("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    expect_one_line_error(run("export-hf -q " + good + " " + p("ro") + " 2>&1"), "export-hf", p("ro"),
                          "Permission denied");
    fs::permissions(p("ro"), fs::perms::owner_all);
  }
}

}  // namespace
