// y = W·x for a batch of tokens. W is a weight tensor with ne = {in, out} (row r holds the
// in-weights of output r) in F32, F16, BF16, Q8_0, Q4_K, Q5_K or Q6_K; x is [n_tokens][in] f32
// row-major; y is [n_tokens][out] f32.
//
// Quantised weights: each token's x is quantised to 8-bit blocks (Q8_0 for Q8_0 weights, Q8_K for
// K-quants; kernels/quantize_act.h) and multiplied with integer dot products. For n_tokens > 1 each
// weight row is loaded once and used for all tokens (a batch of 16 costs far less than 16 GEMVs).
// Work is split over output rows on the pool. The quantised activations live in a thread-local
// buffer of the calling thread that grows to the largest size seen: no allocation in steady state.
//
// A token's result is bit-identical whatever the batch size, tiling or thread count (speculative
// verification of n tokens reproduces one-token decoding exactly). Do not call from inside a task
// running on the same pool (the pool runs one job at a time).
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace dflash::kernels {

// OK when matmul can take w: supported dtype, ne[0] a multiple of the block size, data present.
// Call once when binding weights; matmul itself only asserts these (aborting with a message).
util::Status matmul_check(const tensor::Tensor& w);

void matmul(const tensor::Tensor& w, const float* x, int64_t n_tokens, float* y,
            util::ThreadPool& pool);

// Rows [row_begin, row_end) of w viewed as a 2-D matrix of w.rows() rows; y is
// [n_tokens][row_end - row_begin].
void matmul_rows(const tensor::Tensor& w, int64_t row_begin, int64_t row_end, const float* x,
                 int64_t n_tokens, float* y, util::ThreadPool& pool);

// Expert e of a 3-D weight {in, out, n_expert}: y is [n_tokens][out].
void matmul_expert(const tensor::Tensor& w, int64_t expert, const float* x, int64_t n_tokens,
                   float* y, util::ThreadPool& pool);

// Weights re-laid out at load for this CPU's fastest kernel: the 16-row layout of Q8_0 (AVX2, VNNI, AMX
// machines) and of Q4_K/Q5_K/Q6_K (VNNI, AMX), or with DFLASH_AMX_Q8=1 the AMX Q8_0 tiles (each block's
// 16 × 32 tile and scales one contiguous 544-byte run). Results are bit-identical to the in-place kernel.
// The copy costs about the tensor's size in memory; the original stays the source for embedding rows, for
// kernels that read rows in place (AMX tiles for prefill chunks, per-row Q6_K decoding) and for the other
// ISAs. A matrix that decoding reads in place is itself copied out of the file mapping into huge pages.
class PackedWeights {
 public:
  PackedWeights() = default;
  PackedWeights(const PackedWeights&) = delete;
  PackedWeights& operator=(const PackedWeights&) = delete;
  ~PackedWeights();

  // Packs w (a 2-D matrix matmul_check accepts) when the selected kernel has a packed layout for
  // its dtype, and points w->packed at the copy; otherwise leaves w alone. Honours
  // DFLASH_NO_PREPACK=1 (A/B benchmarks). The copy lives as long as this object.
  // Also copies a matrix that decoding reads in place into the same huge-page memory (same bytes; w->data
  // then points at the copy), unless set_copy_in_place(false): weights already in anonymous memory
  // (`--no-mmap`) gain nothing from it.
  void add(tensor::Tensor* w);
  void set_copy_in_place(bool on) { copy_in_place_ = on; }
  size_t bytes() const { return bytes_; }  // re-laid out copies
  size_t count() const { return count_; }
  size_t copied_bytes() const { return copied_bytes_; }  // copies as they are
  size_t copied() const { return copied_; }

 private:
  // The copies live in a few large anonymous mappings with transparent huge pages requested: one
  // weight stream then crosses no 4 KiB page boundary, where the hardware prefetchers stop.
  struct Arena {
    uint8_t* base = nullptr;
    size_t size = 0, used = 0;
  };
  uint8_t* allocate(size_t n);
  std::vector<Arena> arenas_;
  size_t bytes_ = 0, count_ = 0, copied_bytes_ = 0, copied_ = 0;
  bool copy_in_place_ = true;
};

}  // namespace dflash::kernels
