// Instruction-set selection for the matmul kernels (internal to kernels/, exposed for tests/bench).
#pragma once

#include <string_view>

namespace dflash::kernels {

enum class MatmulIsa {
  kScalar,      // portable C++ (always available)
  kAvx2,        // AVX2 + FMA + F16C integer/float paths
  kAvx512Vnni,  // AVX-512 BW/VL + VNNI integer dot products (selected only when the CPU has them)
  kAmx,         // VNNI plus Intel AMX tiles for Q8_0 weights (CPU has AMX-INT8 and the OS allows it)
};

// Best ISA the running CPU supports (cached runtime CPU detection).
MatmulIsa matmul_best_isa();
// ISA the kernels currently use; defaults to matmul_best_isa(). Tests force kScalar to cover the
// portable path. Requests above what the CPU supports are clamped to matmul_best_isa().
MatmulIsa matmul_isa();
void set_matmul_isa(MatmulIsa isa);
const char* matmul_isa_name(MatmulIsa isa);
// Names DFLASH_MATMUL_ISA accepts: scalar, avx2, avx512vnni (also avx512, vnni), amx. False if unknown.
bool parse_matmul_isa(std::string_view name, MatmulIsa* isa);

}  // namespace dflash::kernels
