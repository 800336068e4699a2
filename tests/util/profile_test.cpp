#include "util/profile.h"

#include <gtest/gtest.h>

#include <thread>

namespace dflash::util::profile {
namespace {

const Entry* find(const std::vector<Entry>& es, const std::string& label, int64_t tokens) {
  for (const Entry& e : es)
    if (e.label == label && e.tokens == tokens) return &e;
  return nullptr;
}

class ProfileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    was_ = enabled();
    set_enabled(true);
    reset();
  }
  void TearDown() override {
    reset();
    set_enabled(was_);
  }
  bool was_ = false;
};

TEST_F(ProfileTest, DisabledRecordsNothing) {
  set_enabled(false);
  { Scope s("op", 3); }
  EXPECT_TRUE(entries().empty());
  EXPECT_EQ(report(), "");
}

TEST_F(ProfileTest, ScopesTakeTheEnvelopesTokenCountAndPrefix) {
  {
    Envelope round("[round]", 4);
    { Scope s("matmul"); }
    { Scope s("matmul"); }
    {
      Envelope draft("[draft]", -1, "draft/");
      Scope s("matmul");
    }
    { Scope s("prefill op", 512); }
  }
  { Scope s("matmul"); }  // outside any envelope: the thread's default count, 0
  const std::vector<Entry> es = entries();
  const Entry* m4 = find(es, "matmul", 4);
  ASSERT_NE(m4, nullptr);
  EXPECT_EQ(m4->calls, 2);
  ASSERT_NE(find(es, "draft/matmul", 4), nullptr);
  ASSERT_NE(find(es, "[draft]", 4), nullptr);  // the envelope itself is recorded under the outer prefix
  ASSERT_NE(find(es, "[round]", 4), nullptr);
  ASSERT_NE(find(es, "prefill op", 512), nullptr);
  ASSERT_NE(find(es, "matmul", 0), nullptr);
  EXPECT_EQ(find(es, "draft/matmul", 0), nullptr);  // the prefix ended with its envelope
}

TEST_F(ProfileTest, TimesAreWallClockAndEnvelopesAreNotSummedWithLeaves) {
  {
    Envelope fw("[forward]", 2);
    Scope s("sleep");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::vector<Entry> es = entries();
  const Entry* leaf = find(es, "sleep", 2);
  const Entry* env = find(es, "[forward]", 2);
  ASSERT_NE(leaf, nullptr);
  ASSERT_NE(env, nullptr);
  EXPECT_GE(leaf->ns, 20'000'000);
  EXPECT_GE(env->ns, leaf->ns);
  const std::string r = report();
  EXPECT_NE(r.find("calls with 2 tokens"), std::string::npos) << r;
  // The leaf is the whole of the summed time; the envelope has no share of its own.
  EXPECT_NE(r.find("100.0%"), std::string::npos) << r;
  EXPECT_NE(r.find("[forward]"), std::string::npos) << r;
  EXPECT_NE(r.find("0.0%"), std::string::npos) << r;
}

TEST_F(ProfileTest, StopEndsAScopeOnce) {
  Scope s("once", 1);
  s.stop();
  s.stop();
  const std::vector<Entry> es = entries();
  ASSERT_NE(find(es, "once", 1), nullptr);
  EXPECT_EQ(find(es, "once", 1)->calls, 1);
}

TEST_F(ProfileTest, ThreadsRecordIntoOneTable) {
  std::thread a([] {
    for (int i = 0; i < 100; ++i) Scope s("t", 1);
  });
  std::thread b([] {
    for (int i = 0; i < 100; ++i) Scope s("t", 1);
  });
  a.join();
  b.join();
  const std::vector<Entry> es = entries();
  const Entry* e = find(es, "t", 1);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->calls, 200);
}

}  // namespace
}  // namespace dflash::util::profile
