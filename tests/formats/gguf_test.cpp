#include "formats/gguf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "util/mmap_file.h"

namespace dflash::formats {
namespace {

namespace fs = std::filesystem;
using tensor::DType;

// Hand-assembles GGUF bytes, independently of GgufWriter, so malformed files can be built.
struct Raw {
  std::vector<uint8_t> b;
  Raw& u8(uint8_t v) { b.push_back(v); return *this; }
  Raw& u32(uint32_t v) { return bytes(&v, 4); }
  Raw& u64(uint64_t v) { return bytes(&v, 8); }
  Raw& bytes(const void* p, size_t n) {
    auto c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
    return *this;
  }
  Raw& str(std::string_view s) { u64(s.size()); return bytes(s.data(), s.size()); }
  Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return bytes("GGUF", 4).u32(version).u64(n_tensors).u64(n_kv);
  }
  Raw& kv_u32(std::string_view k, uint32_t v) { return str(k).u32(4).u32(v); }
  Raw& tensor_info(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (auto d : ne) u64(d);
    return u32(type).u64(offset);
  }
  Raw& pad(size_t a = 32) {
    while (b.size() % a) b.push_back(0);
    return *this;
  }
  Raw& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
};

util::Result<GgufFile> parse(const std::vector<uint8_t>& b, const char* name = "model.gguf") {
  return GgufFile::from_memory(b.data(), b.size(), name);
}

// Expects a clean error whose message contains every fragment.
void expect_error(const std::vector<uint8_t>& b, std::initializer_list<const char*> fragments) {
  auto r = parse(b);
  ASSERT_FALSE(r.is_ok()) << "parsed although malformed";
  const std::string& m = r.status().message();
  EXPECT_EQ(m.rfind("model.gguf: ", 0), 0u) << m;
  for (const char* f : fragments) EXPECT_NE(m.find(f), std::string::npos) << "missing '" << f << "' in: " << m;
}

std::string temp_path(const std::string& stem) {
  return (fs::temp_directory_path() / (stem + "-" + std::to_string(getpid()))).string();
}

// A writer holding one value of every type (incl. nested arrays) and tensors of several dtypes.
struct Sample {
  std::vector<float> f32 = std::vector<float>(5 * 3);
  std::vector<uint16_t> f16 = std::vector<uint16_t>(7);
  std::vector<uint8_t> q8 = std::vector<uint8_t>(34 * 2 * 3);
  GgufWriter w;
  Sample() {
    for (size_t i = 0; i < f32.size(); ++i) f32[i] = 0.25f * float(i) - 1.0f;
    for (size_t i = 0; i < f16.size(); ++i) f16[i] = tensor::fp32_to_fp16(float(i) * 0.5f);
    for (size_t i = 0; i < q8.size(); ++i) q8[i] = uint8_t(i * 7 + 3);
    std::vector<uint32_t> au32 = {1, 2, 4000000000u};
    std::vector<int32_t> ai32 = {-5, 0, 5};
    std::vector<float> af32 = {0.5f, -2.0f};
    std::vector<uint8_t> au8 = {0, 255};
    std::vector<int8_t> ai8 = {-128, 127};
    std::vector<uint16_t> au16 = {65535};
    std::vector<int16_t> ai16 = {-32768};
    std::vector<uint64_t> au64 = {~0ull};
    std::vector<int64_t> ai64 = {INT64_MIN, 3};
    std::vector<double> af64 = {1e-300, -0.0};
    std::vector<uint8_t> abool = {1, 0, 1};
    EXPECT_TRUE(w.set("general.architecture", GgufValue::string("qwen35")).is_ok());
    EXPECT_TRUE(w.set("v.u8", GgufValue::u8(250)).is_ok());
    EXPECT_TRUE(w.set("v.i8", GgufValue::i8(-7)).is_ok());
    EXPECT_TRUE(w.set("v.u16", GgufValue::u16(65000)).is_ok());
    EXPECT_TRUE(w.set("v.i16", GgufValue::i16(-32000)).is_ok());
    EXPECT_TRUE(w.set_u32("v.u32", 4000000000u).is_ok());
    EXPECT_TRUE(w.set_i32("v.i32", -2000000000).is_ok());
    EXPECT_TRUE(w.set_f32("v.f32", 3.25f).is_ok());
    EXPECT_TRUE(w.set_bool("v.bool", true).is_ok());
    EXPECT_TRUE(w.set_string("v.string", std::string("a\0b \xe6\x97\xa5", 7)).is_ok());
    EXPECT_TRUE(w.set("v.u64", GgufValue::u64(~0ull)).is_ok());
    EXPECT_TRUE(w.set("v.i64", GgufValue::i64(INT64_MIN)).is_ok());
    EXPECT_TRUE(w.set("v.f64", GgufValue::f64(-1.5e300)).is_ok());
    EXPECT_TRUE(w.set("a.u8", GgufValue::array(GgufType::kU8, std::span<const uint8_t>(au8))).is_ok());
    EXPECT_TRUE(w.set("a.i8", GgufValue::array(GgufType::kI8, std::span<const int8_t>(ai8))).is_ok());
    EXPECT_TRUE(w.set("a.u16", GgufValue::array(GgufType::kU16, std::span<const uint16_t>(au16))).is_ok());
    EXPECT_TRUE(w.set("a.i16", GgufValue::array(GgufType::kI16, std::span<const int16_t>(ai16))).is_ok());
    EXPECT_TRUE(w.set("a.u32", GgufValue::array_u32(au32)).is_ok());
    EXPECT_TRUE(w.set("a.i32", GgufValue::array_i32(ai32)).is_ok());
    EXPECT_TRUE(w.set("a.f32", GgufValue::array_f32(af32)).is_ok());
    EXPECT_TRUE(w.set("a.bool", GgufValue::array(GgufType::kBool, std::span<const uint8_t>(abool))).is_ok());
    EXPECT_TRUE(w.set("a.u64", GgufValue::array(GgufType::kU64, std::span<const uint64_t>(au64))).is_ok());
    EXPECT_TRUE(w.set("a.i64", GgufValue::array(GgufType::kI64, std::span<const int64_t>(ai64))).is_ok());
    EXPECT_TRUE(w.set("a.f64", GgufValue::array(GgufType::kF64, std::span<const double>(af64))).is_ok());
    EXPECT_TRUE(w.set("a.str", GgufValue::array_strings(std::vector<std::string>{"x", "", "Ġthe"})).is_ok());
    EXPECT_TRUE(w.set("a.empty", GgufValue::array_u32({})).is_ok());
    EXPECT_TRUE(w.set("a.nested", GgufValue::array_arrays({GgufValue::array_i32(ai32),
                                                           GgufValue::array_strings(std::vector<std::string>{"q"}),
                                                           GgufValue::array_arrays({GgufValue::array_f32(af32)})}))
                    .is_ok());
    int64_t ne_f32[] = {5, 3}, ne_f16[] = {7}, ne_q8[] = {64, 3};
    EXPECT_TRUE(w.add_tensor("token_embd.weight", DType::kF32, ne_f32, f32.data()).is_ok());
    EXPECT_TRUE(w.add_tensor("blk.0.attn_norm.weight", DType::kF16, ne_f16, f16.data()).is_ok());
    EXPECT_TRUE(w.add_tensor("blk.0.attn_q.weight", DType::kQ8_0, ne_q8,
                             [this](uint8_t* dst, size_t n) {
                               if (n != q8.size()) return util::internal_error("size");
                               std::memcpy(dst, q8.data(), n);
                               return util::Status::ok();
                             })
                    .is_ok());
  }
};

TEST(Gguf, RoundTripAllValueTypes) {
  Sample s;
  auto bytes = s.w.to_bytes();
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  EXPECT_EQ(bytes->size(), s.w.file_size());
  auto r = parse(*bytes);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const GgufFile& f = *r;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  ASSERT_EQ(f.metadata().size(), s.w.n_kv());

  EXPECT_EQ(*f.get_string("general.architecture"), "qwen35");
  EXPECT_EQ(*f.get_u8("v.u8"), 250);
  EXPECT_EQ(*f.get_i8("v.i8"), -7);
  EXPECT_EQ(*f.get_u16("v.u16"), 65000);
  EXPECT_EQ(*f.get_i16("v.i16"), -32000);
  EXPECT_EQ(*f.get_u32("v.u32"), 4000000000u);
  EXPECT_EQ(*f.get_i32("v.i32"), -2000000000);
  EXPECT_EQ(*f.get_f32("v.f32"), 3.25f);
  EXPECT_EQ(*f.get_bool("v.bool"), true);
  EXPECT_EQ(*f.get_string("v.string"), std::string_view("a\0b \xe6\x97\xa5", 7));
  EXPECT_EQ(*f.get_u64("v.u64"), ~0ull);
  EXPECT_EQ(*f.get_i64("v.i64"), INT64_MIN);
  EXPECT_EQ(*f.get_f64("v.f64"), -1.5e300);
  EXPECT_EQ(*f.get_array<uint8_t>("a.u8"), (std::vector<uint8_t>{0, 255}));
  EXPECT_EQ(*f.get_array<int8_t>("a.i8"), (std::vector<int8_t>{-128, 127}));
  EXPECT_EQ(*f.get_array<uint16_t>("a.u16"), (std::vector<uint16_t>{65535}));
  EXPECT_EQ(*f.get_array<int16_t>("a.i16"), (std::vector<int16_t>{-32768}));
  EXPECT_EQ(*f.get_array<uint32_t>("a.u32"), (std::vector<uint32_t>{1, 2, 4000000000u}));
  EXPECT_EQ(*f.get_array<int32_t>("a.i32"), (std::vector<int32_t>{-5, 0, 5}));
  EXPECT_EQ(*f.get_array<float>("a.f32"), (std::vector<float>{0.5f, -2.0f}));
  EXPECT_EQ(*f.get_array<bool>("a.bool"), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(*f.get_array<uint64_t>("a.u64"), (std::vector<uint64_t>{~0ull}));
  EXPECT_EQ(*f.get_array<int64_t>("a.i64"), (std::vector<int64_t>{INT64_MIN, 3}));
  auto af64 = *f.get_array<double>("a.f64");
  ASSERT_EQ(af64.size(), 2u);
  EXPECT_EQ(af64[0], 1e-300);
  EXPECT_TRUE(std::signbit(af64[1]));
  EXPECT_EQ(*f.get_array<std::string>("a.str"), (std::vector<std::string>{"x", "", "Ġthe"}));
  EXPECT_TRUE(f.get_array<uint32_t>("a.empty")->empty());
  const GgufValue* nested = f.find("a.nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->elem_type(), GgufType::kArray);
  ASSERT_EQ(nested->arrays().size(), 3u);
  EXPECT_EQ(nested->arrays()[1].strings()[0], "q");
  EXPECT_EQ(nested->arrays()[2].arrays()[0].element(1).as_f64(), -2.0);
  EXPECT_EQ(nested->to_string(), "[[-5, 0, 5], [\"q\"], [[0.5, -2]]]");

  // Generic equality against what was written, in order.
  Sample again;
  auto bytes2 = again.w.to_bytes();
  ASSERT_TRUE(bytes2.is_ok());
  EXPECT_EQ(*bytes, *bytes2);  // deterministic

  ASSERT_EQ(f.tensors().size(), 3u);
  const auto& t0 = f.tensors()[0].tensor;
  EXPECT_EQ(t0.name, "token_embd.weight");
  EXPECT_EQ(t0.dtype, DType::kF32);
  EXPECT_EQ(t0.n_dims, 2);
  EXPECT_EQ(t0.ne[0], 5);
  EXPECT_EQ(t0.ne[1], 3);
  EXPECT_EQ(std::memcmp(t0.data, s.f32.data(), s.f32.size() * 4), 0);
  auto t1 = f.tensor("blk.0.attn_norm.weight");
  ASSERT_TRUE(t1.is_ok());
  EXPECT_EQ(t1->nbytes(), 14u);
  EXPECT_EQ(std::memcmp(t1->data, s.f16.data(), 14), 0);
  const GgufTensorInfo* t2 = f.find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(t2, nullptr);
  EXPECT_EQ(t2->nbytes, s.q8.size());
  EXPECT_EQ(t2->tensor.nbytes(), s.q8.size());
  EXPECT_EQ(std::memcmp(t2->tensor.data, s.q8.data(), s.q8.size()), 0);
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(t.offset % 32, 0u);
    EXPECT_EQ((static_cast<const uint8_t*>(t.tensor.data) - bytes->data()) % 32, 0);
  }
  EXPECT_FALSE(f.tensor("missing").is_ok());
  EXPECT_EQ(f.tensor("missing").status().code(), util::ErrorCode::kNotFound);
}

TEST(Gguf, WriteFileAtomicallyAndReadBackViaMmap) {
  Sample s;
  std::string path = temp_path("dflash-gguf-rt") + ".gguf";
  std::remove(path.c_str());
  ASSERT_TRUE(s.w.write(path, false).is_ok());
  auto again = s.w.write(path, false);
  EXPECT_FALSE(again.is_ok());
  EXPECT_NE(again.message().find("already exists"), std::string::npos);
  EXPECT_TRUE(s.w.write(path, true).is_ok());
  auto r = GgufFile::open(path);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  auto mem = s.w.to_bytes();
  auto rm = parse(*mem);
  ASSERT_TRUE(rm.is_ok());
  ASSERT_EQ(r->metadata().size(), rm->metadata().size());
  for (size_t i = 0; i < r->metadata().size(); ++i) {
    EXPECT_EQ(r->metadata()[i].key, rm->metadata()[i].key);
    EXPECT_TRUE(r->metadata()[i].value == rm->metadata()[i].value) << r->metadata()[i].key;
  }
  EXPECT_EQ(r->file_size(), mem->size());
  std::remove(path.c_str());
  // No temp files left behind.
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    EXPECT_EQ(e.path().string().find(path + ".tmp-"), std::string::npos);
}

TEST(Gguf, FailedFillLeavesNoFile) {
  GgufWriter w;
  int64_t ne[] = {4};
  ASSERT_TRUE(w.add_tensor("t", DType::kF32, ne, [](uint8_t*, size_t) { return util::internal_error("boom"); })
                  .is_ok());
  std::string path = temp_path("dflash-gguf-fail") + ".gguf";
  std::remove(path.c_str());
  auto st = w.write(path, false);
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("'t'"), std::string::npos) << st.message();
  EXPECT_FALSE(util::file_exists(path));
}

TEST(Gguf, WriterRejectsBadInput) {
  GgufWriter w;
  ASSERT_TRUE(w.set_u32("a", 1).is_ok());
  EXPECT_FALSE(w.set_u32("a", 2).is_ok());
  EXPECT_FALSE(w.set_u32("", 2).is_ok());
  EXPECT_FALSE(w.set_u32("general.alignment", 24).is_ok());
  EXPECT_FALSE(w.set_i32("general.alignment", 64).is_ok());
  EXPECT_FALSE(w.set("nested", GgufValue::array_arrays({GgufValue::u32(1)})).is_ok());
  float d[64] = {};
  int64_t ok[] = {4}, zero[] = {0}, five[] = {1, 1, 1, 1, 1}, q8_bad[] = {33};
  EXPECT_TRUE(w.add_tensor("t", DType::kF32, ok, d).is_ok());
  EXPECT_FALSE(w.add_tensor("t", DType::kF32, ok, d).is_ok());
  EXPECT_FALSE(w.add_tensor("", DType::kF32, ok, d).is_ok());
  EXPECT_FALSE(w.add_tensor("z", DType::kF32, zero, d).is_ok());
  EXPECT_FALSE(w.add_tensor("five", DType::kF32, five, d).is_ok());
  EXPECT_FALSE(w.add_tensor("q", DType::kQ8_0, q8_bad, d).is_ok());
  EXPECT_FALSE(w.add_tensor("null", DType::kF32, ok, static_cast<const void*>(nullptr)).is_ok());
  EXPECT_FALSE(w.add_tensor("empty", DType::kF32, std::span<const int64_t>(), d).is_ok());
}

TEST(Gguf, CustomAlignmentIsHonoured) {
  GgufWriter w;
  ASSERT_TRUE(w.set_u32("general.alignment", 256).is_ok());
  float d[3] = {1, 2, 3};
  int64_t ne[] = {3};
  ASSERT_TRUE(w.add_tensor("a", DType::kF32, ne, d).is_ok());
  ASSERT_TRUE(w.add_tensor("b", DType::kF32, ne, d).is_ok());
  auto bytes = w.to_bytes();
  auto r = parse(*bytes);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->alignment(), 256u);
  EXPECT_EQ(r->data_offset() % 256, 0u);
  EXPECT_EQ(r->tensors()[1].offset, 256u);
  EXPECT_EQ(bytes->size() % 256, 0u);
}

TEST(Gguf, ZeroTensorsAndVersion2) {
  auto buf = Raw().header(0, 1, 2).kv_u32("k", 9).b;  // from_memory views must outlive the parse
  auto r = parse(buf);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->version(), 2u);
  EXPECT_EQ(*r->get_u32("k"), 9u);
  EXPECT_TRUE(r->tensors().empty());
}

// ---- the public writer's files ----

TEST(Gguf, ReadsFileWrittenByPythonGguf) {
  std::string dir = std::string(DFLASH_TEST_DATA_DIR) + "/gguf/";
  auto r = GgufFile::open(dir + "python_writer.gguf");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  auto text = util::read_text_file(dir + "python_writer.json");
  ASSERT_TRUE(text.is_ok());
  auto j = nlohmann::json::parse(*text);
  const GgufFile& f = *r;
  EXPECT_EQ(f.version(), j["version"].get<uint32_t>());
  EXPECT_EQ(f.alignment(), j["alignment"].get<uint32_t>());
  ASSERT_EQ(f.metadata().size(), j["metadata"].size());
  for (size_t i = 0; i < f.metadata().size(); ++i) {
    const auto& e = j["metadata"][i];
    const GgufKv& kv = f.metadata()[i];
    SCOPED_TRACE(std::string(kv.key));
    EXPECT_EQ(kv.key, e["key"].get<std::string>());
    EXPECT_EQ(gguf_type_name(kv.value.type()), e["type"].get<std::string>());
    const auto& v = e["value"];
    switch (kv.value.type()) {
      case GgufType::kString: EXPECT_EQ(kv.value.as_string(), v.get<std::string>()); break;
      case GgufType::kBool: EXPECT_EQ(kv.value.as_bool(), v.get<bool>()); break;
      case GgufType::kF32: EXPECT_EQ(float(kv.value.as_f64()), v.get<float>()); break;
      case GgufType::kF64: EXPECT_EQ(kv.value.as_f64(), v.get<double>()); break;
      case GgufType::kU64: EXPECT_EQ(kv.value.as_u64(), v.get<uint64_t>()); break;
      case GgufType::kArray: {
        EXPECT_EQ(gguf_type_name(kv.value.elem_type()), v["elem"].get<std::string>());
        const auto& items = v["items"];
        ASSERT_EQ(kv.value.size(), items.size());
        for (size_t k = 0; k < items.size(); ++k) {
          if (kv.value.elem_type() == GgufType::kString) {
            EXPECT_EQ(kv.value.strings()[k], items[k].get<std::string>());
          } else if (kv.value.elem_type() == GgufType::kArray) {
            const GgufValue& sub = kv.value.arrays()[k];
            ASSERT_EQ(sub.size(), items[k].size());
            for (size_t q = 0; q < sub.size(); ++q) EXPECT_EQ(sub.element(q).as_i64(), items[k][q].get<int64_t>());
          } else if (kv.value.elem_type() == GgufType::kBool) {
            EXPECT_EQ(kv.value.element(k).as_bool(), items[k].get<bool>());
          } else if (kv.value.elem_type() == GgufType::kF32) {
            EXPECT_EQ(float(kv.value.element(k).as_f64()), items[k].get<float>());
          } else {
            EXPECT_EQ(kv.value.element(k).as_i64(), items[k].get<int64_t>());
          }
        }
        break;
      }
      default: EXPECT_EQ(kv.value.as_i64(), v.get<int64_t>()); break;
    }
  }
  ASSERT_EQ(f.tensors().size(), j["tensors"].size());
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& e = j["tensors"][i];
    const auto& t = f.tensors()[i];
    EXPECT_EQ(t.tensor.name, e["name"].get<std::string>());
    EXPECT_EQ(tensor::dtype_name(t.tensor.dtype), e["dtype"].get<std::string>());
    auto ne = e["ne"].get<std::vector<int64_t>>();
    ASSERT_EQ(t.tensor.n_dims, static_cast<int>(ne.size()));
    for (size_t k = 0; k < ne.size(); ++k) EXPECT_EQ(t.tensor.ne[k], ne[k]);
    EXPECT_EQ(t.nbytes, e["nbytes"].get<uint64_t>());
    std::string hex = e["hex"].get<std::string>();
    const uint8_t* p = static_cast<const uint8_t*>(t.tensor.data);
    std::string got;
    for (uint64_t k = 0; k < t.nbytes; ++k) got += util::strfmt("%02x", p[k]);
    EXPECT_EQ(got, hex);
  }

  // Our writer lays out the same content byte for byte as the public writer.
  GgufWriter w;
  for (const auto& kv : f.metadata()) ASSERT_TRUE(w.set(kv.key, kv.value).is_ok());
  for (const auto& t : f.tensors()) ASSERT_TRUE(w.add_tensor(t.tensor).is_ok());
  auto ours = w.to_bytes();
  ASSERT_TRUE(ours.is_ok());
  auto theirs = util::MappedFile::open(dir + "python_writer.gguf");
  ASSERT_TRUE(theirs.is_ok());
  ASSERT_EQ(ours->size(), (*theirs)->size());
  EXPECT_EQ(std::memcmp(ours->data(), (*theirs)->data(), ours->size()), 0);
}

// ---- validation ----

TEST(Gguf, EveryTruncationIsACleanError) {
  Sample s;
  auto bytes = *s.w.to_bytes();
  // The file ends with the last tensor's padding; cutting into the padding is still a valid file
  // only if the tensor data fits, so check every prefix up to the end of the last tensor's data.
  auto full = parse(bytes);
  ASSERT_TRUE(full.is_ok());
  const auto& last = full->tensors().back();
  size_t data_end = full->data_offset() + last.offset + last.nbytes;
  for (size_t n = 0; n < data_end; ++n) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
    auto r = parse(cut);
    ASSERT_FALSE(r.is_ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(r.status().code(), util::ErrorCode::kCorrupt) << r.status().message();
    EXPECT_EQ(r.status().message().rfind("model.gguf: ", 0), 0u);
  }
  std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + data_end);
  EXPECT_TRUE(parse(cut).is_ok());
}

TEST(Gguf, TruncationErrorsNameTheField) {
  Sample s;
  auto bytes = *s.w.to_bytes();
  expect_error({bytes.begin(), bytes.begin() + 2}, {"too small for the GGUF magic"});
  expect_error({bytes.begin(), bytes.begin() + 6}, {"header", "version", "truncated"});
  expect_error({bytes.begin(), bytes.begin() + 20}, {"metadata count", "truncated"});
  auto full = parse(bytes);
  size_t cut = full->data_offset() + full->tensors()[1].offset + 3;
  expect_error({bytes.begin(), bytes.begin() + cut},
               {"tensor 'blk.0.attn_norm.weight'", "data range", "ends past the end of the file"});
}

TEST(Gguf, BadMagicAndVersion) {
  expect_error(Raw().bytes("GGML", 4).u32(3).u64(0).u64(0).b, {"not a GGUF file", "bad magic 'GGML'"});
  expect_error(Raw().header(0, 0, 1).b, {"version 1 is not supported"});
  expect_error(Raw().header(0, 0, 4).b, {"unsupported GGUF version 4"});
  expect_error(Raw().header(0, 0, 0x03000000).b, {"big-endian"});
  EXPECT_EQ(parse(Raw().header(0, 0, 4).b).status().code(), util::ErrorCode::kUnsupported);
}

TEST(Gguf, AbsurdCounts) {
  expect_error(Raw().header(0, 1ull << 60).b, {"metadata count 1152921504606846976 is impossible"});
  expect_error(Raw().header(1ull << 62, 0).b, {"tensor count", "is impossible"});
  // Array counts bounded by the remaining bytes before anything is reserved.
  expect_error(Raw().header(0, 1).str("k").u32(9).u32(4).u64(1ull << 61).zeros(64).b,
               {"metadata key 'k'", "array of 2305843009213693952 u32 elements", "only"});
  expect_error(Raw().header(0, 1).str("k").u32(9).u32(8).u64(~0ull).zeros(64).b,
               {"metadata key 'k'", "strings cannot fit"});
  expect_error(Raw().header(0, 1).str("k").u32(9).u32(9).u64(1ull << 40).zeros(64).b,
               {"metadata key 'k'", "arrays cannot fit"});
  expect_error(Raw().header(0, 1).str("k").u32(9).u32(12).u64(~0ull / 4).zeros(64).b, {"f64 elements"});
}

TEST(Gguf, AbsurdStringLengths) {
  expect_error(Raw().header(0, 1).u64(1ull << 50).zeros(40).b,
               {"metadata entry #0", "key", "string length 1125899906842624", "exceeds"});
  expect_error(Raw().header(0, 1).str("k").u32(8).u64(~0ull).zeros(16).b,
               {"metadata key 'k'", "string value", "exceeds"});
  expect_error(Raw().header(1, 0).u64(1000).zeros(40).b, {"tensor info #0", "name", "exceeds"});
}

TEST(Gguf, MetadataValueErrors) {
  expect_error(Raw().header(0, 1).str("k").u32(13).zeros(16).b, {"metadata key 'k'", "unknown value type id 13"});
  expect_error(Raw().header(0, 1).str("k").u32(9).u32(77).u64(0).b, {"unknown array element type id 77"});
  expect_error(Raw().header(0, 1).str("k").u32(7).u8(2).b, {"metadata key 'k'", "bool value 2"});
  expect_error(Raw().header(0, 1).str("k").u32(9).u32(7).u64(2).u8(1).u8(3).b, {"bool array element 1 is 3"});
  expect_error(Raw().header(0, 2).kv_u32("k", 1).kv_u32("k", 2).b, {"metadata key 'k'", "duplicate key"});
  expect_error(Raw().header(0, 1).str("").u32(4).u32(1).b, {"empty key"});
  expect_error(Raw().header(0, 1).str("k\n").u32(4).u8(1).b, {"metadata key 'k\\x0a'", "value", "truncated"});
  // Nesting deeper than the bound.
  Raw deep;
  deep.header(0, 1).str("k").u32(9);
  for (int i = 0; i < 20; ++i) deep.u32(9).u64(1);
  deep.u32(4).u64(0);
  expect_error(deep.b, {"nested deeper"});
}

TEST(Gguf, AlignmentKey) {
  expect_error(Raw().header(0, 1).str("general.alignment").u32(5).u32(32).b,
               {"metadata key 'general.alignment'", "expected type u32, found i32"});
  expect_error(Raw().header(0, 1).kv_u32("general.alignment", 48).b, {"alignment 48 is not a power of two"});
  expect_error(Raw().header(0, 1).kv_u32("general.alignment", 0).b, {"alignment 0 is not a power of two"});
  auto buf = Raw().header(1, 1).kv_u32("general.alignment", 8).tensor_info("t", {2}, 0, 8).pad(8).zeros(16).b;
  auto r = parse(buf);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->alignment(), 8u);
}

// One valid f32 tensor of ne {4, 2} (32 bytes), then the data.
std::vector<uint8_t> one_tensor(std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data_bytes = 32,
                                std::string_view name = "blk.0.attn_q.weight") {
  return Raw().header(1, 0).tensor_info(name, std::move(ne), type, offset).pad().zeros(data_bytes).b;
}

TEST(Gguf, TensorInfoErrors) {
  ASSERT_TRUE(parse(one_tensor({4, 2}, 0, 0)).is_ok());
  expect_error(one_tensor({}, 0, 0), {"tensor 'blk.0.attn_q.weight'", "n_dims 0 out of range"});
  expect_error(one_tensor({1, 1, 1, 1, 1}, 0, 0), {"n_dims 5 out of range"});
  expect_error(one_tensor({4, 0}, 0, 0), {"dimension ne[1] is 0"});
  expect_error(one_tensor({4, ~0ull}, 0, 0), {"dimension ne[1] is negative (-1)"});
  expect_error(one_tensor({4, 2}, 99, 0), {"tensor 'blk.0.attn_q.weight'", "unknown ggml type id 99"});
  EXPECT_EQ(parse(one_tensor({4, 2}, 99, 0)).status().code(), util::ErrorCode::kUnsupported);
  expect_error(one_tensor({33, 1}, 8, 0), {"ne[0] = 33 is not a multiple of the q8_0 block size 32"});
  expect_error(one_tensor({1ull << 40, 1ull << 40}, 0, 0), {"element count overflows"});
  expect_error(one_tensor({1ull << 62, 1}, 0, 0), {"byte size overflows"});
  expect_error(one_tensor({4, 2}, 0, 16), {"data offset 16 is not a multiple of the alignment 32"});
  expect_error(one_tensor({4, 2}, 0, 0, 31),
               {"tensor 'blk.0.attn_q.weight'", "data range [", "ends past the end of the file (size"});
  expect_error(one_tensor({4, 2}, 0, ~0ull & ~31ull), {"ends past the end of the file"});
  expect_error(one_tensor({4, 2}, 0, 0, 32, ""), {"empty tensor name"});
  // Data section start beyond the end of the file.
  auto b = Raw().header(1, 0).tensor_info("t", {4}, 0, 0).b;
  expect_error(b, {"data section", "past the end of the file"});
}

TEST(Gguf, DuplicateAndOverlappingTensors) {
  expect_error(Raw().header(2, 0).tensor_info("a", {8}, 0, 0).tensor_info("a", {8}, 0, 32).pad().zeros(64).b,
               {"tensor 'a'", "duplicate tensor name"});
  expect_error(Raw().header(2, 0).tensor_info("a", {16}, 0, 0).tensor_info("b", {8}, 0, 32).pad().zeros(96).b,
               {"tensor 'b'", "overlaps tensor 'a'"});
  // Out-of-order offsets are fine as long as ranges are disjoint.
  auto buf = Raw().header(2, 0).tensor_info("a", {8}, 0, 32).tensor_info("b", {8}, 0, 0).pad().zeros(64).b;
  auto r = parse(buf);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(static_cast<const uint8_t*>(r->tensors()[0].tensor.data) - static_cast<const uint8_t*>(r->tensors()[1].tensor.data), 32);
}

TEST(Gguf, TypedGetterErrorsAndConversions) {
  Raw raw;
  raw.header(0, 7)
      .str("i32pos").u32(5).u32(7)
      .str("i32neg").u32(5).u32(static_cast<uint32_t>(-3))
      .str("u64big").u32(10).u64(1ull << 40)
      .str("f64").u32(12).u64(std::bit_cast<uint64_t>(0.5))
      .str("s").u32(8).str("text")
      .str("ai32").u32(9).u32(5).u64(2).u32(1).u32(2)
      .str("aneg").u32(9).u32(5).u64(1).u32(static_cast<uint32_t>(-1));
  auto r = parse(raw.b);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const GgufFile& f = *r;
  EXPECT_EQ(*f.get_u32("i32pos"), 7u);  // llama.cpp files store some u32 keys as i32
  EXPECT_EQ(*f.get_i64("i32pos"), 7);
  EXPECT_EQ(*f.get_u64("u64big"), 1ull << 40);
  EXPECT_EQ(*f.get_f32("f64"), 0.5f);
  EXPECT_EQ(*f.get_array<uint32_t>("ai32"), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(*f.get_array<int64_t>("aneg"), (std::vector<int64_t>{-1}));

  auto e1 = f.get_u32("i32neg");
  ASSERT_FALSE(e1.is_ok());
  EXPECT_EQ(e1.status().message(), "model.gguf: metadata key 'i32neg': value -3 (i32) does not fit in u32");
  auto e2 = f.get_u32("u64big");
  ASSERT_FALSE(e2.is_ok());
  EXPECT_NE(e2.status().message().find("1099511627776 (u64) does not fit in u32"), std::string::npos);
  auto e3 = f.get_u32("s");
  ASSERT_FALSE(e3.is_ok());
  EXPECT_EQ(e3.status().message(), "model.gguf: metadata key 's': expected u32, found string");
  EXPECT_EQ(e3.status().code(), util::ErrorCode::kInvalidArgument);
  auto e4 = f.get_string("missing");
  EXPECT_EQ(e4.status().code(), util::ErrorCode::kNotFound);
  EXPECT_NE(e4.status().message().find("'missing' not found"), std::string::npos);
  EXPECT_FALSE(f.get_f32("i32pos").is_ok());
  EXPECT_FALSE(f.get_bool("i32pos").is_ok());
  auto e5 = f.get_array<std::string_view>("ai32");
  ASSERT_FALSE(e5.is_ok());
  EXPECT_NE(e5.status().message().find("expected array of string, found array of i32"), std::string::npos);
  auto e6 = f.get_array<uint32_t>("aneg");
  ASSERT_FALSE(e6.is_ok());
  EXPECT_NE(e6.status().message().find("element 0: value -1 (i32) does not fit in u32"), std::string::npos);
  EXPECT_FALSE(f.get_array<uint32_t>("s").is_ok());
  EXPECT_EQ(*f.get_i8("i32neg"), -3);
  EXPECT_FALSE(f.get_u8("u64big").is_ok());

  EXPECT_EQ(*f.get_u32_or("absent", 11), 11u);
  EXPECT_EQ(*f.get_u32_or("i32pos", 11), 7u);
  EXPECT_FALSE(f.get_u32_or("s", 11).is_ok());
  EXPECT_EQ(*f.get_string_or("absent", "d"), "d");
  EXPECT_EQ(*f.get_f32_or("absent", 1.5f), 1.5f);
  EXPECT_EQ(*f.get_bool_or("absent", true), true);
}

TEST(Gguf, LargeStringArrayIsViewsIntoTheFile) {
  const int n = std::getenv("DFLASH_SANITIZED") ? 20000 : 150000;
  std::vector<std::string> toks;
  toks.reserve(n);
  for (int i = 0; i < n; ++i) toks.push_back("tok" + std::to_string(i));
  GgufWriter w;
  ASSERT_TRUE(w.set("tokenizer.ggml.tokens", GgufValue::array_strings(toks)).is_ok());
  auto bytes = *w.to_bytes();
  auto r = parse(bytes);
  ASSERT_TRUE(r.is_ok());
  const GgufValue* v = r->find("tokenizer.ggml.tokens");
  ASSERT_NE(v, nullptr);
  ASSERT_EQ(v->strings().size(), static_cast<size_t>(n));
  EXPECT_EQ(v->strings()[n - 1], "tok" + std::to_string(n - 1));
  // Zero copy: the view points into the buffer.
  const char* p = v->strings()[12345 % n].data();
  EXPECT_GE(reinterpret_cast<const uint8_t*>(p), bytes.data());
  EXPECT_LT(reinterpret_cast<const uint8_t*>(p), bytes.data() + bytes.size());
  EXPECT_EQ(v->to_string(3), "[\"tok0\", \"tok1\", \"tok2\", ... (" + std::to_string(n) + " items)]");
}

TEST(Gguf, OpenErrors) {
  auto r = GgufFile::open("/nonexistent/dir/model.gguf");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), util::ErrorCode::kNotFound);
  std::string path = temp_path("dflash-gguf-empty") + ".gguf";
  { std::ofstream(path, std::ios::binary); }
  auto e = GgufFile::open(path);
  ASSERT_FALSE(e.is_ok());
  EXPECT_NE(e.status().message().find(path + ": file is 0 bytes"), std::string::npos) << e.status().message();
  std::remove(path.c_str());
}

// Random byte flips of a valid file: must never crash (and any accepted file must be coherent).
TEST(Gguf, RandomCorruptionNeverCrashes) {
  Sample s;
  auto bytes = *s.w.to_bytes();
  std::mt19937 rng(42);
  const int iters = std::getenv("DFLASH_SANITIZED") ? 500 : 3000;
  for (int it = 0; it < iters; ++it) {
    auto b = bytes;
    int flips = 1 + rng() % 4;
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    auto r = parse(b);
    if (!r.is_ok()) {
      EXPECT_FALSE(r.status().message().empty());
      continue;
    }
    for (const auto& t : r->tensors()) {
      const uint8_t* p = static_cast<const uint8_t*>(t.tensor.data);
      EXPECT_GE(p, b.data());
      EXPECT_LE(p + t.nbytes, b.data() + b.size());
    }
  }
}

// Inputs that once crashed the fuzzer (or came close): each must give a clean error.
TEST(Gguf, FuzzRegressionInputs) {
  std::string dir = std::string(DFLASH_TEST_DATA_DIR) + "/gguf/regress";
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".md") continue;
    auto r = GgufFile::open(e.path().string());
    EXPECT_FALSE(r.is_ok()) << e.path();
    if (!r.is_ok()) {
      EXPECT_NE(r.status().message().find(e.path().string()), std::string::npos);
    }
    ++n;
  }
  EXPECT_GE(n, 1u);
}

}  // namespace
}  // namespace dflash::formats
