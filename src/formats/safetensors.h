// safetensors reader: one file, or a sharded checkpoint (model.safetensors.index.json). Tensors are
// zero-copy views into the mmap'd files; the header is validated completely before anything is
// returned.
//
// Layout: u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "BF16", "shape": [out, in], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"k": "v"}}
// then the data; offsets are relative to byte 8 + N.
//
// Shapes: safetensors lists dimensions outermost-first (PyTorch order: a Linear weight is
// [out_features, in_features]); GGUF and tensor::Tensor list them innermost-first (ne[0] = the
// contiguous row length). The same bytes therefore have ne = reversed(shape): [out, in] → ne {in,
// out}. SafetensorsTensor keeps the file's `shape` and view() does the reversal.
//
// Data is not necessarily aligned (the header length is arbitrary): read elements with memcpy or
// copy, not through a cast pointer that assumes 4-byte alignment.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tensor/tensor.h"
#include "util/mmap_file.h"
#include "util/status.h"

namespace dflash::formats {

struct SafetensorsTensor {
  std::string name;
  tensor::DType dtype = tensor::DType::kF32;  // F32, F16 or BF16
  std::vector<int64_t> shape;                 // outermost-first, as stored in the file
  const void* data = nullptr;
  uint64_t nbytes = 0;
  uint64_t offset = 0;  // data_offsets[0], relative to the data section
  const std::string* file = nullptr;  // path of the file holding it (owned by the reader)

  int64_t numel() const;
  // tensor::Tensor view with ne = reversed(shape); error when the tensor has more than 4 dims.
  // A 0-d (scalar) tensor becomes ne {1}.
  util::Result<tensor::Tensor> view() const;
};

// ne (innermost-first) of a safetensors shape (outermost-first); nullopt above 4 dims.
util::Result<std::array<int64_t, tensor::kMaxDims>> ne_from_shape(const std::vector<int64_t>& shape);

class SafetensorsFile {
 public:
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // as the reference implementation

  static util::Result<SafetensorsFile> open(const std::string& path);
  // Parses a buffer that outlives the returned object (fuzzing, tests). `name` is used in errors.
  static util::Result<SafetensorsFile> from_memory(const uint8_t* data, size_t size, std::string name);

  const std::string& path() const { return *name_; }
  // Tensors in data order (ascending offset).
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(std::string_view name) const;
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t data_offset() const { return data_offset_; }

 private:
  util::Status parse(const uint8_t* data, size_t size);

  std::unique_ptr<std::string> name_;  // stable address: tensors point at it
  std::shared_ptr<util::MappedFile> file_;
  std::vector<SafetensorsTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  uint64_t data_offset_ = 0;
};

// A checkpoint: one .safetensors file or every shard named by an index.
class SafetensorsModel {
 public:
  // `path`: a .safetensors file, a model.safetensors.index.json, or a directory holding one of
  // model.safetensors.index.json / model.safetensors.
  static util::Result<SafetensorsModel> open(const std::string& path);

  // All tensors, shard by shard in data order.
  std::vector<const SafetensorsTensor*> tensors() const;
  const SafetensorsTensor* find(std::string_view name) const;
  util::Result<const SafetensorsTensor*> get(std::string_view name) const;
  size_t size() const { return index_.size(); }
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // "metadata" of the index (stringified values), or the single file's __metadata__.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string name_;
  std::vector<SafetensorsFile> shards_;
  std::unordered_map<std::string, std::pair<size_t, size_t>> index_;  // name → (shard, tensor)
  std::map<std::string, std::string> metadata_;
};

}  // namespace dflash::formats
