// Byte-level BPE tokenizer (GPT-2 style, as Qwen2/3/3.5 use it), identical in ids to Hugging Face
// `tokenizers` on the same tokenizer.json. Pipeline of encode():
//   invalid UTF-8 repair -> added/special tokens split off (longest match) -> NFC per remaining
//   segment -> regex pre-tokenizer -> byte-level BPE per piece (cached).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer_data.h"
#include "util/status.h"

namespace dflash::tokenizer {

enum class InvalidUtf8 {
  // Replace each maximal ill-formed subsequence with U+FFFD before tokenizing: what the reference
  // gets from bytes.decode("utf-8", errors="replace") (HF encode only accepts valid strings).
  kReplace,
  kError,  // return kInvalidArgument naming the byte offset
};

struct EncodeOptions {
  // false: the text of special tokens (<|im_start|>) is tokenized as plain text, like HF's
  // split_special_tokens=True. Non-special added tokens (<think>) are matched either way.
  bool parse_special = true;
  bool add_bos = false;  // prepend BOS when the vocabulary says add_bos and has one
  InvalidUtf8 invalid_utf8 = InvalidUtf8::kReplace;
};

struct DecodeOptions {
  bool skip_special = false;  // drop special (control) tokens, like HF skip_special_tokens
};

// Thread-safe: encode() may be called from several threads; calls share the piece cache under a
// mutex, so they run one at a time. decode() and the accessors take no lock.
class Tokenizer {
 public:
  static util::Result<Tokenizer> create(TokenizerData data);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  util::Result<std::vector<int32_t>> encode(std::string_view text, const EncodeOptions& opt = {}) const;
  // Appends to `out`.
  util::Status encode_append(std::string_view text, std::vector<int32_t>& out,
                             const EncodeOptions& opt = {}) const;

  // Text of `ids` as valid UTF-8: bytes that do not form UTF-8 become U+FFFD (HF's lossy decode).
  // Ids outside the vocabulary are an error; unused padding ids decode to nothing.
  util::Result<std::string> decode(std::span<const int32_t> ids, const DecodeOptions& opt = {}) const;
  // The raw bytes, no repair.
  util::Result<std::string> decode_bytes(std::span<const int32_t> ids, const DecodeOptions& opt = {}) const;
  // Raw bytes of one token ("" for unused ids); error for ids outside the vocabulary.
  util::Result<std::string_view> token_bytes(int32_t id) const;

  int32_t n_tokens() const;
  // Vocabulary text of a token (byte-level form for BPE tokens: " the" is "Ġthe").
  const std::string& token_text(int32_t id) const;
  std::optional<int32_t> token_id(std::string_view text) const;  // by vocabulary text
  TokenType token_type(int32_t id) const;
  bool is_special(int32_t id) const;  // a special added token (control)
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t eot_id() const;
  const TokenizerData& data() const;

  // Tests: BPE merge loop selection. Pieces with more than `n` symbols use the heap; others the
  // linear scan. Both must give the same ids.
  void set_heap_threshold_for_testing(size_t n);
  void clear_cache() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dflash::tokenizer
