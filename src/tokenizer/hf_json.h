// Loading a byte-level BPE tokenizer from Hugging Face files: tokenizer.json (vocab, merges, added
// tokens, normalizer, pre-tokenizer) plus tokenizer_config.json (bos/eos/pad, add_bos_token,
// chat_template). Only what Qwen2/3/3.5 use is accepted; anything else is a clear kUnsupported.
#pragma once

#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_data.h"
#include "util/status.h"

namespace dflash::tokenizer {

// `config_json` may be empty (no tokenizer_config.json: no bos/eos/template). `source` names the
// file in error messages.
util::Result<TokenizerData> parse_hf_tokenizer(std::string_view tokenizer_json, std::string_view config_json,
                                               const std::string& source = "tokenizer.json");

// Reads `path` (a tokenizer.json) and, if present, tokenizer_config.json next to it.
util::Result<TokenizerData> load_hf_tokenizer(const std::string& path);

util::Result<Tokenizer> tokenizer_from_hf_file(const std::string& path);

}  // namespace dflash::tokenizer
