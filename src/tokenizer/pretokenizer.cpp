#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <mutex>
#include <utf8proc.h>

#include "tokenizer/utf8.h"

namespace dflash::tokenizer {

using util::Result;
using util::Status;

std::string_view regex_for_pre(std::string_view pre) {
  if (pre == "qwen2") return kQwen2Regex;
  if (pre == "qwen35") return kQwen35Regex;
  return {};
}

std::string_view pre_for_regex(std::string_view regex) {
  if (regex == kQwen2Regex) return "qwen2";
  if (regex == kQwen35Regex) return "qwen35";
  return {};
}

struct PreTokenizer::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  // Match data is per-thread scratch; a small pool avoids allocating one per split() call.
  mutable std::mutex mu;
  mutable std::vector<pcre2_match_data*> pool;

  ~Impl() {
    for (auto* md : pool) pcre2_match_data_free(md);
    if (code) pcre2_code_free(code);
  }
  pcre2_match_data* acquire() const {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!pool.empty()) {
        auto* md = pool.back();
        pool.pop_back();
        return md;
      }
    }
    return pcre2_match_data_create_from_pattern(code, nullptr);
  }
  void release(pcre2_match_data* md) const {
    if (!md) return;
    std::lock_guard<std::mutex> lock(mu);
    pool.push_back(md);
  }
};

namespace {

constexpr uint8_t kClassL = 1, kClassN = 2, kClassM = 4, kClassS = 8;
constexpr uint32_t kMaxCp = 0x110000;

// Character classes of every code point as PCRE2 (UTF+UCP) sees them: \p{L}, \p{N}, \p{M}, \s.
// Unassigned, private-use and surrogate code points (utf8proc's data, which is newer than PCRE2's)
// are in no class in any version, so they are not probed.
const uint8_t* pcre2_class_table() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(kMaxCp, 0);
    int err = 0;
    PCRE2_SIZE off = 0;
    const char* pat = "(\\p{L})|(\\p{N})|(\\p{M})|(\\s)";
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat), PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &err, &off, nullptr);
    if (!code) return t;  // cannot happen with a constant pattern; the tests would catch it
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    std::string buf;
    for (uint32_t cp = 0; cp < kMaxCp; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      if (cp >= 0x80) {
        const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
        if (cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_CO) continue;
      }
      buf.clear();
      utf8_append(buf, cp);
      const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(buf.data()), buf.size(), 0, 0, md, nullptr);
      if (rc < 2) continue;  // no match (rc < 0) or no group set
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      static constexpr uint8_t kBits[] = {kClassL, kClassN, kClassM, kClassS};
      for (int g = 1; g < rc; ++g) {
        if (ov[2 * g] != PCRE2_UNSET) t[cp] |= kBits[g - 1];
      }
    }
    pcre2_match_data_free(md);
    pcre2_code_free(code);
    return t;
  }();
  return table.data();
}

}  // namespace

PreTokenizer::PreTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

Result<PreTokenizer> PreTokenizer::create(std::string_view regex, Engine engine) {
  auto impl = std::make_unique<Impl>();
  int err = 0;
  PCRE2_SIZE err_off = 0;
  // UTF: code points, not bytes; UCP: \s \d \w and case folding use Unicode properties.
  // NO_UTF_CHECK is safe because callers pass valid UTF-8 only (the tokenizer repairs input first).
  impl->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.data()), regex.size(),
                             PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_off, nullptr);
  if (!impl->code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    return util::invalid_argument(util::strfmt("pre-tokenizer regex does not compile at offset %zu: %s",
                                               static_cast<size_t>(err_off), reinterpret_cast<char*>(buf)));
  }
  impl->jit = pcre2_jit_compile(impl->code, PCRE2_JIT_COMPLETE) == 0;
  PreTokenizer p(std::move(impl));
  if (engine == Engine::kAuto && (regex == kQwen2Regex || regex == kQwen35Regex)) {
    p.fast_ = regex == kQwen2Regex ? 2 : 35;
    p.classes_ = pcre2_class_table();
  }
  return p;
}

// One match of the Qwen regex at `pos`, alternative by alternative, with the backtracking each
// alternative would do spelled out:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N} | ?[^\s\p{L}\p{N}]+[\r\n]*
//   | \s*[\r\n]+ | \s+(?!\S) | \s+
// Qwen3.5 adds \p{M} to the letter run and removes it from the punctuation run.
size_t PreTokenizer::fast_match(std::string_view text, size_t pos) const {
  const size_t n = text.size();
  const uint8_t* cls = classes_;
  const uint8_t letter = fast_ == 35 ? (kClassL | kClassM) : kClassL;
  const uint8_t not_other = fast_ == 35 ? (kClassS | kClassL | kClassM | kClassN) : (kClassS | kClassL | kClassN);
  // Code point at i and its length.
  auto at = [&](size_t i, size_t* len) -> uint32_t {
    const uint8_t b = static_cast<uint8_t>(text[i]);
    if (b < 0x80) {
      *len = 1;
      return b;
    }
    size_t j = i;
    const uint32_t cp = utf8_decode(text, j);
    *len = j - i;
    return cp;
  };
  size_t l0 = 0;
  const uint32_t c0 = at(pos, &l0);
  const uint8_t k0 = cls[c0];

  // 1. contractions, case-insensitive (U+017F LONG S folds to 's').
  if (c0 == '\'' && pos + 1 < n) {
    size_t l1 = 0;
    const uint32_t c1 = at(pos + 1, &l1);
    auto lower = [](uint32_t c) -> uint32_t {
      if (c >= 'A' && c <= 'Z') return c + 32;
      if (c == 0x17F) return 's';
      return c;
    };
    const uint32_t a = lower(c1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 1 + l1;
    if ((a == 'r' || a == 'v' || a == 'l') && pos + 1 + l1 < n) {
      size_t l2 = 0;
      const uint32_t b = lower(at(pos + 1 + l1, &l2));
      if (((a == 'r' || a == 'v') && b == 'e') || (a == 'l' && b == 'l')) return pos + 1 + l1 + l2;
    }
  }
  auto run = [&](size_t i, uint8_t want) {  // end of the run of code points in class `want`
    while (i < n) {
      size_t l = 0;
      if (!(cls[at(i, &l)] & want)) break;
      i += l;
    }
    return i;
  };
  auto run_other = [&](size_t i) {  // end of the run of code points in none of `not_other`
    while (i < n) {
      size_t l = 0;
      if (cls[at(i, &l)] & not_other) break;
      i += l;
    }
    return i;
  };
  // 2. optional non-letter/digit/newline prefix, then a letter run.
  if (k0 & letter) return run(pos + l0, letter);
  if (!(k0 & (kClassL | kClassN)) && c0 != '\r' && c0 != '\n' && pos + l0 < n) {
    size_t l1 = 0;
    if (cls[at(pos + l0, &l1)] & letter) return run(pos + l0 + l1, letter);
  }
  // 3. one digit.
  if (k0 & kClassN) return pos + l0;
  // 4. optional space, punctuation/symbol run, trailing newlines.
  auto newlines = [&](size_t i) {
    while (i < n && (text[i] == '\r' || text[i] == '\n')) ++i;
    return i;
  };
  if (!(k0 & not_other)) return newlines(run_other(pos + l0));
  if (c0 == ' ' && pos + 1 < n) {
    size_t l1 = 0;
    if (!(cls[at(pos + 1, &l1)] & not_other)) return newlines(run_other(pos + 1 + l1));
  }
  // 5-7. whitespace (c0 is whitespace here: every other class returned above).
  size_t e = pos, last_nl = std::string_view::npos;
  while (e < n) {
    size_t l = 0;
    const uint32_t c = at(e, &l);
    if (!(cls[c] & kClassS)) break;
    if (c == '\r' || c == '\n') last_nl = e;
    e += l;
  }
  if (e == pos) return pos + l0;  // not reachable for valid input; never loop forever
  if (last_nl != std::string_view::npos) return last_nl + 1;  // \s*[\r\n]+
  if (e == n) return e;                                        // \s+(?!\S) at the end
  // \s+(?!\S): give back the last whitespace code point, if that leaves at least one.
  size_t last = e - 1;
  while ((static_cast<uint8_t>(text[last]) & 0xC0) == 0x80) --last;
  if (last > pos) return last;
  return e;  // \s+
}

bool PreTokenizer::jit() const { return impl_->jit; }

PreTokenizer::Scratch::Scratch(const PreTokenizer& p) : owner(p), md(p.impl_->acquire()) {}
PreTokenizer::Scratch::~Scratch() { owner.impl_->release(static_cast<pcre2_match_data*>(md)); }

Status PreTokenizer::next_match(void* md_void, std::string_view text, size_t pos, size_t* mb,
                                size_t* me) const {
  auto* md = static_cast<pcre2_match_data*>(md_void);
  if (!md) return util::internal_error("pre-tokenizer: out of memory for match data");
  const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos,
                             PCRE2_NO_UTF_CHECK, md, nullptr);
  Status st;
  if (rc == PCRE2_ERROR_NOMATCH) {
    *mb = *me = text.size();
  } else if (rc < 0) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(rc, buf, sizeof(buf));
    st = util::internal_error(std::string("pre-tokenizer regex failed: ") + reinterpret_cast<char*>(buf));
  } else {
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    *mb = ov[0];
    *me = ov[1];
    if (*me == *mb) {  // empty match: step over one code point so the loop always advances
      size_t i = *mb;
      if (i < text.size()) {
        const size_t n = utf8_valid_len(text, i);
        i += n ? n : 1;
      }
      *me = i;
    }
  }
  return st;
}

std::vector<std::string> PreTokenizer::split_to_vector(std::string_view text) const {
  std::vector<std::string> out;
  Status st = split(text, [&](std::string_view p) { out.emplace_back(p); });
  if (!st.is_ok()) out.clear();
  return out;
}

}  // namespace dflash::tokenizer
