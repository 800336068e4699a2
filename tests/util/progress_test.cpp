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


// A resumed job: the 900 units of an earlier run count as progress, not as this run's speed (no
// work yet in this run: rate 0, where counting the resumed units gave millions per second).
TEST(Progress, ResumedWorkDoesNotInflateTheRate) {
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    Progress p("gen-data", 1000, "seq", f, /*interval_s=*/0.0);
    p.resume_at(900);
    p.update(900);
    p.cancel();
  }
  const std::string s = contents(f);
  EXPECT_NE(s.find("900/1000 (90.0%) 0.0 seq/s"), std::string::npos) << s;
  std::fclose(f);
}

}  // namespace
}  // namespace dflash::util
