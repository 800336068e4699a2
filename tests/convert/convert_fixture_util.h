// Fixture variants made on the fly: copy a tests/data/hf checkpoint to a temp dir, then edit its
// config.json or rewrite its model.safetensors (drop/add/retype tensors) — so bad-input tests need
// no committed copies. Shared by tests/convert and tests/app.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace dflash::convert::testing {

namespace fs = std::filesystem;

inline std::string hf_fixture(const std::string& name) { return std::string(DFLASH_TEST_DATA_DIR) + "/hf/" + name; }
inline std::string fork_gguf(const std::string& name) { return std::string(DFLASH_TEST_DATA_DIR) + "/gguf/" + name + ".gguf"; }

// A fresh directory removed (with its contents) at scope exit.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = (fs::temp_directory_path() /
             ("dflash-convert-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++)))
                .string();
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }
  // Names of the entries in the directory (to check a failed run left nothing behind).
  std::vector<std::string> entries() const {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(path_)) v.push_back(e.path().filename().string());
    return v;
  }

 private:
  std::string path_;
};

// Copies fixture `name` into `parent`/`as` and returns the new directory.
inline std::string copy_fixture(const std::string& name, const std::string& parent, const std::string& as = "") {
  const std::string dst = parent + "/" + (as.empty() ? name : as);
  fs::create_directories(dst);
  fs::copy(hf_fixture(name), dst, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  return dst;
}

inline std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(read_all(dir + "/config.json"));
  edit(j);
  write_all(dir + "/config.json", j.dump(2));
}

// One tensor of a safetensors file, with its raw bytes.
struct StEntry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

inline std::vector<StEntry> read_safetensors(const std::string& path) {
  const std::string b = read_all(path);
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  const nlohmann::json h = nlohmann::json::parse(b.substr(8, n));
  std::vector<StEntry> v;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const auto& o = it.value();
    const uint64_t s = o["data_offsets"][0], e = o["data_offsets"][1];
    v.push_back({it.key(), o["dtype"], o["shape"].get<std::vector<int64_t>>(), b.substr(8 + n + s, e - s)});
  }
  return v;
}

inline void write_safetensors(const std::string& path, const std::vector<StEntry>& v) {
  nlohmann::json h = nlohmann::json::object();
  std::string data;
  for (const StEntry& e : v) {
    h[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {data.size(), data.size() + e.bytes.size()}}};
    data += e.bytes;
  }
  h["__metadata__"] = {{"format", "pt"}};
  std::string hs = h.dump();
  while (hs.size() % 8) hs += ' ';
  std::string out(8, '\0');
  const uint64_t n = hs.size();
  std::memcpy(out.data(), &n, 8);
  write_all(path, out + hs + data);
}

inline void edit_safetensors(const std::string& dir, const std::function<void(std::vector<StEntry>&)>& edit) {
  const std::string p = dir + "/model.safetensors";
  auto v = read_safetensors(p);
  edit(v);
  write_safetensors(p, v);
}

}  // namespace dflash::convert::testing
