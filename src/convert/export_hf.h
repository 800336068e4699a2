// dflash export-hf: a DFlash drafter GGUF (upstream `dflash` or the fork's `dflash-draft` dialect) →
// DIR/config.json + DIR/model.safetensors in the z-lab layout that the authors' DFlashDraftModel
// (and vLLM / SGLang) load: `architectures: ["DFlashDraftModel"]`, a Qwen3 config plus the DFlash
// fields, HF tensor names (fc, hidden_norm, layers.N.*, norm). The drafter has no embedding or LM
// head of its own in that layout (both are the target's), so token_embd / output are not exported.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/gguf.h"
#include "tensor/tensor.h"
#include "util/status.h"

namespace dflash::convert {

struct ExportHfOptions {
  // dtype of every exported tensor (F32, F16 or BF16). nullopt: the float type of the file's
  // matrices when they all share one, else F32 (e.g. a quantised drafter).
  std::optional<tensor::DType> dtype;
  bool overwrite = false;
  bool progress = true;
  int threads = 0;  // 0: the global pool
  // config.json num_target_layers: the target's layer count. The GGUF does not record it; the authors'
  // class needs the key to exist but uses it only when target_layer_ids is absent (export-hf always
  // writes the ids). 0: max(target_layer_ids) + 1, the smallest count consistent with the ids.
  int64_t num_target_layers = 0;
};

struct ExportTensor {
  tensor::Tensor src;             // view into the GGUF
  std::string hf_name;            // "layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> hf_shape;  // outermost-first ([out, in] for a Linear weight)
};

struct HfExport {
  nlohmann::ordered_json config;
  tensor::DType dtype = tensor::DType::kF32;
  std::vector<ExportTensor> tensors;  // in GGUF order
  std::vector<std::string> skipped;   // GGUF tensors with no place in the layout (token_embd, output)
};

// Maps the GGUF to the HF layout without writing anything. Errors name the file: not a DFlash
// drafter, a missing drafter tensor, a tensor the layout has no place for, an unsupported dtype.
util::Result<HfExport> plan_export_hf(const formats::GgufFile& in, const ExportHfOptions& opts);

// Writes DIR/model.safetensors and DIR/config.json (DIR is created if missing). Refuses to replace
// either file without overwrite; a failed run leaves neither behind (nor DIR, if it created it).
// `narrowed` (optional) receives the number of F32 tensors whose values changed when stored in a
// 16-bit dtype.
util::Status export_hf(const formats::GgufFile& in, const std::string& dir, const ExportHfOptions& opts,
                       int* narrowed = nullptr);

// "float32", "float16", "bfloat16" (the config.json spelling).
const char* hf_dtype_name(tensor::DType t);

}  // namespace dflash::convert
