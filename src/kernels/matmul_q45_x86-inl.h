// Q4_K / Q5_K block decode shared by the AVX2 (matmul_x86.cpp) and AVX-512 VNNI (matmul_vnni.cpp)
// kernels, which differ only in the multiply-accumulate that follows. Include it inside the TU's
// target pragma region (after <immintrin.h>, inside an anonymous namespace): the functions then
// take that TU's target and inline into its kernels.
//
// Layout: sub-blocks a = 2·j2 (low nibbles of qs[32·j2 ..]) and b = 2·j2 + 1 (high nibbles) are
// returned as w0 = [a0..15 | b0..15], w1 = [a16..31 | b16..31] (128-bit lanes), matching
// activations interleaved the same way (interleave_q8_k). Each 128-bit lane then belongs to one
// sub-block, so one per-lane scale vector serves both products of the pair.
#pragma once

template <bool kQ5, class Block>
inline __attribute__((always_inline)) void decode_q45_pair(const Block& blk, int j2, __m256i m4,
                                                           __m256i qh, __m256i* w0, __m256i* w1) {
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * j2));
  __m256i lo = _mm256_and_si256(q, m4);
  __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
  if constexpr (kQ5) {
    // Fifth bits of sub-blocks 2·j2 / 2·j2+1 are bits 2·j2 / 2·j2+1 of qh: one shift brings both
    // to bits 0, 1 and a table lookup turns them into +16 (vector bit shifts are scarce on some
    // cores; shuffles are not).
    const __m256i t_lo = _mm256_setr_epi8(0, 16, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  //
                                          0, 16, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i t_hi = _mm256_setr_epi8(0, 0, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  //
                                          0, 0, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i h =
        _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j2)), _mm256_set1_epi8(3));
    lo = _mm256_or_si256(lo, _mm256_shuffle_epi8(t_lo, h));
    hi = _mm256_or_si256(hi, _mm256_shuffle_epi8(t_hi, h));
  }
  *w0 = _mm256_inserti128_si256(lo, _mm256_castsi256_si128(hi), 1);
  *w1 = _mm256_inserti128_si256(hi, _mm256_extracti128_si256(lo, 1), 0);
}

// vpshufb patterns that spread the scale bytes of pair j2 (a in the low, b in the high 128-bit
// lane) over lanes of kLaneBytes bytes: the scale in the lane's low byte, zeros above (int16
// scales for vpmaddwd with kLaneBytes = 2; int16 pairs [sc, 0] for vpdpwssd on int32 sums with 4).
template <int kLaneBytes>
struct PairScalePattern {
  alignas(32) int8_t pat[4][32];
  constexpr PairScalePattern() : pat{} {
    for (int j2 = 0; j2 < 4; ++j2)
      for (int i = 0; i < 32; ++i)
        pat[j2][i] = i % kLaneBytes == 0 ? int8_t(2 * j2 + i / 16) : int8_t(-128);
  }
};

// scb: the 8 unpacked 6-bit scales in the low 8 bytes of both 128-bit lanes.
template <int kLaneBytes>
inline __attribute__((always_inline)) __m256i pair_scales(__m256i scb, int j2) {
  static constexpr PairScalePattern<kLaneBytes> kPat;
  return _mm256_shuffle_epi8(scb,
                             _mm256_load_si256(reinterpret_cast<const __m256i*>(kPat.pat[j2])));
}
