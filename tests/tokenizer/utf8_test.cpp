#include "tokenizer/utf8.h"

#include <gtest/gtest.h>

#include <random>

#include "tokenizer/normalize.h"

namespace dflash::tokenizer {
namespace {

const std::string kFffd = kReplacementUtf8;

TEST(Utf8, ValidAndInvalidLengths) {
  EXPECT_EQ(utf8_valid_len("a", 0), 1u);
  EXPECT_EQ(utf8_valid_len("\xC3\xA9", 0), 2u);
  EXPECT_EQ(utf8_valid_len("\xE2\x82\xAC", 0), 3u);
  EXPECT_EQ(utf8_valid_len("\xF0\x9F\x98\x80", 0), 4u);
  EXPECT_EQ(utf8_valid_len("\xC0\xAF", 0), 0u);          // overlong
  EXPECT_EQ(utf8_valid_len("\xED\xA0\x80", 0), 0u);      // surrogate
  EXPECT_EQ(utf8_valid_len("\xF4\x90\x80\x80", 0), 0u);  // > U+10FFFF
  EXPECT_EQ(utf8_invalid_len("\xE2\x82", 0), 2u);        // truncated: one maximal subpart
  EXPECT_EQ(utf8_invalid_len("\xE0\x80\x80", 0), 1u);    // E0 80: the lead alone
  EXPECT_EQ(utf8_invalid_len("\xFF", 0), 1u);
}

// Expected strings are what Python's bytes.decode("utf-8", "replace") returns (the reference).
TEST(Utf8, MakeValidMatchesPythonReplace) {
  EXPECT_EQ(utf8_make_valid("abc"), "abc");
  EXPECT_EQ(utf8_make_valid("a\xFF" "b"), "a" + kFffd + "b");
  EXPECT_EQ(utf8_make_valid("\xC0\xAF"), kFffd + kFffd);
  EXPECT_EQ(utf8_make_valid("\xE0\x80\xAF"), kFffd + kFffd + kFffd);
  EXPECT_EQ(utf8_make_valid("\xED\xA0\x80"), kFffd + kFffd + kFffd);
  EXPECT_EQ(utf8_make_valid("\xF0\x9F\x98"), kFffd);
  EXPECT_EQ(utf8_make_valid("\xF0\x9F\x98 x"), kFffd + " x");
  EXPECT_EQ(utf8_make_valid("\xE2\x82\x28"), kFffd + "(");
  EXPECT_EQ(utf8_make_valid("\x80\x80"), kFffd + kFffd);
  EXPECT_EQ(utf8_make_valid(std::string("\0x", 2)), std::string("\0x", 2));
}

TEST(Utf8, IncompleteTail) {
  EXPECT_EQ(utf8_incomplete_tail(""), 0u);
  EXPECT_EQ(utf8_incomplete_tail("ab"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("a\xE2"), 1u);
  EXPECT_EQ(utf8_incomplete_tail("a\xE2\x82"), 2u);
  EXPECT_EQ(utf8_incomplete_tail("a\xE2\x82\xAC"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(utf8_incomplete_tail("\xE0\x80"), 0u);  // can never complete: not held back
  EXPECT_EQ(utf8_incomplete_tail("\xFF"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("\x80\x80\x80"), 0u);
}

TEST(Utf8, ByteLevelMapping) {
  EXPECT_EQ(byte_to_unicode('a'), static_cast<uint32_t>('a'));
  EXPECT_EQ(byte_to_unicode(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(byte_to_unicode('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(byte_to_unicode(0xAD), 0x143u);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string back;
  ASSERT_TRUE(byte_level_to_bytes(bytes_to_byte_level(all), back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(byte_level_to_bytes("\xE4\xB8\xAD", back));  // U+4E2D is not in the mapping
  EXPECT_FALSE(byte_level_to_bytes("\xFF", back));
}

TEST(Utf8, RandomBytesRepairIsValidAndStable) {
  std::mt19937 rng(7);
  for (int it = 0; it < 2000; ++it) {
    std::string s;
    const int n = static_cast<int>(rng() % 16);
    for (int k = 0; k < n; ++k) s.push_back(static_cast<char>(rng() % 4 == 0 ? 0x80 | (rng() % 64) : rng() % 256));
    const std::string v = utf8_make_valid(s);
    EXPECT_TRUE(utf8_is_valid(v));
    EXPECT_EQ(utf8_make_valid(v), v);
    if (utf8_is_valid(s)) {
      EXPECT_EQ(v, s);
    }
  }
}

TEST(Normalize, Nfc) {
  EXPECT_EQ(nfc("abc"), "abc");
  EXPECT_EQ(nfc("e\xCC\x81"), "\xC3\xA9");                      // e + U+0301 -> é
  EXPECT_EQ(nfc("\xE0\xA5\x9B"), "\xE0\xA4\x9C\xE0\xA4\xBC");   // U+095B (excluded) -> U+091C U+093C
  EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");   // Hangul L+V -> U+AC00
  EXPECT_EQ(nfc(std::string("a\0e\xCC\x81", 5)), std::string("a\0\xC3\xA9", 4));  // embedded NUL
  // Marks reorder by canonical class: U+0301 (230) after U+0323 (220).
  EXPECT_EQ(nfc("a\xCC\x81\xCC\xA3"), nfc("a\xCC\xA3\xCC\x81"));
  // Unicode >= 10 data is frozen like the reference's (Unicode 9) tables: U+11935 U+11930 stays.
  EXPECT_EQ(nfc("\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0"), "\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0");
  EXPECT_EQ(nfc("a\xE1\xB7\xB6\xCC\x81"), "a\xE1\xB7\xB6\xCC\x81");  // U+1DF6 blocks like a starter
  EXPECT_TRUE(nfc_quick_check("plain ascii and \xC3\xA9"));
  EXPECT_TRUE(nfc_quick_check("\xE4\xB8\xAD\xE6\x96\x87"));  // CJK
  EXPECT_FALSE(nfc_quick_check("e\xCC\x81"));
}

}  // namespace
}  // namespace dflash::tokenizer
