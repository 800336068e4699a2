// Multi-sequence batching: forward_batch advances several independent sequences by one token in one
// pass. Each row must be bitwise the one-token forward of its own sequence (logits and captured
// features), whatever the order of the rows, and the sequences must not leak into each other.
#include <gtest/gtest.h>

#include <random>

#include "model/qwen35.h"
#include "model_test_util.h"

namespace dflash::model {
namespace {

void expect_rows_equal_single_sequences(const std::shared_ptr<const formats::GgufFile>& file, int n_seq, int steps,
                                        const std::vector<int>& capture) {
  Qwen35Options bo;
  bo.n_ctx = 256;
  bo.n_seq = n_seq;
  bo.capture_layers = capture;
  Qwen35Options so = bo;
  so.n_seq = 1;
  auto batched = Qwen35::load(file, bo);
  ASSERT_TRUE(batched.is_ok()) << batched.status().to_string();
  Qwen35& bm = **batched;
  const int64_t V = bm.n_vocab(), F = bm.feature_dim();
  std::mt19937 rng(21);
  std::vector<std::vector<int32_t>> seqs(static_cast<size_t>(n_seq));
  for (int s = 0; s < n_seq; ++s) {
    for (int i = 0; i < 3 + 4 * s; ++i) seqs[size_t(s)].push_back(int32_t(rng() % uint32_t(V)));
    ASSERT_TRUE(bm.set_sequence(s).is_ok());
    ASSERT_TRUE(bm.forward(seqs[size_t(s)], false).is_ok());
  }
  // Each sequence alone, token by token, in its own single-sequence model.
  std::vector<std::unique_ptr<Qwen35>> solo;
  for (int s = 0; s < n_seq; ++s) {
    auto m = Qwen35::load(file, so);
    ASSERT_TRUE(m.is_ok());
    ASSERT_TRUE((*m)->forward(seqs[size_t(s)], false).is_ok());
    solo.push_back(std::move(*m));
  }
  for (int step = 0; step < steps; ++step) {
    std::vector<int> order(static_cast<size_t>(n_seq));
    for (int s = 0; s < n_seq; ++s) order[size_t(s)] = s;
    std::shuffle(order.begin(), order.end(), rng);
    if (step % 3 == 2) order.pop_back();  // not every sequence takes part in every step
    std::vector<int32_t> toks;
    for (size_t r = 0; r < order.size(); ++r) toks.push_back(int32_t(rng() % uint32_t(V)));
    ASSERT_TRUE(bm.forward_batch(toks, order).is_ok());
    for (size_t r = 0; r < order.size(); ++r) {
      Qwen35& m = *solo[size_t(order[r])];
      ASSERT_TRUE(m.forward(std::span<const int32_t>(&toks[r], 1), false).is_ok());
      for (int64_t v = 0; v < V; ++v)
        ASSERT_EQ(bm.logits(int64_t(r))[v], m.logits(0)[v]) << "step " << step << " row " << r << " seq " << order[r];
      for (int64_t f = 0; f < F; ++f)
        ASSERT_EQ(bm.features(int64_t(r))[f], m.features(0)[f]) << "step " << step << " row " << r;
    }
  }
  // Positions advanced per sequence; a plain forward on a switched-to sequence continues it.
  for (int s = 0; s < n_seq; ++s) {
    ASSERT_TRUE(bm.set_sequence(s).is_ok());
    EXPECT_EQ(bm.n_past(), solo[size_t(s)]->n_past()) << "sequence " << s;
    const int32_t t = 5;
    ASSERT_TRUE(bm.forward(std::span<const int32_t>(&t, 1), false).is_ok());
    ASSERT_TRUE(solo[size_t(s)]->forward(std::span<const int32_t>(&t, 1), false).is_ok());
    for (int64_t v = 0; v < V; ++v) ASSERT_EQ(bm.logits(0)[v], solo[size_t(s)]->logits(0)[v]) << "sequence " << s;
  }
}

TEST(Qwen35Batch, RowsEqualEachSequenceDecodedAlone) {
  for (const std::string& name : testing::tiny_targets()) {
    SCOPED_TRACE(name);
    auto file = testing::open_gguf(name);
    ASSERT_TRUE(file.is_ok()) << file.status().to_string();
    expect_rows_equal_single_sequences(*file, 4, 9, {0});
  }
}

TEST(Qwen35Batch, ShippedTargetRowsEqualEachSequenceDecodedAlone) {
  auto f = formats::GgufFile::open(std::string(DFLASH_MODELS_DIR) + "/dflash-demo-110m-Q8_0.gguf");
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  auto file = std::make_shared<const formats::GgufFile>(std::move(*f));
  expect_rows_equal_single_sequences(file, 5, std::getenv("DFLASH_SANITIZED") ? 3 : 6, {1, 7, 13});
}

TEST(Qwen35Batch, RejectsBadSequenceLists) {
  auto file = testing::open_gguf(testing::tiny_targets().front());
  ASSERT_TRUE(file.is_ok());
  Qwen35Options o;
  o.n_ctx = 16;
  o.n_seq = 2;
  auto m = Qwen35::load(*file, o);
  ASSERT_TRUE(m.is_ok());
  Qwen35& q = **m;
  const std::vector<int32_t> two{1, 2};
  EXPECT_FALSE(q.forward_batch(two, std::vector<int>{0, 0}).is_ok()) << "a sequence listed twice";
  EXPECT_FALSE(q.forward_batch(two, std::vector<int>{0, 2}).is_ok()) << "sequence out of range";
  EXPECT_FALSE(q.forward_batch(two, std::vector<int>{0}).is_ok()) << "token and sequence counts differ";
  EXPECT_FALSE(q.set_sequence(2).is_ok());
  EXPECT_FALSE(q.set_sequence(-1).is_ok());
  q.checkpoint();
  EXPECT_FALSE(q.set_sequence(1).is_ok()) << "switching with a verify open";
  EXPECT_FALSE(q.forward_batch(two, std::vector<int>{0, 1}).is_ok()) << "batch with a verify open";
  ASSERT_TRUE(q.keep(0).is_ok());
  // A full context is an error naming the sequence, not a write past the cache.
  std::vector<int32_t> fill(16, 3);
  ASSERT_TRUE(q.set_sequence(1).is_ok());
  ASSERT_TRUE(q.forward(fill, false).is_ok());
  const auto st = q.forward_batch(two, std::vector<int>{0, 1});
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.to_string().find("sequence 1"), std::string::npos) << st.to_string();
  Qwen35Options bad = o;
  bad.n_seq = 0;
  EXPECT_FALSE(Qwen35::load(*file, bad).is_ok());
}

}  // namespace
}  // namespace dflash::model
