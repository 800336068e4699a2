// Read-only memory-mapped file. Model weights are views into this mapping: zero copy.
// LoadMode::kRead instead copies the file into anonymous memory backed by transparent huge pages
// (when the kernel allows madvise THP): decode streams every weight once per token, and with 4 KiB
// pages the page walks cost a measurable share of DRAM bandwidth (bench/matmul_results.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "util/status.h"

namespace dflash::util {

enum class LoadMode { kMmap, kRead };

class MappedFile {
 public:
  static Result<std::shared_ptr<MappedFile>> open(const std::string& path, LoadMode mode = LoadMode::kMmap);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  LoadMode mode() const { return mode_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t map_size_ = 0;  // bytes mapped (rounded up to the huge-page size in kRead mode)
  LoadMode mode_ = LoadMode::kMmap;
};

// Writes go to PATH.tmp-XXXX and are renamed over PATH on commit(): a failed run never leaves a
// half-written file. Without overwrite, commit() refuses to replace an existing file.
class AtomicFileWriter {
 public:
  static Result<std::unique_ptr<AtomicFileWriter>> create(const std::string& path, bool overwrite);
  ~AtomicFileWriter();  // removes the temp file if commit() was not reached
  Status write(const void* data, size_t n);
  Status write_zeros(size_t n);
  uint64_t offset() const { return offset_; }
  Status commit();

 private:
  AtomicFileWriter() = default;
  std::string path_, tmp_path_;
  int fd_ = -1;
  bool overwrite_ = false;
  bool committed_ = false;
  uint64_t offset_ = 0;
};

Result<std::string> read_text_file(const std::string& path);
bool file_exists(const std::string& path);

}  // namespace dflash::util
