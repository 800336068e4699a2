// dflash info FILE: what is inside a GGUF (or safetensors) file — metadata, tensor table, totals.
#include <cinttypes>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "app/command.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "util/mmap_file.h"
#include "util/status.h"

namespace dflash::app {
namespace {

using formats::GgufType;
using formats::GgufValue;
using json = nlohmann::ordered_json;  // keeps keys in the order written
using util::strfmt;

constexpr int kShortItems = 8;  // array items shown without --full

std::string type_string(const GgufValue& v) {
  if (v.type() != GgufType::kArray) return formats::gguf_type_name(v.type());
  return std::string("array[") + formats::gguf_type_name(v.elem_type()) + "]";
}

json value_json(const GgufValue& v, bool full) {
  switch (v.type()) {
    case GgufType::kString: return std::string(v.as_string());
    case GgufType::kBool: return v.as_bool();
    case GgufType::kF32:
    case GgufType::kF64: return v.as_f64();
    case GgufType::kU64: return v.as_u64();
    case GgufType::kArray: break;
    default: return v.as_i64();
  }
  uint64_t n = v.size();
  uint64_t shown = full ? n : std::min<uint64_t>(n, kShortItems);
  json items = json::array();
  for (uint64_t i = 0; i < shown; ++i) {
    if (v.elem_type() == GgufType::kString) {
      items.push_back(std::string(v.strings()[i]));
    } else if (v.elem_type() == GgufType::kArray) {
      items.push_back(value_json(v.arrays()[i], full));
    } else {
      items.push_back(value_json(v.element(i), full));
    }
  }
  json a = {{"elem_type", formats::gguf_type_name(v.elem_type())}, {"count", n}, {"items", std::move(items)}};
  if (shown < n) a["truncated"] = true;
  return a;
}

std::string human_bytes(uint64_t b) {
  if (b < 1024) return strfmt("%" PRIu64 " B", b);
  if (b < (1ull << 20)) return strfmt("%.1f KiB", b / 1024.0);
  if (b < (1ull << 30)) return strfmt("%.1f MiB", b / 1048576.0);
  return strfmt("%.2f GiB", b / 1073741824.0);
}

struct Totals {
  struct PerType {
    uint64_t count = 0, bytes = 0, params = 0;
  };
  std::map<std::string, PerType> by_dtype;
  uint64_t count = 0, bytes = 0, params = 0;
  void add(const char* dtype, uint64_t bytes_, uint64_t params_) {
    auto& p = by_dtype[dtype];
    ++p.count;
    p.bytes += bytes_;
    p.params += params_;
    ++count;
    bytes += bytes_;
    params += params_;
  }
  json to_json() const {
    json bt = json::object();
    for (const auto& [k, v] : by_dtype) bt[k] = {{"tensors", v.count}, {"bytes", v.bytes}, {"params", v.params}};
    return {{"tensors", count}, {"bytes", bytes}, {"params", params}, {"by_dtype", bt}};
  }
  void print() const {
    std::printf("\ntotals: %" PRIu64 " tensors, %" PRIu64 " bytes (%s), %" PRIu64 " parameters\n", count, bytes,
                human_bytes(bytes).c_str(), params);
    for (const auto& [k, v] : by_dtype)
      std::printf("  %-6s %6" PRIu64 " tensors %14" PRIu64 " bytes %14" PRIu64 " params (%.2f bits/param)\n",
                  k.c_str(), v.count, v.bytes, v.params, v.params ? 8.0 * double(v.bytes) / double(v.params) : 0.0);
  }
};

std::string dump(const json& j) { return j.dump(1, ' ', false, json::error_handler_t::replace); }

int info_gguf(const std::string& path, bool full, bool as_json) {
  auto r = formats::GgufFile::open(path);
  if (!r.is_ok()) {
    std::fprintf(stderr, "dflash info: %s\n", r.status().message().c_str());
    return 1;
  }
  const formats::GgufFile& f = *r;
  Totals tot;
  for (const auto& t : f.tensors())
    tot.add(tensor::dtype_name(t.tensor.dtype), t.nbytes, static_cast<uint64_t>(t.tensor.nelements()));
  if (as_json) {
    json md = json::array();
    for (const auto& kv : f.metadata())
      md.push_back({{"key", std::string(kv.key)}, {"type", type_string(kv.value)}, {"value", value_json(kv.value, full)}});
    json ts = json::array();
    for (const auto& t : f.tensors()) {
      json ne = json::array();
      for (int d = 0; d < t.tensor.n_dims; ++d) ne.push_back(t.tensor.ne[d]);
      ts.push_back({{"name", t.tensor.name}, {"dtype", tensor::dtype_name(t.tensor.dtype)}, {"ne", ne},
                    {"bytes", t.nbytes}, {"offset", t.offset}});
    }
    json out = {{"file", path},          {"format", "gguf"},         {"version", f.version()},
                {"alignment", f.alignment()}, {"data_offset", f.data_offset()}, {"file_size", f.file_size()},
                {"metadata", md},        {"tensors", ts},            {"totals", tot.to_json()}};
    std::printf("%s\n", dump(out).c_str());
    return 0;
  }
  std::printf("%s: GGUF v%u, %zu metadata keys, %zu tensors, alignment %u, data at offset %" PRIu64
              ", file size %" PRIu64 " (%s)\n",
              path.c_str(), f.version(), f.metadata().size(), f.tensors().size(), f.alignment(), f.data_offset(),
              f.file_size(), human_bytes(f.file_size()).c_str());
  std::printf("\nmetadata:\n");
  size_t kw = 0, tw = 0;
  for (const auto& kv : f.metadata()) {
    kw = std::max(kw, kv.key.size());
    tw = std::max(tw, type_string(kv.value).size());
  }
  for (const auto& kv : f.metadata()) {
    std::string key(kv.key);
    std::printf("  %-*s  %-*s  %s\n", int(kw), key.c_str(), int(tw), type_string(kv.value).c_str(),
                kv.value.to_string(full ? -1 : kShortItems).c_str());
  }
  std::printf("\ntensors:\n");
  size_t nw = 4;
  for (const auto& t : f.tensors()) nw = std::max(nw, t.tensor.name.size());
  std::printf("  %-*s  %-5s  %-24s  %14s  %14s\n", int(nw), "name", "dtype", "shape (ne)", "bytes", "offset");
  for (const auto& t : f.tensors())
    std::printf("  %-*s  %-5s  %-24s  %14" PRIu64 "  %14" PRIu64 "\n", int(nw), t.tensor.name.c_str(),
                tensor::dtype_name(t.tensor.dtype), t.tensor.shape_string().c_str(), t.nbytes, t.offset);
  tot.print();
  return 0;
}

int info_safetensors(const std::string& path, bool as_json) {
  auto r = formats::SafetensorsModel::open(path);
  if (!r.is_ok()) {
    std::fprintf(stderr, "dflash info: %s\n", r.status().message().c_str());
    return 1;
  }
  Totals tot;
  auto ts = r->tensors();
  for (const auto* t : ts) tot.add(tensor::dtype_name(t->dtype), t->nbytes, static_cast<uint64_t>(t->numel()));
  if (as_json) {
    json arr = json::array();
    for (const auto* t : ts)
      arr.push_back({{"name", t->name}, {"dtype", tensor::dtype_name(t->dtype)}, {"shape", t->shape},
                     {"bytes", t->nbytes}, {"offset", t->offset}, {"file", *t->file}});
    json out = {{"file", path}, {"format", "safetensors"}, {"shards", r->shards().size()},
                {"metadata", r->metadata()}, {"tensors", arr}, {"totals", tot.to_json()}};
    std::printf("%s\n", dump(out).c_str());
    return 0;
  }
  std::printf("%s: safetensors, %zu shard(s), %zu tensors\n", path.c_str(), r->shards().size(), ts.size());
  if (!r->metadata().empty()) std::printf("\nmetadata:\n");
  for (const auto& [k, v] : r->metadata()) std::printf("  %s = %s\n", k.c_str(), v.c_str());
  std::printf("\ntensors (shape outermost-first, as stored):\n");
  size_t nw = 4;
  for (const auto* t : ts) nw = std::max(nw, t->name.size());
  std::printf("  %-*s  %-5s  %-24s  %14s\n", int(nw), "name", "dtype", "shape", "bytes");
  for (const auto* t : ts) {
    std::string shape = "[";
    for (size_t i = 0; i < t->shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t->shape[i]);
    shape += "]";
    std::printf("  %-*s  %-5s  %-24s  %14" PRIu64 "\n", int(nw), t->name.c_str(), tensor::dtype_name(t->dtype),
                shape.c_str(), t->nbytes);
  }
  tot.print();
  return 0;
}

bool looks_like_safetensors(const std::string& p) {
  auto ends = [&](const char* s) {
    std::string e(s);
    return p.size() >= e.size() && p.compare(p.size() - e.size(), e.size(), e) == 0;
  };
  return ends(".safetensors") || ends(".json") || util::file_exists(p + "/");  // "dir/" stats only for a directory
}

}  // namespace

DFLASH_COMMAND(Command{
    "info", "Show the metadata, tensor table and totals of a GGUF file (or safetensors file/directory)",
    [](CLI::App* sub) -> std::function<int()> {
      auto path = std::make_shared<std::string>();
      auto full = std::make_shared<bool>(false);
      auto as_json = std::make_shared<bool>(false);
      sub->add_option("file", *path, "GGUF file, .safetensors file, index .json, or checkpoint directory")
          ->required();
      sub->add_flag("--full", *full, "Print every item of long arrays (default: the first few and the count)");
      sub->add_flag("--json", *as_json, "Machine-readable JSON output");
      return [=] {
        if (looks_like_safetensors(*path)) return info_safetensors(*path, *as_json);
        return info_gguf(*path, *full, *as_json);
      };
    }});

}  // namespace dflash::app
