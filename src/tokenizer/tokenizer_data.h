// TokenizerData: everything needed to build a Tokenizer, in the shape of GGUF's `tokenizer.*` keys.
// Both loaders fill it: HF tokenizer.json (hf_json.h) and GGUF metadata (gguf_vocab.h), so the two
// paths cannot drift apart, and the converter writes GGUF keys straight from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dflash::tokenizer {

// Values of `tokenizer.ggml.token_type` (gguf-py TokenType).
enum class TokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // special added token (<|im_start|>): matched before BPE unless parse_special=false
  kUserDefined = 4,  // non-special added token (<think>): always matched before BPE
  kUnused = 5,       // padding rows ([PAD151700])
  kByte = 6,
};

// An HF added token with its matching flags (tokenizer.json "added_tokens").
struct AddedToken {
  int32_t id = -1;
  std::string content;  // plain text, not byte-level encoded
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;  // matched against NFC text instead of the raw input
};

struct TokenizerData {
  std::string model = "gpt2";  // byte-level BPE; the only model we support
  std::string pre;             // pre-tokenizer name: "qwen2" | "qwen35"
  std::string pre_regex;       // explicit regex; empty = the one named by `pre`
  bool nfc = true;             // NFC-normalise before splitting (HF normalizer "NFC")
  bool ignore_merges = false;  // HF BPE option: a piece that is a whole vocab entry is not merged
  // Token text by id: byte-level encoded for BPE tokens, plain text for added tokens.
  std::vector<std::string> tokens;
  std::vector<int32_t> token_type;  // TokenType per id (same length as tokens)
  std::vector<std::string> merges;  // "left right", byte-level, in rank order
  // Added tokens and their flags. When empty (GGUF), derived from token_type: kControl -> special,
  // kUserDefined -> not special; all flags false.
  std::vector<AddedToken> added_tokens;
  int32_t bos_id = -1, eos_id = -1, pad_id = -1, eot_id = -1;  // -1 = none
  bool add_bos = false;
  std::string chat_template;
};

}  // namespace dflash::tokenizer
