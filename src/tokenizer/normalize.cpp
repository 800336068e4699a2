#include "tokenizer/normalize.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <vector>

#include "tokenizer/utf8.h"

namespace dflash::tokenizer {

namespace {

constexpr uint32_t kMaxCp = 0x110000;

struct CpRange {
  uint32_t first, last;  // [first, last)
};
constexpr CpRange kUnicode9Assigned[] = {
#include "tokenizer/unicode9_assigned.inc"
};

bool assigned_in_unicode9(uint32_t cp) {
  const auto* end = std::end(kUnicode9Assigned);
  const auto* it = std::upper_bound(std::begin(kUnicode9Assigned), end, cp,
                                    [](uint32_t c, const CpRange& r) { return c < r.first; });
  return it != std::begin(kUnicode9Assigned) && cp < (it - 1)->last;
}

// Two bit sets over all code points:
//  unstable: may change or be absorbed under NFC (utf8proc's current Unicode data);
//  frozen:   unstable, but assigned after Unicode 9.0. The reference's NFC tables are Unicode 9.0,
//            so for it these are inert starters (no decomposition, canonical class 0, no
//            composition); we copy them through untouched and normalise the text between them.
struct UnstableTable {
  std::vector<uint64_t> bits, frozen;
  UnstableTable() : bits(kMaxCp / 64, 0), frozen(kMaxCp / 64, 0) {
    auto set = [&](uint32_t cp) { bits[cp >> 6] |= uint64_t{1} << (cp & 63); };
    utf8proc_int32_t buf[32];
    for (uint32_t cp = 0x300; cp < kMaxCp; ++cp) {  // nothing below U+0300 decomposes or combines
      const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
      if (p->category == UTF8PROC_CATEGORY_CN || p->category == UTF8PROC_CATEGORY_CS) continue;
      if (p->combining_class != 0) set(cp);
      int last_boundclass = 0;
      const utf8proc_ssize_t n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), buf, 32,
                                                          UTF8PROC_DECOMPOSE, &last_boundclass);
      if (n < 0) continue;
      if (n != 1 || buf[0] != static_cast<utf8proc_int32_t>(cp)) {
        set(cp);
        // Every non-initial part of a canonical decomposition can be composed onto what precedes it.
        for (utf8proc_ssize_t k = 1; k < n && k < 32; ++k) set(static_cast<uint32_t>(buf[k]));
        // A new character that composes with an old one (U+11935 + U+11930 -> U+11938): every part
        // of a post-9.0 composite is frozen too.
        if (!assigned_in_unicode9(cp)) {
          for (utf8proc_ssize_t k = 0; k < n && k < 32; ++k) freeze(static_cast<uint32_t>(buf[k]));
        }
      }
    }
    for (uint32_t cp = 0x300; cp < kMaxCp; ++cp) {
      if (unstable(cp) && !assigned_in_unicode9(cp)) freeze(cp);
    }
  }
  void freeze(uint32_t cp) {
    if (!assigned_in_unicode9(cp)) frozen[cp >> 6] |= uint64_t{1} << (cp & 63);
  }
  bool unstable(uint32_t cp) const { return (bits[cp >> 6] >> (cp & 63)) & 1; }
  bool is_frozen(uint32_t cp) const { return (frozen[cp >> 6] >> (cp & 63)) & 1; }
};

const UnstableTable& table() {
  static const UnstableTable t;
  return t;
}

}  // namespace

bool nfc_quick_check(std::string_view text) {
  size_t i = 0;
  // ASCII and U+0080..U+02FF (2-byte sequences up to 0xCB 0xBF) never change.
  while (i < text.size()) {
    const uint8_t b = static_cast<uint8_t>(text[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    if (b < 0xCC) {
      i += 2;
      continue;
    }
    break;
  }
  if (i >= text.size()) return true;
  const UnstableTable& t = table();
  while (i < text.size()) {
    const uint32_t cp = utf8_decode(text, i);
    if (cp >= 0x300 && t.unstable(cp)) return false;
  }
  return true;
}

namespace {

std::string nfc_utf8proc(std::string_view text) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0 || !out) {  // only on invalid UTF-8 or out of memory; callers pass valid text
    std::free(out);
    return std::string(text);
  }
  std::string result(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

}  // namespace

std::string nfc(std::string_view text) {
  if (nfc_quick_check(text)) return std::string(text);
  // A frozen character is an inert starter for the reference, hence a normalisation boundary:
  // NFC(x F y) = NFC(x) F NFC(y).
  const UnstableTable& t = table();
  std::string out;
  out.reserve(text.size());
  size_t run = 0, i = 0;
  while (i < text.size()) {
    const size_t at = i;
    const uint32_t cp = utf8_decode(text, i);
    if (cp >= 0x300 && t.is_frozen(cp)) {
      if (at > run) out += nfc_utf8proc(text.substr(run, at - run));
      out.append(text.substr(at, i - at));
      run = i;
    }
  }
  if (run < text.size()) out += nfc_utf8proc(text.substr(run));
  return out;
}

}  // namespace dflash::tokenizer
