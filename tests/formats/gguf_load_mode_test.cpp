#include <gtest/gtest.h>

#include <cstring>

#include "formats/gguf.h"

namespace dflash::formats {
namespace {

using util::LoadMode;

TEST(GgufLoadMode, ReadModeGivesTheSameTensorsAsTheMapping) {
  const std::string path = std::string(DFLASH_TEST_DATA_DIR) + "/gguf/qwen35-dense-a.gguf";
  auto a = GgufFile::open(path);
  auto b = GgufFile::open(path, LoadMode::kRead);
  ASSERT_TRUE(a.is_ok() && b.is_ok()) << b.status().to_string();
  ASSERT_EQ(a->tensors().size(), b->tensors().size());
  for (size_t i = 0; i < a->tensors().size(); ++i) {
    const auto& x = a->tensors()[i];
    const auto& y = b->tensors()[i];
    ASSERT_EQ(x.nbytes, y.nbytes);
    EXPECT_EQ(std::memcmp(x.tensor.data, y.tensor.data, x.nbytes), 0) << x.tensor.name;
  }
}

}  // namespace
}  // namespace dflash::formats
