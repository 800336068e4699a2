#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace dflash::util {
namespace {

TEST(ThreadPool, EveryTaskRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 7, 64, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      for (auto& h : hits) h = 0;
      pool.parallel_for(n, [&](int64_t t, int tid) {
        ASSERT_GE(tid, 0);
        ASSERT_LT(tid, threads);
        hits[t]++;
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, RangeCoversWithoutOverlap) {
  ThreadPool pool(3);
  for (int64_t n : {1, 5, 100, 1001}) {
    for (int64_t grain : {1, 8, 300}) {
      std::vector<int> hits(n, 0);
      std::atomic<int> chunks{0};
      pool.parallel_range(n, grain, [&](int64_t b, int64_t e, int) {
        chunks++;
        for (int64_t i = b; i < e; ++i) hits[i]++;  // disjoint ranges: no race
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1);
      EXPECT_LE(chunks.load(), (n + grain - 1) / grain);
    }
  }
}

TEST(ThreadPool, ManyBackToBackJobs) {
  // Stresses the generation hand-off: a lost wake-up or double run shows up as a wrong sum.
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int j = 0; j < 20000; ++j) pool.parallel_for(4, [&](int64_t t, int) { sum += t + 1; });
  EXPECT_EQ(sum.load(), 20000 * 10);
}

TEST(ThreadPool, SleepingWorkersWakeUp) {
  ThreadPool pool(2);
  std::atomic<int> n{0};
  pool.parallel_for(8, [&](int64_t, int) { n++; });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // past the spin window
  pool.parallel_for(8, [&](int64_t, int) { n++; });
  EXPECT_EQ(n.load(), 16);
}

}  // namespace
}  // namespace dflash::util
