#include "kernels/bandwidth.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "util/thread_pool.h"
#include "util/timer.h"

namespace dflash::kernels {

double measure_read_bandwidth(util::ThreadPool& pool, size_t bytes, int reps) {
  const size_t n = bytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[n]);
  // Touch every page from the threads that will read it (first-touch placement), with values the
  // compiler cannot fold away.
  pool.parallel_range(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) buf[static_cast<size_t>(i)] = static_cast<uint64_t>(i) * 2654435761u;
  });
  std::vector<uint64_t> sums(static_cast<size_t>(pool.size()) * 8, 0);
  double best = 0.0;
  for (int r = 0; r < reps; ++r) {
    util::Timer t;
    pool.parallel_range(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e, int tid) {
      // Four independent accumulators keep the loads in flight.
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t i = b;
      for (; i + 4 <= e; i += 4) {
        s0 += buf[static_cast<size_t>(i)];
        s1 += buf[static_cast<size_t>(i + 1)];
        s2 += buf[static_cast<size_t>(i + 2)];
        s3 += buf[static_cast<size_t>(i + 3)];
      }
      for (; i < e; ++i) s0 += buf[static_cast<size_t>(i)];
      sums[static_cast<size_t>(tid) * 8] += s0 + s1 + s2 + s3;
    });
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / t.seconds());
  }
  // Keep the sums observable.
  volatile uint64_t sink = 0;
  for (uint64_t s : sums) sink = sink + s;
  (void)sink;
  return best;
}

}  // namespace dflash::kernels
