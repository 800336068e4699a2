// DRAM read bandwidth probe: the bound on memory-bound decode (weight bytes per token ÷ bandwidth).
#pragma once

#include <cstddef>

namespace dflash::util {
class ThreadPool;
}

namespace dflash::kernels {

// Best of `reps` timed read-only passes over a `bytes` buffer (≥ 4× the L3 to measure DRAM), split
// over the pool's threads. Returns bytes per second.
double measure_read_bandwidth(util::ThreadPool& pool, size_t bytes = size_t(1) << 30, int reps = 3);

}  // namespace dflash::kernels
