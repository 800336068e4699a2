// DFlash drafter forward (dflash/model.py DFlashDraftModel, as driven by dflash_generate).
#include "model/dflash.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/quant.h"
#include "kernels/matmul.h"
#include "model/layer_ops.h"
#include "util/aligned.h"
#include "util/profile.h"
#include "model/qwen35.h"
#include "model/weights.h"

namespace dflash::model {

using tensor::DType;
using tensor::Tensor;
using util::Result;
using util::Status;
using util::strfmt;

namespace {
template <typename T>
Status need(const formats::GgufFile& f, const std::string& key, T* out) {
  return read_key(f, key, out, "drafter");
}
}  // namespace

Result<DFlashConfig> DFlashConfig::from_gguf(const formats::GgufFile& f) {
  DFlashConfig c;
  DFLASH_ASSIGN_OR_RETURN(std::string_view arch, f.get_string("general.architecture"));
  c.arch = std::string(arch);
  if (c.arch != "dflash" && c.arch != "dflash-draft")
    return util::unsupported(strfmt("%s: architecture '%s' is not a DFlash drafter (expected dflash or dflash-draft)",
                                    f.path().c_str(), c.arch.c_str()));
  const std::string a = c.arch + ".";
  uint32_t u = 0;
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "block_count", &c.n_layer, "drafter"));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "embedding_length", &c.n_embd, "drafter"));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "feed_forward_length", &c.n_ff, "drafter"));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "attention.head_count", &c.n_head, "drafter"));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "attention.head_count_kv", &c.n_head_kv, "drafter"));
  if (c.n_head <= 0 || c.n_head_kv <= 0 || c.n_head % c.n_head_kv)
    return util::corrupt(f.path() + ": drafter head counts are inconsistent");
  DFLASH_ASSIGN_OR_RETURN(uint32_t kl, f.get_u32_or(a + "attention.key_length", static_cast<uint32_t>(c.n_embd / c.n_head)));
  c.head_dim = kl;
  DFLASH_RETURN_IF_ERROR(need(f, a + "attention.layer_norm_rms_epsilon", &c.rms_eps));
  // No default for theta: a wrong one silently collapses long-context acceptance.
  if (!f.has(a + "rope.freq_base"))
    return util::not_found(f.path() + ": drafter has no " + a +
                           "rope.freq_base; reconvert it (dflash convert reads rope_parameters.rope_theta, then rope_theta)");
  DFLASH_RETURN_IF_ERROR(need(f, a + "rope.freq_base", &c.rope_theta));

  std::vector<int64_t> ids;
  if (c.arch == "dflash-draft") {
    DFLASH_ASSIGN_OR_RETURN(uint32_t bs, f.get_u32_or(a + "dflash.block_size", 16));
    c.block_size = static_cast<int>(bs);
    DFLASH_RETURN_IF_ERROR(need(f, a + "dflash.mask_token_id", &u));
    c.mask_token_id = static_cast<int32_t>(u);
    DFLASH_ASSIGN_OR_RETURN(ids, f.get_array<int64_t>(a + "dflash.target_layer_ids"));
  } else {
    DFLASH_ASSIGN_OR_RETURN(uint32_t bs, f.get_u32_or(a + "block_size", 16));
    c.block_size = static_cast<int>(bs);
    if (f.has(a + "mask_token_id")) {
      DFLASH_RETURN_IF_ERROR(need(f, a + "mask_token_id", &u));
    } else {
      DFLASH_RETURN_IF_ERROR(need(f, "tokenizer.ggml.mask_token_id", &u));
    }
    c.mask_token_id = static_cast<int32_t>(u);
    // Upstream stores hidden-state indices (HF hidden_states[i]: 0 = embeddings), i.e. layer id + 1.
    DFLASH_ASSIGN_OR_RETURN(std::vector<int64_t> hs, f.get_array<int64_t>(a + "target_layers"));
    for (int64_t h : hs) ids.push_back(h - 1);
  }
  if (c.block_size < 2 || c.block_size > 64)
    return util::corrupt(strfmt("%s: drafter block size %d is outside 2..64", f.path().c_str(), c.block_size));
  if (ids.empty()) return util::corrupt(f.path() + ": drafter lists no target layers");
  for (int64_t id : ids) {
    if (id < 0 || id > 4096) return util::corrupt(strfmt("%s: target layer id %lld is invalid", f.path().c_str(), (long long)id));
    c.target_layer_ids.push_back(static_cast<int>(id));
  }
  DFLASH_ASSIGN_OR_RETURN(uint32_t swa, f.get_u32_or(a + "attention.sliding_window", 0));
  c.sliding_window = swa;
  c.swa_layers.assign(static_cast<size_t>(c.n_layer), false);
  if (swa > 0 && f.has(a + "attention.sliding_window_pattern")) {
    DFLASH_ASSIGN_OR_RETURN(std::vector<bool> pat, f.get_array<bool>(a + "attention.sliding_window_pattern"));
    for (size_t i = 0; i < pat.size() && i < c.swa_layers.size(); ++i) c.swa_layers[i] = pat[i];
  } else if (swa > 0) {
    std::fill(c.swa_layers.begin(), c.swa_layers.end(), true);
  }
  DFLASH_ASSIGN_OR_RETURN(c.output_multiplier, f.get_f32_or(a + "logit_scale", 1.0f));
  DFLASH_ASSIGN_OR_RETURN(c.logit_softcap, f.get_f32_or(a + "final_logit_softcapping", 0.0f));
  DFLASH_ASSIGN_OR_RETURN(c.input_embedding_scale, f.get_f32_or(a + "input_embedding_scale", 1.0f));
  return c;
}

namespace {
struct DraftLayer {
  Tensor attn_norm, post_norm, wq, wk, wv, wo, q_norm, k_norm, ffn_gate, ffn_up, ffn_down;
};
}  // namespace

struct DFlashDrafter::Impl {
  std::shared_ptr<const formats::GgufFile> file;
  util::ThreadPool* pool = nullptr;
  Tensor token_embd, output, fc, hidden_norm, output_norm;
  std::vector<DraftLayer> layers;
  kernels::PackedWeights packed;  // see Qwen35 (a borrowed, already packed LM head is not copied)
  // Context K/V per layer, head-major [n_kv][cap][head_dim]; rows past n_ctx are draft scratch.
  std::vector<util::AlignedVector<float>> k, v;
  // Activations (cache-line aligned, as every buffer the kernels stream with full vectors).
  util::AlignedVector<float> ctx, kbuf, vbuf, h, x, q, attn, tmp, ffa, ffb;
  util::AlignedVector<float> hidden_rows, logit_rows;
  int last_rows = 0;
};

DFlashDrafter::~DFlashDrafter() = default;

namespace {
Status bind(const formats::GgufFile& f, const std::vector<std::string>& names, std::vector<int64_t> ne, Tensor* out) {
  return bind_tensor(f, names, ne, out).with_context("drafter");
}
}  // namespace

Result<std::unique_ptr<DFlashDrafter>> DFlashDrafter::load(std::shared_ptr<const formats::GgufFile> file,
                                                           const Qwen35& target, const DFlashOptions& opts,
                                                           util::ThreadPool* pool) {
  DFLASH_ASSIGN_OR_RETURN(DFlashConfig c, DFlashConfig::from_gguf(*file));
  const Qwen35Config& tc = target.config();
  for (int id : c.target_layer_ids)
    if (id >= tc.n_layer)
      return util::invalid_argument(strfmt("%s: drafter reads target layer %d but the target has %lld layers — "
                                           "is this the drafter for another model?",
                                           file->path().c_str(), id, (long long)tc.n_layer));
  if (c.n_embd != tc.n_embd)
    return util::invalid_argument(strfmt("%s: drafter hidden size %lld differs from the target's %lld",
                                         file->path().c_str(), (long long)c.n_embd, (long long)tc.n_embd));
  if (c.mask_token_id < 0 || c.mask_token_id >= tc.n_vocab)
    return util::invalid_argument(strfmt("%s: drafter mask token %d is outside the target vocabulary (%lld)",
                                         file->path().c_str(), c.mask_token_id, (long long)tc.n_vocab));
  return load(std::move(file), target.token_embd(), target.output_head(), opts, pool);
}

Result<std::unique_ptr<DFlashDrafter>> DFlashDrafter::load(std::shared_ptr<const formats::GgufFile> file,
                                                           const Tensor& token_embd, const Tensor& output_head,
                                                           const DFlashOptions& opts, util::ThreadPool* pool) {
  const formats::GgufFile& f = *file;
  DFLASH_ASSIGN_OR_RETURN(DFlashConfig c, DFlashConfig::from_gguf(f));
  std::unique_ptr<DFlashDrafter> d(new DFlashDrafter());
  d->impl_ = std::make_unique<Impl>();
  Impl& I = *d->impl_;
  I.file = file;
  I.pool = pool ? pool : &util::ThreadPool::global();
  const bool fork = c.arch == "dflash-draft";
  const int64_t H = c.n_embd, hd = c.head_dim;

  // Own embedding / head if present, else the target's.
  I.token_embd = token_embd;
  I.output = output_head;
  if (const auto* t = f.find_tensor("token_embd.weight")) I.token_embd = t->tensor;
  if (const auto* t = f.find_tensor("output.weight")) I.output = t->tensor;
  if (!I.token_embd.data || !I.output.data)
    return util::invalid_argument(f.path() + ": drafter has no embedding/LM head and none was lent by a target");
  if (I.token_embd.ne[0] != H || I.output.ne[0] != H)
    return util::invalid_argument(f.path() + ": embedding/LM head width differs from the drafter hidden size");
  d->n_vocab_ = I.output.ne[1];

  const formats::GgufTensorInfo* fc = f.find_tensor(fork ? "dflash_fc.weight" : "fc.weight");
  if (!fc) fc = f.find_tensor(fork ? "fc.weight" : "dflash_fc.weight");
  if (!fc) return util::not_found(f.path() + ": drafter tensor 'fc.weight' (or 'dflash_fc.weight') is missing");
  c.n_target_features = fc->tensor.ne[0];
  if (c.n_target_features % static_cast<int64_t>(c.target_layer_ids.size()))
    return util::corrupt(strfmt("%s: fc input width %lld is not a multiple of the %zu target layers",
                                f.path().c_str(), (long long)c.n_target_features, c.target_layer_ids.size()));
  DFLASH_RETURN_IF_ERROR(bind(f, {fc->tensor.name}, {c.n_target_features, H}, &I.fc));
  DFLASH_RETURN_IF_ERROR(bind(f, {"dflash_hidden_norm.weight", "enc.output_norm.weight"}, {H}, &I.hidden_norm));
  DFLASH_RETURN_IF_ERROR(bind(f, {"output_norm.weight"}, {H}, &I.output_norm));
  I.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    DraftLayer& L = I.layers[static_cast<size_t>(il)];
    auto n = [&](const char* s) { return strfmt("blk.%lld.%s", (long long)il, s); };
    DFLASH_RETURN_IF_ERROR(bind(f, {n("attn_norm.weight")}, {H}, &L.attn_norm));
    DFLASH_RETURN_IF_ERROR(bind(f, {n("post_attention_norm.weight"), n("ffn_norm.weight")}, {H}, &L.post_norm));
    DFLASH_RETURN_IF_ERROR(bind(f, {n("attn_q.weight")}, {H, c.n_head * hd}, &L.wq));
    DFLASH_RETURN_IF_ERROR(bind(f, {n("attn_k.weight")}, {H, c.n_head_kv * hd}, &L.wk));
    DFLASH_RETURN_IF_ERROR(bind(f, {n("attn_v.weight")}, {H, c.n_head_kv * hd}, &L.wv));
    DFLASH_RETURN_IF_ERROR(bind(f, {n("attn_output.weight")}, {c.n_head * hd, H}, &L.wo));
    DFLASH_RETURN_IF_ERROR(bind(f, {n("attn_q_norm.weight")}, {hd}, &L.q_norm));
    DFLASH_RETURN_IF_ERROR(bind(f, {n("attn_k_norm.weight")}, {hd}, &L.k_norm));
    DFLASH_RETURN_IF_ERROR(bind(f, {n("ffn_gate.weight")}, {H, c.n_ff}, &L.ffn_gate));
    DFLASH_RETURN_IF_ERROR(bind(f, {n("ffn_up.weight")}, {H, c.n_ff}, &L.ffn_up));
    DFLASH_RETURN_IF_ERROR(bind(f, {n("ffn_down.weight")}, {c.n_ff, H}, &L.ffn_down));
  }
  I.packed.set_copy_in_place(f.mapped());
  I.packed.add(&I.fc);
  I.packed.add(&I.output);
  for (DraftLayer& L : I.layers)
    for (Tensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) I.packed.add(t);
  d->cfg_ = c;
  d->opts_ = opts;
  I.k.resize(static_cast<size_t>(c.n_layer));
  I.v.resize(static_cast<size_t>(c.n_layer));
  DFLASH_RETURN_IF_ERROR(d->ensure_capacity(std::max<int64_t>(opts.n_ctx, 64)));
  const int64_t T = std::max<int64_t>(opts.n_batch, c.block_size);
  auto sz = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
  I.ctx.resize(sz(T, H));
  I.kbuf.resize(sz(T, c.n_head_kv * hd));
  I.vbuf.resize(sz(T, c.n_head_kv * hd));
  I.h.resize(sz(c.block_size, H));
  I.x.resize(sz(c.block_size, H));
  I.q.resize(sz(c.block_size, c.n_head * hd));
  I.attn.resize(sz(c.block_size, c.n_head * hd));
  I.tmp.resize(sz(c.block_size, H));
  I.ffa.resize(sz(c.block_size, c.n_ff));
  I.ffb.resize(sz(c.block_size, c.n_ff));
  I.hidden_rows.resize(sz(c.block_size, H));
  I.logit_rows.resize(sz(c.block_size, d->n_vocab_));
  return d;
}

Status DFlashDrafter::ensure_capacity(int64_t tokens) {
  if (tokens <= cap_) return Status::ok();
  int64_t cap = std::max<int64_t>(cap_, 64);
  while (cap < tokens) cap *= 2;
  Impl& I = *impl_;
  const int64_t nkv = cfg_.n_head_kv, hd = cfg_.head_dim;
  for (size_t il = 0; il < I.k.size(); ++il) {
    for (util::AlignedVector<float>* buf : {&I.k[il], &I.v[il]}) {
      util::AlignedVector<float> grown(static_cast<size_t>(nkv * cap * hd), 0.0f);
      for (int64_t g = 0; g < nkv && cap_ > 0; ++g)
        std::memcpy(grown.data() + g * cap * hd, buf->data() + g * cap_ * hd,
                    static_cast<size_t>(n_ctx_ * hd) * sizeof(float));
      buf->swap(grown);
    }
  }
  cap_ = cap;
  return Status::ok();
}

Status DFlashDrafter::add_context(const float* features, int64_t n) {
  if (n <= 0) return Status::ok();
  // Room for the context plus one block of draft scratch.
  DFLASH_RETURN_IF_ERROR(ensure_capacity(n_ctx_ + n + cfg_.block_size));
  util::profile::Envelope prof("[add_context]", -1, "draft/");
  Impl& I = *impl_;
  const DFlashConfig& c = cfg_;
  const int64_t H = c.n_embd, hd = c.head_dim, nkv = c.n_head_kv, F = c.n_target_features;
  const int64_t chunk = std::max<int64_t>(opts_.n_batch, c.block_size);
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t m = std::min(chunk, n - off);
    const int64_t pos0 = n_ctx_ + off;
    // ctx = hidden_norm(fc · features): the same fused context for every layer.
    ops::matmul(I.fc, features + off * F, m, I.ctx.data(), *I.pool);
    ops::rmsnorm(I.ctx.data(), I.hidden_norm.as<float>(), m, H, c.rms_eps, I.ctx.data());
    for (size_t il = 0; il < I.layers.size(); ++il) {
      const DraftLayer& L = I.layers[il];
      ops::matmul(L.wk, I.ctx.data(), m, I.kbuf.data(), *I.pool);
      ops::matmul(L.wv, I.ctx.data(), m, I.vbuf.data(), *I.pool);
      ops::head_rmsnorm(I.kbuf.data(), L.k_norm.as<float>(), m, nkv, hd, c.rms_eps);
      ops::rope_neox(I.kbuf.data(), m, nkv, hd, hd, pos0, c.rope_theta);
      ops::kv_append(I.k[il].data(), I.kbuf.data(), m, nkv, hd, cap_, pos0);
      ops::kv_append(I.v[il].data(), I.vbuf.data(), m, nkv, hd, cap_, pos0);
    }
  }
  n_ctx_ += n;
  return Status::ok();
}

Status DFlashDrafter::draft(int32_t last_token, int n_draft) {
  const DFlashConfig& c = cfg_;
  if (n_draft < 1 || n_draft >= c.block_size)
    return util::invalid_argument(strfmt("draft of %d tokens, but the drafter's block holds at most %d", n_draft,
                                         c.block_size - 1));
  if (last_token < 0 || last_token >= n_vocab_) return util::invalid_argument("draft: token id outside the vocabulary");
  DFLASH_RETURN_IF_ERROR(ensure_capacity(n_ctx_ + c.block_size));
  util::profile::Envelope prof("[draft]", -1, "draft/");
  Impl& I = *impl_;
  const int64_t T = n_draft + 1, H = c.n_embd, hd = c.head_dim, nh = c.n_head, nkv = c.n_head_kv;
  const int64_t pos0 = n_ctx_;
  // Block [last, mask × n_draft], embedded with the target's table.
  std::vector<int32_t> block(static_cast<size_t>(T), c.mask_token_id);
  block[0] = last_token;
  float* h = I.h.data();
  ops::embed(I.token_embd, block.data(), T, h);
  if (c.input_embedding_scale != 1.0f)
    for (int64_t i = 0; i < T * H; ++i) h[i] *= c.input_embedding_scale;

  for (size_t il = 0; il < I.layers.size(); ++il) {
    const DraftLayer& L = I.layers[il];
    float* x = I.x.data();
    ops::rmsnorm(h, L.attn_norm.as<float>(), T, H, c.rms_eps, x);
    float* q = I.q.data();
    ops::matmul(L.wq, x, T, q, *I.pool);
    ops::head_rmsnorm(q, L.q_norm.as<float>(), T, nh, hd, c.rms_eps);
    ops::rope_neox(q, T, nh, hd, hd, pos0, c.rope_theta);
    // The block's own K/V go after the context, as scratch (dropped: n_ctx_ is not advanced).
    ops::matmul(L.wk, x, T, I.kbuf.data(), *I.pool);
    ops::matmul(L.wv, x, T, I.vbuf.data(), *I.pool);
    ops::head_rmsnorm(I.kbuf.data(), L.k_norm.as<float>(), T, nkv, hd, c.rms_eps);
    ops::rope_neox(I.kbuf.data(), T, nkv, hd, hd, pos0, c.rope_theta);
    ops::kv_append(I.k[il].data(), I.kbuf.data(), T, nkv, hd, cap_, pos0);
    ops::kv_append(I.v[il].data(), I.vbuf.data(), T, nkv, hd, cap_, pos0);
    const int64_t window = c.swa_layers[il] ? c.sliding_window : 0;
    ops::attention_block(q, T, nh, hd, I.k[il].data(), I.v[il].data(), nkv, cap_, pos0 + T, pos0, window,
                         I.attn.data(), *I.pool);
    ops::matmul(L.wo, I.attn.data(), T, I.tmp.data(), *I.pool);
    ops::add(h, I.tmp.data(), T * H);
    ops::rmsnorm(h, L.post_norm.as<float>(), T, H, c.rms_eps, x);
    ops::matmul(L.ffn_gate, x, T, I.ffa.data(), *I.pool);
    ops::matmul(L.ffn_up, x, T, I.ffb.data(), *I.pool);
    ops::swiglu(I.ffa.data(), I.ffb.data(), T * c.n_ff, I.ffa.data(), I.pool);
    ops::matmul(L.ffn_down, I.ffa.data(), T, I.tmp.data(), *I.pool);
    ops::add(h, I.tmp.data(), T * H);
  }
  ops::rmsnorm(h, I.output_norm.as<float>(), T, H, c.rms_eps, I.hidden_rows.data());
  // Logits of block rows 1..n_draft (row 0 holds the known last token).
  ops::matmul(I.output, I.hidden_rows.data() + H, n_draft, I.logit_rows.data(), *I.pool);
  if (c.output_multiplier != 1.0f || c.logit_softcap > 0.0f) {
    for (int64_t i = 0; i < n_draft * n_vocab_; ++i) {
      float& l = I.logit_rows[static_cast<size_t>(i)];
      l *= c.output_multiplier;
      if (c.logit_softcap > 0.0f) l = std::tanh(l / c.logit_softcap) * c.logit_softcap;
    }
  }
  I.last_rows = static_cast<int>(T);
  return Status::ok();
}

const float* DFlashDrafter::logits(int i) const { return impl_->logit_rows.data() + static_cast<int64_t>(i) * n_vocab_; }
const float* DFlashDrafter::hidden(int i) const { return impl_->hidden_rows.data() + static_cast<int64_t>(i) * cfg_.n_embd; }

}  // namespace dflash::model
