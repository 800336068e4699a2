// Shared helpers for the tokenizer tests: gzip'd test data, the Qwen3 / Qwen3.5-variant tokenizers
// (loaded once per process; building a 151k-token tokenizer takes a moment).
#pragma once

#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tokenizer/hf_json.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace dflash::tokenizer::testing {

inline std::string data_path(const std::string& rel) { return std::string(DFLASH_TEST_DATA_DIR) + "/tokenizer/" + rel; }

inline bool sanitized() { return std::getenv("DFLASH_SANITIZED") != nullptr; }
// Under ASan/UBSan (3-10x slower) the big corpus loops visit every third document; the conformance
// of every document is still checked by the normal build.
inline size_t doc_stride() { return sanitized() ? 3 : 1; }

inline std::string read_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  gzclose(f);
  if (n < 0) throw std::runtime_error("cannot decompress " + path);
  return out;
}

inline std::string read_plain(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

inline const std::string& qwen3_json() {
  static const std::string s = read_gz(data_path("qwen3/tokenizer.json.gz"));
  return s;
}
inline const std::string& qwen3_config() {
  static const std::string s = read_plain(data_path("qwen3/tokenizer_config.json"));
  return s;
}
// The Qwen3 tokenizer.json with the Qwen3.5 pre-tokenizer regex (the reference does the same swap).
inline std::string qwen35_json() {
  std::string j = qwen3_json();
  // In JSON the regex's backslashes are escaped.
  auto esc = [](std::string_view r) {
    std::string o;
    for (char c : r) {
      if (c == '\\') o += "\\\\";
      else o += c;
    }
    return o;
  };
  const std::string from = esc(kQwen2Regex), to = esc(kQwen35Regex);
  const size_t pos = j.find(from);
  if (pos == std::string::npos) throw std::runtime_error("Qwen2 regex not found in tokenizer.json");
  j.replace(pos, from.size(), to);
  return j;
}

inline const Tokenizer& qwen3() {
  static const Tokenizer* t = [] {
    auto d = parse_hf_tokenizer(qwen3_json(), qwen3_config(), "qwen3/tokenizer.json");
    if (!d.is_ok()) throw std::runtime_error(d.status().to_string());
    auto r = Tokenizer::create(std::move(d).value());
    if (!r.is_ok()) throw std::runtime_error(r.status().to_string());
    return new Tokenizer(std::move(r).value());
  }();
  return *t;
}
inline const Tokenizer& qwen35() {
  static const Tokenizer* t = [] {
    auto d = parse_hf_tokenizer(qwen35_json(), qwen3_config(), "qwen35 variant");
    if (!d.is_ok()) throw std::runtime_error(d.status().to_string());
    auto r = Tokenizer::create(std::move(d).value());
    if (!r.is_ok()) throw std::runtime_error(r.status().to_string());
    return new Tokenizer(std::move(r).value());
  }();
  return *t;
}

struct CorpusDoc {
  bool parse_special;
  std::string name;
  std::string bytes;
};

inline uint32_t rd_u32(const std::string& s, size_t& off) {
  if (off + 4 > s.size()) throw std::runtime_error("truncated test data");
  uint32_t v;
  std::memcpy(&v, s.data() + off, 4);
  off += 4;
  return v;
}

inline const std::vector<CorpusDoc>& corpus() {
  static const std::vector<CorpusDoc> docs = [] {
    const std::string raw = read_gz(data_path("corpus.bin.gz"));
    if (raw.compare(0, 8, "DFTKCORP") != 0) throw std::runtime_error("corpus.bin.gz: bad magic");
    size_t off = 8;
    if (rd_u32(raw, off) != 1) throw std::runtime_error("corpus.bin.gz: version");
    const uint32_t n = rd_u32(raw, off);
    std::vector<CorpusDoc> out;
    for (uint32_t i = 0; i < n; ++i) {
      CorpusDoc d;
      d.parse_special = raw.at(off) & 1;
      uint16_t nl;
      std::memcpy(&nl, raw.data() + off + 1, 2);
      off += 3;
      d.name = raw.substr(off, nl);
      off += nl;
      const uint32_t nb = rd_u32(raw, off);
      d.bytes = raw.substr(off, nb);
      off += nb;
      out.push_back(std::move(d));
    }
    return out;
  }();
  return docs;
}

// expected[tokenizer name][doc] = ids
struct ExpectedIds {
  std::vector<std::string> names;
  std::vector<std::vector<std::vector<int32_t>>> ids;
};

inline const ExpectedIds& expected_ids() {
  static const ExpectedIds e = [] {
    const std::string raw = read_gz(data_path("expected_ids.bin.gz"));
    if (raw.compare(0, 8, "DFTKIDS1") != 0) throw std::runtime_error("expected_ids.bin.gz: bad magic");
    size_t off = 8;
    ExpectedIds out;
    const uint32_t nt = rd_u32(raw, off);
    for (uint32_t t = 0; t < nt; ++t) {
      uint16_t nl;
      std::memcpy(&nl, raw.data() + off, 2);
      off += 2;
      out.names.push_back(raw.substr(off, nl));
      off += nl;
      const uint32_t nd = rd_u32(raw, off);
      std::vector<std::vector<int32_t>> docs(nd);
      for (uint32_t d = 0; d < nd; ++d) {
        const uint32_t n = rd_u32(raw, off);
        if (n == 0xFFFFFFFFu) {
          docs[d] = out.ids.at(0).at(d);
          continue;
        }
        docs[d].resize(n);
        for (uint32_t k = 0; k < n; ++k) {
          uint32_t v = 0;
          int shift = 0;
          for (;;) {
            const uint8_t b = static_cast<uint8_t>(raw.at(off++));
            v |= static_cast<uint32_t>(b & 0x7F) << shift;
            if (!(b & 0x80)) break;
            shift += 7;
          }
          docs[d][k] = static_cast<int32_t>(v);
        }
      }
      out.ids.push_back(std::move(docs));
    }
    return out;
  }();
  return e;
}

}  // namespace dflash::tokenizer::testing
