// Q4_K_M (and friends) recipe on full Qwen3.5 tensor lists.
#include "formats/quant_recipe.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace dflash::formats {
namespace {

using tensor::DType;

struct T {
  std::string name;
  std::vector<int64_t> ne;
};

// GGUF tensor list of a dense Qwen3.5 model (names/shapes as the public converter writes them; every 4th
// layer is full attention).
std::vector<T> qwen35_tensors(int n_layers, int64_t h, int64_t ffn, int n_head, int n_kv, int hv, bool tied) {
  const int64_t vocab = 248320, hd = 256, key_dim = 16 * 128, value_dim = hv * 128;
  std::vector<T> v{{"token_embd.weight", {h, vocab}}, {"output_norm.weight", {h}}};
  if (!tied) v.push_back({"output.weight", {h, vocab}});
  for (int i = 0; i < n_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    v.push_back({p + "attn_norm.weight", {h}});
    v.push_back({p + "post_attention_norm.weight", {h}});
    if ((i + 1) % 4 != 0) {  // gated delta net
      v.push_back({p + "attn_qkv.weight", {h, 2 * key_dim + value_dim}});
      v.push_back({p + "attn_gate.weight", {h, value_dim}});
      v.push_back({p + "ssm_conv1d.weight", {4, 2 * key_dim + value_dim}});
      v.push_back({p + "ssm_dt.bias", {hv}});
      v.push_back({p + "ssm_a", {hv}});
      v.push_back({p + "ssm_beta.weight", {h, hv}});
      v.push_back({p + "ssm_alpha.weight", {h, hv}});
      v.push_back({p + "ssm_norm.weight", {128}});
      v.push_back({p + "ssm_out.weight", {value_dim, h}});
    } else {
      v.push_back({p + "attn_q.weight", {h, 2 * n_head * hd}});
      v.push_back({p + "attn_k.weight", {h, n_kv * hd}});
      v.push_back({p + "attn_v.weight", {h, n_kv * hd}});
      v.push_back({p + "attn_output.weight", {n_head * hd, h}});
      v.push_back({p + "attn_q_norm.weight", {hd}});
      v.push_back({p + "attn_k_norm.weight", {hd}});
    }
    v.push_back({p + "ffn_gate.weight", {h, ffn}});
    v.push_back({p + "ffn_up.weight", {h, ffn}});
    v.push_back({p + "ffn_down.weight", {ffn, h}});
  }
  return v;
}

bool is_f32_kind(const std::string& n) {
  return n.find("norm") != std::string::npos || n.find("ssm_conv1d") != std::string::npos ||
         (n.size() > 6 && n.substr(n.size() - 6) == ".ssm_a") || n.find("ssm_dt") != std::string::npos;
}

int layer_of(const std::string& n) { return n.rfind("blk.", 0) == 0 ? std::stoi(n.substr(4)) : -1; }

void check_q4_k_m(int n_layers, const std::vector<T>& tensors, bool tied, const std::set<int>& more_bits) {
  RecipeContext ctx{FileType::kMostlyQ4_K_M, n_layers, tied};
  std::map<DType, int> count;
  for (const T& t : tensors) {
    const DType got = recipe_dtype(ctx, t.name, t.ne);
    ++count[got];
    DType want;
    if (is_f32_kind(t.name)) {
      want = DType::kF32;
    } else if (t.name == "output.weight" || (t.name == "token_embd.weight" && tied)) {
      want = DType::kQ6_K;
    } else if ((t.name.find("attn_v.") != std::string::npos || t.name.find("attn_qkv.") != std::string::npos ||
                t.name.find("ffn_down.") != std::string::npos) &&
               more_bits.count(layer_of(t.name))) {
      want = DType::kQ6_K;
    } else {
      want = DType::kQ4_K;
    }
    EXPECT_EQ(got, want) << t.name << " got " << tensor::dtype_name(got);
  }
  // One attn_v-like tensor and one ffn_down per layer, plus output (or the tied embedding).
  EXPECT_EQ(count[DType::kQ6_K], 2 * static_cast<int>(more_bits.size()) + 1);
}

TEST(QuantRecipe, UseMoreBitsPattern) {
  // Hand-derived: n=24 -> n/8=3, 7n/8=21, plus (i-3)%3==2 -> 5, 8, ..., 20.
  std::set<int> want24{0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23};
  for (int i = 0; i < 24; ++i) EXPECT_EQ(use_more_bits(i, 24), want24.count(i) == 1) << i;
}

TEST(QuantRecipe, Qwen35_24LayersTiedQ4_K_M) {
  // Qwen3.5-0.8B shape: hidden 1024, ffn 3584, 8/2 heads, 16 value heads, tied embeddings.
  const std::set<int> more_bits{0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23};
  check_q4_k_m(24, qwen35_tensors(24, 1024, 3584, 8, 2, 16, true), true, more_bits);
}

TEST(QuantRecipe, Qwen35_64LayersUntiedQ4_K_M) {
  // Qwen3.5-27B shape: hidden 5120, ffn 17408, 24/4 heads, 48 value heads, untied.
  // n=64 -> n/8=8, 7n/8=56, plus (i-8)%3==2 -> 10, 13, ..., 55.
  const std::set<int> more_bits{0,  1,  2,  3,  4,  5,  6,  7,  10, 13, 16, 19, 22, 25, 28, 31,
                                34, 37, 40, 43, 46, 49, 52, 55, 56, 57, 58, 59, 60, 61, 62, 63};
  auto tensors = qwen35_tensors(64, 5120, 17408, 24, 4, 48, false);
  check_q4_k_m(64, tensors, false, more_bits);
  RecipeContext ctx{FileType::kMostlyQ4_K_M, 64, false};
  EXPECT_EQ(recipe_dtype(ctx, "token_embd.weight", std::vector<int64_t>{5120, 248320}), DType::kQ4_K);
}

TEST(QuantRecipe, OtherFileTypes) {
  auto tensors = qwen35_tensors(24, 1024, 3584, 8, 2, 16, true);
  for (auto [ft, base] : {std::pair{FileType::kMostlyQ8_0, DType::kQ8_0}, std::pair{FileType::kMostlyF16, DType::kF16},
                          std::pair{FileType::kMostlyBF16, DType::kBF16}, std::pair{FileType::kAllF32, DType::kF32}}) {
    RecipeContext ctx{ft, 24, true};
    for (const T& t : tensors) {
      EXPECT_EQ(recipe_dtype(ctx, t.name, t.ne), is_f32_kind(t.name) ? DType::kF32 : base)
          << file_type_name(ft) << " " << t.name;
    }
  }
  RecipeContext q6{FileType::kMostlyQ6_K, 24, true};
  RecipeContext q5{FileType::kMostlyQ5_K_M, 24, true};
  const std::vector<int64_t> sq{1024, 1024};
  EXPECT_EQ(recipe_dtype(q6, "blk.4.ffn_up.weight", sq), DType::kQ6_K);
  EXPECT_EQ(recipe_dtype(q6, "blk.4.attn_qkv.weight", sq), DType::kQ6_K);
  EXPECT_EQ(recipe_dtype(q5, "blk.4.ffn_up.weight", sq), DType::kQ5_K);
  EXPECT_EQ(recipe_dtype(q5, "blk.4.attn_qkv.weight", sq), DType::kQ5_K);   // 4 is not a more-bits layer
  EXPECT_EQ(recipe_dtype(q5, "blk.5.attn_qkv.weight", sq), DType::kQ6_K);   // 5 is
  EXPECT_EQ(recipe_dtype(q5, "blk.23.ffn_down.weight", sq), DType::kQ6_K);
  EXPECT_EQ(recipe_dtype(q5, "token_embd.weight", sq), DType::kQ6_K);       // tied
}

TEST(QuantRecipe, FallbacksForIncompatibleRows) {
  RecipeContext ctx{FileType::kMostlyQ4_K_M, 24, false};
  using V = std::vector<int64_t>;
  EXPECT_EQ(recipe_dtype(ctx, "blk.4.ffn_up.weight", V{1056, 64}), DType::kQ8_0);   // 1056 = 33*32, % 256 != 0
  EXPECT_EQ(recipe_dtype(ctx, "blk.4.ffn_up.weight", V{1024, 64}), DType::kQ4_K);
  EXPECT_EQ(recipe_dtype(ctx, "blk.4.ffn_up.weight", V{992, 64}), DType::kQ8_0);    // 992 = 31*32
  EXPECT_EQ(recipe_dtype(ctx, "blk.4.ffn_up.weight", V{100, 64}), DType::kF16);     // not even % 32
  EXPECT_EQ(recipe_dtype(ctx, "blk.0.ffn_down.weight", V{992, 64}), DType::kQ8_0);  // Q6_K -> Q8_0
  EXPECT_EQ(recipe_dtype(ctx, "output.weight", V{992, 1000}), DType::kQ8_0);
  EXPECT_EQ(recipe_dtype(ctx, "output.weight", V{100, 1000}), DType::kF16);
  RecipeContext q8{FileType::kMostlyQ8_0, 24, false};
  EXPECT_EQ(recipe_dtype(q8, "blk.4.ffn_up.weight", V{100, 64}), DType::kF16);
  EXPECT_EQ(recipe_dtype(q8, "blk.4.ffn_up.weight", V{96, 64}), DType::kQ8_0);
}

TEST(QuantRecipe, KeptF32AndMoE) {
  RecipeContext ctx{FileType::kMostlyQ4_K_M, 40, false};
  using V = std::vector<int64_t>;
  EXPECT_EQ(recipe_dtype(ctx, "blk.0.ssm_a", V{32}), DType::kF32);
  EXPECT_EQ(recipe_dtype(ctx, "blk.0.ssm_dt.bias", V{32}), DType::kF32);
  EXPECT_EQ(recipe_dtype(ctx, "blk.0.attn_norm.weight", V{2048}), DType::kF32);
  EXPECT_EQ(recipe_dtype(ctx, "blk.0.ssm_conv1d.weight", V{4, 8192}), DType::kF32);
  EXPECT_EQ(recipe_dtype(ctx, "blk.0.ffn_gate_inp.weight", V{2048, 256}), DType::kF32);
  EXPECT_EQ(recipe_dtype(ctx, "blk.0.ffn_gate_inp_shexp.weight", V{2048}), DType::kF32);
  EXPECT_EQ(recipe_dtype(ctx, "blk.0.attn_q.weight", V{2048, 1, 1}), DType::kF32);  // effectively 1-D
  // Experts: 3-D, row length ne[0]; n=40 -> n/8=5, 7n/8=35.
  EXPECT_EQ(recipe_dtype(ctx, "blk.4.ffn_down_exps.weight", V{512, 2048, 256}), DType::kQ6_K);
  EXPECT_EQ(recipe_dtype(ctx, "blk.5.ffn_down_exps.weight", V{512, 2048, 256}), DType::kQ4_K);
  EXPECT_EQ(recipe_dtype(ctx, "blk.7.ffn_down_shexp.weight", V{512, 2048}), DType::kQ6_K);  // (7-5)%3==2
  EXPECT_EQ(recipe_dtype(ctx, "blk.35.ffn_down_exps.weight", V{512, 2048, 256}), DType::kQ6_K);
  EXPECT_EQ(recipe_dtype(ctx, "blk.6.ffn_gate_exps.weight", V{2048, 512, 256}), DType::kQ4_K);
  EXPECT_EQ(recipe_dtype(ctx, "blk.6.ffn_up_shexp.weight", V{2048, 512}), DType::kQ4_K);
}

TEST(QuantRecipe, FileTypeNames) {
  EXPECT_EQ(file_type_from_name("q4_k_m"), FileType::kMostlyQ4_K_M);
  EXPECT_EQ(file_type_from_name("Q8_0"), FileType::kMostlyQ8_0);
  EXPECT_EQ(file_type_from_name("bf16"), FileType::kMostlyBF16);
  EXPECT_EQ(file_type_from_name("q4_k"), std::nullopt);
  EXPECT_EQ(file_type_from_id(15), FileType::kMostlyQ4_K_M);
  EXPECT_EQ(file_type_from_id(2), std::nullopt);
  EXPECT_STREQ(file_type_name(FileType::kMostlyQ5_K_M), "Q5_K_M");
}

}  // namespace
}  // namespace dflash::formats
