// dflash quantize as a library: the plan (recipe types, fallbacks, requantize rule), the written file
// (metadata, values, round trips, error bounds, determinism across thread counts) and failure handling.
#include "convert/quantize.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "formats/quant.h"
#include "util/mmap_file.h"

namespace dflash::convert {
namespace {

namespace fs = std::filesystem;
using formats::FileType;
using formats::GgufFile;
using formats::GgufWriter;
using tensor::DType;

std::string tmp_path(const std::string& leaf) {
  return (fs::temp_directory_path() / ("dflash-quant-" + std::to_string(getpid()) + "-" + leaf)).string();
}

// A small model-shaped GGUF: 8 layers of 256-wide matrices (so K-quants apply), plus tensors that must
// fall back (64-wide rows → Q8_0, 48-wide rows → F16) and tensors that stay F32 (norms, 1-D, conv).
struct TestModel {
  std::vector<std::vector<float>> data;
  GgufWriter w;
  void add(const std::string& name, std::vector<int64_t> ne, std::mt19937& rng, float scale = 0.05f,
           bool f16_exact = false) {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    std::normal_distribution<float> nd(0.0f, scale);
    data.emplace_back(static_cast<size_t>(n));
    for (float& v : data.back()) {
      v = nd(rng);
      if (f16_exact) v = tensor::fp16_to_fp32(tensor::fp32_to_fp16(v));
    }
    ASSERT_TRUE(w.add_tensor(name, DType::kF32, ne, data.back().data()).is_ok());
  }
};

void build_model(TestModel& m, int n_layers = 8, bool f16_exact = false, bool tied = false) {
  std::mt19937 rng(42);
  ASSERT_TRUE(m.w.set_string("general.architecture", "testarch").is_ok());
  ASSERT_TRUE(m.w.set_string("general.name", "quantize test").is_ok());
  ASSERT_TRUE(m.w.set_u32("testarch.block_count", static_cast<uint32_t>(n_layers)).is_ok());
  ASSERT_TRUE(m.w.set_u32("general.file_type", 0).is_ok());
  ASSERT_TRUE(m.w.set("tokenizer.ggml.tokens", formats::GgufValue::array_strings(
                                                   std::vector<std::string>{"a", "b", "c"})).is_ok());
  ASSERT_TRUE(m.w.set_f32("testarch.rope.freq_base", 1e7f).is_ok());
  m.add("token_embd.weight", {256, 32}, rng, 1.0f, f16_exact);
  for (int i = 0; i < n_layers; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    m.add(b + "attn_norm.weight", {256}, rng, 1.0f, f16_exact);
    m.add(b + "attn_q.weight", {256, 256}, rng, 0.05f, f16_exact);
    m.add(b + "attn_v.weight", {256, 64}, rng, 0.05f, f16_exact);
    m.add(b + "ffn_down.weight", {256, 256}, rng, 0.05f, f16_exact);
    m.add(b + "ffn_up.weight", {64, 256}, rng, 0.05f, f16_exact);  // 64-wide rows: no K-quant
    m.add(b + "ssm_conv1d.weight", {4, 64}, rng, 0.3f, f16_exact);
  }
  m.add("odd.weight", {48, 8}, rng, 0.05f, f16_exact);  // 48-wide rows: not even Q8_0
  m.add("output_norm.weight", {256}, rng, 1.0f, f16_exact);
  if (!tied) m.add("output.weight", {256, 32}, rng, 0.05f, f16_exact);
}

std::string write_model(TestModel& m, const std::string& leaf) {
  const std::string p = tmp_path(leaf);
  fs::remove(p);
  EXPECT_TRUE(m.w.write(p, true).is_ok());
  return p;
}

QuantizeOptions opts(FileType ft, int threads = 0) {
  QuantizeOptions o;
  o.file_type = ft;
  o.threads = threads;
  o.progress = false;
  return o;
}

util::Result<GgufFile> quantize(const std::string& in, const std::string& out, const QuantizeOptions& o,
                                QuantizePlan* plan_out = nullptr) {
  DFLASH_ASSIGN_OR_RETURN(GgufFile f, GgufFile::open(in));
  DFLASH_ASSIGN_OR_RETURN(QuantizePlan plan, plan_quantize(f, o));
  DFLASH_RETURN_IF_ERROR(write_quantized(f, plan, o, out));
  if (plan_out) *plan_out = plan;
  return GgufFile::open(out);
}

std::vector<float> decode(const tensor::Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.nelements()));
  for (int64_t r = 0; r < t.rows(); ++r) formats::dequantize_row(t.dtype, t.row(r), v.data() + r * t.ne[0], t.ne[0]);
  return v;
}

TEST(Quantize, Q4KMPlanFollowsTheRecipe) {
  TestModel m;
  build_model(m);
  const std::string in = write_model(m, "plan.gguf");
  auto f = GgufFile::open(in);
  ASSERT_TRUE(f.is_ok());
  auto p = plan_quantize(*f, opts(FileType::kMostlyQ4_K_M));
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->n_layers, 8);
  EXPECT_FALSE(p->tied_embeddings);
  std::map<std::string, const TensorPlan*> by;
  for (const auto& t : p->tensors) by[t.src.name] = &t;
  // use_more_bits(i, 8): layers 0 (first eighth), 7 (last eighth), and 3, 6 ((i − 1) % 3 == 2).
  for (int i = 0; i < 8; ++i) {
    SCOPED_TRACE(i);
    const bool more = i == 0 || i == 3 || i == 6 || i == 7;
    const std::string b = "blk." + std::to_string(i) + ".";
    EXPECT_EQ(by[b + "ffn_down.weight"]->to, more ? DType::kQ6_K : DType::kQ4_K);
    EXPECT_EQ(by[b + "attn_v.weight"]->to, more ? DType::kQ6_K : DType::kQ4_K);
    EXPECT_EQ(by[b + "attn_q.weight"]->to, DType::kQ4_K);
    if (more) {
      EXPECT_EQ(by[b + "ffn_down.weight"]->note, "more bits: layer " + std::to_string(i));
    }
    // 64-wide rows: Q4_K needs 256; llama.cpp would use Q5_0, which we lack, so Q8_0 (more bits, never fewer).
    EXPECT_EQ(by[b + "ffn_up.weight"]->to, DType::kQ8_0);
    EXPECT_EQ(by[b + "ffn_up.weight"]->note, "row 64 % 256 != 0: K-quant fallback");
    EXPECT_EQ(by[b + "attn_norm.weight"]->to, DType::kF32);
    EXPECT_EQ(by[b + "ssm_conv1d.weight"]->to, DType::kF32);
  }
  EXPECT_EQ(by["output.weight"]->to, DType::kQ6_K);
  EXPECT_EQ(by["token_embd.weight"]->to, DType::kQ4_K);
  EXPECT_EQ(by["output_norm.weight"]->to, DType::kF32);
  EXPECT_EQ(by["odd.weight"]->to, DType::kF16) << "48-wide rows fit neither K-quants nor Q8_0";
  EXPECT_EQ(p->n_requantized, 0);

  const std::string table = format_plan(*p);
  EXPECT_NE(table.find("blk.7.ffn_down.weight"), std::string::npos);
  EXPECT_NE(table.find("f32    -> q6_K"), std::string::npos) << table;
  EXPECT_NE(table.find("output " + std::to_string(p->out_file_size) + " bytes"), std::string::npos) << table;

  // The plan's size is the size of the file written.
  const std::string out = tmp_path("plan-out.gguf");
  fs::remove(out);
  auto q = quantize(in, out, opts(FileType::kMostlyQ4_K_M));
  ASSERT_TRUE(q.is_ok()) << q.status().to_string();
  EXPECT_EQ(q->file_size(), p->out_file_size);
  EXPECT_EQ(fs::file_size(out), p->out_file_size);
  for (const auto& t : p->tensors) EXPECT_EQ(q->find_tensor(t.src.name)->tensor.dtype, t.to) << t.src.name;
  fs::remove(in);
  fs::remove(out);
}

TEST(Quantize, TiedEmbeddingsGetTheOutputType) {
  TestModel m;
  build_model(m, 8, false, /*tied=*/true);
  const std::string in = write_model(m, "tied.gguf");
  auto f = GgufFile::open(in);
  ASSERT_TRUE(f.is_ok());
  auto p = plan_quantize(*f, opts(FileType::kMostlyQ4_K_M));
  ASSERT_TRUE(p.is_ok());
  EXPECT_TRUE(p->tied_embeddings);
  for (const auto& t : p->tensors)
    if (t.src.name == "token_embd.weight") {
      EXPECT_EQ(t.to, DType::kQ6_K);
    }
  fs::remove(in);
}

TEST(Quantize, MetadataIsCopiedWithTheNewFileType) {
  TestModel m;
  build_model(m, 2);
  const std::string in = write_model(m, "meta.gguf");
  const std::string out = tmp_path("meta-out.gguf");
  fs::remove(out);
  auto q = quantize(in, out, opts(FileType::kMostlyQ8_0));
  ASSERT_TRUE(q.is_ok()) << q.status().to_string();
  auto f = GgufFile::open(in);
  ASSERT_TRUE(f.is_ok());
  // Same keys in the same order; only file_type changes, quantization_version is added.
  ASSERT_EQ(q->metadata().size(), f->metadata().size() + 1);
  for (size_t i = 0; i < f->metadata().size(); ++i) {
    const auto& a = f->metadata()[i];
    const auto& b = q->metadata()[i];
    EXPECT_EQ(a.key, b.key);
    if (a.key == "general.file_type") {
      EXPECT_EQ(b.value.as_u64(), 7u);
    } else {
      EXPECT_TRUE(a.value == b.value) << a.key;
    }
  }
  EXPECT_EQ(q->metadata().back().key, "general.quantization_version");
  EXPECT_EQ(*q->get_u32("general.quantization_version"), 2u);
  EXPECT_EQ(q->tensors().size(), f->tensors().size());
  fs::remove(in);
  fs::remove(out);
}

TEST(Quantize, F16AndBF16RoundTripsAreExactForRepresentableValues) {
  TestModel m;
  build_model(m, 2, /*f16_exact=*/true);
  const std::string in = write_model(m, "rt.gguf");
  auto orig = GgufFile::open(in);
  ASSERT_TRUE(orig.is_ok());
  for (FileType half : {FileType::kMostlyF16, FileType::kMostlyBF16}) {
    SCOPED_TRACE(formats::file_type_name(half));
    const std::string mid = tmp_path("rt-half.gguf"), back = tmp_path("rt-back.gguf");
    fs::remove(mid);
    fs::remove(back);
    auto h = quantize(in, mid, opts(half));
    ASSERT_TRUE(h.is_ok()) << h.status().to_string();
    const DType want = half == FileType::kMostlyF16 ? DType::kF16 : DType::kBF16;
    EXPECT_EQ(h->find_tensor("blk.0.attn_q.weight")->tensor.dtype, want);
    EXPECT_EQ(h->find_tensor("blk.0.attn_norm.weight")->tensor.dtype, DType::kF32);
    EXPECT_EQ(h->find_tensor("odd.weight")->tensor.dtype, want) << "half types have no block size to miss";
    auto f = quantize(mid, back, opts(FileType::kAllF32));
    ASSERT_TRUE(f.is_ok()) << f.status().to_string();
    for (const auto& t : orig->tensors()) {
      const auto* b = f->find_tensor(t.tensor.name);
      ASSERT_NE(b, nullptr);
      ASSERT_EQ(b->tensor.dtype, DType::kF32);
      const bool exact = half == FileType::kMostlyF16 || t.tensor.n_dims == 1 || t.tensor.name == "blk.0.ssm_conv1d.weight" ||
                         t.tensor.name == "blk.1.ssm_conv1d.weight";
      if (exact) {
        EXPECT_EQ(std::memcmp(b->tensor.data, t.tensor.data, t.nbytes), 0) << t.tensor.name;
      } else {  // F16-representable values need 11 significant bits; BF16 keeps 8: bounded, not exact
        std::vector<float> x = decode(t.tensor), y = decode(b->tensor);
        for (size_t i = 0; i < x.size(); ++i) ASSERT_LE(std::fabs(x[i] - y[i]), std::fabs(x[i]) / 256) << t.tensor.name;
      }
    }
    fs::remove(mid);
    fs::remove(back);
  }
  fs::remove(in);
}

// Per-element error bounds of the codecs through the whole tool, on N(0, σ) weights.
TEST(Quantize, DequantizedErrorStaysWithinTheCodecBounds) {
  TestModel m;
  build_model(m, 8);
  const std::string in = write_model(m, "err.gguf");
  auto orig = GgufFile::open(in);
  ASSERT_TRUE(orig.is_ok());
  struct Case {
    FileType ft;
    DType type;
    double max_rel_rms;  // rms error / rms value over a tensor
  };
  // Measured rms error / rms value on these N(0, σ) tensors: Q8_0 0.0053, Q6_K 0.017, Q5_K 0.035, Q4_K 0.071
  // (the textbook ratios for 8/6/5/4-bit block codecs); the bounds leave ~1.5× room.
  for (const Case& c : {Case{FileType::kMostlyQ8_0, DType::kQ8_0, 0.008}, Case{FileType::kMostlyQ6_K, DType::kQ6_K, 0.025},
                        Case{FileType::kMostlyQ5_K_M, DType::kQ5_K, 0.05},
                        Case{FileType::kMostlyQ4_K_M, DType::kQ4_K, 0.1}}) {
    SCOPED_TRACE(formats::file_type_name(c.ft));
    const std::string out = tmp_path("err-out.gguf");
    fs::remove(out);
    auto q = quantize(in, out, opts(c.ft));
    ASSERT_TRUE(q.is_ok()) << q.status().to_string();
    int checked = 0;
    for (const auto& t : orig->tensors()) {
      const tensor::Tensor& qt = q->find_tensor(t.tensor.name)->tensor;
      if (qt.dtype != c.type) continue;
      ++checked;
      std::vector<float> x = decode(t.tensor), y = decode(qt);
      double se = 0, sx = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        se += (x[i] - y[i]) * double(x[i] - y[i]);
        sx += x[i] * double(x[i]);
      }
      const double rel = std::sqrt(se / sx);
      EXPECT_LT(rel, c.max_rel_rms) << t.tensor.name;
      EXPECT_GT(rel, c.max_rel_rms / 50) << t.tensor.name << ": suspiciously exact";
      if (c.type == DType::kQ8_0) {
        // Q8_0: d = amax/127 stored as fp16, q = round(x/d): |x − d16·q| ≤ d/2 + 127·|d − d16| ≤ d·(1/2 + 127/2048).
        for (int64_t b = 0; b < static_cast<int64_t>(x.size()) / 32; ++b) {
          float amax = 0;
          for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
          const double d = amax / 127.0;
          for (int i = 0; i < 32; ++i)
            ASSERT_LE(std::fabs(x[b * 32 + i] - y[b * 32 + i]), d * (0.5 + 127.0 / 2048) + 1e-12)
                << t.tensor.name << " block " << b;
        }
      }
    }
    EXPECT_GT(checked, 0);
    fs::remove(out);
  }
  fs::remove(in);
}

TEST(Quantize, RequantizingNeedsTheFlag) {
  TestModel m;
  build_model(m, 2);
  const std::string in = write_model(m, "rq.gguf");
  const std::string q8 = tmp_path("rq-q8.gguf"), q4 = tmp_path("rq-q4.gguf"), f32 = tmp_path("rq-f32.gguf");
  for (const auto& p : {q8, q4, f32}) fs::remove(p);
  ASSERT_TRUE(quantize(in, q8, opts(FileType::kMostlyQ8_0)).is_ok());
  auto r = quantize(q8, q4, opts(FileType::kMostlyQ4_K_M));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message().rfind(q8 + ": tensor 'token_embd.weight' is already q8_0", 0), 0u)
      << r.status().message();
  EXPECT_NE(r.status().message().find("--allow-requantize"), std::string::npos);
  EXPECT_FALSE(fs::exists(q4));

  QuantizeOptions o = opts(FileType::kMostlyQ4_K_M);
  o.allow_requantize = true;
  QuantizePlan plan;
  auto ok = quantize(q8, q4, o, &plan);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_GT(plan.n_requantized, 0);
  EXPECT_EQ(ok->find_tensor("blk.1.attn_q.weight")->tensor.dtype, DType::kQ4_K);
  // Tensors whose type does not change (Q8_0 → Q8_0 fallback rows) are copied, not re-rounded.
  auto q8f = GgufFile::open(q8);
  ASSERT_TRUE(q8f.is_ok());
  const auto* a = q8f->find_tensor("blk.0.ffn_up.weight");
  const auto* b = ok->find_tensor("blk.0.ffn_up.weight");
  ASSERT_EQ(b->tensor.dtype, DType::kQ8_0);
  EXPECT_EQ(std::memcmp(a->tensor.data, b->tensor.data, a->nbytes), 0);

  // Dequantizing to F32 is exact and needs no flag.
  auto back = quantize(q8, f32, opts(FileType::kAllF32));
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  std::vector<float> want = decode(a->tensor);
  EXPECT_EQ(std::memcmp(back->find_tensor("blk.0.ffn_up.weight")->tensor.data, want.data(), want.size() * 4), 0);
  for (const auto& p : {in, q8, q4, f32}) fs::remove(p);
}

TEST(Quantize, OutputIsTheSameForAnyThreadCount) {
  TestModel m;
  build_model(m, 3);
  const std::string in = write_model(m, "thr.gguf");
  const std::string a = tmp_path("thr-1.gguf"), b = tmp_path("thr-3.gguf");
  fs::remove(a);
  fs::remove(b);
  ASSERT_TRUE(quantize(in, a, opts(FileType::kMostlyQ4_K_M, 1)).is_ok());
  ASSERT_TRUE(quantize(in, b, opts(FileType::kMostlyQ4_K_M, 3)).is_ok());
  auto ta = util::read_text_file(a), tb = util::read_text_file(b);
  ASSERT_TRUE(ta.is_ok() && tb.is_ok());
  EXPECT_TRUE(*ta == *tb);
  for (const auto& p : {in, a, b}) fs::remove(p);
}

TEST(Quantize, FailuresLeaveNothingBehind) {
  TestModel m;
  build_model(m, 2);
  m.data[3][100] = std::nanf("");  // blk.0.attn_v.weight (tensor 3 in build order), a quantised matrix
  const std::string in = write_model(m, "nan.gguf");
  const std::string out = tmp_path("nan-out.gguf");
  fs::remove(out);
  auto r = quantize(in, out, opts(FileType::kMostlyQ8_0));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("contains NaN or Inf"), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(fs::temp_directory_path()))
    EXPECT_EQ(e.path().filename().string().rfind(fs::path(out).filename().string() + ".tmp", 0), std::string::npos)
        << "temp file left: " << e.path();

  // An existing output is not replaced without overwrite, and stays untouched.
  TestModel ok;
  build_model(ok, 2);
  const std::string in2 = write_model(ok, "exists.gguf");
  { std::FILE* f = std::fopen(out.c_str(), "w"); std::fputs("keep", f); std::fclose(f); }
  r = quantize(in2, out, opts(FileType::kMostlyQ8_0));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), out + ": already exists (pass --force to overwrite)");
  EXPECT_EQ(*util::read_text_file(out), "keep");
  QuantizeOptions force = opts(FileType::kMostlyQ8_0);
  force.overwrite = true;
  EXPECT_TRUE(quantize(in2, out, force).is_ok());
  for (const auto& p : {in, in2, out}) fs::remove(p);
}

}  // namespace
}  // namespace dflash::convert
