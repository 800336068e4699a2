#include "tokenizer/gguf_vocab.h"

#include "tokenizer/pretokenizer.h"

namespace dflash::tokenizer {

using util::Result;
using util::Status;

namespace {

bool looks_special(const std::string& t) {
  return t.size() >= 4 && t.compare(0, 2, "<|") == 0 && t.compare(t.size() - 2, 2, "|>") == 0;
}

Result<int32_t> optional_id(const MetadataSource& md, const char* key, size_t n_tokens) {
  if (!md.has(key)) return -1;
  DFLASH_ASSIGN_OR_RETURN(int64_t v, md.get_int(key));
  if (v < 0 || v >= static_cast<int64_t>(n_tokens)) {
    return util::corrupt(util::strfmt("%s = %lld is outside the vocabulary (%zu tokens)", key,
                                      static_cast<long long>(v), n_tokens));
  }
  return static_cast<int32_t>(v);
}

}  // namespace

Result<TokenizerData> tokenizer_data_from_metadata(const MetadataSource& md) {
  TokenizerData d;
  if (!md.has(kKeyModel)) return util::not_found(std::string("metadata has no ") + kKeyModel + " (no tokenizer)");
  DFLASH_ASSIGN_OR_RETURN(d.model, md.get_string(kKeyModel));
  if (d.model != "gpt2") {
    return util::unsupported(std::string(kKeyModel) + " = '" + d.model + "' (expected 'gpt2', byte-level BPE)");
  }
  if (!md.has(kKeyPre)) return util::not_found(std::string("metadata has no ") + kKeyPre);
  DFLASH_ASSIGN_OR_RETURN(d.pre, md.get_string(kKeyPre));
  if (regex_for_pre(d.pre).empty()) {
    return util::unsupported(std::string(kKeyPre) + " = '" + d.pre + "' (supported: qwen2, qwen35)");
  }
  d.nfc = true;
  DFLASH_ASSIGN_OR_RETURN(d.tokens, md.get_string_array(kKeyTokens));
  if (md.has(kKeyTokenType)) {
    DFLASH_ASSIGN_OR_RETURN(std::vector<int64_t> types, md.get_int_array(kKeyTokenType));
    if (types.size() != d.tokens.size()) {
      return util::corrupt(util::strfmt("%s has %zu entries but %s has %zu", kKeyTokenType, types.size(), kKeyTokens,
                                        d.tokens.size()));
    }
    d.token_type.reserve(types.size());
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] < 1 || types[i] > 6) {
        return util::corrupt(util::strfmt("%s[%zu] = %lld is not a token type (1..6)", kKeyTokenType, i,
                                          static_cast<long long>(types[i])));
      }
      d.token_type.push_back(static_cast<int32_t>(types[i]));
    }
  } else {
    d.token_type.assign(d.tokens.size(), static_cast<int32_t>(TokenType::kNormal));
  }
  DFLASH_ASSIGN_OR_RETURN(d.merges, md.get_string_array(kKeyMerges));
  DFLASH_ASSIGN_OR_RETURN(d.bos_id, optional_id(md, kKeyBosId, d.tokens.size()));
  DFLASH_ASSIGN_OR_RETURN(d.eos_id, optional_id(md, kKeyEosId, d.tokens.size()));
  DFLASH_ASSIGN_OR_RETURN(d.pad_id, optional_id(md, kKeyPadId, d.tokens.size()));
  DFLASH_ASSIGN_OR_RETURN(d.eot_id, optional_id(md, kKeyEotId, d.tokens.size()));
  if (md.has(kKeyAddBos)) {
    DFLASH_ASSIGN_OR_RETURN(d.add_bos, md.get_bool(kKeyAddBos));
  }
  if (md.has(kKeyChatTemplate)) {
    DFLASH_ASSIGN_OR_RETURN(d.chat_template, md.get_string(kKeyChatTemplate));
  }
  return d;
}

Result<Tokenizer> tokenizer_from_metadata(const MetadataSource& md) {
  DFLASH_ASSIGN_OR_RETURN(TokenizerData d, tokenizer_data_from_metadata(md));
  return Tokenizer::create(std::move(d));
}

Result<std::vector<GgufKV>> tokenizer_to_gguf_kvs(const TokenizerData& d, int64_t n_vocab) {
  if (d.model != "gpt2") return util::unsupported("tokenizer model '" + d.model + "' cannot be written as gpt2");
  if (d.pre.empty() || regex_for_pre(d.pre).empty()) {
    return util::unsupported("tokenizer pre-tokenizer is not one GGUF can name (regex: " + d.pre_regex + ")");
  }
  if (d.tokens.size() != d.token_type.size()) return util::invalid_argument("tokens and token types differ in length");
  if (n_vocab >= 0 && n_vocab < static_cast<int64_t>(d.tokens.size())) {
    return util::invalid_argument(util::strfmt("model vocabulary (%lld rows) is smaller than the tokenizer (%zu tokens)",
                                               static_cast<long long>(n_vocab), d.tokens.size()));
  }
  const size_t n = n_vocab >= 0 ? static_cast<size_t>(n_vocab) : d.tokens.size();
  std::vector<std::string> tokens = d.tokens;
  std::vector<int32_t> types = d.token_type;
  for (const AddedToken& a : d.added_tokens) {  // flags in tokenizer.json are the authority
    if (a.id >= 0 && static_cast<size_t>(a.id) < types.size()) {
      types[static_cast<size_t>(a.id)] = static_cast<int32_t>(
          a.special || looks_special(a.content) ? TokenType::kControl : TokenType::kUserDefined);
    }
  }
  for (size_t i = tokens.size(); i < n; ++i) {
    tokens.push_back("[PAD" + std::to_string(i) + "]");
    types.push_back(static_cast<int32_t>(TokenType::kUnused));
  }
  std::vector<GgufKV> kv;
  kv.push_back({kKeyModel, d.model});
  kv.push_back({kKeyPre, d.pre});
  kv.push_back({kKeyTokens, std::move(tokens)});
  kv.push_back({kKeyTokenType, std::move(types)});
  kv.push_back({kKeyMerges, d.merges});
  if (d.bos_id >= 0) kv.push_back({kKeyBosId, static_cast<uint32_t>(d.bos_id)});
  if (d.eos_id >= 0) kv.push_back({kKeyEosId, static_cast<uint32_t>(d.eos_id)});
  if (d.eot_id >= 0) kv.push_back({kKeyEotId, static_cast<uint32_t>(d.eot_id)});
  if (d.pad_id >= 0) kv.push_back({kKeyPadId, static_cast<uint32_t>(d.pad_id)});
  kv.push_back({kKeyAddBos, d.add_bos});
  if (!d.chat_template.empty()) kv.push_back({kKeyChatTemplate, d.chat_template});
  return kv;
}

const GgufValue* KVMetadataSource::find(std::string_view key) const {
  for (const auto& kv : kvs_) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

bool KVMetadataSource::has(std::string_view key) const { return find(key) != nullptr; }

namespace {
template <typename T>
Result<const T*> typed(const GgufValue* v, std::string_view key, const char* want) {
  if (!v) return util::not_found("metadata key '" + std::string(key) + "' not found");
  const T* p = std::get_if<T>(v);
  if (!p) return util::invalid_argument("metadata key '" + std::string(key) + "' is not " + want);
  return p;
}
}  // namespace

Result<std::string> KVMetadataSource::get_string(std::string_view key) const {
  DFLASH_ASSIGN_OR_RETURN(const std::string* p, typed<std::string>(find(key), key, "a string"));
  return *p;
}
Result<int64_t> KVMetadataSource::get_int(std::string_view key) const {
  DFLASH_ASSIGN_OR_RETURN(const uint32_t* p, typed<uint32_t>(find(key), key, "an integer"));
  return static_cast<int64_t>(*p);
}
Result<bool> KVMetadataSource::get_bool(std::string_view key) const {
  DFLASH_ASSIGN_OR_RETURN(const bool* p, typed<bool>(find(key), key, "a bool"));
  return *p;
}
Result<std::vector<std::string>> KVMetadataSource::get_string_array(std::string_view key) const {
  DFLASH_ASSIGN_OR_RETURN(const std::vector<std::string>* p,
                          typed<std::vector<std::string>>(find(key), key, "an array of strings"));
  return *p;
}
Result<std::vector<int64_t>> KVMetadataSource::get_int_array(std::string_view key) const {
  DFLASH_ASSIGN_OR_RETURN(const std::vector<int32_t>* p,
                          typed<std::vector<int32_t>>(find(key), key, "an array of integers"));
  return std::vector<int64_t>(p->begin(), p->end());
}

}  // namespace dflash::tokenizer
