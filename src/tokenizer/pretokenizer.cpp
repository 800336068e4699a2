#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <mutex>

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

PreTokenizer::PreTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

Result<PreTokenizer> PreTokenizer::create(std::string_view regex) {
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
  return PreTokenizer(std::move(impl));
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
