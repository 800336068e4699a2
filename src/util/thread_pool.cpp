#include "util/thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <memory>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DFLASH_PAUSE() _mm_pause()
#else
#define DFLASH_PAUSE() std::this_thread::yield()
#endif

#include "util/timer.h"

namespace dflash::util {
namespace {
// How long an idle worker spins before it sleeps. Token decode calls the pool back within a few
// microseconds, so spinning briefly avoids a futex wake-up per matmul.
constexpr int64_t kSpinNs = 200'000;
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker_main(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::work(int tid) {
  for (;;) {
    int64_t t = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (t >= n_tasks_) break;
    thunk_(ctx_, t, tid);
  }
}

void ThreadPool::run(int64_t n_tasks, Thunk thunk, void* ctx) {
  if (n_threads_ == 1 || n_tasks == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) thunk(ctx, t, 0);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mu_);
  thunk_ = thunk;
  ctx_ = ctx;
  n_tasks_ = n_tasks;
  next_task_.store(0, std::memory_order_relaxed);
  pending_workers_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    // The lock orders the generation bump against a worker that is about to sleep.
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  if (sleepers_.load(std::memory_order_acquire) > 0) cv_.notify_all();
  work(0);
  while (pending_workers_.load(std::memory_order_acquire) > 0) DFLASH_PAUSE();
}

void ThreadPool::worker_main(int tid) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    if (g == seen) {
      int64_t start = now_ns();
      int spins = 0;
      while ((g = generation_.load(std::memory_order_acquire)) == seen) {
        DFLASH_PAUSE();
        if (++spins % 64 == 0 && now_ns() - start > kSpinNs) {
          std::unique_lock<std::mutex> lk(mu_);
          sleepers_.fetch_add(1);
          cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
          sleepers_.fetch_sub(1);
          g = generation_.load(std::memory_order_acquire);
          break;
        }
      }
    }
    seen = g;
    if (stop_.load()) return;
    work(tid);
    pending_workers_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

namespace {
std::unique_ptr<ThreadPool> g_pool;
std::mutex g_pool_mu;

int default_threads() {
  if (const char* env = std::getenv("DFLASH_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}
}  // namespace

ThreadPool& ThreadPool::global() {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (!g_pool) g_pool = std::make_unique<ThreadPool>(default_threads());
  return *g_pool;
}

void ThreadPool::set_global_threads(int n) {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (n <= 0) n = default_threads();
  if (g_pool && g_pool->size() == n) return;
  g_pool = std::make_unique<ThreadPool>(n);
}

}  // namespace dflash::util
