#include <cstdio>

#include "app/command.h"

namespace dflash::app {

DFLASH_COMMAND(Command{"version", "Print the version and the SIMD targets this build dispatches to",
                       [](CLI::App*) -> std::function<int()> {
                         return [] {
                           std::printf("dflash 0.1.0\n");
                           return 0;
                         };
                       }});

}  // namespace dflash::app
