// Tensor dtype recipe for quantised files. Facts taken from the public quantizer (llama.cpp / buun fork,
// src/llama-quant.cpp and convert_hf_to_gguf.py), re-expressed for the types this engine supports:
//  - Only tensors with ≥ 2 dims whose name ends in "weight" are quantised; "_norm.weight", ssm_conv1d and the
//    MoE router (ffn_gate_inp, ffn_gate_inp_shexp) are kept F32 (the converter forces those to F32).
//  - output.weight (or token_embd.weight when embeddings are tied) gets Q6_K in every K-quant mix, Q8_0 if
//    its rows are not a multiple of 256.
//  - "attn_v-like" tensors (attn_v, attn_qkv, attn_kv_b) and every ffn_down* (incl. _exps/_shexp) go to Q6_K
//    on use_more_bits layers in Q4_K_M and Q5_K_M. Upstream counts attn_v-like tensors in layer order; a
//    Qwen3.5 layer has exactly one (attn_qkv in linear-attention layers, attn_v in full-attention layers), so
//    that counter equals the layer index parsed from the name, which is what we use.
//  - Rows not a multiple of the block size fall back. Upstream uses Q5_0 for Q4_K, Q5_1 for Q5_K and Q8_0 for
//    Q6_K; we have no Q5_0/Q5_1 codecs, so all three fall back to Q8_0 (more bits, never fewer), and to F16 if
//    the row is not even a multiple of 32 (as upstream does).
#include "formats/quant_recipe.h"

#include <cctype>
#include <charconv>
#include <string>

namespace dflash::formats {

using tensor::DType;

namespace {

struct FileTypeName {
  FileType type;
  const char* name;
};
constexpr FileTypeName kNames[] = {
    {FileType::kAllF32, "F32"},         {FileType::kMostlyF16, "F16"},       {FileType::kMostlyQ8_0, "Q8_0"},
    {FileType::kMostlyQ4_K_M, "Q4_K_M"}, {FileType::kMostlyQ5_K_M, "Q5_K_M"}, {FileType::kMostlyQ6_K, "Q6_K"},
    {FileType::kMostlyBF16, "BF16"},
};

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Layer index of "blk.N.…", or -1.
int layer_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  int v = -1;
  const char* b = name.data() + 4;
  const char* e = name.data() + name.size();
  auto [p, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || p == b || p == e || *p != '.') return -1;
  return v;
}

bool quantizable(std::string_view name, std::span<const int64_t> ne) {
  int n_dims = 0;  // like ggml_n_dims: trailing 1s do not count
  for (size_t i = 0; i < ne.size(); ++i)
    if (ne[i] != 1) n_dims = static_cast<int>(i) + 1;
  if (n_dims < 2) return false;
  if (!ends_with(name, "weight")) return false;
  if (contains(name, "_norm.weight")) return false;
  if (contains(name, "ffn_gate_inp.weight") || contains(name, "ffn_gate_inp_shexp.weight")) return false;
  if (contains(name, "ssm_conv1d")) return false;
  return true;
}

int64_t block_of(DType t) { return tensor::info(t).block_size; }

DType fallback(DType t, int64_t row) {
  if (row % block_of(t) == 0) return t;
  if (t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K) {
    if (row % tensor::kQK8_0 == 0) return DType::kQ8_0;
  }
  return DType::kF16;
}

}  // namespace

const char* file_type_name(FileType t) {
  for (const auto& n : kNames)
    if (n.type == t) return n.name;
  return "?";
}

std::optional<FileType> file_type_from_name(std::string_view name) {
  for (const auto& n : kNames) {
    const std::string_view s(n.name);
    if (s.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < s.size() && eq; ++i)
      eq = std::toupper(static_cast<unsigned char>(name[i])) == static_cast<unsigned char>(s[i]);
    if (eq) return n.type;
  }
  return std::nullopt;
}

std::optional<FileType> file_type_from_id(uint32_t id) {
  for (const auto& n : kNames)
    if (static_cast<uint32_t>(n.type) == id) return n.type;
  return std::nullopt;
}

bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

DType recipe_dtype(const RecipeContext& ctx, std::string_view name, std::span<const int64_t> ne) {
  if (!quantizable(name, ne)) return DType::kF32;
  const int64_t row = ne.empty() ? 1 : ne[0];

  DType base;
  switch (ctx.file_type) {
    case FileType::kAllF32: return DType::kF32;
    case FileType::kMostlyF16: return DType::kF16;
    case FileType::kMostlyBF16: return DType::kBF16;
    case FileType::kMostlyQ8_0: return fallback(DType::kQ8_0, row);
    case FileType::kMostlyQ4_K_M: base = DType::kQ4_K; break;
    case FileType::kMostlyQ5_K_M: base = DType::kQ5_K; break;
    case FileType::kMostlyQ6_K: base = DType::kQ6_K; break;
    default: return DType::kF32;
  }

  const bool is_output = name == "output.weight";
  const bool is_embd = name == "token_embd.weight";
  if (is_output || (is_embd && ctx.tied_embeddings)) {
    return row % tensor::kQK_K == 0 ? DType::kQ6_K : fallback(DType::kQ8_0, row);
  }
  if (is_embd) return fallback(base, row);

  const bool m_mix = ctx.file_type == FileType::kMostlyQ4_K_M || ctx.file_type == FileType::kMostlyQ5_K_M;
  const int layer = layer_of(name);
  DType t = base;
  if (m_mix && layer >= 0) {
    const bool attn_v_like =
        contains(name, "attn_qkv.weight") || contains(name, "attn_v.weight") || contains(name, "attn_kv_b.weight");
    const bool ffn_down = contains(name, "ffn_down");
    if ((attn_v_like || ffn_down) && use_more_bits(layer, ctx.n_layers)) t = DType::kQ6_K;
  }
  return fallback(t, row);
}

}  // namespace dflash::formats
