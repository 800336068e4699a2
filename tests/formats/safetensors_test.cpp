#include "formats/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace dflash::formats {
namespace {

namespace fs = std::filesystem;
using tensor::DType;

std::vector<uint8_t> st_bytes(const std::string& header, const std::vector<uint8_t>& data, bool pad = true) {
  std::string h = header;
  if (pad)
    while ((8 + h.size()) % 8) h += ' ';  // the reference writer pads the header with spaces
  std::vector<uint8_t> b;
  b.reserve(8 + h.size() + data.size());
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(uint64_t(h.size()) >> (8 * i)));
  for (char c : h) b.push_back(static_cast<uint8_t>(c));
  for (uint8_t c : data) b.push_back(c);
  return b;
}

std::vector<uint8_t> iota_bytes(size_t n) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(i * 13 + 1);
  return d;
}

// A valid 3-tensor file: w [2, 3] BF16 (12 bytes), b [3] F32 (12 bytes), s [] F16 (2 bytes).
const char* kValidHeader =
    R"({"__metadata__":{"format":"pt"},)"
    R"("w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
    R"("b":{"dtype":"F32","shape":[3],"data_offsets":[12,24]},)"
    R"("s":{"dtype":"F16","shape":[],"data_offsets":[24,26]}})";

util::Result<SafetensorsFile> parse(const std::vector<uint8_t>& b) {
  return SafetensorsFile::from_memory(b.data(), b.size(), "model.safetensors");
}

void expect_error(const std::vector<uint8_t>& b, std::initializer_list<const char*> fragments,
                  util::ErrorCode code = util::ErrorCode::kCorrupt) {
  auto r = parse(b);
  ASSERT_FALSE(r.is_ok()) << "parsed although malformed";
  const std::string& m = r.status().message();
  EXPECT_EQ(r.status().code(), code) << m;
  EXPECT_EQ(m.rfind("model.safetensors: ", 0), 0u) << m;
  for (const char* f : fragments) EXPECT_NE(m.find(f), std::string::npos) << "missing '" << f << "' in: " << m;
}

std::vector<uint8_t> with_tensor(const std::string& entry, size_t data_bytes) {
  return st_bytes("{" + entry + "}", iota_bytes(data_bytes));
}

TEST(Safetensors, ReadsValidFile) {
  auto data = iota_bytes(26);
  auto bytes = st_bytes(kValidHeader, data);
  auto r = parse(bytes);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const SafetensorsFile& f = *r;
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[0].name, "w");  // data order
  EXPECT_EQ(f.tensors()[1].name, "b");
  const SafetensorsTensor* w = f.find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::kBF16);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(w->numel(), 6);
  EXPECT_EQ(w->nbytes, 12u);
  EXPECT_EQ(std::memcmp(w->data, data.data(), 12), 0);
  auto v = w->view();
  ASSERT_TRUE(v.is_ok());
  // Outermost-first [2 rows, 3 cols] becomes ne {3, 2}: the same bytes, row length 3.
  EXPECT_EQ(v->ne[0], 3);
  EXPECT_EQ(v->ne[1], 2);
  EXPECT_EQ(v->n_dims, 2);
  EXPECT_EQ(v->nbytes(), 12u);
  EXPECT_EQ(v->row(1), static_cast<const uint8_t*>(w->data) + 6);
  const SafetensorsTensor* b = f.find("b");
  EXPECT_EQ(b->dtype, DType::kF32);
  EXPECT_EQ(std::memcmp(b->data, data.data() + 12, 12), 0);
  const SafetensorsTensor* s = f.find("s");
  EXPECT_EQ(s->numel(), 1);
  auto sv = s->view();
  ASSERT_TRUE(sv.is_ok());
  EXPECT_EQ(sv->nelements(), 1);
  EXPECT_EQ(f.find("nope"), nullptr);
}

TEST(Safetensors, ShapeConversion) {
  auto ne = ne_from_shape({5, 4, 3, 2});
  ASSERT_TRUE(ne.is_ok());
  EXPECT_EQ((*ne)[0], 2);
  EXPECT_EQ((*ne)[3], 5);
  EXPECT_FALSE(ne_from_shape({1, 1, 1, 1, 1}).is_ok());
  auto buf = with_tensor(R"("t":{"dtype":"F32","shape":[1,1,1,1,2],"data_offsets":[0,8]})", 8);
  auto five = parse(buf);
  ASSERT_TRUE(five.is_ok());  // the file is fine; only the 4-d view is refused
  auto v = five->find("t")->view();
  ASSERT_FALSE(v.is_ok());
  EXPECT_NE(v.status().message().find("model.safetensors: tensor 't'"), std::string::npos) << v.status().message();
  EXPECT_NE(v.status().message().find("5 dims"), std::string::npos);
}

TEST(Safetensors, HeaderErrors) {
  expect_error({1, 2, 3}, {"too small", "truncated"});
  std::vector<uint8_t> big(16);
  uint64_t n = 1ull << 40;
  std::memcpy(big.data(), &n, 8);
  expect_error(big, {"header length 1099511627776 exceeds the"});
  n = 100;
  std::memcpy(big.data(), &n, 8);
  expect_error(big, {"header length 100 exceeds the 8 bytes after it", "truncated"});
  expect_error(st_bytes("{\"a\": ", {}), {"header is not valid JSON"});
  expect_error(st_bytes("", {}, false), {"header is not valid JSON"});
  expect_error(st_bytes("[1,2]", {}), {"header is a JSON array, expected an object"});
  expect_error(st_bytes(R"({"__metadata__":[1]})", {}), {"__metadata__ is not an object"});
  expect_error(st_bytes(R"({"__metadata__":{"k":1}})", {}), {"__metadata__ value 'k' is not a string"});
  // Empty file with a valid empty header is fine.
  auto r = parse(st_bytes("{}", {}));
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->tensors().empty());
}

TEST(Safetensors, EntryErrors) {
  expect_error(with_tensor(R"("t":[1])", 0), {"tensor 't'", "entry is not an object"});
  expect_error(with_tensor(R"("t":{"shape":[1],"data_offsets":[0,4]})", 4), {"tensor 't'", "'dtype'"});
  expect_error(with_tensor(R"("t":{"dtype":"F32","data_offsets":[0,4]})", 4), {"'shape'"});
  expect_error(with_tensor(R"("t":{"dtype":"F32","shape":[1]})", 4), {"'data_offsets'"});
  expect_error(with_tensor(R"("t":{"dtype":"F32","shape":[1],"data_offsets":[0]})", 4), {"'data_offsets'"});
  expect_error(with_tensor(R"("t":{"dtype":"F32","shape":[1],"data_offsets":[-1,4]})", 4), {"'data_offsets'"});
  expect_error(with_tensor(R"("t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", 4),
               {"shape [-1] has a non-integer or negative dim"});
  expect_error(with_tensor(R"("t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})", 4), {"non-integer"});
  expect_error(with_tensor(R"("t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})", 4),
               {"element count overflows"});
  expect_error(with_tensor(R"("t":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]})", 4),
               {"byte size overflows"});
  expect_error(with_tensor(R"("t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]})", 8),
               {"tensor 't'", "dtype I64 is not supported (F32, F16 and BF16 are)"}, util::ErrorCode::kUnsupported);
  expect_error(with_tensor(R"("t":{"dtype":"Q4","shape":[1],"data_offsets":[0,8]})", 8), {"unknown dtype 'Q4'"},
               util::ErrorCode::kUnsupported);
}

TEST(Safetensors, OffsetErrors) {
  expect_error(with_tensor(R"("t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]})", 8),
               {"tensor 't'", "data_offsets [8, 0) end before they begin"});
  expect_error(with_tensor(R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 7),
               {"tensor 't'", "end past the data section (7 bytes"});
  expect_error(with_tensor(R"("t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]})", 8),
               {"hold 8 bytes but shape [3] of F32 needs 12"});
  expect_error(with_tensor(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})",
                           12),
               {"tensor 'b'", "overlap tensor 'a'"});
  // Any order in the JSON is fine as long as ranges are disjoint.
  auto buf = with_tensor(R"("z":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                         R"("a":{"dtype":"F16","shape":[2],"data_offsets":[4,8]})",
                         8);
  auto r = parse(buf);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->tensors()[0].name, "z");
}

TEST(Safetensors, EveryTruncationIsACleanError) {
  auto bytes = st_bytes(kValidHeader, iota_bytes(26));
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
    auto r = parse(cut);
    ASSERT_FALSE(r.is_ok()) << n;
    EXPECT_EQ(r.status().code(), util::ErrorCode::kCorrupt);
  }
}

TEST(Safetensors, HeaderByteFlipsNeverCrash) {
  auto bytes = st_bytes(kValidHeader, iota_bytes(26));
  for (size_t i = 0; i < bytes.size(); ++i)
    for (uint8_t v : {uint8_t(0), uint8_t('9'), uint8_t('"'), uint8_t(0xff), uint8_t('-')}) {
      auto b = bytes;
      b[i] = v;
      auto r = parse(b);
      if (!r.is_ok()) continue;
      for (const auto& t : r->tensors()) {
        EXPECT_LE(static_cast<const uint8_t*>(t.data) + t.nbytes, b.data() + b.size());
      }
    }
}

// ---- files on disk: single and sharded ----

class SafetensorsDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("dflash-st-" + std::to_string(getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::vector<uint8_t>& b) {
    std::ofstream(dir_ / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void write_text(const std::string& name, const std::string& s) { std::ofstream(dir_ / name) << s; }
  fs::path dir_;
};

TEST_F(SafetensorsDir, SingleFileByDirectoryAndPath) {
  write("model.safetensors", st_bytes(kValidHeader, iota_bytes(26)));
  for (auto p : {dir_.string(), (dir_ / "model.safetensors").string()}) {
    auto m = SafetensorsModel::open(p);
    ASSERT_TRUE(m.is_ok()) << m.status().to_string();
    EXPECT_EQ(m->size(), 3u);
    EXPECT_EQ(m->metadata().at("format"), "pt");
    auto w = m->get("w");
    ASSERT_TRUE(w.is_ok());
    EXPECT_EQ(*(*w)->file, (dir_ / "model.safetensors").string());
    EXPECT_EQ(m->get("nope").status().code(), util::ErrorCode::kNotFound);
  }
  auto missing = SafetensorsModel::open((dir_ / "nothing").string());
  EXPECT_EQ(missing.status().code(), util::ErrorCode::kNotFound);
  fs::create_directories(dir_ / "empty");
  auto empty = SafetensorsModel::open((dir_ / "empty").string());
  ASSERT_FALSE(empty.is_ok());
  EXPECT_NE(empty.status().message().find("neither model.safetensors.index.json nor model.safetensors"),
            std::string::npos);
}

TEST_F(SafetensorsDir, Sharded) {
  write("model-00001-of-00002.safetensors",
        st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", iota_bytes(8)));
  write("model-00002-of-00002.safetensors",
        st_bytes(R"({"b":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},)"
                 R"("c":{"dtype":"F16","shape":[1],"data_offsets":[8,10]}})",
                 iota_bytes(10)));
  write_text("model.safetensors.index.json",
             R"({"metadata":{"total_size":26},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
             R"("b":"model-00002-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})");
  auto m = SafetensorsModel::open(dir_.string());
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(m->size(), 3u);
  EXPECT_EQ(m->shards().size(), 2u);
  EXPECT_EQ(m->metadata().at("total_size"), "26");
  EXPECT_EQ((*m->get("b"))->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(*(*m->get("c"))->file, (dir_ / "model-00002-of-00002.safetensors").string());
  EXPECT_EQ(m->tensors().size(), 3u);
}

TEST_F(SafetensorsDir, ShardedErrors) {
  write("s1.safetensors", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", iota_bytes(8)));
  write("s2.safetensors", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", iota_bytes(8)));
  auto idx = (dir_ / "model.safetensors.index.json").string();
  auto expect = [&](const std::string& json, const char* frag) {
    write_text("model.safetensors.index.json", json);
    auto m = SafetensorsModel::open(idx);
    ASSERT_FALSE(m.is_ok()) << json;
    EXPECT_NE(m.status().message().find(frag), std::string::npos) << m.status().message();
    EXPECT_EQ(m.status().message().rfind(idx, 0), 0u) << m.status().message();
  };
  expect("{not json", "not valid JSON");
  expect(R"({"metadata":{}})", "missing 'weight_map'");
  expect(R"({"weight_map":{"a":3}})", "weight_map entry 'a' is not a file name");
  expect(R"({"weight_map":{"a":"../s1.safetensors"}})", "bad shard name");
  expect(R"({"weight_map":{"a":"/etc/passwd"}})", "bad shard name");
  expect(R"({"weight_map":{"a":"s1.safetensors","x":"s1.safetensors"}})",
         "weight_map puts tensor 'x' in s1.safetensors, which does not hold it");
  expect(R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})", "appears in both");
  // A missing shard names the shard's path.
  write_text("model.safetensors.index.json", R"({"weight_map":{"a":"gone.safetensors"}})");
  auto m = SafetensorsModel::open(idx);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("gone.safetensors"), std::string::npos);
  // A tensor in a shard but absent from weight_map.
  write("s3.safetensors", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("z":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                   iota_bytes(12)));
  expect(R"({"weight_map":{"a":"s3.safetensors"}})", "tensor 'z' in");
  // A malformed shard: the error names the shard file.
  write("bad.safetensors", {1, 2, 3});
  write_text("model.safetensors.index.json", R"({"weight_map":{"a":"bad.safetensors"}})");
  auto b = SafetensorsModel::open(idx);
  ASSERT_FALSE(b.is_ok());
  EXPECT_NE(b.status().message().find((dir_ / "bad.safetensors").string() + ": file is 3 bytes"), std::string::npos)
      << b.status().message();
}

}  // namespace
}  // namespace dflash::formats
