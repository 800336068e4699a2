// Progress::cancel: a failed run must not end with a "100%" line.
#include "util/progress.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace dflash::util {
namespace {

std::string contents(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[256];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

TEST(Progress, CancelEndsTheLineWithoutClaimingCompletion) {
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    Progress p("quantize", 1000, "B", f);
    p.set_tty(true);
    p.update(250, "blk.0");
    p.cancel();
  }  // the destructor must not draw a final line after cancel()
  const std::string s = contents(f);
  EXPECT_NE(s.find(" 25.0%"), std::string::npos) << s;
  EXPECT_EQ(s.find("100.0%"), std::string::npos) << s;
  EXPECT_EQ(s.back(), '\n') << "the terminal line is terminated";
  std::fclose(f);

  FILE* g = std::tmpfile();
  { Progress p("quantize", 1000, "B", g); }  // finished normally (destructor): 100%
  EXPECT_NE(contents(g).find("1000/1000 (100.0%)"), std::string::npos) << contents(g);
  std::fclose(g);
}

}  // namespace
}  // namespace dflash::util
