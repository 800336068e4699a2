#include "convert/synth.h"

#include <cmath>
#include <cstring>
#include <random>

#include "formats/gguf.h"
#include "formats/quant.h"
#include "util/progress.h"

namespace dflash::convert {

using formats::GgufValue;
using formats::GgufWriter;
using tensor::DType;
using util::Status;
using util::strfmt;

std::vector<std::string> synth_shape_names() { return {"0.8b", "2b", "35b-a3b", "tiny", "tiny-moe"}; }

util::Result<SynthShape> synth_shape(const std::string& name) {
  // Public shapes (../shared/reference/qwen35.md §1.3): 24 layers, 3:1 DeltaNet:attention.
  if (name == "0.8b") return SynthShape{"0.8b", 248320, 1024, 24, 3584, 8, 2, 256, 16, 16, 128, 4, true};
  if (name == "2b") return SynthShape{"2b", 248320, 2048, 24, 6144, 8, 2, 256, 16, 16, 128, 4, true};
  if (name == "tiny") return SynthShape{"tiny", 1024, 128, 4, 256, 4, 2, 64, 2, 4, 32, 4, true};
  // 35B-A3B: 40 layers, 256 experts (8 used) of 512 plus a shared expert of 512, untied (SLIME's script).
  if (name == "35b-a3b") {
    SynthShape s{"35b-a3b", 248320, 2048, 40, 0, 16, 2, 256, 16, 32, 128, 4, false};
    s.n_expert = 256, s.n_expert_used = 8, s.n_ff_exp = 512, s.n_ff_shexp = 512;
    return s;
  }
  if (name == "tiny-moe") {
    SynthShape s{"tiny-moe", 1024, 128, 4, 0, 4, 2, 64, 2, 4, 32, 4, true};
    s.n_expert = 8, s.n_expert_used = 2, s.n_ff_exp = 64, s.n_ff_shexp = 64;
    return s;
  }
  std::string known;
  for (const std::string& k : synth_shape_names()) known += (known.empty() ? "" : ", ") + k;
  return util::invalid_argument("unknown shape '" + name + "' (known: " + known + ")");
}

namespace {

// Rows of random weights (N(0, std)) encoded in `type`; tensors are tiled from this pool so that
// writing a large file costs one quantisation of a few rows.
struct RowPool {
  DType type;
  int64_t n;
  std::vector<std::vector<uint8_t>> rows;
};

RowPool make_pool(DType type, int64_t n, float stddev, std::mt19937_64& rng) {
  RowPool p{type, n, {}};
  std::normal_distribution<float> nd(0.0f, stddev);
  std::vector<float> x(static_cast<size_t>(n));
  for (int r = 0; r < 16; ++r) {
    for (auto& v : x) v = nd(rng);
    std::vector<uint8_t> row(tensor::row_size(type, n));
    formats::quantize_row(type, x.data(), row.data(), n);
    p.rows.push_back(std::move(row));
  }
  return p;
}

}  // namespace

Status write_synth_model(const SynthShape& s, const SynthOptions& opts, const std::string& path) {
  const int64_t L = opts.n_layer_override > 0 ? opts.n_layer_override : s.n_layer;
  const int64_t H = s.n_embd, hd = s.head_dim, n_rot = hd / 4;
  const int64_t key_dim = s.linear_k_heads * s.linear_head_dim, value_dim = s.linear_v_heads * s.linear_head_dim;
  const int64_t conv_dim = 2 * key_dim + value_dim, K = 4;
  GgufWriter w;
  const bool moe = s.n_expert > 0;
  const std::string arch = moe ? "qwen35moe" : "qwen35", a = arch + ".";
  DFLASH_RETURN_IF_ERROR(w.set_string("general.architecture", arch));
  DFLASH_RETURN_IF_ERROR(w.set_string("general.name", "synthetic Qwen3.5 " + s.name + " (random weights)"));
  DFLASH_RETURN_IF_ERROR(w.set_u32("general.file_type", static_cast<uint32_t>(opts.file_type)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "block_count", static_cast<uint32_t>(L)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "context_length", 262144));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "embedding_length", static_cast<uint32_t>(H)));
  if (moe) {
    DFLASH_RETURN_IF_ERROR(w.set_u32(a + "expert_count", static_cast<uint32_t>(s.n_expert)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(a + "expert_used_count", static_cast<uint32_t>(s.n_expert_used)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(a + "expert_feed_forward_length", static_cast<uint32_t>(s.n_ff_exp)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(a + "expert_shared_feed_forward_length", static_cast<uint32_t>(s.n_ff_shexp)));
  } else {
    DFLASH_RETURN_IF_ERROR(w.set_u32(a + "feed_forward_length", static_cast<uint32_t>(s.n_ff)));
  }
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "attention.head_count", static_cast<uint32_t>(s.n_head)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(s.n_head_kv)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "attention.key_length", static_cast<uint32_t>(hd)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "attention.value_length", static_cast<uint32_t>(hd)));
  DFLASH_RETURN_IF_ERROR(w.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-6f));
  DFLASH_RETURN_IF_ERROR(w.set_f32(a + "rope.freq_base", 1e7f));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "rope.dimension_count", static_cast<uint32_t>(n_rot)));
  const int32_t half = static_cast<int32_t>(n_rot / 2);
  const int32_t sections[4] = {half - 2 * (half / 3), half / 3, half / 3, 0};
  DFLASH_RETURN_IF_ERROR(w.set(a + "rope.dimension_sections", GgufValue::array_i32(sections)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "ssm.conv_kernel", static_cast<uint32_t>(K)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "ssm.state_size", static_cast<uint32_t>(s.linear_head_dim)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "ssm.group_count", static_cast<uint32_t>(s.linear_k_heads)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "ssm.time_step_rank", static_cast<uint32_t>(s.linear_v_heads)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "ssm.inner_size", static_cast<uint32_t>(value_dim)));
  DFLASH_RETURN_IF_ERROR(w.set_u32(a + "full_attention_interval", static_cast<uint32_t>(s.full_attention_interval)));

  std::mt19937_64 rng(opts.seed);
  formats::RecipeContext rc;
  rc.file_type = opts.file_type;
  rc.n_layers = static_cast<int>(L);
  rc.tied_embeddings = s.tied;
  // Pools are keyed by (type, row length); kept alive until write() has pulled every tensor.
  std::vector<std::unique_ptr<RowPool>> pools;
  auto pool_for = [&](DType t, int64_t n, float stddev) -> const RowPool& {
    for (const auto& p : pools)
      if (p->type == t && p->n == n) return *p;
    pools.push_back(std::make_unique<RowPool>(make_pool(t, n, stddev, rng)));
    return *pools.back();
  };
  uint64_t total_bytes = 0;
  struct Planned {
    std::string name;
    DType type;
    std::vector<int64_t> ne;
    std::vector<float> values;  // F32 tensors with fixed values (norms, gates)
  };
  std::vector<Planned> plan;
  auto matrix = [&](const std::string& name, int64_t in, int64_t out, int64_t n3 = 1) {
    std::vector<int64_t> ne = {in, out};
    if (n3 > 1) ne.push_back(n3);
    plan.push_back({name, formats::recipe_dtype(rc, name, ne), ne, {}});
  };
  auto vec = [&](const std::string& name, std::vector<float> v, std::vector<int64_t> ne) {
    plan.push_back({name, DType::kF32, std::move(ne), std::move(v)});
  };
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  matrix("token_embd.weight", H, s.n_vocab);
  if (!s.tied) matrix("output.weight", H, s.n_vocab);
  vec("output_norm.weight", std::vector<float>(static_cast<size_t>(H), 1.0f), {H});
  for (int64_t il = 0; il < L; ++il) {
    auto n = [&](const char* x) { return strfmt("blk.%lld.%s", (long long)il, x); };
    const bool recurrent = (il + 1) % s.full_attention_interval != 0;
    vec(n("attn_norm.weight"), std::vector<float>(static_cast<size_t>(H), 1.0f), {H});
    vec(n("post_attention_norm.weight"), std::vector<float>(static_cast<size_t>(H), 1.0f), {H});
    if (recurrent) {
      matrix(n("attn_qkv.weight"), H, conv_dim);
      matrix(n("attn_gate.weight"), H, value_dim);
      std::vector<float> conv(static_cast<size_t>(K * conv_dim));
      for (auto& c : conv) c = (ud(rng) - 0.5f) * 0.5f;
      vec(n("ssm_conv1d.weight"), std::move(conv), {K, conv_dim});
      std::vector<float> a_(static_cast<size_t>(s.linear_v_heads)), dt(a_.size(), 0.0f);
      for (auto& x : a_) x = -std::exp(ud(rng) * 3.0f - 2.0f);
      vec(n("ssm_a"), std::move(a_), {s.linear_v_heads});
      vec(n("ssm_dt.bias"), std::move(dt), {s.linear_v_heads});
      matrix(n("ssm_beta.weight"), H, s.linear_v_heads);
      matrix(n("ssm_alpha.weight"), H, s.linear_v_heads);
      vec(n("ssm_norm.weight"), std::vector<float>(static_cast<size_t>(s.linear_head_dim), 1.0f), {s.linear_head_dim});
      matrix(n("ssm_out.weight"), value_dim, H);
    } else {
      matrix(n("attn_q.weight"), H, 2 * s.n_head * hd);
      matrix(n("attn_k.weight"), H, s.n_head_kv * hd);
      matrix(n("attn_v.weight"), H, s.n_head_kv * hd);
      matrix(n("attn_output.weight"), s.n_head * hd, H);
      vec(n("attn_q_norm.weight"), std::vector<float>(static_cast<size_t>(hd), 1.0f), {hd});
      vec(n("attn_k_norm.weight"), std::vector<float>(static_cast<size_t>(hd), 1.0f), {hd});
    }
    if (moe) {
      // The router in F32 as the public converter writes it; random logits route tokens to random experts.
      matrix(n("ffn_gate_inp.weight"), H, s.n_expert);
      matrix(n("ffn_gate_exps.weight"), H, s.n_ff_exp, s.n_expert);
      matrix(n("ffn_up_exps.weight"), H, s.n_ff_exp, s.n_expert);
      matrix(n("ffn_down_exps.weight"), s.n_ff_exp, H, s.n_expert);
      if (s.n_ff_shexp > 0) {
        matrix(n("ffn_gate_inp_shexp.weight"), H, 1);
        matrix(n("ffn_gate_shexp.weight"), H, s.n_ff_shexp);
        matrix(n("ffn_up_shexp.weight"), H, s.n_ff_shexp);
        matrix(n("ffn_down_shexp.weight"), s.n_ff_shexp, H);
      }
    } else {
      matrix(n("ffn_gate.weight"), H, s.n_ff);
      matrix(n("ffn_up.weight"), H, s.n_ff);
      matrix(n("ffn_down.weight"), s.n_ff, H);
    }
  }
  for (const Planned& p : plan) {
    int64_t rows = 1;
    for (size_t i = 1; i < p.ne.size(); ++i) rows *= p.ne[i];
    total_bytes += tensor::row_size(p.type, p.ne[0]) * static_cast<uint64_t>(rows);
  }
  util::Progress progress("synth " + s.name, total_bytes, "B", stderr, 5.0);
  if (!opts.progress) progress.set_tty(false);
  for (Planned& p : plan) {
    const DType type = p.type;
    const int64_t n = p.ne[0];
    if (!p.values.empty()) {
      DFLASH_RETURN_IF_ERROR(w.add_tensor(p.name, type, p.ne, p.values.data()));
      continue;
    }
    // 1/sqrt(fan-in) keeps activations O(1) through the residual stream.
    const float stddev = 0.5f / std::sqrt(static_cast<float>(n));
    const RowPool& pool = pool_for(type, n, stddev);
    const size_t rb = tensor::row_size(type, n);
    uint64_t seed = rng();
    DFLASH_RETURN_IF_ERROR(w.add_tensor(p.name, type, p.ne, [&pool, rb, seed, &progress, &opts](uint8_t* dst, size_t nbytes) {
      std::mt19937_64 r(seed);
      for (size_t off = 0; off < nbytes; off += rb) std::memcpy(dst + off, pool.rows[r() % pool.rows.size()].data(), rb);
      if (opts.progress) progress.add(nbytes);
      return Status::ok();
    }));
  }
  DFLASH_RETURN_IF_ERROR(w.write(path, opts.overwrite));
  if (opts.progress) progress.finish(path);
  return Status::ok();
}

}  // namespace dflash::convert
