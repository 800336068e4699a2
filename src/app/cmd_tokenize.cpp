// dflash tokenize (-m MODEL.gguf | --tokenizer tokenizer.json) "text": ids and pieces.
#include <cstdio>
#include <string>

#include "app/command.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/hf_json.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace dflash::app {

namespace {

struct TokenizeArgs {
  std::string model;
  std::string tokenizer_json;
  std::string text;
  bool ids_only = false;
  bool no_special = false;
};

// Piece as printable text: the token's bytes, invalid UTF-8 and control bytes escaped.
std::string printable_piece(std::string_view bytes) {
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    const uint8_t b = static_cast<uint8_t>(bytes[i]);
    if (b >= 0x80) {
      const size_t n = tokenizer::utf8_valid_len(bytes, i);
      if (n) {
        out.append(bytes.substr(i, n));
        i += n;
        continue;
      }
    }
    if (b < 0x20 || b == 0x7F || b >= 0x80) {
      switch (b) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default: out += util::strfmt("\\x%02X", b);
      }
    } else if (b == '\\') {
      out += "\\\\";
    } else {
      out.push_back(static_cast<char>(b));
    }
    ++i;
  }
  return out;
}

int run_tokenize(const TokenizeArgs& a) {
  if (a.model.empty() == a.tokenizer_json.empty()) {
    std::fprintf(stderr, "tokenize: give exactly one of -m MODEL.gguf or --tokenizer tokenizer.json\n");
    return 2;
  }
  auto tok = a.model.empty() ? tokenizer::tokenizer_from_hf_file(a.tokenizer_json)
                             : tokenizer::tokenizer_from_gguf_file(a.model);
  if (!tok.is_ok()) {
    std::fprintf(stderr, "tokenize: %s\n", tok.status().to_string().c_str());
    return 1;
  }
  tokenizer::EncodeOptions opt;
  opt.parse_special = !a.no_special;
  auto ids = tok->encode(a.text, opt);
  if (!ids.is_ok()) {
    std::fprintf(stderr, "tokenize: %s\n", ids.status().to_string().c_str());
    return 1;
  }
  if (a.ids_only) {
    std::string line = "[";
    for (size_t i = 0; i < ids->size(); ++i) line += (i ? ", " : "") + std::to_string((*ids)[i]);
    line += "]\n";
    std::fputs(line.c_str(), stdout);
    return 0;
  }
  for (int32_t id : *ids) {
    auto bytes = tok->token_bytes(id);
    std::printf("%8d -> '%s'\n", id, bytes.is_ok() ? printable_piece(*bytes).c_str() : "?");
  }
  std::printf("%zu tokens\n", ids->size());
  return 0;
}

}  // namespace

DFLASH_COMMAND(Command{"tokenize", "Print the token ids and pieces of a text",
                       [](CLI::App* sub) -> std::function<int()> {
                         auto a = std::make_shared<TokenizeArgs>();
                         sub->add_option("-m,--model", a->model, "Model GGUF whose tokenizer to use");
                         sub->add_option("--tokenizer", a->tokenizer_json,
                                         "HF tokenizer.json (tokenizer_config.json next to it is read too)");
                         sub->add_option("text", a->text, "Text to tokenize")->required();
                         sub->add_flag("--ids-only", a->ids_only, "Print only the ids, as a list");
                         sub->add_flag("--no-special", a->no_special,
                                       "Tokenize special-token text (<|im_start|>) as plain text");
                         return [a] { return run_tokenize(*a); };
                       }});

}  // namespace dflash::app
