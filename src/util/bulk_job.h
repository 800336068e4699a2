// Setup shared by the long file-to-file commands (quantize, export-hf): the worker pool chosen by
// --threads and the optional progress bar.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "util/progress.h"
#include "util/thread_pool.h"

namespace dflash::util {

class BulkJob {
 public:
  // threads > 0: a private pool of that many threads, so the process-wide pool keeps its size for
  // everything else; otherwise the process-wide pool. show_progress: a bar `label` over `total` `unit`.
  BulkJob(int threads, bool show_progress, std::string label, uint64_t total, std::string unit)
      : own_(threads > 0 ? std::make_unique<ThreadPool>(threads) : nullptr),
        progress_(show_progress ? std::make_unique<Progress>(std::move(label), total, std::move(unit)) : nullptr) {}

  ThreadPool& pool() { return own_ ? *own_ : ThreadPool::global(); }
  Progress* progress() { return progress_.get(); }  // nullptr without a bar
  // The work failed: end the bar without claiming completion.
  void cancel() {
    if (progress_) progress_->cancel();
  }
  void finish(const std::string& detail) {
    if (progress_) progress_->finish(detail);
  }

 private:
  std::unique_ptr<ThreadPool> own_;
  std::unique_ptr<Progress> progress_;
};

}  // namespace dflash::util
