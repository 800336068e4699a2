// Element types and the byte layout of quantised blocks. Block layouts are bit-compatible with the
// public GGUF (ggml) types: a file written by llama.cpp's tools reads here unchanged, and back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace dflash::tensor {

// Values are the GGUF/ggml type ids stored in the file.
enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

struct DTypeInfo {
  DType type;
  const char* name;    // "q4_K" as ggml spells it
  int64_t block_size;  // elements per block (1 for plain types)
  size_t type_size;    // bytes per block
  bool supported;      // the engine can compute with it (matmul / dequantize)
};

// Info for a type id read from a file; nullopt for ids we do not know at all.
std::optional<DTypeInfo> dtype_info(uint32_t id);
const DTypeInfo& info(DType t);  // for known enum values
inline const char* dtype_name(DType t) { return info(t).name; }
std::optional<DType> dtype_from_name(std::string_view name);  // case-insensitive "q8_0", "Q4_K"

// Bytes of a row of n elements; n must be a multiple of the block size.
inline size_t row_size(DType t, int64_t n) {
  const DTypeInfo& i = info(t);
  return static_cast<size_t>(n / i.block_size) * i.type_size;
}

constexpr int64_t kQK8_0 = 32;
constexpr int64_t kQK_K = 256;
constexpr int kKScaleSize = 12;

// All blocks are packed, little-endian, as in ggml.
struct BlockQ8_0 {
  uint16_t d;  // fp16 scale
  int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ4_K {
  uint16_t d;     // fp16 super-block scale for the 6-bit scales
  uint16_t dmin;  // fp16 super-block scale for the 6-bit mins
  uint8_t scales[kKScaleSize];  // 8 sub-blocks × (6-bit scale, 6-bit min), packed
  uint8_t qs[kQK_K / 2];        // 4-bit quants; byte l of 32-chunk j holds sub-blocks 2j (low), 2j+1 (high)
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];  // 5th bit
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];      // low 4 bits
  uint8_t qh[kQK_K / 4];      // high 2 bits
  int8_t scales[kQK_K / 16];  // 8-bit scales of 16 sub-blocks of 16
  uint16_t d;                 // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210);

// Activation format for K-quant dot products (never stored in model files by us).
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];  // sums of groups of 16 quants
};
static_assert(sizeof(BlockQ8_K) == 292);

// ---- scalar half / bfloat16 conversions (exact, round-to-nearest-even) ----
inline float fp32_from_bits(uint32_t w) {
  float f;
  std::memcpy(&f, &w, 4);
  return f;
}
inline uint32_t fp32_to_bits(float f) {
  uint32_t w;
  std::memcpy(&w, &f, 4);
  return w;
}

inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    if (mant == 0) return fp32_from_bits(sign);
    // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400) == 0);
    mant &= 0x3ff;
    return fp32_from_bits(sign | (uint32_t(127 - 15 - e) << 23) | (mant << 13));
  }
  if (exp == 0x1f) return fp32_from_bits(sign | 0x7f800000u | (mant << 13));
  return fp32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

inline uint16_t fp32_to_fp16(float f) {
  uint32_t x = fp32_to_bits(f);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffff;
  if (absx > 0x7f800000) return uint16_t(sign | 0x7e00);   // NaN
  if (absx >= 0x477ff000) return uint16_t(sign | 0x7c00);  // overflow → inf (incl. rounding)
  if (absx < 0x38800000) {                                  // subnormal or zero in fp16
    if (absx < 0x33000000) return uint16_t(sign);           // < 2^-25 rounds to 0
    uint32_t mant = (absx & 0x7fffff) | 0x800000;
    int shift = 126 - int(absx >> 23);  // 14 + (113 - exp)
    uint32_t r = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = absx + 0xfff + ((absx >> 13) & 1);  // round to nearest even
  return uint16_t(sign | ((r - 0x38000000) >> 13));
}

inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits(uint32_t(h) << 16); }
inline uint16_t fp32_to_bf16(float f) {
  uint32_t x = fp32_to_bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

}  // namespace dflash::tensor
