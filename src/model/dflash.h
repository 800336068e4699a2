// The DFlash block-diffusion drafter (dflash.md "Drafter architecture"): a small Qwen3 decoder
// stack whose keys/values see the target's context features. It reads both public GGUF dialects:
//   - upstream llama.cpp's `dflash`: fc, enc.output_norm, dflash.target_layers, ffn_norm;
//   - the fork's `dflash-draft`: dflash_fc, dflash_hidden_norm, dflash-draft.dflash.*,
//     post_attention_norm (the published Qwen3.5-27B Q4_K_M drafter).
// Embedding and LM head are the target's unless the drafter file carries its own.
//
// State: per layer, the K/V of every committed context token (fc + hidden_norm of its features,
// then that layer's k_proj/k_norm/RoPE and v_proj). It grows with the context, doubling its
// capacity — never a fixed ring that wraps. A draft appends the block's K/V after the context as
// scratch and drops it afterwards.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "spec/model_api.h"
#include "tensor/tensor.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace dflash::model {

class Qwen35;

struct DFlashConfig {
  std::string arch;  // "dflash" or "dflash-draft"
  int64_t n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0;
  float rope_theta = 0.0f;
  float rms_eps = 1e-6f;
  int block_size = 16;
  int32_t mask_token_id = -1;
  std::vector<int> target_layer_ids;  // HF convention: output of target layer id (hidden_states[id+1])
  int64_t n_target_features = 0;      // len(target_layer_ids) · target hidden size
  int64_t sliding_window = 0;         // 0: none
  std::vector<bool> swa_layers;       // per layer: causal sliding-window attention
  float output_multiplier = 1.0f;
  float logit_softcap = 0.0f;
  float input_embedding_scale = 1.0f;

  static util::Result<DFlashConfig> from_gguf(const formats::GgufFile& f);
};

struct DFlashOptions {
  int64_t n_ctx = 4096;   // initial context capacity (grows as needed)
  int64_t n_batch = 128;  // context tokens projected per chunk
};

class DFlashDrafter final : public spec::Drafter {
 public:
  // `target` lends its token embedding and LM head (and must outlive the drafter).
  static util::Result<std::unique_ptr<DFlashDrafter>> load(std::shared_ptr<const formats::GgufFile> file,
                                                           const Qwen35& target, const DFlashOptions& opts,
                                                           util::ThreadPool* pool = nullptr);
  // Same, with the embedding and head given explicitly (tests, other targets).
  static util::Result<std::unique_ptr<DFlashDrafter>> load(std::shared_ptr<const formats::GgufFile> file,
                                                           const tensor::Tensor& token_embd,
                                                           const tensor::Tensor& output_head,
                                                           const DFlashOptions& opts,
                                                           util::ThreadPool* pool = nullptr);
  ~DFlashDrafter() override;

  const DFlashConfig& config() const { return cfg_; }

  // spec::Drafter
  int block_size() const override { return cfg_.block_size; }
  int64_t n_vocab() const override { return n_vocab_; }
  util::Status add_context(const float* features, int64_t n) override;
  int64_t n_context() const override { return n_ctx_; }
  util::Status draft(int32_t last_token, int n_draft) override;
  const float* logits(int i) const override;
  void reset() override { n_ctx_ = 0; }

  // Final normed hidden state of block row i of the last draft (tests).
  const float* hidden(int i) const;
  // Current K/V capacity in tokens (tests: growth past the initial size).
  int64_t capacity() const { return cap_; }

  struct Impl;

 private:
  DFlashDrafter() = default;
  util::Status ensure_capacity(int64_t tokens);
  DFlashConfig cfg_;
  DFlashOptions opts_;
  int64_t n_vocab_ = 0;
  int64_t n_ctx_ = 0;
  int64_t cap_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dflash::model
