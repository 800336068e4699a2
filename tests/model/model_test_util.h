// Shared helpers of the model tests: the tiny reference models under tests/data and their goldens
// (produced by tools/reference/, see its README).
#pragma once

#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "util/mmap_file.h"

namespace dflash::model::testing {

inline std::string data_path(const std::string& rel) { return std::string(DFLASH_TEST_DATA_DIR) + "/" + rel; }
inline std::string golden_path(const std::string& rel) { return std::string(DFLASH_GOLDEN_DIR) + "/" + rel; }

// Tiny Qwen3.5 targets converted to GGUF by the public converter (tests/data/gguf/<name>.gguf).
inline std::vector<std::string> tiny_targets() {
  std::vector<std::string> names;
  for (const char* n : {"qwen35-dense-a", "qwen35-dense-vl", "qwen35-dense-odd-bf16", "qwen35moe-a"})
    if (util::file_exists(data_path(std::string("gguf/") + n + ".gguf"))) names.push_back(n);
  return names;
}

inline util::Result<std::shared_ptr<const formats::GgufFile>> open_gguf(const std::string& name) {
  DFLASH_ASSIGN_OR_RETURN(formats::GgufFile f, formats::GgufFile::open(data_path("gguf/" + name + ".gguf")));
  return std::make_shared<const formats::GgufFile>(std::move(f));
}

// A golden file of tools/reference (tests/golden/*/*.gguf): typed views of its tensors (empty / null
// when absent).
struct Golden {
  formats::GgufFile file;
  std::span<const float> f32(const std::string& name) const {
    const formats::GgufTensorInfo* t = file.find_tensor(name);
    if (!t) return {};
    return {t->tensor.as<float>(), static_cast<size_t>(t->tensor.nelements())};
  }
  std::vector<int32_t> i32(const std::string& name) const {
    const formats::GgufTensorInfo* t = file.find_tensor(name);
    if (!t) return {};
    const int32_t* p = t->tensor.as<int32_t>();
    return {p, p + t->tensor.nelements()};
  }
  const tensor::Tensor* tensor(const std::string& name) const {
    const formats::GgufTensorInfo* t = file.find_tensor(name);
    return t ? &t->tensor : nullptr;
  }
};

// max |a − b| / max |b|: the error relative to the scale of the reference.
inline double rel_err(std::span<const float> a, std::span<const float> b) {
  double worst = 0, scale = 1e-12;
  for (float v : b) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
  return worst / scale;
}

}  // namespace dflash::model::testing
