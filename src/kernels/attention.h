// Attention of a batch of queries over a KV cache (f32), GQA, arbitrary mask, online softmax.
//
// KV layout. The view takes explicit strides so any layout works, but the intended one is
// head-major: K[kv_head][capacity][head_dim] (token_stride = head_dim, head_stride =
// capacity·head_dim), same for V. Why: a task works on one kv head and streams its keys, so every
// K/V row it reads is contiguous with the next (hardware prefetch, whole cache lines, no
// stride over the other heads); appending a token writes n_kv_head rows; rollback is a length change.
// Token-major [token][kv_head][head_dim] (token_stride = n_kv_head·head_dim) also works.
//
// Work split: all query heads that share a kv head, for a tile of queries, form one task, so every
// K/V row loaded from memory serves r·tile query rows (r = n_head/n_kv_head); with few tasks and a
// long cache the key range is also split across threads (flash-decoding) and partial softmax states
// are merged. Scores are processed in tiles of keys: s = q·k·scale, running max m, running sum l,
// acc rescaled by exp(m_old − m_new) once per tile.
#pragma once

#include <cstdint>

namespace dflash::util {
class ThreadPool;
}

namespace dflash::kernels {

struct KvView {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t n_tokens = 0;   // keys 0..n_tokens-1; key j is at absolute position j
  int64_t n_kv_head = 0;
  int64_t head_dim = 0;
  int64_t token_stride = 0;  // elements between key j and j+1 of one head
  int64_t head_stride = 0;   // elements between kv head g and g+1
};

enum class MaskKind {
  kNone,      // every query sees every key (DFlash drafter block: context + whole block)
  kCausal,    // query i at position q_pos0+i sees keys at positions ≤ q_pos0+i (optionally windowed)
  kBool,      // allowed[i*mask_stride + j] != 0 ⇒ query i sees key j
  kAdditive,  // bias[i*mask_stride + j] is added to the scaled score (−inf masks)
};

struct AttnMask {
  MaskKind kind = MaskKind::kNone;
  int64_t q_pos0 = 0;   // kCausal: absolute position of query 0
  int64_t window = 0;   // kCausal: if > 0, additionally key position > query position − window
  const uint8_t* allowed = nullptr;
  const float* bias = nullptr;
  int64_t mask_stride = 0;
};

struct AttnArgs {
  const float* q = nullptr;     // query i, head h at q + i*q_token_stride + h*q_head_stride
  int64_t n_q = 0;
  int64_t n_head = 0;
  int64_t q_token_stride = 0;
  int64_t q_head_stride = 0;
  float* out = nullptr;          // out + i*out_token_stride + h*head_dim (head_dim floats)
  int64_t out_token_stride = 0;
  float scale = 1.0f;            // usually head_dim^-0.5
};

// Query head h uses kv head h / (n_head / n_kv_head). A query row with no visible key outputs 0.
// Uses per-thread scratch that grows on first use (no allocation in steady state).
void attention(const AttnArgs& a, const KvView& kv, const AttnMask& mask,
               util::ThreadPool* pool = nullptr);

}  // namespace dflash::kernels
