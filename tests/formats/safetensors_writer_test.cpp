// The safetensors writer, checked through our reader (round trip), on the bytes of the header (order,
// padding, offsets) and on its failure behaviour (atomic output, errors that name the tensor).
#include "formats/safetensors_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "formats/safetensors.h"

namespace dflash::formats {
namespace {

namespace fs = std::filesystem;
using tensor::DType;

std::vector<uint8_t> pattern(size_t n, int seed) {
  std::vector<uint8_t> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<uint8_t>(i * 31 + seed * 7 + 3);
  return d;
}

std::string tmp_path(const std::string& leaf) {
  return (fs::temp_directory_path() / ("dflash-stw-" + std::to_string(getpid()) + "-" + leaf)).string();
}

TEST(SafetensorsWriter, RoundTripThroughTheReader) {
  // Mixed dtypes and shapes: 2-D, 1-D, 0-d (scalar), a zero-sized dim, 4-D.
  auto w_bf16 = pattern(2 * 3 * 2, 1);
  auto b_f32 = pattern(5 * 4, 2);
  auto s_f16 = pattern(2, 3);
  auto big = pattern(2 * 3 * 4 * 5 * 4, 4);
  SafetensorsWriter w;
  ASSERT_TRUE(w.set_metadata("format", "pt").is_ok());
  ASSERT_TRUE(w.add_tensor("layers.0.w", DType::kBF16, {2, 3}, w_bf16.data()).is_ok());
  ASSERT_TRUE(w.add_tensor("Bias", DType::kF32, {5}, b_f32.data()).is_ok());
  ASSERT_TRUE(w.add_tensor("scalar", DType::kF16, {}, s_f16.data()).is_ok());
  ASSERT_TRUE(w.add_tensor("empty", DType::kF32, {0, 7}, b_f32.data()).is_ok());
  ASSERT_TRUE(w.add_tensor("four_d", DType::kF32, {2, 3, 4, 5},
                           [&](uint8_t* dst, size_t n) {
                             EXPECT_EQ(n, big.size());
                             std::memcpy(dst, big.data(), n);
                             return util::Status::ok();
                           })
                  .is_ok());
  auto bytes = w.to_bytes();
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  EXPECT_EQ(bytes->size(), w.file_size());

  auto f = SafetensorsFile::from_memory(bytes->data(), bytes->size(), "rt.safetensors");
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->tensors().size(), 5u);
  struct Want {
    const char* name;
    DType dtype;
    std::vector<int64_t> shape;
    const std::vector<uint8_t>* data;
  };
  std::vector<uint8_t> none;
  for (const Want& x : {Want{"layers.0.w", DType::kBF16, {2, 3}, &w_bf16}, Want{"Bias", DType::kF32, {5}, &b_f32},
                        Want{"scalar", DType::kF16, {}, &s_f16}, Want{"empty", DType::kF32, {0, 7}, &none},
                        Want{"four_d", DType::kF32, {2, 3, 4, 5}, &big}}) {
    SCOPED_TRACE(x.name);
    const SafetensorsTensor* t = f->find(x.name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, x.dtype);
    EXPECT_EQ(t->shape, x.shape);
    ASSERT_EQ(t->nbytes, x.data->size());
    if (t->nbytes) {
      EXPECT_EQ(std::memcmp(t->data, x.data->data(), t->nbytes), 0);
    }
    // Every tensor starts aligned to its element size (F32 first, then the 2-byte types).
    EXPECT_EQ((f->data_offset() + t->offset) % tensor::info(x.dtype).type_size, 0u);
  }
}

TEST(SafetensorsWriter, HeaderIsSortedPaddedAndGapless) {
  auto a = pattern(6, 1), b = pattern(8, 2), c = pattern(4, 3);
  SafetensorsWriter w;
  ASSERT_TRUE(w.set_metadata("format", "pt").is_ok());
  ASSERT_TRUE(w.add_tensor("zeta", DType::kF16, {3}, a.data()).is_ok());
  ASSERT_TRUE(w.add_tensor("Alpha", DType::kF32, {2}, b.data()).is_ok());
  ASSERT_TRUE(w.add_tensor("mid", DType::kBF16, {2}, c.data()).is_ok());
  auto bytes = w.to_bytes();
  ASSERT_TRUE(bytes.is_ok());
  uint64_t n = 0;
  std::memcpy(&n, bytes->data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u) << "data section must start 8-byte aligned";
  std::string h(reinterpret_cast<const char*>(bytes->data() + 8), n);
  ASSERT_EQ(h.rfind("{\"__metadata__\":{\"format\":\"pt\"},\"Alpha\":", 0), 0u) << h;
  EXPECT_LT(h.find("\"Alpha\""), h.find("\"mid\""));
  EXPECT_LT(h.find("\"mid\""), h.find("\"zeta\""));
  EXPECT_EQ(h.find_last_not_of(' '), h.rfind('}')) << "only spaces may follow the JSON";
  // Data: F32 first (Alpha 0..8), then the 2-byte tensors by name (mid 8..12, zeta 12..18), no gaps.
  auto j = nlohmann::json::parse(h);
  EXPECT_EQ(j["Alpha"]["data_offsets"], nlohmann::json({0, 8}));
  EXPECT_EQ(j["mid"]["data_offsets"], nlohmann::json({8, 12}));
  EXPECT_EQ(j["zeta"]["data_offsets"], nlohmann::json({12, 18}));
  EXPECT_EQ(bytes->size(), 8 + n + 18);
}

TEST(SafetensorsWriter, RejectsBadTensors) {
  float x[4] = {};
  SafetensorsWriter w;
  ASSERT_TRUE(w.add_tensor("a", DType::kF32, {4}, x).is_ok());
  auto expect_err = [](const util::Status& st, const char* frag) {
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find(frag), std::string::npos) << st.message();
  };
  expect_err(w.add_tensor("a", DType::kF32, {4}, x), "duplicate tensor name 'a'");
  expect_err(w.add_tensor("", DType::kF32, {4}, x), "empty tensor name");
  expect_err(w.add_tensor("__metadata__", DType::kF32, {4}, x), "reserved");
  expect_err(w.add_tensor("q", DType::kQ8_0, {32}, x), "tensor 'q': dtype q8_0 cannot be stored");
  expect_err(w.add_tensor("neg", DType::kF32, {2, -1}, x), "negative dimension -1");
  expect_err(w.add_tensor("huge", DType::kF32, {1ll << 40, 1ll << 40}, x), "overflows");
  expect_err(w.add_tensor("null", DType::kF32, {4}, static_cast<const void*>(nullptr)), "null data");
  expect_err(w.set_metadata("", "v"), "empty __metadata__ key");
  EXPECT_EQ(w.n_tensors(), 1u);
}

TEST(SafetensorsWriter, AtomicFileOutput) {
  const std::string path = tmp_path("atomic.safetensors");
  fs::remove(path);
  float x[3] = {1.0f, -2.0f, 0.5f};
  SafetensorsWriter w;
  ASSERT_TRUE(w.add_tensor("x", DType::kF32, {3}, x).is_ok());
  ASSERT_TRUE(w.write(path, false).is_ok());
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ(std::memcmp(f->find("x")->data, x, sizeof x), 0);

  // An existing file is kept unless overwrite.
  util::Status st = w.write(path, false);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find(path + ": already exists (pass --force to overwrite)"), std::string::npos);

  // A failing producer leaves neither a half-written file nor a temp file behind.
  const std::string path2 = tmp_path("failed.safetensors");
  fs::remove(path2);
  SafetensorsWriter bad;
  ASSERT_TRUE(bad.add_tensor("ok", DType::kF32, {3}, x).is_ok());
  ASSERT_TRUE(bad.add_tensor("boom", DType::kF32, {3},
                             [](uint8_t*, size_t) { return util::corrupt("in.gguf: cannot decode"); })
                  .is_ok());
  st = bad.write(path2, false);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("producing tensor 'boom'"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(path2));
  for (const auto& e : fs::directory_iterator(fs::path(path2).parent_path()))
    EXPECT_EQ(e.path().filename().string().rfind(fs::path(path2).filename().string() + ".tmp", 0), std::string::npos)
        << "temp file left: " << e.path();
  ASSERT_TRUE(bad.write("/nonexistent-dir/x.safetensors", false).message().find("/nonexistent-dir/x.safetensors") !=
              std::string::npos);
  fs::remove(path);
}

}  // namespace
}  // namespace dflash::formats
