#include "formats/safetensors_writer.h"

#include <algorithm>
#include <cinttypes>
#include <nlohmann/json.hpp>

#include "formats/byte_sink.h"
#include "util/mmap_file.h"

namespace dflash::formats {

using util::quote;
using util::Result;
using util::Status;
using util::strfmt;

const char* SafetensorsWriter::dtype_name(tensor::DType t) {
  switch (t) {
    case tensor::DType::kF32: return "F32";
    case tensor::DType::kF16: return "F16";
    case tensor::DType::kBF16: return "BF16";
    default: return nullptr;
  }
}

Status SafetensorsWriter::set_metadata(std::string_view key, std::string_view value) {
  if (key.empty()) return util::invalid_argument("safetensors: empty __metadata__ key");
  metadata_[std::string(key)] = std::string(value);
  return Status::ok();
}

Status SafetensorsWriter::add_tensor(std::string_view name, tensor::DType dtype, std::vector<int64_t> shape,
                                     const void* data) {
  if (!data) return util::invalid_argument("safetensors: tensor " + quote(name) + ": null data");
  DFLASH_RETURN_IF_ERROR(add_tensor(name, dtype, std::move(shape), FillFn()));
  tensors_.back().data = data;
  return Status::ok();
}

Status SafetensorsWriter::add_tensor(std::string_view name, tensor::DType dtype, std::vector<int64_t> shape,
                                     FillFn fill) {
  const std::string ctx = "safetensors: tensor " + quote(name);
  if (name.empty()) return util::invalid_argument("safetensors: empty tensor name");
  if (name == "__metadata__") return util::invalid_argument(ctx + ": the name is reserved for the metadata map");
  const char* dn = dtype_name(dtype);
  if (!dn)
    return util::invalid_argument(ctx + ": dtype " + tensor::dtype_name(dtype) + " cannot be stored (F32, F16, BF16)");
  for (const auto& t : tensors_)
    if (t.name == name) return util::invalid_argument("safetensors: duplicate tensor name " + quote(name));
  uint64_t n = tensor::info(dtype).type_size;
  for (int64_t d : shape) {
    if (d < 0) return util::invalid_argument(ctx + strfmt(": negative dimension %" PRId64, d));
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
      return util::invalid_argument(ctx + ": byte size overflows");
  }
  tensors_.push_back(Pending{std::string(name), dtype, std::move(shape), n, nullptr, std::move(fill)});
  return Status::ok();
}

std::vector<const SafetensorsWriter::Pending*> SafetensorsWriter::data_order() const {
  std::vector<const Pending*> order;
  for (const auto& t : tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const Pending* a, const Pending* b) {
    const size_t sa = tensor::info(a->dtype).type_size, sb = tensor::info(b->dtype).type_size;
    return sa != sb ? sa > sb : a->name < b->name;
  });
  return order;
}

std::string SafetensorsWriter::header() const {
  // ordered_json keeps insertion order: __metadata__ first, then the names sorted (std::map order of
  // plain json would put "__metadata__" after upper-case names).
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  std::map<std::string, std::pair<uint64_t, uint64_t>> offsets;
  uint64_t off = 0;
  for (const Pending* t : data_order()) {
    offsets[t->name] = {off, off + t->nbytes};
    off += t->nbytes;
  }
  std::vector<const Pending*> by_name;
  for (const auto& t : tensors_) by_name.push_back(&t);
  std::sort(by_name.begin(), by_name.end(), [](const Pending* a, const Pending* b) { return a->name < b->name; });
  for (const Pending* t : by_name) {
    const auto [b, e] = offsets[t->name];
    h[t->name] = {{"dtype", dtype_name(t->dtype)}, {"shape", t->shape}, {"data_offsets", {b, e}}};
  }
  std::string s = h.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  s.resize((s.size() + 8 + 7) / 8 * 8 - 8, ' ');  // data starts at a multiple of 8
  return s;
}

uint64_t SafetensorsWriter::file_size() const {
  uint64_t n = 8 + header().size();
  for (const auto& t : tensors_) n += t.nbytes;
  return n;
}

Status SafetensorsWriter::emit(ByteSink& sink) const {
  const std::string h = header();
  const uint64_t len = h.size();
  DFLASH_RETURN_IF_ERROR(sink.write(&len, 8));
  DFLASH_RETURN_IF_ERROR(sink.write(h.data(), h.size()));
  std::vector<uint8_t> buf;
  for (const Pending* t : data_order()) {
    if (t->data) {
      DFLASH_RETURN_IF_ERROR(sink.write(t->data, t->nbytes));
      continue;
    }
    buf.assign(t->nbytes, 0);
    Status st = t->fill ? t->fill(buf.data(), buf.size()) : util::internal_error("no data");
    if (!st.is_ok()) return st.with_context("safetensors: producing tensor " + quote(t->name));
    DFLASH_RETURN_IF_ERROR(sink.write(buf.data(), buf.size()));
  }
  return Status::ok();
}

Status SafetensorsWriter::write(const std::string& path, bool overwrite) const {
  DFLASH_ASSIGN_OR_RETURN(auto w, util::AtomicFileWriter::create(path, overwrite));
  FileByteSink sink(*w);
  DFLASH_RETURN_IF_ERROR(emit(sink));
  return w->commit();
}

Result<std::vector<uint8_t>> SafetensorsWriter::to_bytes() const {
  MemByteSink sink;
  sink.out.reserve(file_size());
  DFLASH_RETURN_IF_ERROR(emit(sink));
  return std::move(sink.out);
}

}  // namespace dflash::formats
