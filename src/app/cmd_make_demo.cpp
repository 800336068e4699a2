// Hidden helper: writes a small random-weight GGUF with Qwen3.5-style tensor names. The build runs it
// to produce build/demo.gguf, which `make run` shows with `dflash info` until the real demo exists.
#include <cstdio>
#include <random>

#include "app/command.h"
#include "formats/gguf.h"

namespace dflash::app {
namespace {

using tensor::DType;

struct DemoTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> ne;
};

// Random contents of the right layout: floats ~N(0, 0.02), Q8_0 blocks with finite fp16 scales.
util::Status fill_random(DType dt, uint64_t seed, uint8_t* dst, size_t n) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  switch (dt) {
    case DType::kF32:
      for (size_t i = 0; i < n / 4; ++i) {
        float v = 1.0f + normal(rng);
        std::memcpy(dst + 4 * i, &v, 4);
      }
      return util::Status::ok();
    case DType::kF16:
    case DType::kBF16:
      for (size_t i = 0; i < n / 2; ++i) {
        uint16_t h = dt == DType::kF16 ? tensor::fp32_to_fp16(normal(rng)) : tensor::fp32_to_bf16(normal(rng));
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return util::Status::ok();
    case DType::kQ8_0:
      for (size_t b = 0; b < n / sizeof(tensor::BlockQ8_0); ++b) {
        tensor::BlockQ8_0 blk;
        blk.d = tensor::fp32_to_fp16(0.0005f);
        for (auto& q : blk.qs) q = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
        std::memcpy(dst + b * sizeof blk, &blk, sizeof blk);
      }
      return util::Status::ok();
    default:
      return util::unsupported("demo: no random fill for this dtype");
  }
}

int make_demo(const std::string& out, bool force) {
  constexpr int64_t kEmbd = 64, kVocab = 512, kFf = 128, kHeads = 2, kHeadDim = 32, kLayers = 4;
  formats::GgufWriter w;
  util::Status st;
  auto ok = [&](util::Status s) {
    if (st.is_ok() && !s.is_ok()) st = s;
  };
  ok(w.set_string("general.architecture", "qwen35"));
  ok(w.set_string("general.name", "dflash demo (random weights, not a real model)"));
  ok(w.set_u32("general.file_type", 7));
  ok(w.set_u32("qwen35.block_count", kLayers));
  ok(w.set_u32("qwen35.context_length", 4096));
  ok(w.set_u32("qwen35.embedding_length", kEmbd));
  ok(w.set_u32("qwen35.feed_forward_length", kFf));
  ok(w.set_u32("qwen35.attention.head_count", kHeads));
  ok(w.set_u32("qwen35.attention.head_count_kv", 1));
  ok(w.set_u32("qwen35.attention.key_length", kHeadDim));
  ok(w.set_u32("qwen35.attention.value_length", kHeadDim));
  ok(w.set_f32("qwen35.attention.layer_norm_rms_epsilon", 1e-6f));
  ok(w.set_f32("qwen35.rope.freq_base", 10000000.0f));
  ok(w.set_u32("qwen35.full_attention_interval", 4));
  std::vector<int32_t> sections = {11, 11, 10, 0};
  ok(w.set("qwen35.rope.dimension_sections", formats::GgufValue::array_i32(sections)));
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int i = 0; i < kVocab; ++i) {
    tokens.push_back(i < 256 ? "<0x" + util::strfmt("%02X", i) + ">" : "tok" + std::to_string(i));
    types.push_back(i < 256 ? 6 : 1);
  }
  ok(w.set_string("tokenizer.ggml.model", "gpt2"));
  ok(w.set("tokenizer.ggml.tokens", formats::GgufValue::array_strings(tokens)));
  ok(w.set("tokenizer.ggml.token_type", formats::GgufValue::array_i32(types)));
  ok(w.set_u32("tokenizer.ggml.eos_token_id", kVocab - 1));

  std::vector<DemoTensor> ts = {{"token_embd.weight", DType::kQ8_0, {kEmbd, kVocab}},
                                {"output_norm.weight", DType::kF32, {kEmbd}},
                                {"output.weight", DType::kQ8_0, {kEmbd, kVocab}}};
  for (int l = 0; l < kLayers; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    ts.push_back({p + "attn_norm.weight", DType::kF32, {kEmbd}});
    ts.push_back({p + "post_attention_norm.weight", DType::kF32, {kEmbd}});
    if ((l + 1) % 4 != 0) {  // Gated DeltaNet layer
      ts.push_back({p + "attn_qkv.weight", DType::kQ8_0, {kEmbd, 3 * kHeads * kHeadDim}});
      ts.push_back({p + "attn_gate.weight", DType::kQ8_0, {kEmbd, kHeads * kHeadDim}});
      ts.push_back({p + "ssm_conv1d.weight", DType::kF32, {4, 3 * kHeads * kHeadDim}});
      ts.push_back({p + "ssm_a", DType::kF32, {kHeads}});
      ts.push_back({p + "ssm_dt.bias", DType::kF32, {kHeads}});
      ts.push_back({p + "ssm_alpha.weight", DType::kBF16, {kEmbd, kHeads}});
      ts.push_back({p + "ssm_beta.weight", DType::kBF16, {kEmbd, kHeads}});
      ts.push_back({p + "ssm_norm.weight", DType::kF32, {kHeadDim}});
      ts.push_back({p + "ssm_out.weight", DType::kQ8_0, {kHeads * kHeadDim, kEmbd}});
    } else {  // full attention; attn_q carries the output gate too
      ts.push_back({p + "attn_q.weight", DType::kQ8_0, {kEmbd, 2 * kHeads * kHeadDim}});
      ts.push_back({p + "attn_k.weight", DType::kF16, {kEmbd, kHeadDim}});
      ts.push_back({p + "attn_v.weight", DType::kF16, {kEmbd, kHeadDim}});
      ts.push_back({p + "attn_output.weight", DType::kQ8_0, {kHeads * kHeadDim, kEmbd}});
      ts.push_back({p + "attn_q_norm.weight", DType::kF32, {kHeadDim}});
      ts.push_back({p + "attn_k_norm.weight", DType::kF32, {kHeadDim}});
    }
    ts.push_back({p + "ffn_gate.weight", DType::kQ8_0, {kEmbd, kFf}});
    ts.push_back({p + "ffn_up.weight", DType::kQ8_0, {kEmbd, kFf}});
    ts.push_back({p + "ffn_down.weight", DType::kQ8_0, {kFf, kEmbd}});
  }
  uint64_t seed = 1;
  for (const auto& t : ts) {
    DType dt = t.dtype;
    uint64_t s = seed++;
    ok(w.add_tensor(t.name, dt, t.ne, [dt, s](uint8_t* dst, size_t n) { return fill_random(dt, s, dst, n); }));
  }
  if (st.is_ok()) st = w.write(out, force);
  if (!st.is_ok()) {
    std::fprintf(stderr, "dflash make-demo-gguf: %s\n", st.message().c_str());
    return 1;
  }
  std::printf("wrote %s (%zu tensors, %llu bytes)\n", out.c_str(), w.n_tensors(),
              static_cast<unsigned long long>(w.file_size()));
  return 0;
}

}  // namespace

DFLASH_COMMAND(Command{"make-demo-gguf", "Write a small random-weight Qwen3.5-style GGUF (used by the build)",
                       [](CLI::App* sub) -> std::function<int()> {
                         sub->group("");  // hidden from --help: a build helper, not a user command
                         auto out = std::make_shared<std::string>();
                         auto force = std::make_shared<bool>(false);
                         sub->add_option("out", *out, "Output path")->required();
                         sub->add_flag("--force", *force, "Overwrite an existing file");
                         return [=] { return make_demo(*out, *force); };
                       }});

}  // namespace dflash::app
