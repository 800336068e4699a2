// Persistent worker pool with a low-overhead parallel-for.
//
// Called several times per layer per token, so dispatch must cost microseconds: workers spin on an
// atomic generation counter for a short while before sleeping, and tasks are claimed with one
// atomic increment each. The calling thread takes part in the work.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace dflash::util {

class ThreadPool {
 public:
  // n_threads counts the caller: ThreadPool(1) runs everything inline.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // fn(task, thread_index) for every task in [0, n_tasks); returns when all are done.
  template <typename F>
  void parallel_for(int64_t n_tasks, F&& fn) {
    if (n_tasks <= 0) return;
    using Fn = std::remove_reference_t<F>;
    auto thunk = [](void* ctx, int64_t task, int tid) { (*static_cast<Fn*>(ctx))(task, tid); };
    run(n_tasks, thunk, const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Splits [0, n) into contiguous chunks of at least `grain` items, about one per thread
  // (or `chunks_per_thread` per thread for load balance): fn(begin, end, thread_index).
  template <typename F>
  void parallel_range(int64_t n, int64_t grain, F&& fn, int chunks_per_thread = 1) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t max_chunks = (n + grain - 1) / grain;
    int64_t chunks = std::min<int64_t>(max_chunks, int64_t(n_threads_) * chunks_per_thread);
    if (chunks <= 1) {
      fn(int64_t(0), n, 0);
      return;
    }
    int64_t per = (n + chunks - 1) / chunks;
    parallel_for(chunks, [&](int64_t c, int tid) {
      int64_t b = c * per, e = std::min(n, b + per);
      if (b < e) fn(b, e, tid);
    });
  }

  // Process-wide pool: DFLASH_THREADS, else the number of online CPUs.
  static ThreadPool& global();
  // Re-sizes the global pool (call before heavy use, e.g. from --threads).
  static void set_global_threads(int n);

 private:
  using Thunk = void (*)(void*, int64_t, int);
  void run(int64_t n_tasks, Thunk thunk, void* ctx);
  void worker_main(int tid);
  void work(int tid);

  int n_threads_;
  std::vector<std::thread> workers_;

  // Current job.
  Thunk thunk_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_tasks_ = 0;
  alignas(64) std::atomic<int64_t> next_task_{0};
  alignas(64) std::atomic<int> pending_workers_{0};
  alignas(64) std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
  std::mutex run_mu_;  // one job at a time
};

}  // namespace dflash::util
