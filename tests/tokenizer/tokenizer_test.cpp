#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#if __has_include("formats/gguf.h")
#include "formats/gguf.h"
#endif

#include "test_data.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/hf_json.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/utf8.h"

namespace dflash::tokenizer {
namespace {

using testing::qwen3;
using Ids = std::vector<int32_t>;

Ids enc(const Tokenizer& t, std::string_view s, EncodeOptions o = {}) {
  auto r = t.encode(s, o);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? *r : Ids{};
}

// Ids below come from the reference (HF tokenizers 0.22.2 on the Qwen3 tokenizer.json).
TEST(Tokenizer, Qwen3KnownIds) {
  const Tokenizer& t = qwen3();
  EXPECT_EQ(t.n_tokens(), 151669);
  EXPECT_EQ(enc(t, "Hello world"), (Ids{9707, 1879}));
  EXPECT_EQ(enc(t, "<|im_start|>user\nhi<|im_end|>"), (Ids{151644, 872, 198, 6023, 151645}));
  EXPECT_EQ(enc(t, "<think>x</think>"), (Ids{151667, 87, 151668}));
  EXPECT_EQ(enc(t, "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87"),
            (Ids{60096, 87244, 78368, 30484, 97, 34370}));
  EXPECT_EQ(enc(t, "\xC3\xA9"), (Ids{963}));
  EXPECT_EQ(enc(t, "e\xCC\x81"), (Ids{963}));  // NFC first
  EXPECT_TRUE(enc(t, "").empty());
}

TEST(Tokenizer, ParseSpecialFalseTokenizesSpecialTextButKeepsAddedTokens) {
  const Tokenizer& t = qwen3();
  EncodeOptions o;
  o.parse_special = false;
  // <|im_start|> is special -> plain text; <think> is a non-special added token -> still matched.
  EXPECT_EQ(enc(t, "<|im_start|>user<think>", o), (Ids{27, 91, 318, 4906, 91, 29, 872, 151667}));
}

TEST(Tokenizer, SpecialTokenMetadata) {
  const Tokenizer& t = qwen3();
  EXPECT_EQ(t.eos_id(), 151645);  // <|im_end|> per tokenizer_config.json
  EXPECT_EQ(t.pad_id(), 151643);
  EXPECT_EQ(t.bos_id(), -1);
  EXPECT_TRUE(t.is_special(151644));
  EXPECT_FALSE(t.is_special(151667));  // <think>
  EXPECT_EQ(t.token_type(151667), TokenType::kUserDefined);
  EXPECT_EQ(t.token_type(151644), TokenType::kControl);
  EXPECT_EQ(t.token_text(9707), "Hello");
  EXPECT_EQ(t.token_text(1879), "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(t.token_id("<|im_end|>"), std::optional<int32_t>(151645));
  EXPECT_FALSE(t.token_id("no such token").has_value());
  EXPECT_FALSE(t.data().chat_template.empty());
  EncodeOptions o;
  o.add_bos = true;  // Qwen has no BOS: nothing is added
  EXPECT_EQ(enc(t, "Hello", o), (Ids{9707}));
}

TEST(Tokenizer, DecodeAndErrors) {
  const Tokenizer& t = qwen3();
  const Ids ids{151644, 872, 198, 6023, 151645};
  auto s = t.decode(ids);
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(*s, "<|im_start|>user\nhi<|im_end|>");
  DecodeOptions skip;
  skip.skip_special = true;
  EXPECT_EQ(*t.decode(ids, skip), "user\nhi");
  auto bad = t.decode(Ids{9707, 151669});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), util::ErrorCode::kOutOfRange);
  EXPECT_NE(bad.status().message().find("151669"), std::string::npos);
  EXPECT_FALSE(t.decode(Ids{-1}).is_ok());
  EXPECT_FALSE(t.token_bytes(1 << 30).is_ok());
  // A token holding half of a UTF-8 sequence: raw bytes kept by decode_bytes, U+FFFD by decode.
  const Ids emoji = enc(t, "\xF0\x9F\xAB\xA8");  // U+1FAE8 is three tokens (9284, 104, 101)
  ASSERT_EQ(emoji, (Ids{9284, 104, 101}));
  EXPECT_EQ(*t.decode(Ids{emoji[0]}), kReplacementUtf8);
  EXPECT_EQ(*t.decode_bytes(emoji), "\xF0\x9F\xAB\xA8");
}

TEST(Tokenizer, InvalidUtf8Input) {
  const Tokenizer& t = qwen3();
  // Default: repaired to U+FFFD exactly as the reference sees bytes.decode("utf-8", "replace").
  EXPECT_EQ(enc(t, "a\xFF" "b"), enc(t, "a\xEF\xBF\xBD" "b"));
  EXPECT_EQ(enc(t, "\xE2\x82"), enc(t, "\xEF\xBF\xBD"));
  EncodeOptions strict;
  strict.invalid_utf8 = InvalidUtf8::kError;
  auto r = t.encode("ok\xC0\xAF", strict);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), util::ErrorCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("offset 2"), std::string::npos) << r.status().message();
}

// Streaming: any split of any id sequence gives exactly decode() of the whole, and never emits a
// broken UTF-8 sequence.
TEST(StreamDecoder, EqualsWholeDecodeAndAlwaysValid) {
  const Tokenizer& t = qwen3();
  std::mt19937 rng(3);
  const int iters = testing::sanitized() ? 200 : 2000;
  for (int it = 0; it < iters; ++it) {
    Ids ids;
    const int n = static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) {
      // Mostly byte tokens (ids < 256 are single bytes), so incomplete/invalid sequences are common.
      ids.push_back(rng() % 3 == 0 ? static_cast<int32_t>(rng() % t.n_tokens()) : static_cast<int32_t>(rng() % 256));
    }
    StreamDecoder sd(t);
    std::string streamed;
    for (int32_t id : ids) {
      auto piece = sd.push(id);
      ASSERT_TRUE(piece.is_ok());
      EXPECT_TRUE(utf8_is_valid(*piece));
      streamed += *piece;
    }
    streamed += sd.flush();
    EXPECT_EQ(sd.pending_bytes(), 0u);
    EXPECT_EQ(streamed, *t.decode(ids));
  }
}

TEST(StreamDecoder, HoldsBackSplitCharacter) {
  const Tokenizer& t = qwen3();
  const Ids emoji = enc(t, "\xF0\x9F\xAB\xA8!");
  ASSERT_EQ(emoji.size(), 4u);
  StreamDecoder sd(t);
  EXPECT_EQ(*sd.push(emoji[0]), "");
  EXPECT_EQ(*sd.push(emoji[1]), "");
  EXPECT_EQ(sd.pending_bytes(), 3u);
  EXPECT_EQ(*sd.push(emoji[2]), "\xF0\x9F\xAB\xA8");
  EXPECT_EQ(*sd.push(emoji[3]), "!");
  EXPECT_FALSE(sd.push(-5).is_ok());
  // A truncated stream ends with U+FFFD.
  StreamDecoder sd2(t);
  EXPECT_EQ(*sd2.push(emoji[0]), "");
  EXPECT_EQ(sd2.flush(), kReplacementUtf8);
}

// A tiny byte-level vocabulary for flag semantics the Qwen files do not use.
TokenizerData tiny(std::vector<AddedToken> added) {
  TokenizerData d;
  d.pre = "qwen2";
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8_append(s, byte_to_unicode(static_cast<uint8_t>(b)));
    d.tokens.push_back(s);
  }
  d.tokens.push_back("ab");  // 256
  d.tokens.push_back("abc");  // 257
  d.merges = {"a b", "ab c"};
  for (auto& a : added) {
    a.id = static_cast<int32_t>(d.tokens.size());
    d.tokens.push_back(a.content);
  }
  d.token_type.assign(d.tokens.size(), static_cast<int32_t>(TokenType::kNormal));
  for (const auto& a : added) {
    d.token_type[static_cast<size_t>(a.id)] = static_cast<int32_t>(a.special ? TokenType::kControl : TokenType::kUserDefined);
  }
  d.added_tokens = std::move(added);
  return d;
}

TEST(Tokenizer, TinyVocabMergesAndLongestMatch) {
  AddedToken x{.content = "<x>", .special = true};
  AddedToken xx{.content = "<x><x>", .special = true};
  auto t = Tokenizer::create(tiny({x, xx}));
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(enc(*t, "abc"), (Ids{257}));
  EXPECT_EQ(enc(*t, "abd"), (Ids{256, 'd'}));
  EXPECT_EQ(enc(*t, "<x><x><x>"), (Ids{259, 258}));  // leftmost-longest
  EXPECT_EQ(enc(*t, "a<x>c"), (Ids{'a', 258, 'c'}));
}

TEST(Tokenizer, AddedTokenStripFlags) {
  AddedToken l{.content = "<l>", .special = true, .lstrip = true};
  AddedToken r{.content = "<r>", .special = true, .rstrip = true};
  AddedToken w{.content = "ab", .special = false, .single_word = true};
  auto t = Tokenizer::create(tiny({l, r, w}));
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  const int32_t L = 258, R = 259, W = 260;
  EXPECT_EQ(enc(*t, "c  <l>c"), (Ids{'c', L, 'c'}));  // spaces before <l> belong to it
  EXPECT_EQ(enc(*t, "c<r>  c"), (Ids{'c', R, 'c'}));  // spaces after <r> belong to it
  EXPECT_EQ(enc(*t, "ab"), (Ids{W}));
  EXPECT_EQ(enc(*t, "xab"), (Ids{'x', 256}));          // inside a word: not the added token
  EXPECT_EQ(enc(*t, "x ab"), (Ids{'x', ' ', W}));       // byte ids equal byte values in this vocab
  EXPECT_EQ(enc(*t, "ab!"), (Ids{W, '!'}));
}

TEST(Tokenizer, CreateRejectsBadData) {
  TokenizerData d = tiny({});
  d.merges.push_back("a zz");
  auto t = Tokenizer::create(d);
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("merge 2"), std::string::npos) << t.status().message();
  d = tiny({});
  d.pre = "gpt4o";
  EXPECT_EQ(Tokenizer::create(d).status().code(), util::ErrorCode::kUnsupported);
  d = tiny({});
  d.tokens.erase(d.tokens.begin() + 'q');
  d.token_type.pop_back();
  EXPECT_FALSE(Tokenizer::create(d).is_ok());
  d = tiny({});
  d.eos_id = 100000;
  EXPECT_FALSE(Tokenizer::create(d).is_ok());
  d = tiny({});
  d.token_type.pop_back();
  EXPECT_FALSE(Tokenizer::create(d).is_ok());
}

TEST(HfJson, Errors) {
  auto r = parse_hf_tokenizer("{not json", "");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), util::ErrorCode::kCorrupt);
  r = parse_hf_tokenizer(R"({"model": {"type": "Unigram"}})", "");
  EXPECT_EQ(r.status().code(), util::ErrorCode::kUnsupported);
  EXPECT_NE(r.status().message().find("Unigram"), std::string::npos);
  r = parse_hf_tokenizer(R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": {"type": "NFKC"}})", "");
  EXPECT_EQ(r.status().code(), util::ErrorCode::kUnsupported);
  r = parse_hf_tokenizer(R"([1, 2])", "");
  EXPECT_FALSE(r.is_ok());
  EXPECT_FALSE(tokenizer_from_hf_file("/nonexistent/tokenizer.json").is_ok());
  // Truncated real file: a clear error, never a crash.
  const std::string& j = testing::qwen3_json();
  EXPECT_FALSE(parse_hf_tokenizer(std::string_view(j).substr(0, j.size() / 2), "").is_ok());
}

// tokenizer.json -> GGUF key/values -> MetadataSource -> Tokenizer gives the same ids.
TEST(GgufVocab, RoundTripThroughMetadata) {
  auto d = parse_hf_tokenizer(testing::qwen3_json(), testing::qwen3_config(), "qwen3");
  ASSERT_TRUE(d.is_ok());
  auto kvs = tokenizer_to_gguf_kvs(*d, 151936);  // Qwen3 embedding rows
  ASSERT_TRUE(kvs.is_ok()) << kvs.status().to_string();
  KVMetadataSource md(*kvs);
  ASSERT_EQ(std::get<std::string>(kvs->at(0).value), "gpt2");
  EXPECT_EQ(*md.get_string(kKeyPre), "qwen2");
  EXPECT_EQ(md.get_string_array(kKeyTokens)->size(), 151936u);
  EXPECT_EQ(md.get_string_array(kKeyTokens)->back(), "[PAD151935]");
  EXPECT_EQ(md.get_int_array(kKeyTokenType)->back(), static_cast<int64_t>(TokenType::kUnused));
  // <|fim_prefix|> is not special in tokenizer.json but looks special: control, like llama.cpp.
  EXPECT_EQ(md.get_int_array(kKeyTokenType)->at(151659), static_cast<int64_t>(TokenType::kControl));
  EXPECT_EQ(md.get_int_array(kKeyTokenType)->at(151667), static_cast<int64_t>(TokenType::kUserDefined));
  EXPECT_EQ(*md.get_int(kKeyEosId), 151645);
  EXPECT_EQ(*md.get_int(kKeyPadId), 151643);
  EXPECT_FALSE(md.has(kKeyBosId));
  EXPECT_FALSE(*md.get_bool(kKeyAddBos));
  EXPECT_TRUE(md.has(kKeyChatTemplate));
  auto t = tokenizer_from_metadata(md);
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(t->n_tokens(), 151936);
  const Tokenizer& ref = qwen3();
  for (size_t di = 0; di < testing::corpus().size(); di += testing::doc_stride()) {
    const auto& doc = testing::corpus()[di];
    if (doc.bytes.size() > 200000) continue;  // keep it quick; the big documents add nothing here
    EncodeOptions o;
    o.parse_special = doc.parse_special;
    if (doc.name == "syn:special-as-text") continue;  // <|fim_*|> differ by design (control in GGUF)
    EXPECT_EQ(enc(*t, doc.bytes, o), enc(ref, doc.bytes, o)) << doc.name;
  }
  EXPECT_EQ(*t->decode(Ids{151935}), "");  // padding rows decode to nothing
}

TEST(GgufVocab, MetadataErrors) {
  KVMetadataSource empty({});
  EXPECT_EQ(tokenizer_data_from_metadata(empty).status().code(), util::ErrorCode::kNotFound);
  KVMetadataSource wrong_model({{kKeyModel, std::string("llama")}});
  EXPECT_EQ(tokenizer_data_from_metadata(wrong_model).status().code(), util::ErrorCode::kUnsupported);
  KVMetadataSource wrong_type({{kKeyModel, std::string("gpt2")}, {kKeyPre, uint32_t{3}}});
  auto r = tokenizer_data_from_metadata(wrong_type);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find(kKeyPre), std::string::npos);
  KVMetadataSource bad_pre({{kKeyModel, std::string("gpt2")}, {kKeyPre, std::string("falcon")}});
  EXPECT_EQ(tokenizer_data_from_metadata(bad_pre).status().code(), util::ErrorCode::kUnsupported);
  KVMetadataSource bad_types({{kKeyModel, std::string("gpt2")}, {kKeyPre, std::string("qwen2")},
                              {kKeyTokens, std::vector<std::string>{"a", "b"}},
                              {kKeyTokenType, std::vector<int32_t>{1}}});
  EXPECT_EQ(tokenizer_data_from_metadata(bad_types).status().code(), util::ErrorCode::kCorrupt);
  KVMetadataSource bad_eos({{kKeyModel, std::string("gpt2")}, {kKeyPre, std::string("qwen2")},
                            {kKeyTokens, std::vector<std::string>{"a"}}, {kKeyMerges, std::vector<std::string>{}},
                            {kKeyEosId, uint32_t{7}}});
  EXPECT_EQ(tokenizer_data_from_metadata(bad_eos).status().code(), util::ErrorCode::kCorrupt);
}

}  // namespace
}  // namespace dflash::tokenizer

namespace dflash::tokenizer {
namespace {

TEST(GgufVocab, MissingGgufFileIsAnError) {
  auto t = tokenizer_from_gguf_file("/nonexistent/model.gguf");
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("/nonexistent/model.gguf"), std::string::npos) << t.status().message();
}

#if __has_include("formats/gguf.h")
// Once the GGUF reader/writer is in the tree: tokenizer.json -> GGUF file -> Tokenizer, same ids.
TEST(GgufVocab, RoundTripThroughGgufFile) {
  auto d = parse_hf_tokenizer(testing::qwen3_json(), testing::qwen3_config(), "qwen3");
  ASSERT_TRUE(d.is_ok());
  auto kvs = tokenizer_to_gguf_kvs(*d, 151936);
  ASSERT_TRUE(kvs.is_ok());
  formats::GgufWriter w;
  for (const auto& kv : *kvs) {
    formats::GgufValue v;
    if (auto* s = std::get_if<std::string>(&kv.value)) v = formats::GgufValue::string(*s);
    else if (auto* u = std::get_if<uint32_t>(&kv.value)) v = formats::GgufValue::u32(*u);
    else if (auto* b = std::get_if<bool>(&kv.value)) v = formats::GgufValue::boolean(*b);
    else if (auto* sa = std::get_if<std::vector<std::string>>(&kv.value)) v = formats::GgufValue::array_strings(*sa);
    else if (auto* ia = std::get_if<std::vector<int32_t>>(&kv.value)) v = formats::GgufValue::array_i32(*ia);
    ASSERT_TRUE(w.set(kv.key, v).is_ok()) << kv.key;
  }
  const std::string path = ::testing::TempDir() + "/dflash_tokenizer_roundtrip.gguf";
  ASSERT_TRUE(w.write(path, true).is_ok());
  auto t = tokenizer_from_gguf_file(path);
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  EXPECT_EQ(t->n_tokens(), 151936);
  for (const char* s : {"Hello world", "<|im_start|>user\nhi<|im_end|>", "e\xCC\x81 \xF0\x9F\xAB\xA8", "<think>x</think>"}) {
    EXPECT_EQ(enc(*t, s), enc(qwen3(), s)) << s;
  }
  std::remove(path.c_str());
}
#endif

}  // namespace
}  // namespace dflash::tokenizer
