// Random-weight Qwen3.5 GGUFs with the public model shapes, for benchmarking at real scale on a
// machine that cannot download the real checkpoints. Weights are random but well-scaled (activations
// stay finite through every layer); quantised tensors are written as random blocks of the target
// type directly, so a 0.8B file takes seconds, not minutes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/quant_recipe.h"
#include "util/status.h"

namespace dflash::convert {

struct SynthShape {
  std::string name;
  int64_t n_vocab, n_embd, n_layer, n_ff, n_head, n_head_kv, head_dim;
  int64_t linear_k_heads, linear_v_heads, linear_head_dim;
  int64_t full_attention_interval = 4;
  bool tied = true;
  // MoE (architecture qwen35moe) when n_expert > 0: n_ff is then unused.
  int64_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0, n_ff_shexp = 0;
};

// Known shapes: "0.8b", "2b", "35b-a3b" (MoE; qwen35.md §1.3), "tiny" and "tiny-moe" (for tests).
util::Result<SynthShape> synth_shape(const std::string& name);
std::vector<std::string> synth_shape_names();

struct SynthOptions {
  formats::FileType file_type = formats::FileType::kMostlyQ4_K_M;
  uint64_t seed = 1;
  int64_t n_layer_override = 0;  // 0: the shape's
  bool overwrite = false;
  bool progress = true;
};

util::Status write_synth_model(const SynthShape& shape, const SynthOptions& opts, const std::string& path);

}  // namespace dflash::convert
