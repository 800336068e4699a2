#include <cstdio>

#include <hwy/highway.h>
#include <hwy/targets.h>

#include "app/command.h"
#include "kernels/matmul_isa.h"
#include "util/thread_pool.h"

namespace dflash::app {

DFLASH_COMMAND(Command{"version", "Print the version and the SIMD paths this machine dispatches to",
                       [](CLI::App*) -> std::function<int()> {
                         return [] {
                           std::printf("dflash 0.1.0\n");
                           std::printf("quantised matmul: %s\n", kernels::matmul_isa_name(kernels::matmul_isa()));
                           // Highway orders targets best-first by bit value: the lowest set bit of
                           // compiled ∩ supported is what dynamic dispatch picks.
                           const int64_t avail = hwy::SupportedTargets() & HWY_TARGETS;
                           std::printf("float kernels (Highway): %s\n", avail ? hwy::TargetName(avail & -avail) : "none");
                           std::printf("threads: %d\n", util::ThreadPool::global().size());
                           return 0;
                         };
                       }});

}  // namespace dflash::app
