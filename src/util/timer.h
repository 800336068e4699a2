// Monotonic wall-clock timing.
#pragma once

#include <chrono>
#include <cstdint>

namespace dflash::util {

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Timer {
 public:
  Timer() : start_(now_ns()) {}
  void reset() { start_ = now_ns(); }
  double seconds() const { return (now_ns() - start_) * 1e-9; }
  double ms() const { return (now_ns() - start_) * 1e-6; }
  double us() const { return (now_ns() - start_) * 1e-3; }

 private:
  int64_t start_;
};

}  // namespace dflash::util
