// Adapter: the GGUF reader (formats/gguf.h) as a MetadataSource. Written against the reader's API
// before it was merged; compiled only once formats/gguf.h is in the tree (until then
// tokenizer_from_gguf_file() reports that the reader is missing).
#include "tokenizer/gguf_vocab.h"

#if __has_include("formats/gguf.h")
#include "formats/gguf.h"
#define DFLASH_HAVE_GGUF_READER 1
#endif

namespace dflash::tokenizer {

#ifdef DFLASH_HAVE_GGUF_READER
namespace {

class GgufFileSource : public MetadataSource {
 public:
  explicit GgufFileSource(const formats::GgufFile& f) : f_(f) {}
  bool has(std::string_view key) const override { return f_.has(key); }
  util::Result<std::string> get_string(std::string_view key) const override {
    DFLASH_ASSIGN_OR_RETURN(std::string_view v, f_.get_string(key));
    return std::string(v);
  }
  util::Result<int64_t> get_int(std::string_view key) const override { return f_.get<int64_t>(key); }
  util::Result<bool> get_bool(std::string_view key) const override { return f_.get_bool(key); }
  util::Result<std::vector<std::string>> get_string_array(std::string_view key) const override {
    return f_.get_array<std::string>(key);
  }
  util::Result<std::vector<int64_t>> get_int_array(std::string_view key) const override {
    return f_.get_array<int64_t>(key);
  }

 private:
  const formats::GgufFile& f_;
};

}  // namespace

util::Result<Tokenizer> tokenizer_from_gguf_file(const std::string& path) {
  DFLASH_ASSIGN_OR_RETURN(formats::GgufFile f, formats::GgufFile::open(path));
  auto t = tokenizer_from_metadata(GgufFileSource(f));
  if (!t.is_ok()) return t.status().with_context(path);
  return t;
}
#else
util::Result<Tokenizer> tokenizer_from_gguf_file(const std::string& path) {
  return util::unsupported(path + ": reading a tokenizer from GGUF needs the GGUF reader (formats/gguf.h), "
                           "which is not in this build yet; use a tokenizer.json");
}
#endif

}  // namespace dflash::tokenizer
