// libFuzzer target for the tokenizer: arbitrary bytes as text (encode/decode, both pre-tokenizer
// engines compared), as token ids (decode + streaming decode) and as tokenizer.json (loader).
// Uses a small built-in byte-level vocabulary, or the tokenizer.json named by DFLASH_FUZZ_TOKENIZER.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tokenizer/hf_json.h"
#include "tokenizer/normalize.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

using namespace dflash::tokenizer;

namespace {

TokenizerData builtin_vocab() {
  TokenizerData d;
  d.pre = "qwen2";
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8_append(s, byte_to_unicode(static_cast<uint8_t>(b)));
    d.tokens.push_back(s);
  }
  const char* merges[][2] = {{"\xC4\xA0", "t"}, {"h", "e"}, {"\xC4\xA0t", "he"}, {"a", "b"}, {"ab", "c"},
                             {"\xC4\xA0", "\xC4\xA0"}, {"1", "2"}, {"\xC3\x83", "\xC2\xA9"} /* é as bytes */};
  for (auto& m : merges) {
    d.merges.push_back(std::string(m[0]) + " " + m[1]);
    d.tokens.push_back(std::string(m[0]) + m[1]);
  }
  for (const char* s : {"<|im_start|>", "<|im_end|>", "<think>"}) {
    AddedToken a;
    a.id = static_cast<int32_t>(d.tokens.size());
    a.content = s;
    a.special = s[1] == '|';
    d.tokens.push_back(s);
    d.added_tokens.push_back(a);
  }
  d.token_type.assign(d.tokens.size(), 1);
  for (const auto& a : d.added_tokens) d.token_type[static_cast<size_t>(a.id)] = a.special ? 3 : 4;
  return d;
}

struct State {
  Tokenizer tok;
  PreTokenizer pcre2_qwen2, pcre2_qwen35, fast_qwen2, fast_qwen35;
};

State* state() {
  static State* s = [] {
    auto load = []() -> Tokenizer {
      if (const char* p = std::getenv("DFLASH_FUZZ_TOKENIZER")) {
        auto t = tokenizer_from_hf_file(p);
        if (t.is_ok()) return std::move(t).value();
        std::fprintf(stderr, "%s\n", t.status().to_string().c_str());
        std::abort();
      }
      auto t = Tokenizer::create(builtin_vocab());
      if (!t.is_ok()) {
        std::fprintf(stderr, "%s\n", t.status().to_string().c_str());
        std::abort();
      }
      return std::move(t).value();
    };
    auto pre = [](std::string_view re, PreTokenizer::Engine e) {
      auto p = PreTokenizer::create(re, e);
      if (!p.is_ok()) std::abort();
      return std::move(p).value();
    };
    return new State{load(), pre(kQwen2Regex, PreTokenizer::Engine::kPcre2), pre(kQwen35Regex, PreTokenizer::Engine::kPcre2),
                     pre(kQwen2Regex, PreTokenizer::Engine::kAuto), pre(kQwen35Regex, PreTokenizer::Engine::kAuto)};
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  State& s = *state();
  const uint8_t mode = data[0] % 4;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode == 0 || mode == 1) {
    EncodeOptions o;
    o.parse_special = mode == 0;
    auto ids = s.tok.encode(in, o);
    if (!ids.is_ok()) std::abort();  // kReplace never fails
    auto text = s.tok.decode(*ids);
    if (!text.is_ok() || !utf8_is_valid(*text)) std::abort();
    // Without added tokens in play the round trip is exact up to repair + NFC.
    if (!o.parse_special || in.find('<') == std::string_view::npos) {
      if (*text != nfc(utf8_make_valid(in))) std::abort();
    }
    // Differential: the hand-written pre-tokenizer against PCRE2.
    const std::string valid = utf8_make_valid(in);
    if (s.fast_qwen2.split_to_vector(valid) != s.pcre2_qwen2.split_to_vector(valid)) std::abort();
    if (s.fast_qwen35.split_to_vector(valid) != s.pcre2_qwen35.split_to_vector(valid)) std::abort();
  } else if (mode == 2) {
    // Bytes as token ids (some out of range): decode and stream-decode must agree or both fail.
    std::vector<int32_t> ids;
    for (size_t i = 0; i + 2 <= in.size(); i += 2) {
      ids.push_back(static_cast<int32_t>(static_cast<uint8_t>(in[i]) | (static_cast<uint8_t>(in[i + 1]) << 8)) %
                    (s.tok.n_tokens() + 8));
    }
    auto whole = s.tok.decode(ids);
    StreamDecoder sd(s.tok);
    std::string streamed;
    bool ok = true;
    for (int32_t id : ids) {
      auto p = sd.push(id);
      if (!p.is_ok()) {
        ok = false;
        break;
      }
      if (!utf8_is_valid(*p)) std::abort();
      streamed += *p;
    }
    streamed += sd.flush();
    if (ok != whole.is_ok()) std::abort();
    if (ok && streamed != *whole) std::abort();
  } else {
    // The loader on arbitrary JSON-ish input: errors, never crashes.
    auto d = parse_hf_tokenizer(in, "", "fuzz");
    if (d.is_ok()) {
      auto t = Tokenizer::create(std::move(d).value());
      if (t.is_ok()) (void)t->encode("hello world <|im_start|>");
    }
  }
  return 0;
}
