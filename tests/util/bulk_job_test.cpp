#include "util/bulk_job.h"

#include <gtest/gtest.h>

#include <atomic>

namespace dflash::util {
namespace {

TEST(BulkJob, ThreadsOptionGivesAPrivatePoolOfThatSize) {
  const int global_size = ThreadPool::global().size();
  BulkJob job(3, false, "quantize", 100, "B");
  EXPECT_NE(&job.pool(), &ThreadPool::global());
  EXPECT_EQ(job.pool().size(), 3);
  std::atomic<int> hits{0};
  job.pool().parallel_for(10, [&](int64_t, int) { hits++; });
  EXPECT_EQ(hits.load(), 10);
  EXPECT_EQ(ThreadPool::global().size(), global_size);  // the process-wide pool is left alone
}

TEST(BulkJob, NoThreadsOptionUsesTheGlobalPool) {
  for (int threads : {0, -1}) {
    BulkJob job(threads, false, "export-hf", 100, "B");
    EXPECT_EQ(&job.pool(), &ThreadPool::global());
  }
}

TEST(BulkJob, ProgressBarOnlyWhenAsked) {
  BulkJob quiet(0, false, "quantize", 100, "B");
  EXPECT_EQ(quiet.progress(), nullptr);
  quiet.cancel();  // no bar: both are no-ops
  quiet.finish("out.gguf");
  BulkJob shown(0, true, "quantize", 100, "B");
  ASSERT_NE(shown.progress(), nullptr);
  shown.progress()->add(100);
  shown.cancel();
}

}  // namespace
}  // namespace dflash::util
