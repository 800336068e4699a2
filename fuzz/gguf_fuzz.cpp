// libFuzzer target for the GGUF reader. Besides "never crash", it checks a property: any file the
// reader accepts can be written back by GgufWriter and re-read with identical metadata and tensors.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "formats/gguf.h"

using namespace dflash;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = formats::GgufFile::from_memory(data, size, "fuzz.gguf");
  if (!r.is_ok()) return 0;
  const formats::GgufFile& f = *r;
  // Touch everything a caller might: renderings, typed getters, tensor bytes (ASan checks bounds).
  size_t sink = 0;
  for (const auto& kv : f.metadata()) {
    sink += kv.value.to_string(4).size();
    (void)f.get_u32(kv.key);
    (void)f.get_f32(kv.key);
    (void)f.get_string(kv.key);
    (void)f.get_array<int64_t>(kv.key);
    (void)f.get_array<std::string_view>(kv.key);
  }
  formats::GgufWriter w;
  for (const auto& kv : f.metadata())
    if (!w.set(kv.key, kv.value).is_ok()) std::abort();
  for (const auto& t : f.tensors()) {
    const uint8_t* p = static_cast<const uint8_t*>(t.tensor.data);
    if (t.nbytes) sink += p[0] + p[t.nbytes - 1];
    if (!w.add_tensor(t.tensor).is_ok()) std::abort();
  }
  auto bytes = w.to_bytes();
  if (!bytes.is_ok()) std::abort();
  auto r2 = formats::GgufFile::from_memory(bytes->data(), bytes->size(), "rewritten.gguf");
  if (!r2.is_ok()) std::abort();
  if (r2->metadata().size() != f.metadata().size() || r2->tensors().size() != f.tensors().size()) std::abort();
  for (size_t i = 0; i < f.metadata().size(); ++i)
    if (r2->metadata()[i].key != f.metadata()[i].key || !(r2->metadata()[i].value == f.metadata()[i].value))
      std::abort();
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& a = f.tensors()[i];
    const auto& b = r2->tensors()[i];
    if (a.tensor.name != b.tensor.name || a.tensor.ne != b.tensor.ne || a.nbytes != b.nbytes ||
        std::memcmp(a.tensor.data, b.tensor.data, a.nbytes) != 0)
      std::abort();
  }
  return sink == 0xdeadbeef ? 1 : 0;
}
