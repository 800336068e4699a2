// Internal to the formats writers: where a writer's emit() sends its bytes. One emit() routine serves
// both the atomic file output (write()) and the in-memory image (to_bytes()), so the two can never
// produce different bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "util/mmap_file.h"
#include "util/status.h"

namespace dflash::formats {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual util::Status write(const void* p, size_t n) = 0;
  // n zero bytes (alignment padding).
  util::Status zeros(size_t n);
};

// Appends to an open util::AtomicFileWriter; the caller commits.
class FileByteSink final : public ByteSink {
 public:
  explicit FileByteSink(util::AtomicFileWriter& w) : w_(w) {}
  util::Status write(const void* p, size_t n) override { return w_.write(p, n); }

 private:
  util::AtomicFileWriter& w_;
};

// Collects everything in memory.
class MemByteSink final : public ByteSink {
 public:
  util::Status write(const void* p, size_t n) override;
  std::vector<uint8_t> out;
};

}  // namespace dflash::formats
