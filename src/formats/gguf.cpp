#include "formats/gguf.h"

#include <algorithm>
#include <bit>
#include <cinttypes>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "formats/byte_sink.h"

namespace dflash::formats {

static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian host");

using util::Result;
using util::Status;
using util::strfmt;

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
// Nested arrays are rare (none in llama.cpp's own keys); a bound keeps a hostile file from
// recursing deep enough to exhaust the stack.
constexpr int kMaxArrayDepth = 8;
// Smallest encodings, used to bound counts by the bytes that remain before reserving anything.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;                // key length, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // name length, n_dims, 1 dim, type, offset
constexpr uint64_t kMinNestedArrayBytes = 4 + 8;           // element type, count

bool valid_type_id(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kF64); }

using util::quote;

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::kU8: return "u8";
    case GgufType::kI8: return "i8";
    case GgufType::kU16: return "u16";
    case GgufType::kI16: return "i16";
    case GgufType::kU32: return "u32";
    case GgufType::kI32: return "i32";
    case GgufType::kF32: return "f32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kU64: return "u64";
    case GgufType::kI64: return "i64";
    case GgufType::kF64: return "f64";
  }
  return "?";
}

size_t gguf_scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool: return 1;
    case GgufType::kU16:
    case GgufType::kI16: return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32: return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64: return 8;
    case GgufType::kString:
    case GgufType::kArray: return 0;
  }
  return 0;
}

// ------------------------------------------------------------------------------------------------
// GgufValue

bool GgufValue::is_integer() const {
  switch (type_) {
    case GgufType::kU8: case GgufType::kI8: case GgufType::kU16: case GgufType::kI16:
    case GgufType::kU32: case GgufType::kI32: case GgufType::kU64: case GgufType::kI64:
      return true;
    default:
      return false;
  }
}

int64_t GgufValue::as_i64() const {
  switch (type_) {
    case GgufType::kI8: return static_cast<int8_t>(bits_);
    case GgufType::kI16: return static_cast<int16_t>(bits_);
    case GgufType::kI32: return static_cast<int32_t>(bits_);
    default: return static_cast<int64_t>(bits_);
  }
}

double GgufValue::as_f64() const {
  if (type_ == GgufType::kF32) return tensor::fp32_from_bits(static_cast<uint32_t>(bits_));
  if (type_ == GgufType::kF64) return std::bit_cast<double>(bits_);
  if (is_integer()) return is_signed_type(type_) ? double(as_i64()) : double(bits_);
  return 0.0;
}

GgufValue GgufValue::scalar(GgufType t, uint64_t bits) {
  GgufValue v;
  v.type_ = t;
  v.bits_ = bits;
  return v;
}

GgufValue GgufValue::element(uint64_t i) const {
  size_t s = gguf_scalar_size(elem_type_);
  uint64_t bits = 0;
  if (type_ == GgufType::kArray && s != 0 && i < count_) std::memcpy(&bits, raw_ + i * s, s);
  return scalar(elem_type_, bits);
}

GgufValue GgufValue::u8(uint8_t v) { return scalar(GgufType::kU8, v); }
GgufValue GgufValue::i8(int8_t v) { return scalar(GgufType::kI8, static_cast<uint8_t>(v)); }
GgufValue GgufValue::u16(uint16_t v) { return scalar(GgufType::kU16, v); }
GgufValue GgufValue::i16(int16_t v) { return scalar(GgufType::kI16, static_cast<uint16_t>(v)); }
GgufValue GgufValue::u32(uint32_t v) { return scalar(GgufType::kU32, v); }
GgufValue GgufValue::i32(int32_t v) { return scalar(GgufType::kI32, static_cast<uint32_t>(v)); }
GgufValue GgufValue::f32(float v) { return scalar(GgufType::kF32, tensor::fp32_to_bits(v)); }
GgufValue GgufValue::boolean(bool v) { return scalar(GgufType::kBool, v ? 1 : 0); }
GgufValue GgufValue::u64(uint64_t v) { return scalar(GgufType::kU64, v); }
GgufValue GgufValue::i64(int64_t v) { return scalar(GgufType::kI64, static_cast<uint64_t>(v)); }
GgufValue GgufValue::f64(double v) { return scalar(GgufType::kF64, std::bit_cast<uint64_t>(v)); }

GgufValue GgufValue::string(std::string_view s) {
  GgufValue v;
  v.type_ = GgufType::kString;
  v.owned_ = std::make_shared<const std::string>(s);
  v.str_ = *v.owned_;
  return v;
}

GgufValue GgufValue::array_raw(GgufType elem, const void* data, uint64_t n) {
  GgufValue v;
  v.type_ = GgufType::kArray;
  v.elem_type_ = elem;
  v.count_ = n;
  size_t bytes = gguf_scalar_size(elem) * n;
  auto s = std::make_shared<std::string>(bytes, '\0');
  if (bytes) std::memcpy(s->data(), data, bytes);
  v.owned_ = s;
  v.raw_ = reinterpret_cast<const uint8_t*>(v.owned_->data());
  return v;
}

GgufValue GgufValue::array_strings(const std::vector<std::string_view>& items) {
  GgufValue v;
  v.type_ = GgufType::kArray;
  v.elem_type_ = GgufType::kString;
  v.count_ = items.size();
  size_t total = 0;
  for (auto s : items) total += s.size();
  auto buf = std::make_shared<std::string>();
  buf->reserve(total);
  for (auto s : items) buf->append(s);
  v.owned_ = buf;
  v.strings_.reserve(items.size());
  size_t off = 0;
  for (auto s : items) {
    v.strings_.emplace_back(v.owned_->data() + off, s.size());
    off += s.size();
  }
  return v;
}

GgufValue GgufValue::array_strings(const std::vector<std::string>& items) {
  std::vector<std::string_view> views(items.begin(), items.end());
  return array_strings(views);
}

GgufValue GgufValue::array_arrays(std::vector<GgufValue> items) {
  GgufValue v;
  v.type_ = GgufType::kArray;
  v.elem_type_ = GgufType::kArray;
  v.count_ = items.size();
  v.arrays_ = std::move(items);
  return v;
}

bool GgufValue::operator==(const GgufValue& o) const {
  if (type_ != o.type_) return false;
  if (type_ == GgufType::kString) return str_ == o.str_;
  if (type_ != GgufType::kArray) return bits_ == o.bits_;
  if (elem_type_ != o.elem_type_ || count_ != o.count_) return false;
  if (elem_type_ == GgufType::kString) return strings_ == o.strings_;
  if (elem_type_ == GgufType::kArray) return arrays_ == o.arrays_;
  size_t bytes = gguf_scalar_size(elem_type_) * count_;
  return bytes == 0 || std::memcmp(raw_, o.raw_, bytes) == 0;
}

namespace {

void append_scalar(std::string& out, const GgufValue& v) {
  switch (v.type()) {
    case GgufType::kBool: out += v.as_bool() ? "true" : "false"; break;
    case GgufType::kF32: {
      // Shortest text that reads back as the same float.
      float f = static_cast<float>(v.as_f64());
      std::string t;
      for (int p = 6; p <= 9; ++p) {
        t = strfmt("%.*g", p, double(f));
        if (std::strtof(t.c_str(), nullptr) == f || std::isnan(f)) break;
      }
      out += t;
      break;
    }
    case GgufType::kF64: {
      double d = v.as_f64();
      std::string t;
      for (int p = 15; p <= 17; ++p) {
        t = strfmt("%.*g", p, d);
        if (std::strtod(t.c_str(), nullptr) == d || std::isnan(d)) break;
      }
      out += t;
      break;
    }
    case GgufType::kU64: out += strfmt("%" PRIu64, v.as_u64()); break;
    default: out += strfmt("%" PRId64, v.as_i64()); break;
  }
}

void append_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      out += strfmt("\\x%02x", c);
    } else {
      out += ch;  // UTF-8 passes through
    }
  }
  out += '"';
}

void append_value(std::string& out, const GgufValue& v, int max_items) {
  if (v.type() == GgufType::kString) {
    append_string(out, v.as_string());
    return;
  }
  if (v.type() != GgufType::kArray) {
    append_scalar(out, v);
    return;
  }
  uint64_t n = v.size();
  uint64_t shown = (max_items < 0 || n <= static_cast<uint64_t>(max_items)) ? n : max_items;
  out += '[';
  for (uint64_t i = 0; i < shown; ++i) {
    if (i) out += ", ";
    if (v.elem_type() == GgufType::kString) {
      append_string(out, v.strings()[i]);
    } else if (v.elem_type() == GgufType::kArray) {
      append_value(out, v.arrays()[i], max_items);
    } else {
      append_scalar(out, v.element(i));
    }
  }
  if (shown < n) out += strfmt(", ... (%" PRIu64 " items)", n);
  out += ']';
}

}  // namespace

std::string GgufValue::to_string(int max_items) const {
  std::string out;
  append_value(out, *this, max_items);
  return out;
}

// ------------------------------------------------------------------------------------------------
// Parser

class GgufParser {
 public:
  GgufParser(GgufFile& f) : f_(f), d_(f.data_), n_(f.size_) {}

  Status parse() {
    const std::string& name = f_.name_;
    if (n_ < 4) return fail_at(0, strfmt("file is %zu bytes, too small for the GGUF magic", n_));
    uint32_t magic = 0;
    std::memcpy(&magic, d_, 4);
    if (magic != kMagic) {
      return util::corrupt(name + ": not a GGUF file: bad magic " + quote({reinterpret_cast<const char*>(d_), 4}) +
                           " (expected 'GGUF')");
    }
    pos_ = 4;
    ctx_ = "header";
    uint32_t version = 0;
    DFLASH_RETURN_IF_ERROR(read_u32(version, "version"));
    if (version == 0x02000000u || version == 0x03000000u)
      return util::unsupported(name + ": header: big-endian GGUF files are not supported");
    if (version == 1)
      return util::unsupported(name + ": header: GGUF version 1 is not supported (only 2 and 3)");
    if (version != 2 && version != 3)
      return util::unsupported(name + strfmt(": header: unsupported GGUF version %u (expected 2 or 3)", version));
    f_.version_ = version;
    uint64_t n_tensors = 0, n_kv = 0;
    DFLASH_RETURN_IF_ERROR(read_u64(n_tensors, "tensor count"));
    DFLASH_RETURN_IF_ERROR(read_u64(n_kv, "metadata count"));
    if (n_kv > remaining() / kMinKvBytes)
      return fail(strfmt("metadata count %" PRIu64 " is impossible: the remaining %zu bytes hold at most %" PRIu64,
                         n_kv, remaining(), remaining() / kMinKvBytes));
    if (n_tensors > remaining() / kMinTensorInfoBytes)
      return fail(strfmt("tensor count %" PRIu64 " is impossible: the remaining %zu bytes hold at most %" PRIu64,
                         n_tensors, remaining(), remaining() / kMinTensorInfoBytes));

    // Reserve no more than the bytes parsed so far can justify; vectors grow as entries parse.
    f_.kvs_.reserve(std::min<uint64_t>(n_kv, 1024));
    for (uint64_t i = 0; i < n_kv; ++i) {
      ctx_ = strfmt("metadata entry #%" PRIu64, i);
      std::string_view key;
      DFLASH_RETURN_IF_ERROR(read_string(key, "key"));
      ctx_ = "metadata key " + quote(key);
      if (key.empty()) return fail("empty key");
      if (f_.kv_index_.count(key)) return fail("duplicate key");
      uint32_t type = 0;
      DFLASH_RETURN_IF_ERROR(read_u32(type, "value type"));
      GgufValue v;
      DFLASH_RETURN_IF_ERROR(read_value(type, v, 0));
      f_.kv_index_.emplace(key, f_.kvs_.size());
      f_.kvs_.push_back({key, std::move(v)});
    }

    if (const GgufValue* a = f_.find(kGgufAlignmentKey)) {
      ctx_ = std::string("metadata key '") + kGgufAlignmentKey + "'";
      if (a->type() != GgufType::kU32)
        return fail(std::string("expected type u32, found ") + gguf_type_name(a->type()));
      uint64_t al = a->as_u64();
      if (al == 0 || (al & (al - 1)) != 0)
        return fail(strfmt("alignment %" PRIu64 " is not a power of two", al));
      f_.alignment_ = static_cast<uint32_t>(al);
    }

    f_.tensors_.reserve(std::min<uint64_t>(n_tensors, remaining() / 128 + 1));
    for (uint64_t i = 0; i < n_tensors; ++i) DFLASH_RETURN_IF_ERROR(read_tensor_info(i));

    // Data section: aligned start; tensor ranges checked against the real file size.
    const uint64_t align = f_.alignment_;
    f_.data_offset_ = align_up(pos_, align);
    ctx_ = "data section";
    if (n_tensors > 0 && f_.data_offset_ > n_)
      return fail(strfmt("starts at offset %" PRIu64 ", past the end of the file (size %zu): truncated",
                         f_.data_offset_, n_));
    for (GgufTensorInfo& t : f_.tensors_) {
      uint64_t begin = 0, end = 0;
      if (__builtin_add_overflow(f_.data_offset_, t.offset, &begin) ||
          __builtin_add_overflow(begin, t.nbytes, &end) || end > n_) {
        ctx_ = "tensor " + quote(t.tensor.name);
        return fail(strfmt("data range [%" PRIu64 ", %" PRIu64 ") (offset %" PRIu64 " + %" PRIu64
                           " bytes) ends past the end of the file (size %zu)",
                           begin, begin + t.nbytes, t.offset, t.nbytes, n_));
      }
      t.tensor.data = d_ + begin;
    }
    std::vector<const GgufTensorInfo*> order;
    order.reserve(f_.tensors_.size());
    for (const auto& t : f_.tensors_) order.push_back(&t);
    std::sort(order.begin(), order.end(),
              [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < order.size(); ++i) {
      const GgufTensorInfo* a = order[i - 1];
      const GgufTensorInfo* b = order[i];
      if (a->offset + a->nbytes > b->offset) {
        ctx_ = "tensor " + quote(b->tensor.name);
        return fail(strfmt("data range [%" PRIu64 ", %" PRIu64 ") overlaps tensor %s at [%" PRIu64 ", %" PRIu64 ")",
                           b->offset, b->offset + b->nbytes, quote(a->tensor.name).c_str(), a->offset,
                           a->offset + a->nbytes));
      }
    }
    return Status::ok();
  }

 private:
  size_t remaining() const { return n_ - pos_; }

  Status fail(const std::string& msg) const { return util::corrupt(f_.name_ + ": " + ctx_ + ": " + msg); }
  Status fail_at(size_t, const std::string& msg) const { return util::corrupt(f_.name_ + ": " + msg); }

  Status need(size_t k, const char* field) const {
    if (k <= remaining()) return Status::ok();
    return fail(strfmt("%s at offset %zu needs %zu bytes but only %zu remain (file size %zu): truncated", field,
                       pos_, k, remaining(), n_));
  }
  Status read_raw(void* out, size_t k, const char* field) {
    DFLASH_RETURN_IF_ERROR(need(k, field));
    std::memcpy(out, d_ + pos_, k);
    pos_ += k;
    return Status::ok();
  }
  Status read_u32(uint32_t& v, const char* field) { return read_raw(&v, 4, field); }
  Status read_u64(uint64_t& v, const char* field) { return read_raw(&v, 8, field); }

  Status read_string(std::string_view& s, const char* field) {
    uint64_t len = 0;
    DFLASH_RETURN_IF_ERROR(read_u64(len, field));
    if (len > remaining())
      return fail(strfmt("%s: string length %" PRIu64 " at offset %zu exceeds the %zu bytes that remain", field,
                         len, pos_ - 8, remaining()));
    s = std::string_view(reinterpret_cast<const char*>(d_ + pos_), len);
    pos_ += len;
    return Status::ok();
  }

  Status read_value(uint32_t type_id, GgufValue& v, int depth) {
    if (!valid_type_id(type_id)) return fail(strfmt("unknown value type id %u", type_id));
    GgufType t = static_cast<GgufType>(type_id);
    v.type_ = t;
    if (t == GgufType::kString) return read_string(v.str_, "string value");
    if (t == GgufType::kArray) {
      uint32_t et = 0;
      DFLASH_RETURN_IF_ERROR(read_u32(et, "array element type"));
      return read_array_body(et, v, depth + 1);
    }
    size_t s = gguf_scalar_size(t);
    v.bits_ = 0;
    DFLASH_RETURN_IF_ERROR(read_raw(&v.bits_, s, "value"));
    if (t == GgufType::kBool && v.bits_ > 1) return fail(strfmt("bool value %" PRIu64 " (expected 0 or 1)", v.bits_));
    return Status::ok();
  }

  // Element type already read; reads count and elements.
  Status read_array_body(uint32_t et, GgufValue& v, int depth) {
    if (depth > kMaxArrayDepth) return fail(strfmt("arrays nested deeper than %d levels", kMaxArrayDepth));
    if (!valid_type_id(et)) return fail(strfmt("unknown array element type id %u", et));
    v.type_ = GgufType::kArray;
    v.elem_type_ = static_cast<GgufType>(et);
    uint64_t n = 0;
    DFLASH_RETURN_IF_ERROR(read_u64(n, "array length"));
    v.count_ = n;
    const char* tn = gguf_type_name(v.elem_type_);
    if (v.elem_type_ == GgufType::kString) {
      if (n > remaining() / 8)
        return fail(strfmt("array of %" PRIu64 " strings cannot fit in the %zu bytes that remain", n, remaining()));
      v.strings_.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        std::string_view s;
        DFLASH_RETURN_IF_ERROR(read_string(s, "array string"));
        v.strings_.push_back(s);
      }
      return Status::ok();
    }
    if (v.elem_type_ == GgufType::kArray) {
      if (n > remaining() / kMinNestedArrayBytes)
        return fail(strfmt("array of %" PRIu64 " arrays cannot fit in the %zu bytes that remain", n, remaining()));
      // A GgufValue is ~9x the 12 bytes of an empty nested array: grow only as elements parse.
      for (uint64_t i = 0; i < n; ++i) {
        uint32_t sub = 0;
        DFLASH_RETURN_IF_ERROR(read_u32(sub, "nested array element type"));
        GgufValue e;
        DFLASH_RETURN_IF_ERROR(read_array_body(sub, e, depth + 1));
        v.arrays_.push_back(std::move(e));
      }
      return Status::ok();
    }
    size_t s = gguf_scalar_size(v.elem_type_);
    if (n > remaining() / s)
      return fail(strfmt("array of %" PRIu64 " %s elements needs %s bytes but only %zu remain: truncated", n, tn,
                         n > UINT64_MAX / s ? "too many" : strfmt("%" PRIu64, n * s).c_str(), remaining()));
    v.raw_ = d_ + pos_;
    if (v.elem_type_ == GgufType::kBool) {
      for (uint64_t i = 0; i < n; ++i)
        if (v.raw_[i] > 1) return fail(strfmt("bool array element %" PRIu64 " is %u (expected 0 or 1)", i, v.raw_[i]));
    }
    pos_ += n * s;
    return Status::ok();
  }

  Status read_tensor_info(uint64_t i) {
    ctx_ = strfmt("tensor info #%" PRIu64, i);
    std::string_view name;
    DFLASH_RETURN_IF_ERROR(read_string(name, "name"));
    ctx_ = "tensor " + quote(name);
    if (name.empty()) return fail("empty tensor name");
    if (f_.tensor_index_.count(name)) return fail("duplicate tensor name");
    uint32_t n_dims = 0;
    DFLASH_RETURN_IF_ERROR(read_u32(n_dims, "n_dims"));
    if (n_dims < 1 || n_dims > static_cast<uint32_t>(tensor::kMaxDims))
      return fail(strfmt("n_dims %u out of range (expected 1..%d)", n_dims, tensor::kMaxDims));
    GgufTensorInfo ti;
    ti.tensor.name = std::string(name);
    ti.tensor.n_dims = static_cast<int>(n_dims);
    for (uint32_t j = 0; j < n_dims; ++j) {
      uint64_t d = 0;
      DFLASH_RETURN_IF_ERROR(read_u64(d, "dimension"));
      if (d == 0) return fail(strfmt("dimension ne[%u] is 0", j));
      if (d > static_cast<uint64_t>(INT64_MAX))
        return fail(strfmt("dimension ne[%u] is negative (%" PRId64 ")", j, static_cast<int64_t>(d)));
      ti.tensor.ne[j] = static_cast<int64_t>(d);
    }
    uint32_t type_id = 0;
    DFLASH_RETURN_IF_ERROR(read_u32(type_id, "type"));
    auto info = tensor::dtype_info(type_id);
    if (!info) return util::unsupported(f_.name_ + ": " + ctx_ + strfmt(": unknown ggml type id %u", type_id));
    ti.tensor.dtype = info->type;
    int64_t nel = 1;
    for (int j = 0; j < tensor::kMaxDims; ++j)
      if (__builtin_mul_overflow(nel, ti.tensor.ne[j], &nel))
        return fail("element count overflows 64 bits (shape " + ti.tensor.shape_string() + ")");
    if (ti.tensor.ne[0] % info->block_size != 0)
      return fail(strfmt("row length ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64,
                         ti.tensor.ne[0], info->name, info->block_size));
    uint64_t rows = static_cast<uint64_t>(nel / ti.tensor.ne[0]);
    uint64_t row_bytes = 0, nbytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(ti.tensor.ne[0] / info->block_size),
                               static_cast<uint64_t>(info->type_size), &row_bytes) ||
        __builtin_mul_overflow(row_bytes, rows, &nbytes))
      return fail("byte size overflows 64 bits (shape " + ti.tensor.shape_string() + ")");
    ti.nbytes = nbytes;
    DFLASH_RETURN_IF_ERROR(read_u64(ti.offset, "offset"));
    if (ti.offset % f_.alignment_ != 0)
      return fail(strfmt("data offset %" PRIu64 " is not a multiple of the alignment %u", ti.offset, f_.alignment_));
    f_.tensor_index_.emplace(name, f_.tensors_.size());
    f_.tensors_.push_back(std::move(ti));
    return Status::ok();
  }

  GgufFile& f_;
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  std::string ctx_;
};

// ------------------------------------------------------------------------------------------------
// GgufFile

Result<GgufFile> GgufFile::open(const std::string& path, util::LoadMode mode) {
  DFLASH_ASSIGN_OR_RETURN(auto mf, util::MappedFile::open(path, mode));
  GgufFile f;
  f.name_ = path;
  f.data_ = mf->data();
  f.size_ = mf->size();
  f.file_ = std::move(mf);
  DFLASH_RETURN_IF_ERROR(GgufParser(f).parse());
  return f;
}

Result<GgufFile> GgufFile::from_memory(const uint8_t* data, size_t size, std::string name) {
  GgufFile f;
  f.name_ = std::move(name);
  f.data_ = data;
  f.size_ = size;
  DFLASH_RETURN_IF_ERROR(GgufParser(f).parse());
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<tensor::Tensor> GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t) return util::not_found(name_ + ": no tensor " + quote(name));
  return t->tensor;
}

namespace {

template <typename T>
constexpr const char* cpp_type_name() {
  if constexpr (std::is_same_v<T, uint8_t>) return "u8";
  else if constexpr (std::is_same_v<T, int8_t>) return "i8";
  else if constexpr (std::is_same_v<T, uint16_t>) return "u16";
  else if constexpr (std::is_same_v<T, int16_t>) return "i16";
  else if constexpr (std::is_same_v<T, uint32_t>) return "u32";
  else if constexpr (std::is_same_v<T, int32_t>) return "i32";
  else if constexpr (std::is_same_v<T, uint64_t>) return "u64";
  else if constexpr (std::is_same_v<T, int64_t>) return "i64";
  else if constexpr (std::is_same_v<T, float>) return "f32";
  else if constexpr (std::is_same_v<T, double>) return "f64";
  else if constexpr (std::is_same_v<T, bool>) return "bool";
  else return "string";
}

// Converts a scalar value to T. `what` names the key (and element) for errors.
template <typename T>
Result<T> convert(const GgufValue& v, const std::string& what) {
  auto mismatch = [&]() {
    return util::invalid_argument(what + ": expected " + cpp_type_name<T>() + ", found " + gguf_type_name(v.type()));
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (v.type() != GgufType::kBool) return mismatch();
    return v.as_bool();
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_integer()) return mismatch();
    bool neg = v.is_negative();
    if (neg) {
      int64_t x = v.as_i64();
      if constexpr (std::is_unsigned_v<T>) {
        return util::invalid_argument(what + strfmt(": value %" PRId64 " (%s) does not fit in %s", x,
                                                   gguf_type_name(v.type()), cpp_type_name<T>()));
      } else {
        if (x < std::numeric_limits<T>::min())
          return util::invalid_argument(what + strfmt(": value %" PRId64 " (%s) does not fit in %s", x,
                                                     gguf_type_name(v.type()), cpp_type_name<T>()));
        return static_cast<T>(x);
      }
    }
    // Non-negative: compare as unsigned (u64 values above INT64_MAX included).
    uint64_t u = (v.type() == GgufType::kU64) ? v.as_u64() : static_cast<uint64_t>(v.as_i64());
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
      return util::invalid_argument(what + strfmt(": value %" PRIu64 " (%s) does not fit in %s", u,
                                                 gguf_type_name(v.type()), cpp_type_name<T>()));
    return static_cast<T>(u);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_float()) return mismatch();
    return static_cast<T>(v.as_f64());
  } else {
    if (v.type() != GgufType::kString) return mismatch();
    return T(v.as_string());
  }
}

}  // namespace

template <typename T>
Result<T> GgufFile::get(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return util::not_found(name_ + ": metadata key " + quote(key) + " not found");
  return convert<T>(*v, name_ + ": metadata key " + quote(key));
}

template <typename T>
Result<std::vector<T>> GgufFile::get_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return util::not_found(name_ + ": metadata key " + quote(key) + " not found");
  std::string what = name_ + ": metadata key " + quote(key);
  if (v->type() != GgufType::kArray)
    return util::invalid_argument(what + ": expected array of " + cpp_type_name<T>() + ", found " +
                                  gguf_type_name(v->type()));
  auto elem_mismatch = [&]() {
    return util::invalid_argument(what + ": expected array of " + cpp_type_name<T>() + ", found array of " +
                                  gguf_type_name(v->elem_type()));
  };
  std::vector<T> out;
  if constexpr (std::is_same_v<T, std::string_view> || std::is_same_v<T, std::string>) {
    if (v->elem_type() != GgufType::kString) return elem_mismatch();
    out.assign(v->strings().begin(), v->strings().end());
  } else {
    if (v->elem_type() == GgufType::kString || v->elem_type() == GgufType::kArray) return elem_mismatch();
    out.reserve(v->size());
    for (uint64_t i = 0; i < v->size(); ++i) {
      auto r = convert<T>(v->element(i), what + strfmt(" element %" PRIu64, i));
      if (!r.is_ok()) return r.status();
      out.push_back(*r);
    }
  }
  return out;
}

#define DFLASH_GGUF_INSTANTIATE(T)                                        \
  template Result<T> GgufFile::get<T>(std::string_view) const;            \
  template Result<std::vector<T>> GgufFile::get_array<T>(std::string_view) const;
DFLASH_GGUF_INSTANTIATE(uint8_t)
DFLASH_GGUF_INSTANTIATE(int8_t)
DFLASH_GGUF_INSTANTIATE(uint16_t)
DFLASH_GGUF_INSTANTIATE(int16_t)
DFLASH_GGUF_INSTANTIATE(uint32_t)
DFLASH_GGUF_INSTANTIATE(int32_t)
DFLASH_GGUF_INSTANTIATE(uint64_t)
DFLASH_GGUF_INSTANTIATE(int64_t)
DFLASH_GGUF_INSTANTIATE(float)
DFLASH_GGUF_INSTANTIATE(double)
DFLASH_GGUF_INSTANTIATE(bool)
DFLASH_GGUF_INSTANTIATE(std::string_view)
template Result<std::vector<std::string>> GgufFile::get_array<std::string>(std::string_view) const;
#undef DFLASH_GGUF_INSTANTIATE

// ------------------------------------------------------------------------------------------------
// Writer

namespace {

void put_u32(std::string& o, uint32_t v) { o.append(reinterpret_cast<const char*>(&v), 4); }
void put_u64(std::string& o, uint64_t v) { o.append(reinterpret_cast<const char*>(&v), 8); }
void put_str(std::string& o, std::string_view s) {
  put_u64(o, s.size());
  o.append(s);
}

void put_array_body(std::string& o, const GgufValue& v);

void put_value(std::string& o, const GgufValue& v) {
  if (v.type() == GgufType::kString) {
    put_str(o, v.as_string());
  } else if (v.type() == GgufType::kArray) {
    put_array_body(o, v);
  } else {
    uint64_t bits = v.scalar_bits();
    o.append(reinterpret_cast<const char*>(&bits), gguf_scalar_size(v.type()));
  }
}

void put_array_body(std::string& o, const GgufValue& v) {
  put_u32(o, static_cast<uint32_t>(v.elem_type()));
  put_u64(o, v.size());
  if (v.elem_type() == GgufType::kString) {
    for (auto s : v.strings()) put_str(o, s);
  } else if (v.elem_type() == GgufType::kArray) {
    for (const auto& a : v.arrays()) put_array_body(o, a);
  } else if (v.size()) {
    o.append(reinterpret_cast<const char*>(v.raw()), gguf_scalar_size(v.elem_type()) * v.size());
  }
}

Status check_value(const GgufValue& v, std::string_view key, int depth) {
  if (v.type() != GgufType::kArray) return Status::ok();
  if (depth > kMaxArrayDepth)
    return util::invalid_argument("gguf key " + quote(key) + strfmt(": arrays nested deeper than %d", kMaxArrayDepth));
  if (v.elem_type() == GgufType::kArray) {
    for (const auto& a : v.arrays()) {
      if (a.type() != GgufType::kArray)
        return util::invalid_argument("gguf key " + quote(key) + ": array of arrays holds a " +
                                      gguf_type_name(a.type()));
      DFLASH_RETURN_IF_ERROR(check_value(a, key, depth + 1));
    }
  }
  return Status::ok();
}

}  // namespace

Status GgufWriter::set(std::string_view key, GgufValue v) {
  if (key.empty()) return util::invalid_argument("gguf: empty metadata key");
  for (const auto& kv : kvs_)
    if (kv.first == key) return util::invalid_argument("gguf: duplicate metadata key " + quote(key));
  DFLASH_RETURN_IF_ERROR(check_value(v, key, 1));
  if (key == kGgufAlignmentKey) {
    if (v.type() != GgufType::kU32) return util::invalid_argument("gguf: general.alignment must be a u32");
    uint64_t a = v.as_u64();
    if (a == 0 || (a & (a - 1)) != 0)
      return util::invalid_argument(strfmt("gguf: general.alignment %" PRIu64 " is not a power of two", a));
  }
  kvs_.emplace_back(std::string(key), std::move(v));
  return Status::ok();
}

namespace {
Status check_tensor(std::string_view name, tensor::DType dtype, std::span<const int64_t> ne, uint64_t& nbytes) {
  if (name.empty()) return util::invalid_argument("gguf: empty tensor name");
  if (ne.empty() || ne.size() > static_cast<size_t>(tensor::kMaxDims))
    return util::invalid_argument("gguf: tensor " + quote(name) + strfmt(": %zu dims (expected 1..4)", ne.size()));
  auto info = tensor::dtype_info(static_cast<uint32_t>(dtype));
  if (!info) return util::invalid_argument("gguf: tensor " + quote(name) + ": unknown dtype");
  uint64_t nel = 1;
  for (size_t j = 0; j < ne.size(); ++j) {
    if (ne[j] < 1)
      return util::invalid_argument("gguf: tensor " + quote(name) + strfmt(": ne[%zu] = %" PRId64, j, ne[j]));
    if (__builtin_mul_overflow(nel, static_cast<uint64_t>(ne[j]), &nel))
      return util::invalid_argument("gguf: tensor " + quote(name) + ": element count overflows");
  }
  if (ne[0] % info->block_size != 0)
    return util::invalid_argument("gguf: tensor " + quote(name) +
                                  strfmt(": ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId64,
                                         ne[0], info->name, info->block_size));
  if (__builtin_mul_overflow(nel / info->block_size, info->type_size, &nbytes))
    return util::invalid_argument("gguf: tensor " + quote(name) + ": byte size overflows");
  return Status::ok();
}
}  // namespace

Status GgufWriter::add_tensor(std::string_view name, tensor::DType dtype, std::span<const int64_t> ne,
                              const void* data) {
  if (!data) return util::invalid_argument("gguf: tensor " + quote(name) + ": null data");
  auto fill = FillFn();
  DFLASH_RETURN_IF_ERROR(add_tensor(name, dtype, ne, fill));
  tensors_.back().data = data;
  return Status::ok();
}

Status GgufWriter::add_tensor(std::string_view name, tensor::DType dtype, std::span<const int64_t> ne, FillFn fill) {
  uint64_t nbytes = 0;
  DFLASH_RETURN_IF_ERROR(check_tensor(name, dtype, ne, nbytes));
  for (const auto& t : tensors_)
    if (t.name == name) return util::invalid_argument("gguf: duplicate tensor name " + quote(name));
  PendingTensor t{std::string(name), dtype, static_cast<int>(ne.size()), {1, 1, 1, 1}, nbytes, nullptr,
                  std::move(fill)};
  for (size_t j = 0; j < ne.size(); ++j) t.ne[j] = ne[j];
  tensors_.push_back(std::move(t));
  return Status::ok();
}

uint32_t GgufWriter::alignment() const {
  for (const auto& kv : kvs_)
    if (kv.first == kGgufAlignmentKey) return static_cast<uint32_t>(kv.second.as_u64());
  return kGgufDefaultAlignment;
}

namespace {
std::string header_bytes(const std::vector<std::pair<std::string, GgufValue>>& kvs, size_t n_tensors) {
  std::string h;
  put_u32(h, kMagic);
  put_u32(h, 3);
  put_u64(h, n_tensors);
  put_u64(h, kvs.size());
  for (const auto& [k, v] : kvs) {
    put_str(h, k);
    put_u32(h, static_cast<uint32_t>(v.type()));
    put_value(h, v);
  }
  return h;
}
}  // namespace

uint64_t GgufWriter::file_size() const {
  const uint64_t a = alignment();
  uint64_t pos = header_bytes(kvs_, 0).size();
  for (const auto& t : tensors_) pos += 8 + t.name.size() + 4 + 8 * t.n_dims + 4 + 8;
  pos = align_up(pos, a);
  for (const auto& t : tensors_) pos += align_up(t.nbytes, a);
  return pos;
}

Status GgufWriter::emit(ByteSink& sink) const {
  const uint64_t a = alignment();
  std::string h = header_bytes(kvs_, tensors_.size());
  uint64_t off = 0;
  for (const auto& t : tensors_) {
    put_str(h, t.name);
    put_u32(h, static_cast<uint32_t>(t.n_dims));
    for (int j = 0; j < t.n_dims; ++j) put_u64(h, static_cast<uint64_t>(t.ne[j]));
    put_u32(h, static_cast<uint32_t>(t.dtype));
    put_u64(h, off);
    off += align_up(t.nbytes, a);
  }
  DFLASH_RETURN_IF_ERROR(sink.write(h.data(), h.size()));
  DFLASH_RETURN_IF_ERROR(sink.zeros(align_up(h.size(), a) - h.size()));
  std::vector<uint8_t> buf;
  for (const auto& t : tensors_) {
    if (t.data) {
      DFLASH_RETURN_IF_ERROR(sink.write(t.data, t.nbytes));
    } else {
      buf.assign(t.nbytes, 0);
      Status st = t.fill(buf.data(), buf.size());
      if (!st.is_ok()) return st.with_context("gguf: producing tensor " + quote(t.name));
      DFLASH_RETURN_IF_ERROR(sink.write(buf.data(), buf.size()));
    }
    DFLASH_RETURN_IF_ERROR(sink.zeros(align_up(t.nbytes, a) - t.nbytes));
  }
  return Status::ok();
}

Status GgufWriter::write(const std::string& path, bool overwrite) const {
  DFLASH_ASSIGN_OR_RETURN(auto w, util::AtomicFileWriter::create(path, overwrite));
  FileByteSink sink(*w);
  DFLASH_RETURN_IF_ERROR(emit(sink));
  return w->commit();
}

Result<std::vector<uint8_t>> GgufWriter::to_bytes() const {
  MemByteSink sink;
  sink.out.reserve(file_size());
  DFLASH_RETURN_IF_ERROR(emit(sink));
  return std::move(sink.out);
}

}  // namespace dflash::formats
