#include "util/mmap_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>


namespace dflash::util {
namespace {

namespace fs = std::filesystem;

fs::path temp_file(const std::string& leaf, size_t n, uint32_t seed) {
  fs::path p = fs::temp_directory_path() / ("dflash_mmap_" + std::to_string(::getpid()) + "_" + leaf);
  std::mt19937 rng(seed);
  std::ofstream f(p, std::ios::binary);
  for (size_t i = 0; i < n; ++i) f.put(static_cast<char>(rng()));
  return p;
}

TEST(MappedFile, ReadModeHoldsTheSameBytesAsTheMapping) {
  // Sizes around the 2 MiB rounding of the huge-page buffer, and an empty file.
  for (size_t n : {size_t(0), size_t(1), size_t(4097), (size_t(2) << 20) - 1, (size_t(2) << 20) + 3}) {
    SCOPED_TRACE(n);
    fs::path p = temp_file("bytes", n, static_cast<uint32_t>(n));
    auto m = MappedFile::open(p.string(), LoadMode::kMmap);
    auto r = MappedFile::open(p.string(), LoadMode::kRead);
    ASSERT_TRUE(m.is_ok() && r.is_ok());
    EXPECT_EQ((*r)->mode(), LoadMode::kRead);
    ASSERT_EQ((*m)->size(), n);
    ASSERT_EQ((*r)->size(), n);
    if (n) {
      EXPECT_EQ(std::memcmp((*m)->data(), (*r)->data(), n), 0);
    }
    fs::remove(p);
  }
}

TEST(MappedFile, ReadModeErrorsNameTheFile) {
  auto r = MappedFile::open("/nonexistent/dflash/model.gguf", LoadMode::kRead);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("/nonexistent/dflash/model.gguf"), std::string::npos);
  auto d = MappedFile::open(fs::temp_directory_path().string(), LoadMode::kRead);
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("not a regular file"), std::string::npos);
}

}  // namespace
}  // namespace dflash::util
