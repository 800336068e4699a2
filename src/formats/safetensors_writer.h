// safetensors writer (the layout is described in safetensors.h): F32 / F16 / BF16 tensors, an optional
// "__metadata__" string map, atomic output (temp file + rename).
//
// What the file looks like:
//  - header JSON: "__metadata__" first, then the tensors sorted by name, compact (no spaces), padded
//    with spaces so that the data section starts at a multiple of 8 bytes (the format allows trailing
//    whitespace; the reference writer pads the same way so every tensor can be mapped aligned);
//  - data: tensors ordered by element size (largest first), then by name, with no gaps. The reference
//    implementation rejects gaps, and larger elements first keeps every tensor aligned to its element
//    size without padding.
// Shapes are given outermost-first, as PyTorch and the file list them (a Linear weight is [out, in]).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/dtype.h"
#include "util/status.h"

namespace dflash::formats {

class ByteSink;  // formats/byte_sink.h

class SafetensorsWriter {
 public:
  // Produces exactly `nbytes` bytes of tensor data into `dst` (called once, at write time).
  using FillFn = std::function<util::Status(uint8_t* dst, size_t nbytes)>;

  // Error: empty key. Setting a key again replaces its value.
  util::Status set_metadata(std::string_view key, std::string_view value);

  // Errors: empty or duplicate name, the reserved name "__metadata__", a dtype other than F32/F16/BF16,
  // a negative dimension, a byte size that overflows. `data` must stay valid until write() returns.
  util::Status add_tensor(std::string_view name, tensor::DType dtype, std::vector<int64_t> shape,
                          const void* data);
  // Data produced on demand at write time (one tensor in memory at a time).
  util::Status add_tensor(std::string_view name, tensor::DType dtype, std::vector<int64_t> shape, FillFn fill);

  size_t n_tensors() const { return tensors_.size(); }
  // Total size the file will have.
  uint64_t file_size() const;

  // Atomic: temp file + rename; refuses to replace an existing file unless overwrite.
  util::Status write(const std::string& path, bool overwrite) const;
  util::Result<std::vector<uint8_t>> to_bytes() const;

  // "F32", "F16", "BF16"; nullptr for types safetensors files here cannot hold.
  static const char* dtype_name(tensor::DType t);

 private:
  struct Pending {
    std::string name;
    tensor::DType dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    const void* data;
    FillFn fill;
  };
  std::vector<const Pending*> data_order() const;
  std::string header() const;
  util::Status emit(ByteSink& sink) const;

  std::map<std::string, std::string> metadata_;
  std::vector<Pending> tensors_;
};

}  // namespace dflash::formats
