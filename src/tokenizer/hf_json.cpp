#include "tokenizer/hf_json.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/pretokenizer.h"

namespace dflash::tokenizer {

using json = nlohmann::json;
using util::Result;
using util::Status;

namespace {

Result<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return util::io_error("cannot open '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return util::io_error("cannot read '" + path + "'");
  return ss.str();
}

bool get_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  return (it != j.end() && it->is_boolean()) ? it->get<bool>() : def;
}

// tokenizer_config.json writes special tokens as "text" or {"content": "text", ...}.
std::string token_content(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object()) {
    auto it = j.find("content");
    if (it != j.end() && it->is_string()) return it->get<std::string>();
  }
  return {};
}

Status check_pre_tokenizer(const json& pt, const std::string& src, TokenizerData& d) {
  // Qwen: Sequence[Split(Regex, Isolated, invert=false), ByteLevel(add_prefix_space=false, use_regex=false)].
  auto bad = [&](const std::string& what) {
    return util::unsupported(src + ": pre_tokenizer: " + what +
                             " (supported: Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)])");
  };
  if (!pt.is_object() || pt.value("type", "") != "Sequence" || !pt.contains("pretokenizers") ||
      !pt["pretokenizers"].is_array() || pt["pretokenizers"].size() != 2) {
    return bad("unexpected structure");
  }
  const json& split = pt["pretokenizers"][0];
  const json& bl = pt["pretokenizers"][1];
  if (split.value("type", "") != "Split" || split.value("behavior", "") != "Isolated" || get_bool(split, "invert", false)) {
    return bad("first step is not Split(behavior=Isolated, invert=false)");
  }
  if (!split.contains("pattern") || !split["pattern"].is_object() || !split["pattern"].contains("Regex") ||
      !split["pattern"]["Regex"].is_string()) {
    return bad("Split has no Regex pattern");
  }
  if (bl.value("type", "") != "ByteLevel" || get_bool(bl, "add_prefix_space", false) || get_bool(bl, "use_regex", true)) {
    return bad("second step is not ByteLevel(add_prefix_space=false, use_regex=false)");
  }
  const std::string regex = split["pattern"]["Regex"].get<std::string>();
  d.pre = std::string(pre_for_regex(regex));
  if (d.pre.empty()) d.pre_regex = regex;  // unknown regex: run it as given, but GGUF export will refuse
  return Status::ok();
}

}  // namespace

Result<TokenizerData> parse_hf_tokenizer(std::string_view tokenizer_json, std::string_view config_json,
                                         const std::string& src) {
  json j;
  try {
    j = json::parse(tokenizer_json);
  } catch (const json::exception& e) {
    return util::corrupt(src + ": not valid JSON: " + e.what());
  }
  TokenizerData d;
  try {
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
      return util::corrupt(src + ": no \"model\" object");
    }
    const json& model = j["model"];
    if (model.value("type", "") != "BPE") {
      return util::unsupported(src + ": model.type is '" + model.value("type", "") + "', expected 'BPE'");
    }
    if (get_bool(model, "byte_fallback", false)) return util::unsupported(src + ": model.byte_fallback=true");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(k) && model[k].is_string() && !model[k].get<std::string>().empty()) {
        return util::unsupported(src + ": model." + k + " is set");
      }
    }
    if (model.contains("dropout") && !model["dropout"].is_null()) return util::unsupported(src + ": model.dropout is set");
    d.ignore_merges = get_bool(model, "ignore_merges", false);

    // Normalizer: none or NFC.
    const json& norm = j.contains("normalizer") ? j["normalizer"] : json();
    if (norm.is_null()) {
      d.nfc = false;
    } else if (norm.is_object() && norm.value("type", "") == "NFC") {
      d.nfc = true;
    } else {
      return util::unsupported(src + ": normalizer " + norm.dump() + " (supported: null or NFC)");
    }
    DFLASH_RETURN_IF_ERROR(check_pre_tokenizer(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), src, d));
    if (j.contains("decoder") && !j["decoder"].is_null() && j["decoder"].value("type", "") != "ByteLevel") {
      return util::unsupported(src + ": decoder is '" + j["decoder"].value("type", "") + "', expected ByteLevel");
    }

    // Vocabulary.
    if (!model.contains("vocab") || !model["vocab"].is_object()) return util::corrupt(src + ": model.vocab missing");
    std::map<int64_t, std::string> by_id;
    for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > INT32_MAX) {
        return util::corrupt(src + ": model.vocab['" + it.key() + "'] is not a token id");
      }
      by_id[it.value().get<int64_t>()] = it.key();
    }
    std::vector<AddedToken> added;
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const json& a : j["added_tokens"]) {
        AddedToken t;
        if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
            !a["content"].is_string()) {
          return util::corrupt(src + ": added_tokens entry without integer id / string content: " + a.dump());
        }
        const int64_t id = a["id"].get<int64_t>();
        if (id < 0 || id > INT32_MAX) return util::corrupt(src + ": added token id out of range: " + a.dump());
        t.id = static_cast<int32_t>(id);
        t.content = a["content"].get<std::string>();
        t.special = get_bool(a, "special", false);
        t.single_word = get_bool(a, "single_word", false);
        t.lstrip = get_bool(a, "lstrip", false);
        t.rstrip = get_bool(a, "rstrip", false);
        t.normalized = get_bool(a, "normalized", !t.special);
        added.push_back(std::move(t));
      }
    }
    int64_t n = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
    for (const auto& a : added) n = std::max<int64_t>(n, a.id + 1);
    if (n > (int64_t{1} << 24)) return util::corrupt(src + ": implausible vocabulary size " + std::to_string(n));
    d.tokens.assign(static_cast<size_t>(n), std::string());
    d.token_type.assign(static_cast<size_t>(n), static_cast<int32_t>(TokenType::kUnused));
    std::vector<uint8_t> filled(static_cast<size_t>(n), 0);
    for (const auto& [id, text] : by_id) {
      d.tokens[static_cast<size_t>(id)] = text;
      d.token_type[static_cast<size_t>(id)] = static_cast<int32_t>(TokenType::kNormal);
      filled[static_cast<size_t>(id)] = 1;
    }
    for (const auto& a : added) {
      d.tokens[static_cast<size_t>(a.id)] = a.content;
      d.token_type[static_cast<size_t>(a.id)] =
          static_cast<int32_t>(a.special ? TokenType::kControl : TokenType::kUserDefined);
      filled[static_cast<size_t>(a.id)] = 1;
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!filled[static_cast<size_t>(i)]) d.tokens[static_cast<size_t>(i)] = "[PAD" + std::to_string(i) + "]";
    }
    d.added_tokens = std::move(added);

    // Merges: "a b" strings (older files) or ["a", "b"] pairs (tokenizers >= 0.20).
    if (!model.contains("merges") || !model["merges"].is_array()) return util::corrupt(src + ": model.merges missing");
    d.merges.reserve(model["merges"].size());
    for (const json& m : model["merges"]) {
      if (m.is_string()) {
        d.merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        d.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      } else {
        return util::corrupt(src + ": model.merges entry is neither \"a b\" nor [\"a\", \"b\"]: " + m.dump());
      }
    }
  } catch (const json::exception& e) {
    return util::corrupt(src + ": unexpected JSON structure: " + e.what());
  }

  if (!config_json.empty()) {
    json c;
    try {
      c = json::parse(config_json);
    } catch (const json::exception& e) {
      return util::corrupt(src + ": tokenizer_config.json is not valid JSON: " + e.what());
    }
    if (!c.is_object()) return util::corrupt(src + ": tokenizer_config.json is not an object");
    auto find_id = [&](const char* key) -> int32_t {
      if (!c.contains(key)) return -1;
      const std::string t = token_content(c[key]);
      if (t.empty()) return -1;
      for (const auto& a : d.added_tokens) {
        if (a.content == t) return a.id;
      }
      for (size_t i = 0; i < d.tokens.size(); ++i) {
        if (d.tokens[i] == t) return static_cast<int32_t>(i);
      }
      return -1;
    };
    d.bos_id = find_id("bos_token");
    d.eos_id = find_id("eos_token");
    d.pad_id = find_id("pad_token");
    d.add_bos = get_bool(c, "add_bos_token", false);
    if (c.contains("chat_template")) {
      const json& ct = c["chat_template"];
      if (ct.is_string()) {
        d.chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {  // [{"name": "default", "template": ...}, ...]
        for (const json& e : ct) {
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string()) {
            d.chat_template = e["template"].get<std::string>();
          }
        }
      }
    }
  }
  return d;
}

Result<TokenizerData> load_hf_tokenizer(const std::string& path) {
  DFLASH_ASSIGN_OR_RETURN(std::string tj, read_file(path));
  std::string cfg_path;
  const size_t slash = path.find_last_of('/');
  cfg_path = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + "tokenizer_config.json";
  std::string cj;
  if (std::ifstream(cfg_path).good()) {
    DFLASH_ASSIGN_OR_RETURN(cj, read_file(cfg_path));
  }
  return parse_hf_tokenizer(tj, cj, path);
}

Result<Tokenizer> tokenizer_from_hf_file(const std::string& path) {
  DFLASH_ASSIGN_OR_RETURN(TokenizerData d, load_hf_tokenizer(path));
  auto t = Tokenizer::create(std::move(d));
  if (!t.is_ok()) return t.status().with_context(path);
  return t;
}

}  // namespace dflash::tokenizer
