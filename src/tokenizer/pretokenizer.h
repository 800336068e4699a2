// Pre-tokenizer: splits text into pieces with the model's regex (HF `Split(regex, Isolated)`); each
// piece is then byte-level BPE'd on its own.
//
// Two engines give the same pieces:
//  - PCRE2 (UTF + UCP mode, JIT when available): runs any regex; \p{L}/\p{N}/\p{M}/\s get their
//    Unicode meaning as in Oniguruma, HF's engine (checked code point by code point by the
//    conformance corpus).
//  - a hand-written matcher for the two Qwen regexes (several times faster), whose character
//    classes are read from PCRE2 itself, code point by code point, so the two cannot disagree on
//    Unicode data; tests run both on the whole corpus and on random text and require equal output.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace dflash::tokenizer {

// The regexes of tokenizer.json, as HF writes them (llama.cpp names: "qwen2", "qwen35").
inline constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen3.5: combining marks (\p{M}) join letter runs instead of punctuation runs.
inline constexpr std::string_view kQwen35Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Regex for a `tokenizer.ggml.pre` name; empty for names we do not know.
std::string_view regex_for_pre(std::string_view pre);
// Inverse: the pre name whose regex this is; empty if none.
std::string_view pre_for_regex(std::string_view regex);

class PreTokenizer {
 public:
  enum class Engine { kAuto, kPcre2 };
  // `regex` in the syntax of tokenizer.json (Oniguruma); the subset Qwen uses is also PCRE2 syntax.
  // kAuto picks the hand-written matcher for the Qwen regexes, PCRE2 otherwise.
  static util::Result<PreTokenizer> create(std::string_view regex, Engine engine = Engine::kAuto);
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  ~PreTokenizer();

  // Calls fn(piece) for every piece of `text` (valid UTF-8) in order; the pieces concatenate to
  // `text`. Returns an error only if the regex engine fails (e.g. resource limit).
  template <typename Fn>
  util::Status split(std::string_view text, Fn&& fn) const {
    if (fast_ != 0) {
      size_t pos = 0;
      while (pos < text.size()) {
        const size_t end = fast_match(text, pos);
        fn(text.substr(pos, end - pos));
        pos = end;
      }
      return util::Status::ok();
    }
    Scratch scratch(*this);
    size_t pos = 0;
    while (pos < text.size()) {
      size_t mb = 0, me = 0;
      DFLASH_RETURN_IF_ERROR(next_match(scratch.md, text, pos, &mb, &me));
      if (mb > pos) fn(text.substr(pos, mb - pos));  // unmatched gap: Isolated keeps it as a piece
      if (me > mb) fn(text.substr(mb, me - mb));
      pos = me;
    }
    return util::Status::ok();
  }
  std::vector<std::string> split_to_vector(std::string_view text) const;

  bool jit() const;
  bool hand_written() const { return fast_ != 0; }

 private:
  struct Impl;
  // PCRE2 match data borrowed from a pool for the duration of one split() call.
  struct Scratch {
    explicit Scratch(const PreTokenizer& p);
    ~Scratch();
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    const PreTokenizer& owner;
    void* md;
  };
  explicit PreTokenizer(std::unique_ptr<Impl> impl);
  // Next match at or after `pos`; [*mb, *me) with *mb == *me == text.size() when there is none.
  util::Status next_match(void* md, std::string_view text, size_t pos, size_t* mb, size_t* me) const;
  // Hand-written matcher: end of the match that starts at `pos` (the Qwen regexes match everywhere).
  size_t fast_match(std::string_view text, size_t pos) const;

  std::unique_ptr<Impl> impl_;
  int fast_ = 0;  // 0 = PCRE2, 2 = Qwen2 regex, 35 = Qwen3.5 regex
  const uint8_t* classes_ = nullptr;  // per code point: kClassL | kClassN | kClassM | kClassS bits
};

}  // namespace dflash::tokenizer
