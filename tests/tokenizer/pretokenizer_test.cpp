#include "tokenizer/pretokenizer.h"

#include <gtest/gtest.h>

#include <random>

#include "test_data.h"
#include "tokenizer/normalize.h"
#include "tokenizer/utf8.h"

namespace dflash::tokenizer {
namespace {

using V = std::vector<std::string>;

PreTokenizer make(std::string_view regex, PreTokenizer::Engine e) {
  auto p = PreTokenizer::create(regex, e);
  EXPECT_TRUE(p.is_ok()) << p.status().to_string();
  return std::move(p).value();
}

TEST(PreTokenizer, PreNamesMapToRegexes) {
  EXPECT_EQ(regex_for_pre("qwen2"), kQwen2Regex);
  EXPECT_EQ(regex_for_pre("qwen35"), kQwen35Regex);
  EXPECT_TRUE(regex_for_pre("llama3").empty());
  EXPECT_EQ(pre_for_regex(kQwen35Regex), "qwen35");
  EXPECT_TRUE(pre_for_regex("x+").empty());
}

TEST(PreTokenizer, KnownSplits) {
  for (auto engine : {PreTokenizer::Engine::kAuto, PreTokenizer::Engine::kPcre2}) {
    const PreTokenizer p = make(kQwen2Regex, engine);
    EXPECT_EQ(p.hand_written(), engine == PreTokenizer::Engine::kAuto);
    EXPECT_EQ(p.split_to_vector("Hello world"), (V{"Hello", " world"}));
    EXPECT_EQ(p.split_to_vector("  hi"), (V{" ", " hi"}));
    EXPECT_EQ(p.split_to_vector("I'm HE'LL 'Re"), (V{"I", "'m", " HE", "'LL", " '", "Re"}));
    EXPECT_EQ(p.split_to_vector("x123"), (V{"x", "1", "2", "3"}));
    EXPECT_EQ(p.split_to_vector("a\n\nb"), (V{"a", "\n\n", "b"}));
    EXPECT_EQ(p.split_to_vector("a  \n  b"), (V{"a", "  \n", " ", " b"}));
    EXPECT_EQ(p.split_to_vector("x   "), (V{"x", "   "}));
    EXPECT_EQ(p.split_to_vector("f(x);\n\ny"), (V{"f", "(x", ");\n\n", "y"}));
    EXPECT_EQ(p.split_to_vector(" ...\r\nz"), (V{" ...\r\n", "z"}));
    EXPECT_EQ(p.split_to_vector("\tword"), (V{"\tword"}));
    EXPECT_EQ(p.split_to_vector("na\xCC\x88ve"), (V{"na", "\xCC\x88ve"}));  // the mark is an optional prefix
  }
  for (auto engine : {PreTokenizer::Engine::kAuto, PreTokenizer::Engine::kPcre2}) {
    const PreTokenizer p = make(kQwen35Regex, engine);
    EXPECT_EQ(p.split_to_vector("na\xCC\x88ve"), (V{"na\xCC\x88ve"}));  // marks join letter runs
    EXPECT_EQ(p.split_to_vector(" \xCC\x88x"), (V{" \xCC\x88x"}));
    EXPECT_EQ(p.split_to_vector("\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\x82\xE0\xA4\xA6\xE0\xA5\x80"),
              (V{"\xE0\xA4\xB9\xE0\xA4\xBF\xE0\xA4\x82\xE0\xA4\xA6\xE0\xA5\x80"}));  // Hindi word, one piece
  }
}

// The hand-written matcher against PCRE2 on the whole corpus (as the tokenizer sees it: repaired, NFC).
TEST(PreTokenizer, HandWrittenEqualsPcre2OnCorpus) {
  for (auto regex : {kQwen2Regex, kQwen35Regex}) {
    const PreTokenizer fast = make(regex, PreTokenizer::Engine::kAuto);
    const PreTokenizer slow = make(regex, PreTokenizer::Engine::kPcre2);
    ASSERT_TRUE(fast.hand_written());
    ASSERT_FALSE(slow.hand_written());
    for (size_t di = 0; di < testing::corpus().size(); di += testing::doc_stride()) {
      const auto& doc = testing::corpus()[di];
      const std::string text = nfc(utf8_make_valid(doc.bytes));
      const V a = fast.split_to_vector(text), b = slow.split_to_vector(text);
      ASSERT_EQ(a.size(), b.size()) << doc.name;
      for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << doc.name << " piece " << i;
    }
  }
}

// Random strings from an alphabet that stresses every alternative of the regex.
TEST(PreTokenizer, HandWrittenEqualsPcre2OnRandomText) {
  const char* alphabet[] = {"a", "Z", "'", "s", "S", "t", "r", "e", "v", "m", "l", "L", "d", "\xC5\xBF" /*ſ*/,
                            "1", "\xD9\xA3" /*٣*/, " ", "  ", "\t", "\n", "\r", "\r\n", "\xC2\xA0", "\xE3\x80\x80",
                            "\xC2\x85", "\xE2\x80\xA8", ".", "!", "(", "\xCC\x81" /*U+0301*/, "\xE0\xA4\xBF" /*ि*/,
                            "\xE4\xB8\xAD" /*中*/, "\xF0\x9F\x98\x80" /*😀*/, "\xE2\x80\x8D" /*ZWJ*/, "_", "\x0B",
                            "\xE2\x85\xA0" /*Ⅰ*/, "\xC2\xB2" /*²*/};
  std::mt19937 rng(42);
  const int iters = testing::sanitized() ? 3000 : 20000;
  for (auto regex : {kQwen2Regex, kQwen35Regex}) {
    const PreTokenizer fast = make(regex, PreTokenizer::Engine::kAuto);
    const PreTokenizer slow = make(regex, PreTokenizer::Engine::kPcre2);
    for (int it = 0; it < iters; ++it) {
      std::string s;
      const int len = static_cast<int>(rng() % 24);
      for (int k = 0; k < len; ++k) s += alphabet[rng() % std::size(alphabet)];
      ASSERT_EQ(fast.split_to_vector(s), slow.split_to_vector(s)) << "input: '" << s << "'";
    }
  }
}

TEST(PreTokenizer, BadRegexIsAnError) {
  auto p = PreTokenizer::create("(unclosed");
  ASSERT_FALSE(p.is_ok());
  EXPECT_NE(p.status().message().find("does not compile"), std::string::npos);
}

TEST(PreTokenizer, LongWhitespaceRunDoesNotOverflow) {
  const std::string s = "a" + std::string(1 << 20, ' ') + "b" + std::string(1 << 18, '\n');
  for (auto engine : {PreTokenizer::Engine::kAuto, PreTokenizer::Engine::kPcre2}) {
    const PreTokenizer p = make(kQwen2Regex, engine);
    const V v = p.split_to_vector(s);
    ASSERT_EQ(v.size(), 4u);
    EXPECT_EQ(v[1].size(), (size_t{1} << 20) - 1);
    EXPECT_EQ(v[2], " b");
  }
}

}  // namespace
}  // namespace dflash::tokenizer
