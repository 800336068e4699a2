// Highway target selection for the op kernels: include first in every foreach_target.h unit.
// SSSE3/SSE4 are skipped to halve compile time (the baseline SSE2 build remains the fallback);
// AVX2 and AVX-512 are what these machines run.
#pragma once
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4)
#endif
