// GGUF (versions 2 and 3) reader and writer. The reader validates the whole file up front and
// returns tensors as zero-copy views into the mmap'd file; metadata values are views too (strings
// point into the mapping), so a 150k-entry token array costs one vector of string_views.
//
// Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv × (string key, u32 type,
// value), n_tensors × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset), padding
// to general.alignment (default 32), tensor data. Offsets are relative to the start of the data
// section and multiples of the alignment. A string is u64 length + bytes (no terminator).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tensor/tensor.h"
#include "util/mmap_file.h"
#include "util/status.h"

namespace dflash::formats {

class ByteSink;  // formats/byte_sink.h

// Value type ids as stored in the file.
enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
const char* gguf_type_name(GgufType t);  // "u32", "string", "array", ...
// Bytes of one scalar of a fixed-size type; 0 for string and array.
size_t gguf_scalar_size(GgufType t);

constexpr uint32_t kGgufDefaultAlignment = 32;
constexpr char kGgufAlignmentKey[] = "general.alignment";

// A metadata value. Read values are views into the file mapping (valid while the GgufFile lives);
// values built with the factory functions own their storage (shared, so copies are cheap and the
// views inside stay valid).
class GgufValue {
 public:
  GgufValue() = default;

  GgufType type() const { return type_; }
  // For arrays: the element type and count.
  GgufType elem_type() const { return elem_type_; }
  uint64_t size() const { return count_; }

  // Raw scalar payload (fixed-size types), zero-extended little-endian bits.
  uint64_t scalar_bits() const { return bits_; }
  // Interpretations of a scalar value; callers check type() first (GgufFile's typed getters do).
  bool is_integer() const;
  bool is_float() const { return type_ == GgufType::kF32 || type_ == GgufType::kF64; }
  // Signed interpretation of any integer type (a u64 above INT64_MAX wraps; check type()).
  int64_t as_i64() const;
  uint64_t as_u64() const { return bits_; }
  bool is_negative() const { return is_integer() && is_signed_type(type_) && as_i64() < 0; }
  double as_f64() const;
  bool as_bool() const { return bits_ != 0; }
  std::string_view as_string() const { return str_; }

  // Arrays of fixed-size elements: element i as a scalar value (i < size()).
  GgufValue element(uint64_t i) const;
  // Arrays of strings.
  const std::vector<std::string_view>& strings() const { return strings_; }
  // Arrays of arrays.
  const std::vector<GgufValue>& arrays() const { return arrays_; }
  // Packed little-endian payload of a fixed-size-element array (size() * elem size bytes).
  const uint8_t* raw() const { return raw_; }

  // Human-readable rendering; arrays longer than max_items show the first few items and the count
  // (max_items < 0: everything).
  std::string to_string(int max_items = 8) const;
  // Deep equality (type, element type, values).
  bool operator==(const GgufValue& o) const;

  // ---- factories (owning) ----
  static GgufValue u8(uint8_t v);
  static GgufValue i8(int8_t v);
  static GgufValue u16(uint16_t v);
  static GgufValue i16(int16_t v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue u64(uint64_t v);
  static GgufValue i64(int64_t v);
  static GgufValue f64(double v);
  static GgufValue string(std::string_view v);
  // Array of fixed-size scalars from packed little-endian bytes (n elements of `elem`).
  static GgufValue array_raw(GgufType elem, const void* data, uint64_t n);
  template <typename T>
  static GgufValue array(GgufType elem, std::span<const T> v) {
    return array_raw(elem, v.data(), v.size());
  }
  static GgufValue array_u32(std::span<const uint32_t> v) { return array(GgufType::kU32, v); }
  static GgufValue array_i32(std::span<const int32_t> v) { return array(GgufType::kI32, v); }
  static GgufValue array_f32(std::span<const float> v) { return array(GgufType::kF32, v); }
  static GgufValue array_strings(const std::vector<std::string>& v);
  static GgufValue array_strings(const std::vector<std::string_view>& v);
  // Array of arrays (each element must itself be an array).
  static GgufValue array_arrays(std::vector<GgufValue> v);

 private:
  friend class GgufParser;
  static bool is_signed_type(GgufType t) {
    return t == GgufType::kI8 || t == GgufType::kI16 || t == GgufType::kI32 || t == GgufType::kI64;
  }
  static GgufValue scalar(GgufType t, uint64_t bits);

  GgufType type_ = GgufType::kU8;
  uint64_t bits_ = 0;
  std::string_view str_;
  GgufType elem_type_ = GgufType::kU8;
  uint64_t count_ = 0;
  const uint8_t* raw_ = nullptr;
  std::vector<std::string_view> strings_;
  std::vector<GgufValue> arrays_;
  std::shared_ptr<const std::string> owned_;
};

struct GgufKv {
  std::string_view key;
  GgufValue value;
};

struct GgufTensorInfo {
  tensor::Tensor tensor;  // view into the mapping; tensor.name is the GGUF name
  uint64_t offset = 0;    // relative to the data section
  uint64_t nbytes = 0;
};

class GgufFile {
 public:
  // Maps and validates the whole file. Every error names the file and the field. kRead copies it
  // into (huge-page) anonymous memory instead of mapping it: `--no-mmap`.
  static util::Result<GgufFile> open(const std::string& path, util::LoadMode mode = util::LoadMode::kMmap);
  // Parses a buffer that outlives the returned object (fuzzing, tests). `name` is used in errors.
  static util::Result<GgufFile> from_memory(const uint8_t* data, size_t size, std::string name);

  const std::string& path() const { return name_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute start of the data section
  uint64_t file_size() const { return size_; }
  // Whether tensor data lives in a file mapping (page cache, 4 KiB pages), not in memory of its own
  // (LoadMode::kRead or from_memory).
  bool mapped() const { return file_ && file_->mode() == util::LoadMode::kMmap; }

  // Metadata in file order.
  const std::vector<GgufKv>& metadata() const { return kvs_; }
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters. Missing key: kNotFound; wrong type: kInvalidArgument naming key, expected and
  // actual type. Integer getters accept any integer type whose value fits (llama.cpp files store
  // some u32 keys as i32); float getters accept f32 and f64.
  util::Result<uint8_t> get_u8(std::string_view key) const { return get<uint8_t>(key); }
  util::Result<int8_t> get_i8(std::string_view key) const { return get<int8_t>(key); }
  util::Result<uint16_t> get_u16(std::string_view key) const { return get<uint16_t>(key); }
  util::Result<int16_t> get_i16(std::string_view key) const { return get<int16_t>(key); }
  util::Result<uint32_t> get_u32(std::string_view key) const { return get<uint32_t>(key); }
  util::Result<int32_t> get_i32(std::string_view key) const { return get<int32_t>(key); }
  util::Result<uint64_t> get_u64(std::string_view key) const { return get<uint64_t>(key); }
  util::Result<int64_t> get_i64(std::string_view key) const { return get<int64_t>(key); }
  util::Result<float> get_f32(std::string_view key) const { return get<float>(key); }
  util::Result<double> get_f64(std::string_view key) const { return get<double>(key); }
  util::Result<bool> get_bool(std::string_view key) const { return get<bool>(key); }
  util::Result<std::string_view> get_string(std::string_view key) const {
    return get<std::string_view>(key);
  }
  // Arrays: T is an arithmetic type (elements converted with range checks as above), bool,
  // std::string_view or std::string.
  template <typename T>
  util::Result<std::vector<T>> get_array(std::string_view key) const;

  // Optional variants: the default when the key is absent, an error when it has the wrong type.
  template <typename T>
  util::Result<T> get_or(std::string_view key, T dflt) const {
    if (!has(key)) return dflt;
    return get<T>(key);
  }
  util::Result<uint32_t> get_u32_or(std::string_view key, uint32_t d) const { return get_or(key, d); }
  util::Result<float> get_f32_or(std::string_view key, float d) const { return get_or(key, d); }
  util::Result<bool> get_bool_or(std::string_view key, bool d) const { return get_or(key, d); }
  util::Result<std::string_view> get_string_or(std::string_view key, std::string_view d) const {
    return get_or(key, d);
  }

  template <typename T>
  util::Result<T> get(std::string_view key) const;

  // Tensors in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  util::Result<tensor::Tensor> tensor(std::string_view name) const;

 private:
  friend class GgufParser;
  std::string name_;
  std::shared_ptr<util::MappedFile> file_;  // null for from_memory
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufKv> kvs_;
  std::unordered_map<std::string_view, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

// Builds a GGUF v3 file. Metadata keeps insertion order; tensor data is written in insertion order,
// each padded to the alignment (general.alignment if set, else 32), as the public gguf writer does.
class GgufWriter {
 public:
  // Produces exactly `nbytes` bytes of tensor data into `dst`.
  using FillFn = std::function<util::Status(uint8_t* dst, size_t nbytes)>;

  // Errors: duplicate key; general.alignment not a u32 power of two.
  util::Status set(std::string_view key, GgufValue v);
  // Convenience setters (errors as set()).
  util::Status set_u32(std::string_view k, uint32_t v) { return set(k, GgufValue::u32(v)); }
  util::Status set_i32(std::string_view k, int32_t v) { return set(k, GgufValue::i32(v)); }
  util::Status set_f32(std::string_view k, float v) { return set(k, GgufValue::f32(v)); }
  util::Status set_bool(std::string_view k, bool v) { return set(k, GgufValue::boolean(v)); }
  util::Status set_string(std::string_view k, std::string_view v) {
    return set(k, GgufValue::string(v));
  }

  // ne is innermost-first (ne[0] = row length), 1..4 dims, each ≥ 1, ne[0] a multiple of the
  // block size. `data` must stay valid until write() returns.
  util::Status add_tensor(std::string_view name, tensor::DType dtype,
                          std::span<const int64_t> ne, const void* data);
  util::Status add_tensor(const tensor::Tensor& t) {
    return add_tensor(t.name, t.dtype, std::span<const int64_t>(t.ne.data(), t.n_dims), t.data);
  }
  // Data produced on demand at write time (e.g. quantised one tensor at a time).
  util::Status add_tensor(std::string_view name, tensor::DType dtype,
                          std::span<const int64_t> ne, FillFn fill);

  size_t n_tensors() const { return tensors_.size(); }
  size_t n_kv() const { return kvs_.size(); }
  // Total size the file will have.
  uint64_t file_size() const;

  // Atomic: temp file + rename; refuses to replace an existing file unless overwrite.
  util::Status write(const std::string& path, bool overwrite) const;
  util::Result<std::vector<uint8_t>> to_bytes() const;

 private:
  struct PendingTensor {
    std::string name;
    tensor::DType dtype;
    int n_dims;
    std::array<int64_t, tensor::kMaxDims> ne;
    uint64_t nbytes;
    const void* data;
    FillFn fill;
  };
  util::Status emit(ByteSink& sink) const;
  uint32_t alignment() const;

  std::vector<std::pair<std::string, GgufValue>> kvs_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace dflash::formats
