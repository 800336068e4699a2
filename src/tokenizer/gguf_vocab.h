// TokenizerData <-> GGUF `tokenizer.*` metadata, independent of the GGUF reader/writer: reading goes
// through a small key-lookup interface (the GGUF reader supplies a thin adapter), writing produces a
// list of typed key/values (the converter hands them to the GGUF writer).
// Key names and token_type values: llama.cpp gguf-py/gguf/constants.py (Keys.Tokenizer, TokenType).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_data.h"
#include "util/status.h"

namespace dflash::tokenizer {

inline constexpr char kKeyModel[] = "tokenizer.ggml.model";
inline constexpr char kKeyPre[] = "tokenizer.ggml.pre";
inline constexpr char kKeyTokens[] = "tokenizer.ggml.tokens";
inline constexpr char kKeyTokenType[] = "tokenizer.ggml.token_type";
inline constexpr char kKeyMerges[] = "tokenizer.ggml.merges";
inline constexpr char kKeyBosId[] = "tokenizer.ggml.bos_token_id";
inline constexpr char kKeyEosId[] = "tokenizer.ggml.eos_token_id";
inline constexpr char kKeyEotId[] = "tokenizer.ggml.eot_token_id";
inline constexpr char kKeyPadId[] = "tokenizer.ggml.padding_token_id";
inline constexpr char kKeyAddBos[] = "tokenizer.ggml.add_bos_token";
inline constexpr char kKeyChatTemplate[] = "tokenizer.chat_template";

// Read access to GGUF metadata. get_* return kNotFound when the key is absent and
// kInvalidArgument when it has another type; integer getters accept any GGUF integer type.
class MetadataSource {
 public:
  virtual ~MetadataSource() = default;
  virtual bool has(std::string_view key) const = 0;
  virtual util::Result<std::string> get_string(std::string_view key) const = 0;
  virtual util::Result<int64_t> get_int(std::string_view key) const = 0;
  virtual util::Result<bool> get_bool(std::string_view key) const = 0;
  virtual util::Result<std::vector<std::string>> get_string_array(std::string_view key) const = 0;
  virtual util::Result<std::vector<int64_t>> get_int_array(std::string_view key) const = 0;
};

// GGUF value types the tokenizer keys use: STRING, UINT32, BOOL, ARRAY<STRING>, ARRAY<INT32>.
using GgufValue = std::variant<std::string, uint32_t, bool, std::vector<std::string>, std::vector<int32_t>>;
struct GgufKV {
  std::string key;
  GgufValue value;
};

// Reads the tokenizer keys. Qwen pre-tokenizers ("qwen2", "qwen35") imply NFC: their tokenizer.json
// has an NFC normalizer, which GGUF does not record (llama.cpp skips NFC; we do not).
util::Result<TokenizerData> tokenizer_data_from_metadata(const MetadataSource& md);
util::Result<Tokenizer> tokenizer_from_metadata(const MetadataSource& md);
// Opens a GGUF file and builds its tokenizer (gguf_file_vocab.cpp: formats::GgufFile as a
// MetadataSource). kUnsupported while the GGUF reader is not in the build.
util::Result<Tokenizer> tokenizer_from_gguf_file(const std::string& path);

// The key/values a converter writes. `n_vocab` > tokens.size() pads with "[PAD<id>]" kUnused
// entries (the model's embedding has more rows than the tokenizer has tokens); -1 = no padding.
// Added tokens become kControl when special, or when they look like "<|...|>" (as llama.cpp's
// converter does), else kUserDefined.
util::Result<std::vector<GgufKV>> tokenizer_to_gguf_kvs(const TokenizerData& d, int64_t n_vocab = -1);

// An in-memory MetadataSource over key/values (tests; the converter's round-trip check).
class KVMetadataSource : public MetadataSource {
 public:
  explicit KVMetadataSource(std::vector<GgufKV> kvs) : kvs_(std::move(kvs)) {}
  bool has(std::string_view key) const override;
  util::Result<std::string> get_string(std::string_view key) const override;
  util::Result<int64_t> get_int(std::string_view key) const override;
  util::Result<bool> get_bool(std::string_view key) const override;
  util::Result<std::vector<std::string>> get_string_array(std::string_view key) const override;
  util::Result<std::vector<int64_t>> get_int_array(std::string_view key) const override;

 private:
  const GgufValue* find(std::string_view key) const;
  std::vector<GgufKV> kvs_;
};

}  // namespace dflash::tokenizer
