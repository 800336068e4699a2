// The Qwen3.5 hybrid target (GGUF architectures `qwen35` and `qwen35moe`): Gated DeltaNet layers
// (recurrent state) interleaved with gated full-attention layers (KV cache), dense SwiGLU or MoE
// FFNs. One forward serves prefill, one-token decode and block verify; it can capture the residual
// stream after chosen layers (the DFlash drafter's context features).
//
// Weight conventions are the GGUF ones (../shared/reference/llamacpp.md §B): zero-centred norms
// already have +1 folded in, ssm_a = −exp(A_log), value heads in tiled order (value head j reads
// key head j mod Hk).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "spec/model_api.h"
#include "tensor/tensor.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace dflash::model {

struct Qwen35Config {
  std::string arch;  // "qwen35" or "qwen35moe"
  int64_t n_vocab = 0, n_embd = 0, n_layer = 0, n_ctx_train = 0;
  int64_t n_ff = 0;  // dense FFN width
  // gated attention
  int64_t n_head = 0, n_head_kv = 0, head_dim = 0, n_rot = 0;
  float rope_theta = 1e7f;
  float rms_eps = 1e-6f;
  // Gated DeltaNet
  int64_t conv_kernel = 4;   // d_conv
  int64_t ssm_d_state = 0;   // Dk = Dv
  int64_t ssm_n_k_heads = 0; // Hk (group_count)
  int64_t ssm_n_v_heads = 0; // Hv (time_step_rank)
  int64_t ssm_d_inner = 0;   // Hv·Dv
  std::vector<bool> is_recurrent;  // per layer
  // MoE
  int64_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0, n_ff_shexp = 0;

  int64_t key_dim() const { return ssm_n_k_heads * ssm_d_state; }
  int64_t head_v_dim() const { return ssm_d_inner / ssm_n_v_heads; }
  int64_t conv_dim() const { return 2 * key_dim() + ssm_d_inner; }
  bool moe() const { return n_expert > 0; }

  static util::Result<Qwen35Config> from_gguf(const formats::GgufFile& f);
};

struct Qwen35Options {
  int64_t n_ctx = 4096;        // context size (KV cache length)
  int64_t n_batch = 128;       // tokens per forward chunk (prefill is split into these)
  int64_t max_verify = 64;     // largest block a checkpointed forward may feed
  // Prefill delta rule: 0 = the recurrent form (on a CPU it is as fast as the chunked WY form at
  // Dk = Dv = 128, and makes a prefill bitwise equal to token-by-token decoding); > 0 = chunked form
  // with this chunk size (transformers' algorithm).
  int delta_chunk = 0;
  std::vector<int> capture_layers;  // layer ids whose output is captured as features
  bool keep_intermediate_states = false;  // rollback oracle: store every per-token state
  // Independent sequences the model holds state for (each with its own KV cache and recurrent
  // state): forward_batch advances several by one token in one pass, sharing every weight read.
  int n_seq = 1;
  // A checkpointed forward (a verify block) computes its LM head rows when logits(i) asks for them
  // (see set_logits_hint); false: with the forward, as every other forward does.
  bool lazy_verify_head = true;
};

class Qwen35 final : public spec::TargetModel {
 public:
  // `file` must outlive the model (weights are views into its mapping).
  static util::Result<std::unique_ptr<Qwen35>> load(std::shared_ptr<const formats::GgufFile> file,
                                                    const Qwen35Options& opts,
                                                    util::ThreadPool* pool = nullptr);
  ~Qwen35() override;

  const Qwen35Config& config() const { return cfg_; }
  const Qwen35Options& options() const { return opts_; }

  // spec::TargetModel
  int64_t n_vocab() const override { return cfg_.n_vocab; }
  int64_t n_ctx() const override { return opts_.n_ctx; }
  int64_t n_past() const override { return n_past_; }
  int64_t feature_dim() const override {
    return static_cast<int64_t>(opts_.capture_layers.size()) * cfg_.n_embd;
  }
  util::Status forward(std::span<const int32_t> tokens, bool all_logits) override;
  const float* logits(int64_t i) const override;
  void set_logits_hint(int64_t rows) override;
  const float* features(int64_t i) const override;
  void checkpoint() override;
  util::Status keep(int64_t n) override;
  void reset() override;

  // Token embeddings and the output head, which the DFlash drafter borrows.
  const tensor::Tensor& token_embd() const;
  const tensor::Tensor& output_head() const;
  const tensor::Tensor& output_norm() const;

  // Multi-sequence batching (Qwen35Options::n_seq > 1). forward/reset/checkpoint/keep act on the
  // current sequence (0 at load); set_sequence switches (O(1), not while a verify is open).
  // forward_batch feeds one token to each listed (distinct) sequence in one pass: logits(r) and
  // features(r) belong to row r. Each row's result is bitwise the one-token forward of its sequence.
  util::Status set_sequence(int seq);
  int sequence() const;
  util::Status forward_batch(std::span<const int32_t> tokens, std::span<const int> seqs);

  // Test access to the recurrent state of layer il: conv window [(K-1)][conv_dim] and
  // delta-rule state [Hv][Dk][Dv] (Dk-major, as transformers; value heads in GGUF/tiled order).
  std::span<const float> conv_state(int il) const;
  std::span<const float> ssm_state(int il) const;
  // Hidden states after every layer of the last forward (only when capture_all_layers is set).
  void set_capture_all_layers(bool on);
  const float* layer_output(int il, int64_t token) const;

  struct Impl;

 private:
  Qwen35() = default;
  struct RowGroup;
  util::Status check_tokens(std::span<const int32_t> tokens) const;
  void size_outputs(int64_t n, int64_t logit_rows);
  void run_layers(const int32_t* tok, int64_t m, const RowGroup* groups, int n_groups, int64_t off, bool all_logits,
                  bool last_chunk);
  Qwen35Config cfg_;
  Qwen35Options opts_;
  int64_t n_past_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dflash::model
