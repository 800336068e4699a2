#include "engine/gen_data.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include <filesystem>
#include <fstream>
#include <random>

#include "engine/engine.h"
#include "tensor/dtype.h"

namespace dflash::engine {
namespace {

namespace fs = std::filesystem;

std::string data(const std::string& rel) { return std::string(DFLASH_TEST_DATA_DIR) + "/" + rel; }

std::vector<uint8_t> slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

struct Triple {
  int64_t offset, length, prompt_len;
};

class GenDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dflash_gen_data_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "prompts");
    // Prompts of different lengths; ids drawn inside the tiny model's vocabulary.
    std::mt19937 rng(7);
    std::ofstream tok(dir_ / "prompts/tokens.bin", std::ios::binary);
    std::ofstream idx(dir_ / "prompts/index.bin", std::ios::binary);
    int64_t off = 0;
    for (int64_t len : {5, 12, 1, 9}) {
      std::vector<int32_t> p;
      for (int64_t k = 0; k < len; ++k) p.push_back(static_cast<int32_t>(rng() % 200 + 10));
      prompts_.push_back(p);
      for (int32_t t : p) {
        uint16_t v = static_cast<uint16_t>(t);
        tok.write(reinterpret_cast<const char*>(&v), 2);
      }
      Triple tr{off, len, len};
      idx.write(reinterpret_cast<const char*>(&tr), sizeof tr);
      off += len;
    }
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::unique_ptr<Engine> load(std::vector<int> capture, int64_t n_ctx = 256, int n_seq = 1) {
    EngineOptions o;
    o.target_path = data("gguf/qwen35-dense-a.gguf");
    o.n_ctx = n_ctx;
    o.n_seq = n_seq;
    o.capture_layers = std::move(capture);
    auto e = Engine::load(o);
    EXPECT_TRUE(e.is_ok()) << e.status().to_string();
    return e.is_ok() ? std::move(*e) : nullptr;
  }

  // The k-th (1-based) greedy token after prompt i: a stop token the model will actually produce.
  int32_t greedy_token(Engine& e, size_t i, int k) const {
    GenerateRequest probe;
    probe.prompt = prompts_[i];
    probe.decode.max_new_tokens = k;
    probe.speculative = false;
    probe.stop_at_eos = false;
    auto pr = e.generate(probe);
    EXPECT_TRUE(pr.is_ok());
    EXPECT_EQ(pr.is_ok() ? pr->tokens.size() : 0u, static_cast<size_t>(k));
    return pr.is_ok() && pr->tokens.size() == static_cast<size_t>(k) ? pr->tokens.back() : -1;
  }

  GenDataOptions options(const std::string& out, int64_t gen_len) const {
    GenDataOptions o;
    o.prompts_dir = (dir_ / "prompts").string();
    o.out_dir = (dir_ / out).string();
    o.gen_len = gen_len;
    o.progress = false;
    return o;
  }

  fs::path dir_;
  std::vector<std::vector<int32_t>> prompts_;
};

TEST_F(GenDataTest, SequencesAreTheGreedyContinuationAndFeaturesEqualAFullPrefill) {
  auto e = load({0, 2, 3});
  ASSERT_TRUE(e);
  const int64_t gen = 20;
  GenDataOptions o = options("out", gen);
  o.features = true;
  // A stop token the model will actually produce on some prompt: take prompt 1's 7th greedy token.
  o.stop_tokens = {greedy_token(*e, 1, 7)};
  auto r = generate_training_data(e->target(), o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->complete);
  EXPECT_EQ(r->seqs_total, 4);

  auto toks = slurp(dir_ / "out/tokens.bin");
  auto idxb = slurp(dir_ / "out/index.bin");
  auto feats = slurp(dir_ / "out/features.bin");
  ASSERT_EQ(idxb.size(), 4 * sizeof(Triple));
  const int64_t fdim = e->target().feature_dim();
  ASSERT_EQ(fdim, 3 * e->target().config().n_embd);
  std::vector<Triple> idx(4);
  std::memcpy(idx.data(), idxb.data(), idxb.size());
  ASSERT_EQ(toks.size(), static_cast<size_t>((idx[3].offset + idx[3].length) * 2));
  ASSERT_EQ(feats.size(), static_cast<size_t>((idx[3].offset + idx[3].length) * fdim * 2));
  EXPECT_EQ(slurp(dir_ / "out/features.count"), std::vector<uint8_t>({'4'}));
  bool saw_stop = false;
  for (size_t s = 0; s < 4; ++s) {
    SCOPED_TRACE("sequence " + std::to_string(s));
    EXPECT_EQ(idx[s].prompt_len, static_cast<int64_t>(prompts_[s].size()));
    std::vector<int32_t> seq(static_cast<size_t>(idx[s].length));
    for (int64_t k = 0; k < idx[s].length; ++k) {
      uint16_t v;
      std::memcpy(&v, toks.data() + 2 * (idx[s].offset + k), 2);
      seq[static_cast<size_t>(k)] = v;
    }
    // The prompt, then exactly what plain greedy decoding with the same stop token gives.
    GenerateRequest req;
    req.prompt = prompts_[s];
    req.decode.max_new_tokens = gen;
    req.decode.stop_tokens = o.stop_tokens;
    req.speculative = false;
    req.stop_at_eos = false;
    auto g = e->generate(req);
    ASSERT_TRUE(g.is_ok());
    std::vector<int32_t> expect = prompts_[s];
    expect.insert(expect.end(), g->tokens.begin(), g->tokens.end());
    EXPECT_EQ(seq, expect);
    if (seq.back() == o.stop_tokens[0] && static_cast<int64_t>(g->tokens.size()) < gen) saw_stop = true;
    // Features: bitwise the fp16 of one forward over the whole sequence.
    e->target().reset();
    ASSERT_TRUE(e->target().forward(seq, false).is_ok());
    const float* f = e->target().features(0);
    size_t mismatches = 0;
    for (int64_t k = 0; k < idx[s].length * fdim; ++k) {
      uint16_t v;
      std::memcpy(&v, feats.data() + 2 * (idx[s].offset * fdim + k), 2);
      mismatches += v != tensor::fp32_to_fp16(f[k]);
    }
    EXPECT_EQ(mismatches, 0u);
  }
  EXPECT_TRUE(saw_stop) << "no sequence ended at the stop token: the test did not exercise stopping";
}

TEST_F(GenDataTest, InterruptedRunResumesToTheSameBytes) {
  auto e = load({1, 3});
  ASSERT_TRUE(e);
  GenDataOptions full = options("full", 6);
  full.features = true;
  ASSERT_TRUE(generate_training_data(e->target(), full).is_ok());

  GenDataOptions part = options("part", 6);
  part.features = true;
  part.max_seqs = 2;
  auto r1 = generate_training_data(e->target(), part);
  ASSERT_TRUE(r1.is_ok());
  EXPECT_EQ(r1->seqs_total, 2);
  // Simulate a crash mid-sequence: garbage appended to every file past the last indexed sequence.
  for (const char* f : {"tokens.bin", "features.bin", "index.bin"}) {
    std::ofstream g(dir_ / "part" / f, std::ios::binary | std::ios::app);
    g << "partial";
  }
  part.max_seqs = 0;
  auto r2 = generate_training_data(e->target(), part);
  ASSERT_TRUE(r2.is_ok()) << r2.status().to_string();
  EXPECT_EQ(r2->seqs_this_run, 2);
  EXPECT_TRUE(r2->complete);
  for (const char* f : {"tokens.bin", "index.bin", "features.bin", "features.count"})
    EXPECT_EQ(slurp(dir_ / "part" / f), slurp(dir_ / "full" / f)) << f;
}

// Batched generation (waves of `parallel` sequences, one forward_batch per step) writes the same bytes
// as one sequence at a time, also when sequences of a wave stop early at a stop token.
TEST_F(GenDataTest, ParallelWavesWriteTheSameBytes) {
  auto e = load({0, 3}, 256, 3);
  ASSERT_TRUE(e);
  const int32_t stop = greedy_token(*e, 1, 5);  // a stop token prompt 1 reaches after 5 tokens
  for (const char* out : {"p1", "p2", "p3"}) {
    const int parallel = out[1] - '0';
    GenDataOptions o = options(out, 14);
    o.features = true;
    o.parallel = parallel;
    o.stop_tokens = {stop};
    auto r = generate_training_data(e->target(), o);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->seqs_total, 4);
  }
  auto idxb = slurp(dir_ / "p1/index.bin");
  ASSERT_EQ(idxb.size(), 4 * sizeof(Triple));
  std::vector<Triple> idx(4);
  std::memcpy(idx.data(), idxb.data(), idxb.size());
  EXPECT_LE(idx[1].length, idx[1].prompt_len + 5) << "prompt 1 should stop early inside its wave";
  for (const char* par : {"p2", "p3"})
    for (const char* f : {"tokens.bin", "index.bin", "features.bin", "features.count"})
      EXPECT_EQ(slurp(dir_ / par / f), slurp(dir_ / "p1" / f)) << par << "/" << f;
  GenDataOptions too_many = options("bad", 4);
  too_many.parallel = 4;
  const auto r = generate_training_data(e->target(), too_many);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().to_string().find("n_seq"), std::string::npos) << r.status().to_string();
}

TEST_F(GenDataTest, BadInputsAreClearErrors) {
  auto e = load({});
  ASSERT_TRUE(e);
  GenDataOptions o = options("out", 4);
  o.features = true;
  auto r = generate_training_data(e->target(), o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("captures no layers"), std::string::npos) << r.status().message();

  o.features = false;
  o.prompts_dir = (dir_ / "missing").string();
  r = generate_training_data(e->target(), o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("index.bin"), std::string::npos) << r.status().message();

  // An index entry pointing past the token file.
  {
    std::ofstream idx(dir_ / "prompts/index.bin", std::ios::binary | std::ios::app);
    Triple bad{1000, 4, 4};
    idx.write(reinterpret_cast<const char*>(&bad), sizeof bad);
  }
  o = options("out", 4);
  r = generate_training_data(e->target(), o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("entry 4"), std::string::npos) << r.status().message();

  // Prompt + response longer than the context.
  auto small = load({}, 16);
  ASSERT_TRUE(small);
  o = options("out", 8);
  o.max_seqs = 4;
  r = generate_training_data(small->target(), o);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("context size 16"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace dflash::engine
