// Incremental detokenizer for streaming: feed ids one at a time, get text that is always valid UTF-8.
// A token can end inside a multi-byte character (byte-level BPE splits emoji and CJK freely), so the
// bytes of an incomplete trailing sequence are held back until the next token completes them.
// Concatenating every push() and the final flush() gives exactly Tokenizer::decode() of all ids.
#pragma once

#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace dflash::tokenizer {

class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, DecodeOptions opt = {}) : tok_(&tok), opt_(opt) {}

  // Text completed by this token (possibly empty). Unknown ids: error, state unchanged.
  util::Result<std::string> push(int32_t id);
  // End of stream: bytes still held back cannot be completed any more and become U+FFFD.
  std::string flush();
  size_t pending_bytes() const { return pending_.size(); }
  void reset() { pending_.clear(); }

 private:
  const Tokenizer* tok_;
  DecodeOptions opt_;
  std::string pending_;  // 0..3 bytes: a valid prefix of a multi-byte sequence
};

}  // namespace dflash::tokenizer
