#include "engine/engine.h"

#include <gtest/gtest.h>

namespace dflash::engine {
namespace {

std::string data(const std::string& rel) { return std::string(DFLASH_TEST_DATA_DIR) + "/" + rel; }

TEST(StopStringFilter, WithholdsPrefixesAcrossPiecesAndCutsBeforeTheStop) {
  StopStringFilter f({"</end>", "STOP"});
  std::string out;
  for (const char* piece : {"Hello ", "wor", "ld </", "en", "d> never"}) out += f.push(piece);
  EXPECT_TRUE(f.stopped());
  EXPECT_EQ(out, "Hello world ");
  EXPECT_EQ(f.flush(), "");
}

TEST(StopStringFilter, ReleasesHeldTextThatTurnsOutNotToBeAStop) {
  StopStringFilter f({"STOP"});
  std::string out = f.push("ab ST");
  EXPECT_EQ(out, "ab ");  // "ST" may start STOP
  out += f.push("ART");
  EXPECT_FALSE(f.stopped());
  out += f.flush();
  EXPECT_EQ(out, "ab START");
}

TEST(StopStringFilter, NeverSplitsUtf8) {
  StopStringFilter f({"\xC3\xA9X"});  // "éX"
  std::string out = f.push("caf\xC3\xA9");
  // "é" may begin the stop string: held back whole, never half a character.
  EXPECT_EQ(out, "caf");
  out += f.push("!");
  EXPECT_EQ(out, "caf\xC3\xA9!");
}

TEST(StopStringFilter, NoStopsPassesEverything) {
  StopStringFilter f({});
  EXPECT_EQ(f.push("abc"), "abc");
  EXPECT_FALSE(f.stopped());
}

class EngineTest : public ::testing::Test {
 protected:
  static std::unique_ptr<Engine> load(bool with_draft) {
    EngineOptions o;
    o.target_path = data("gguf/qwen35-dense-a.gguf");
    if (with_draft) o.draft_path = data("gguf/dflash-b8-l3.gguf");
    o.n_ctx = 256;
    auto e = Engine::load(o);
    EXPECT_TRUE(e.is_ok()) << e.status().to_string();
    return e.is_ok() ? std::move(*e) : nullptr;
  }
};

TEST_F(EngineTest, TextInTextOutDflashEqualsPlainDecoding) {
  auto e = load(true);
  ASSERT_TRUE(e);
  ASSERT_NE(e->tokenizer(), nullptr);
  auto prompt = e->tokenize("def main():\n    return 0\n");
  ASSERT_TRUE(prompt.is_ok());
  GenerateRequest req;
  req.prompt = *prompt;
  req.decode.max_new_tokens = 48;
  req.stop_at_eos = false;
  req.speculative = false;
  std::string streamed;
  auto ar = e->generate(req, [&](std::string_view t) {
    streamed.append(t);
    return true;
  });
  ASSERT_TRUE(ar.is_ok()) << ar.status().to_string();
  EXPECT_EQ(streamed, ar->text);
  EXPECT_EQ(ar->tokens.size(), 48u);
  req.speculative = true;
  auto df = e->generate(req);
  ASSERT_TRUE(df.is_ok());
  EXPECT_EQ(df->tokens, ar->tokens);
  EXPECT_EQ(df->text, ar->text);
  EXPECT_GT(df->stats.n_drafted, 0);
  // The stream decoder's text equals decoding all ids at once (special tokens skipped).
  auto whole = e->tokenizer()->decode(ar->tokens, tokenizer::DecodeOptions{true});
  ASSERT_TRUE(whole.is_ok());
  EXPECT_EQ(*whole, ar->text);
}

TEST_F(EngineTest, StopStringEndsGenerationWithoutEmittingIt) {
  auto e = load(false);
  ASSERT_TRUE(e);
  GenerateRequest req;
  req.prompt = *e->tokenize("Hello");
  req.decode.max_new_tokens = 64;
  req.stop_at_eos = false;
  auto full = e->generate(req);
  ASSERT_TRUE(full.is_ok());
  ASSERT_GE(full->text.size(), 12u);
  // Stop on a piece of the text that the model really produces, straddling token boundaries.
  const std::string stop = full->text.substr(5, 4);
  req.stop_strings = {stop};
  auto cut = e->generate(req);
  ASSERT_TRUE(cut.is_ok());
  EXPECT_EQ(cut->finish_reason, "stop");
  EXPECT_EQ(cut->text, full->text.substr(0, full->text.find(stop)));
}

TEST_F(EngineTest, PromptLongerThanTheContextIsAClearError) {
  auto e = load(false);
  ASSERT_TRUE(e);
  GenerateRequest req;
  req.prompt.assign(300, 5);
  auto r = e->generate(req);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), util::ErrorCode::kOutOfRange);
  EXPECT_NE(r.status().message().find("--ctx-size"), std::string::npos);
}

TEST_F(EngineTest, LoadErrorsNameTheFile) {
  EngineOptions o;
  o.target_path = data("gguf/does-not-exist.gguf");
  auto e = Engine::load(o);
  ASSERT_FALSE(e.is_ok());
  EXPECT_NE(e.status().message().find("does-not-exist.gguf"), std::string::npos);
  o.target_path = data("gguf/dflash-b8-l3.gguf");  // a drafter is not a target
  e = Engine::load(o);
  ASSERT_FALSE(e.is_ok());
  EXPECT_NE(e.status().message().find("not a Qwen3.5 target"), std::string::npos);
}

}  // namespace
}  // namespace dflash::engine
