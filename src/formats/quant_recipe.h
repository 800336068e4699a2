// Which dtype each tensor gets in a quantised model file (the llama.cpp "ftype" mixes), as a pure function.
// Follows the public quantizer's rules (llama-quant.cpp) for the types we support; see quant_recipe.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "tensor/dtype.h"

namespace dflash::formats {

// GGUF `general.file_type` values (llama_ftype) we can produce.
enum class FileType : uint32_t {
  kAllF32 = 0,
  kMostlyF16 = 1,
  kMostlyQ8_0 = 7,
  kMostlyQ4_K_M = 15,
  kMostlyQ5_K_M = 17,
  kMostlyQ6_K = 18,
  kMostlyBF16 = 32,
};

const char* file_type_name(FileType t);                                // "Q4_K_M"
std::optional<FileType> file_type_from_name(std::string_view name);    // case-insensitive, "q4_k_m"
std::optional<FileType> file_type_from_id(uint32_t id);

struct RecipeContext {
  FileType file_type = FileType::kMostlyQ4_K_M;
  int n_layers = 0;              // block_count of the model (the layer index range of blk.N.*)
  bool tied_embeddings = false;  // no output.weight: token_embd doubles as the output matrix
};

// Target dtype for tensor `name` (GGUF name, e.g. "blk.7.attn_v.weight") with GGUF shape `ne` (ne[0] = row
// length). 1-D tensors, norms, biases, ssm_a, ssm_conv1d and the MoE router stay F32.
tensor::DType recipe_dtype(const RecipeContext& ctx, std::string_view name, std::span<const int64_t> ne);

// The public "use more bits" layer pattern: first and last eighth of the layers and every third in between.
bool use_more_bits(int i_layer, int n_layers);

}  // namespace dflash::formats
