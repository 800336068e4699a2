// Unicode NFC normalisation (HF `normalizers.NFC`), via utf8proc. A precomputed "cannot change under
// NFC" table lets text that needs no work (ASCII, most CJK/Cyrillic/Greek) skip utf8proc entirely.
#pragma once

#include <string>
#include <string_view>

namespace dflash::tokenizer {

// True if `text` (valid UTF-8) is certainly already NFC: every code point is a starter that has no
// canonical decomposition and never appears as the second half of a canonical composition.
// False means "maybe not": run nfc().
bool nfc_quick_check(std::string_view text);

// NFC of valid UTF-8 `text` (embedded NUL bytes are fine).
std::string nfc(std::string_view text);

}  // namespace dflash::tokenizer
