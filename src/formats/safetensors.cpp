#include "formats/safetensors.h"

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace dflash::formats {

using util::Result;
using util::Status;
using util::strfmt;
using json = nlohmann::json;

namespace {

struct StDtype {
  const char* name;
  bool supported;
  tensor::DType dtype;
  size_t size;
};

// Every dtype the safetensors format defines; only the float types we compute with are accepted.
constexpr StDtype kDtypes[] = {
    {"F32", true, tensor::DType::kF32, 4},   {"F16", true, tensor::DType::kF16, 2},
    {"BF16", true, tensor::DType::kBF16, 2}, {"F64", false, tensor::DType::kF64, 8},
    {"I64", false, tensor::DType::kI64, 8},  {"I32", false, tensor::DType::kI32, 4},
    {"I16", false, tensor::DType::kI16, 2},  {"I8", false, tensor::DType::kI8, 1},
    {"U64", false, tensor::DType::kF32, 8},  {"U32", false, tensor::DType::kF32, 4},
    {"U16", false, tensor::DType::kF32, 2},  {"U8", false, tensor::DType::kF32, 1},
    {"BOOL", false, tensor::DType::kF32, 1}, {"F8_E4M3", false, tensor::DType::kF32, 1},
    {"F8_E5M2", false, tensor::DType::kF32, 1},
};

using util::quote;

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

}  // namespace

int64_t SafetensorsTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated not to overflow at load
  return n;
}

Result<std::array<int64_t, tensor::kMaxDims>> ne_from_shape(const std::vector<int64_t>& shape) {
  if (shape.size() > static_cast<size_t>(tensor::kMaxDims))
    return util::unsupported(strfmt("shape %s has %zu dims (at most %d supported)", shape_str(shape).c_str(),
                                    shape.size(), tensor::kMaxDims));
  std::array<int64_t, tensor::kMaxDims> ne{1, 1, 1, 1};
  for (size_t i = 0; i < shape.size(); ++i) ne[i] = shape[shape.size() - 1 - i];
  return ne;
}

Result<tensor::Tensor> SafetensorsTensor::view() const {
  auto ne = ne_from_shape(shape);
  if (!ne.is_ok()) return ne.status().with_context((file ? *file : std::string("?")) + ": tensor " + quote(name));
  tensor::Tensor t;
  t.name = name;
  t.dtype = dtype;
  t.n_dims = shape.empty() ? 1 : static_cast<int>(shape.size());
  t.ne = *ne;
  t.data = data;
  return t;
}

// ------------------------------------------------------------------------------------------------

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  DFLASH_ASSIGN_OR_RETURN(auto mf, util::MappedFile::open(path));
  SafetensorsFile f;
  f.name_ = std::make_unique<std::string>(path);
  f.file_ = mf;
  DFLASH_RETURN_IF_ERROR(f.parse(mf->data(), mf->size()));
  return f;
}

Result<SafetensorsFile> SafetensorsFile::from_memory(const uint8_t* data, size_t size, std::string name) {
  SafetensorsFile f;
  f.name_ = std::make_unique<std::string>(std::move(name));
  DFLASH_RETURN_IF_ERROR(f.parse(data, size));
  return f;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::parse(const uint8_t* data, size_t size) {
  const std::string& fname = *name_;
  auto fail = [&](const std::string& m) { return util::corrupt(fname + ": " + m); };
  if (size < 8) return fail(strfmt("file is %zu bytes, too small for the 8-byte header length: truncated", size));
  uint64_t n = 0;
  std::memcpy(&n, data, 8);
  if (n > kMaxHeaderBytes)
    return fail(strfmt("header length %" PRIu64 " exceeds the %" PRIu64 "-byte limit (not a safetensors file?)", n,
                       kMaxHeaderBytes));
  if (n > size - 8)
    return fail(strfmt("header length %" PRIu64 " exceeds the %zu bytes after it (file size %zu): truncated", n,
                       size - 8, size));
  data_offset_ = 8 + n;
  const uint64_t data_size = size - data_offset_;
  const char* h = reinterpret_cast<const char*>(data + 8);

  // nlohmann::json reports errors by exception; keep them inside this function.
  json j;
  try {
    j = json::parse(h, h + n);
  } catch (const json::exception& e) {
    return fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return fail(std::string("header is a JSON ") + j.type_name() + ", expected an object");

  std::vector<SafetensorsTensor> ts;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) return fail("__metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) return fail("__metadata__ value " + quote(m.key()) + " is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    std::string ctx = "tensor " + quote(name) + ": ";
    if (!e.is_object()) return fail(ctx + "entry is not an object");
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) return fail(ctx + "missing or non-string 'dtype'");
    if (sh == e.end() || !sh->is_array()) return fail(ctx + "missing or non-array 'shape'");
    if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      return fail(ctx + "'data_offsets' must be two non-negative integers [begin, end]");
    SafetensorsTensor t;
    t.name = name;
    t.file = name_.get();
    const std::string dts = dt->get<std::string>();
    const StDtype* info = nullptr;
    for (const auto& d : kDtypes)
      if (dts == d.name) info = &d;
    if (!info) return util::unsupported(fname + ": " + ctx + "unknown dtype " + quote(dts));
    if (!info->supported)
      return util::unsupported(fname + ": " + ctx + "dtype " + dts + " is not supported (F32, F16 and BF16 are)");
    t.dtype = info->dtype;
    uint64_t numel = 1;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned()) return fail(ctx + "shape " + sh->dump() + " has a non-integer or negative dim");
      uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, v, &numel) ||
          numel > static_cast<uint64_t>(INT64_MAX))
        return fail(ctx + "shape " + sh->dump() + ": element count overflows");
      t.shape.push_back(static_cast<int64_t>(v));
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(info->size), &nbytes))
      return fail(ctx + "shape " + sh->dump() + ": byte size overflows");
    uint64_t b = (*off)[0].get<uint64_t>(), en = (*off)[1].get<uint64_t>();
    if (b > en) return fail(ctx + strfmt("data_offsets [%" PRIu64 ", %" PRIu64 ") end before they begin", b, en));
    if (en > data_size)
      return fail(ctx + strfmt("data_offsets [%" PRIu64 ", %" PRIu64 ") end past the data section (%" PRIu64
                               " bytes; file size %zu)",
                               b, en, data_size, size));
    if (en - b != nbytes)
      return fail(ctx + strfmt("data_offsets [%" PRIu64 ", %" PRIu64 ") hold %" PRIu64
                               " bytes but shape %s of %s needs %" PRIu64,
                               b, en, en - b, shape_str(t.shape).c_str(), info->name, nbytes));
    t.offset = b;
    t.nbytes = nbytes;
    t.data = data + data_offset_ + b;
    ts.push_back(std::move(t));
  }
  std::sort(ts.begin(), ts.end(), [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
  });
  for (size_t i = 1; i < ts.size(); ++i) {
    const auto& a = ts[i - 1];
    const auto& b = ts[i];
    if (a.offset + a.nbytes > b.offset)
      return fail(strfmt("tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 ") overlap tensor %s [%" PRIu64
                         ", %" PRIu64 ")",
                         quote(b.name).c_str(), b.offset, b.offset + b.nbytes, quote(a.name).c_str(), a.offset,
                         a.offset + a.nbytes));
  }
  tensors_ = std::move(ts);
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  return Status::ok();
}

// ------------------------------------------------------------------------------------------------

namespace fs = std::filesystem;

Result<SafetensorsModel> SafetensorsModel::open(const std::string& path) {
  std::error_code ec;
  std::string p = path;
  if (fs::is_directory(p, ec)) {
    fs::path dir(p);
    if (fs::exists(dir / "model.safetensors.index.json", ec)) {
      p = (dir / "model.safetensors.index.json").string();
    } else if (fs::exists(dir / "model.safetensors", ec)) {
      p = (dir / "model.safetensors").string();
    } else {
      return util::not_found(path + ": directory has neither model.safetensors.index.json nor model.safetensors");
    }
  }
  SafetensorsModel m;
  m.name_ = p;
  const bool is_index = p.size() >= 5 && p.compare(p.size() - 5, 5, ".json") == 0;
  if (!is_index) {
    DFLASH_ASSIGN_OR_RETURN(auto f, SafetensorsFile::open(p));
    m.metadata_ = f.metadata();
    m.shards_.push_back(std::move(f));
    for (size_t i = 0; i < m.shards_[0].tensors().size(); ++i)
      m.index_.emplace(m.shards_[0].tensors()[i].name, std::make_pair(size_t(0), i));
    return m;
  }

  DFLASH_ASSIGN_OR_RETURN(std::string text, util::read_text_file(p));
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return util::corrupt(p + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return util::corrupt(p + ": expected a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) return util::corrupt(p + ": missing 'weight_map' object");
  if (auto md = j.find("metadata"); md != j.end() && md->is_object())
    for (auto it = md->begin(); it != md->end(); ++it)
      m.metadata_[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();

  const fs::path dir = fs::path(p).parent_path();
  std::map<std::string, size_t> shard_of_file;
  std::vector<std::pair<std::string, std::string>> wanted;  // tensor, shard file
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      return util::corrupt(p + ": weight_map entry " + quote(it.key()) + " is not a file name");
    std::string file = it.value().get<std::string>();
    fs::path rel(file);
    bool bad = file.empty() || rel.is_absolute();
    for (const auto& part : rel)
      if (part == "..") bad = true;
    if (bad) return util::corrupt(p + ": weight_map entry " + quote(it.key()) + ": bad shard name " + quote(file));
    wanted.emplace_back(it.key(), file);
    if (!shard_of_file.count(file)) {
      DFLASH_ASSIGN_OR_RETURN(auto f, SafetensorsFile::open((dir / rel).string()));
      shard_of_file[file] = m.shards_.size();
      m.shards_.push_back(std::move(f));
    }
  }
  // Every tensor of every shard exactly once; every index entry where the index says.
  for (size_t s = 0; s < m.shards_.size(); ++s) {
    const auto& ts = m.shards_[s].tensors();
    for (size_t i = 0; i < ts.size(); ++i) {
      auto [it, fresh] = m.index_.emplace(ts[i].name, std::make_pair(s, i));
      if (!fresh)
        return util::corrupt(p + ": tensor " + quote(ts[i].name) + " appears in both " +
                             m.shards_[it->second.first].path() + " and " + m.shards_[s].path());
    }
  }
  for (const auto& [name, file] : wanted) {
    auto it = m.index_.find(name);
    size_t want = shard_of_file[file];
    if (it == m.index_.end() || it->second.first != want)
      return util::corrupt(p + ": weight_map puts tensor " + quote(name) + " in " + file + ", which does not hold it");
  }
  if (m.index_.size() != wanted.size()) {
    for (const auto& [name, loc] : m.index_)
      if (!wm->contains(name))
        return util::corrupt(p + ": tensor " + quote(name) + " in " + m.shards_[loc.first].path() +
                             " is missing from weight_map");
  }
  return m;
}

std::vector<const SafetensorsTensor*> SafetensorsModel::tensors() const {
  std::vector<const SafetensorsTensor*> out;
  out.reserve(index_.size());
  for (const auto& s : shards_)
    for (const auto& t : s.tensors()) out.push_back(&t);
  return out;
}

const SafetensorsTensor* SafetensorsModel::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &shards_[it->second.first].tensors()[it->second.second];
}

Result<const SafetensorsTensor*> SafetensorsModel::get(std::string_view name) const {
  const SafetensorsTensor* t = find(name);
  if (!t) return util::not_found(name_ + ": no tensor " + quote(name));
  return t;
}

}  // namespace dflash::formats
