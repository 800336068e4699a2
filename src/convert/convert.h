// dflash convert: a Hugging Face safetensors checkpoint directory → one GGUF file, in the layouts the
// public llama.cpp loaders read (../shared/reference/llamacpp.md §B, qwen35.md §7–8, docs/convert.md).
//
//  - Qwen3.5 targets (`Qwen3_5ForCausalLM`, `Qwen3_5ForConditionalGeneration`, and the MoE classes)
//    → arch `qwen35` / `qwen35moe`. Text model only: vision-tower and MTP tensors are skipped.
//    The public converter's transformations are applied: +1 folded into the zero-centred RMSNorm
//    weights (not the DeltaNet gated norm), ssm_a = −exp(A_log), conv1d squeezed, V heads reordered
//    from HF's grouped order to ggml's tiled order when value heads outnumber key heads.
//  - DFlash drafters (`DFlashDraftModel`) → upstream llama.cpp's `dflash` arch, or the fork's
//    `dflash-draft` dialect.
//
// Tensors are streamed: sources stay mmap'd, each output tensor is produced row by row into the
// writer's buffer when the writer reaches it, so peak memory is one output tensor. The output file
// is written atomically (temp file + rename) and never replaces an existing file without `overwrite`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "formats/quant_recipe.h"
#include "util/status.h"

namespace dflash::convert {

// --outtype. kAuto keeps the source precision: the dtype of the checkpoint's first ≥2-D tensor
// (BF16 → bf16, F16 → f16, F32 → f32). (The public converter's `auto` picks f16 for an F32 source.)
enum class OutType { kAuto, kF32, kF16, kBF16, kQ8_0, kQ4_K_M };
util::Result<OutType> parse_outtype(std::string_view s);  // "auto", "f32", "f16", "bf16", "q8_0", "q4_k_m"
const char* outtype_name(OutType t);

enum class DraftFormat {
  kUpstream,  // arch `dflash`: fc, enc.output_norm, ffn_norm, dflash.target_layers (= layer id + 1)
  kFork,      // arch `dflash-draft`: dflash_fc, dflash_hidden_norm, post_attention_norm, dflash.target_layer_ids
};
util::Result<DraftFormat> parse_draft_format(std::string_view s);  // "dflash" | "dflash-draft"

struct ConvertOptions {
  OutType outtype = OutType::kAuto;
  DraftFormat draft_format = DraftFormat::kUpstream;
  // Directory holding tokenizer.json (+ tokenizer_config.json); default: the checkpoint directory.
  // DFlash drafter repositories ship no tokenizer: pass the target model's directory.
  std::string tokenizer_from;
  bool no_tokenizer = false;  // write no tokenizer.* keys
  // Explicit RoPE theta for a checkpoint whose config.json has neither rope_parameters.rope_theta
  // nor rope_theta. Never defaulted silently.
  std::optional<double> rope_theta;
  bool overwrite = false;
  bool progress = true;
};

struct ConvertReport {
  std::string hf_architecture;   // config.json architectures[0]
  std::string gguf_architecture;  // qwen35, qwen35moe, dflash, dflash-draft
  formats::FileType file_type = formats::FileType::kAllF32;
  size_t n_tensors = 0;
  size_t n_skipped_vision = 0, n_skipped_mtp = 0;
  uint64_t file_bytes = 0;
};

// Converts the checkpoint in `hf_dir` to `out_path`. Every error names the file and the field.
util::Result<ConvertReport> convert_hf_to_gguf(const std::string& hf_dir, const std::string& out_path,
                                               const ConvertOptions& opts);

}  // namespace dflash::convert
