#include "tokenizer/stream_decoder.h"

#include "tokenizer/utf8.h"

namespace dflash::tokenizer {

util::Result<std::string> StreamDecoder::push(int32_t id) {
  DFLASH_ASSIGN_OR_RETURN(std::string_view bytes, tok_->token_bytes(id));
  if (opt_.skip_special && tok_->is_special(id)) return std::string();
  std::string buf = pending_;
  buf.append(bytes);
  const size_t tail = utf8_incomplete_tail(buf);
  pending_.assign(buf, buf.size() - tail, tail);
  buf.resize(buf.size() - tail);
  // Invalid bytes before the tail are final: replace them now, exactly as a whole-text decode would
  // (a maximal ill-formed subpart never spans the lead byte that starts the held-back tail).
  if (!utf8_is_valid(buf)) return utf8_make_valid(buf);
  return buf;
}

std::string StreamDecoder::flush() {
  std::string out = pending_.empty() ? std::string() : utf8_make_valid(pending_);
  pending_.clear();
  return out;
}

}  // namespace dflash::tokenizer
