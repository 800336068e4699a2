#include "formats/byte_sink.h"

#include <algorithm>

namespace dflash::formats {

util::Status ByteSink::zeros(size_t n) {
  static const uint8_t z[64] = {};
  while (n) {
    size_t k = std::min(n, sizeof(z));
    DFLASH_RETURN_IF_ERROR(write(z, k));
    n -= k;
  }
  return util::Status::ok();
}

util::Status MemByteSink::write(const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
  return util::Status::ok();
}

}  // namespace dflash::formats
