// libFuzzer target for the safetensors header parser: never crash, and every accepted tensor lies
// inside the input.
#include <cstdint>
#include <cstdlib>

#include "formats/safetensors.h"

using namespace dflash;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = formats::SafetensorsFile::from_memory(data, size, "fuzz.safetensors");
  if (!r.is_ok()) return 0;
  for (const auto& t : r->tensors()) {
    const uint8_t* p = static_cast<const uint8_t*>(t.data);
    if (p < data || p + t.nbytes > data + size) std::abort();
    (void)t.view();
  }
  return 0;
}
