// The model pair the repository ships (models/, issue 12): it loads with its tokenizer and chat template,
// greedy DFlash is token-identical to plain decoding on it (fixed, adaptive and small block sizes, plain
// and chat prompts), and the trained drafter really drafts: its acceptance length stays well above what an
// untrained drafter gets (≈ 1 committed token per round), so a regression in the drafter path — wrong
// captured layers, a broken mask or rollback — shows up here as a τ collapse even when outputs still match.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "spec/adaptive.h"

namespace dflash::engine {
namespace {

std::string model(const char* name) { return std::string(DFLASH_MODELS_DIR) + "/" + name; }

constexpr const char* kTarget = "dflash-demo-110m-Q8_0.gguf";
constexpr const char* kDraft = "dflash-demo-110m-drafter-Q8_0.gguf";

class ShippedPair : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions o;
    o.target_path = model(kTarget);
    o.draft_path = model(kDraft);
    o.n_ctx = 1024;
    auto e = Engine::load(o);
    ASSERT_TRUE(e.is_ok()) << e.status().to_string();
    engine_ = std::move(*e).release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }

  // Plain decoding, then DFlash with `block` (and optionally the adaptive policy): identical tokens.
  static spec::DecodeStats check_lossless(const std::vector<int32_t>& prompt, int n, int block,
                                          bool adaptive, int lookup = 0, bool hybrid = false) {
    GenerateRequest req;
    req.prompt = prompt;
    req.decode.max_new_tokens = n;
    req.stop_at_eos = false;
    req.speculative = false;
    auto ar = engine_->generate(req);
    EXPECT_TRUE(ar.is_ok()) << ar.status().to_string();
    if (!ar.is_ok()) return {};
    EXPECT_EQ(ar->tokens.size(), static_cast<size_t>(n));
    req.speculative = true;
    req.decode.block_size = block;
    req.decode.lookup_ngram = lookup;
    req.decode.lookup_hybrid = hybrid;
    spec::AdaptiveBlockPolicy policy(block > 0 ? block : 16);
    if (adaptive) req.decode.policy = &policy;
    auto df = engine_->generate(req);
    EXPECT_TRUE(df.is_ok()) << df.status().to_string();
    if (!df.is_ok()) return {};
    EXPECT_EQ(df->tokens, ar->tokens) << "block " << block << (adaptive ? " adaptive" : "");
    EXPECT_EQ(df->text, ar->text);
    return df->stats;
  }

  static Engine* engine_;
};

Engine* ShippedPair::engine_ = nullptr;

const char* const kPrompts[] = {
    "def fibonacci(n):\n",
    "import os\nimport sys\n\n\ndef main():\n",
    "The history of the city begins in",
    "Photosynthesis is the process by which",
};

TEST_F(ShippedPair, LoadsWithTokenizerAndChatTemplate) {
  ASSERT_NE(engine_->tokenizer(), nullptr);
  ASSERT_NE(engine_->drafter(), nullptr);
  EXPECT_FALSE(engine_->eos_tokens().empty());
  auto ids = engine_->tokenize("def f(x):\n    return x\n");
  ASSERT_TRUE(ids.is_ok());
  auto text = engine_->tokenizer()->decode(*ids, tokenizer::DecodeOptions{true});
  ASSERT_TRUE(text.is_ok());
  EXPECT_EQ(*text, "def f(x):\n    return x\n");
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  msgs.push_back({{"role", "user"}, {"content", "hi"}});
  auto rendered = engine_->chat_template().render(msgs, {});
  ASSERT_TRUE(rendered.is_ok()) << rendered.status().to_string();
  EXPECT_NE(rendered->find("hi"), std::string::npos);
}

TEST_F(ShippedPair, GreedyDflashEqualsPlainDecodingAndAcceptsManyTokens) {
  int64_t rounds = 0, generated = 0;
  for (const char* p : kPrompts) {
    auto ids = engine_->tokenize(p);
    ASSERT_TRUE(ids.is_ok());
    auto st = check_lossless(*ids, 64, 0, false);
    rounds += st.n_rounds;
    generated += st.n_generated;
  }
  ASSERT_GT(rounds, 0);
  const double tau = static_cast<double>(generated) / static_cast<double>(rounds);
  // Measured 1.38 on Zen 4 (VNNI kernels); an untrained or miswired drafter commits 1.00–1.05 per round.
  // The floor leaves room for other ISAs, whose last-bit differences can change a few greedy tokens.
  EXPECT_GT(tau, 1.15) << "mean committed tokens per verify round over the four prompts";
}

// The drafter's context grows by the accepted tokens' features round by round. With a trained drafter
// most rounds accept several tokens, which random-weight goldens never exercise; here the context built
// incrementally during a DFlash generation must draft exactly what a context built in one go from a
// single prefill of the same tokens drafts.
TEST_F(ShippedPair, IncrementalDrafterContextEqualsOneShotRecompute) {
  auto ids = engine_->tokenize(kPrompts[1]);
  ASSERT_TRUE(ids.is_ok());
  auto& target = engine_->target();
  auto* drafter = engine_->drafter();
  spec::Decoder dec(target, drafter);
  spec::DecodeOptions opts;
  opts.max_new_tokens = 48;
  spec::DecodeStats stats;
  auto df = dec.generate(*ids, opts, nullptr, &stats);
  ASSERT_TRUE(df.is_ok()) << df.status().to_string();
  ASSERT_GT(stats.n_accepted, 0) << "no round accepted a draft: nothing incremental was tested";
  // After generation (and a flush of the features waiting for the next draft) the target and the
  // drafter hold every committed token but the last.
  ASSERT_TRUE(dec.flush_drafter_context().is_ok());
  std::vector<int32_t> seq = *ids;
  seq.insert(seq.end(), df->begin(), df->end());
  const int32_t last = seq.back();
  seq.pop_back();
  ASSERT_EQ(target.n_past(), static_cast<int64_t>(seq.size()));
  ASSERT_EQ(drafter->n_context(), static_cast<int64_t>(seq.size()));
  const int n_draft = drafter->block_size() - 1;
  const int64_t V = drafter->n_vocab();
  ASSERT_TRUE(drafter->draft(last, n_draft).is_ok());
  std::vector<float> incremental;
  for (int i = 0; i < n_draft; ++i) incremental.insert(incremental.end(), drafter->logits(i), drafter->logits(i) + V);

  target.reset();
  ASSERT_TRUE(target.forward(seq, false).is_ok());
  drafter->reset();
  ASSERT_TRUE(drafter->add_context(target.features(0), static_cast<int64_t>(seq.size())).is_ok());
  ASSERT_TRUE(drafter->draft(last, n_draft).is_ok());
  // Verify rows, decode rows and prefill rows of the target are the same bits (its lossless
  // guarantee), so the two contexts — features from verify blocks vs from one prefill — must be
  // identical, and so must the drafts. (Before the session-7 kernel fixes they were ~2e-3 of the logit
  // scale apart, which this test tolerated.)
  for (int i = 0; i < n_draft; ++i) {
    const float* a = incremental.data() + static_cast<size_t>(i) * V;
    const float* b = drafter->logits(i);
    int64_t differ = 0;
    for (int64_t v = 0; v < V; ++v) differ += a[v] != b[v];
    EXPECT_EQ(differ, 0) << "block row " << i + 1 << ": logits differ from the one-shot context's";
  }
}

TEST_F(ShippedPair, AdaptiveAndSmallBlocksAreLossless) {
  auto ids = engine_->tokenize(kPrompts[0]);
  ASSERT_TRUE(ids.is_ok());
  for (int block : {2, 5}) check_lossless(*ids, 32, block, false);
  check_lossless(*ids, 48, 16, true);
}

TEST_F(ShippedPair, LookupAndDflashPlusLookupAreLossless) {
  auto ids = engine_->tokenize(kPrompts[1]);
  ASSERT_TRUE(ids.is_ok());
  check_lossless(*ids, 96, 0, false, /*lookup=*/3);
  const spec::DecodeStats st = check_lossless(*ids, 96, 0, false, /*lookup=*/3, /*hybrid=*/true);
  EXPECT_GT(st.n_lookup_rounds, 0) << "no round drafted by lookup: the hybrid path was not exercised";
  EXPECT_LT(st.n_lookup_rounds, st.n_rounds) << "no round drafted by the drafter";
}

TEST_F(ShippedPair, ChatPromptIsLossless) {
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  msgs.push_back({{"role", "user"}, {"content", "Write a Python function that reverses a list."}});
  auto rendered = engine_->chat_template().render(msgs, {});
  ASSERT_TRUE(rendered.is_ok()) << rendered.status().to_string();
  auto ids = engine_->tokenize(*rendered);
  ASSERT_TRUE(ids.is_ok());
  check_lossless(*ids, 32, 0, false);
}

}  // namespace
}  // namespace dflash::engine
