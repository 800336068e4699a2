// UTF-8 helpers for the tokenizer: validation, lossy repair (the way Rust's String::from_utf8_lossy
// and Python's errors="replace" do it, so our output matches the reference byte for byte) and the
// GPT-2 byte <-> unicode mapping used by byte-level BPE vocabularies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dflash::tokenizer {

inline constexpr char kReplacementUtf8[] = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence starting at s[i], or 0 if the bytes there do not start a
// complete well-formed sequence (Unicode Table 3-7: no overlongs, no surrogates, <= U+10FFFF).
size_t utf8_valid_len(std::string_view s, size_t i);

// Length of the "maximal subpart of an ill-formed subsequence" at s[i] (Unicode 3.9, U+FFFD
// substitution of maximal subparts): the bytes one U+FFFD replaces. Precondition: utf8_valid_len == 0.
size_t utf8_invalid_len(std::string_view s, size_t i);

// Length of the longest suffix of s that is a proper prefix of some well-formed sequence, i.e. bytes
// that may still become valid when more bytes arrive (0..3). Used by the streaming decoder.
size_t utf8_incomplete_tail(std::string_view s);

bool utf8_is_valid(std::string_view s);

// Replaces every maximal ill-formed subpart with U+FFFD. Returns s unchanged when it is valid.
std::string utf8_make_valid(std::string_view s);

// Decodes the code point at s[i] (precondition: valid) and advances i.
uint32_t utf8_decode(std::string_view s, size_t& i);
void utf8_append(std::string& out, uint32_t cp);

// GPT-2 byte-level mapping: each byte value is shown as one printable code point
// ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF map to themselves; the other 68 bytes to U+0100.. in order).
uint32_t byte_to_unicode(uint8_t b);
// Inverse; returns -1 for code points that are not in the mapping.
int unicode_to_byte(uint32_t cp);
// Maps every byte of `bytes` to its code point, UTF-8 encoded (the form tokens take in tokenizer.json).
std::string bytes_to_byte_level(std::string_view bytes);
// Inverse of bytes_to_byte_level. Returns false if `text` is not valid UTF-8 or holds a code point
// outside the mapping (then `out` is unspecified).
bool byte_level_to_bytes(std::string_view text, std::string& out);

}  // namespace dflash::tokenizer
