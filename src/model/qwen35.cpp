// Qwen3.5 forward pass. Reads like the equations of ../shared/reference/qwen35.md §2–5; the loops
// that cost time are kernels (kernels/), called through the few lines of model/layer_ops.h.
#include "model/qwen35.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/quant.h"
#include "kernels/matmul.h"
#include "model/layer_ops.h"
#include "model/weights.h"
#include "util/aligned.h"
#include "util/log.h"
#include "util/profile.h"

namespace dflash::model {

using tensor::DType;
using tensor::Tensor;
using util::Result;
using util::Status;
using util::strfmt;

// ---------------------------------------------------------------------------------------------
// Config

Result<Qwen35Config> Qwen35Config::from_gguf(const formats::GgufFile& f) {
  Qwen35Config c;
  DFLASH_ASSIGN_OR_RETURN(std::string_view arch, f.get_string("general.architecture"));
  c.arch = std::string(arch);
  if (c.arch != "qwen35" && c.arch != "qwen35moe")
    return util::unsupported(strfmt("%s: architecture '%s' is not a Qwen3.5 target (expected qwen35 or qwen35moe)",
                                    f.path().c_str(), c.arch.c_str()));
  const std::string a = c.arch + ".";
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "block_count", &c.n_layer));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "embedding_length", &c.n_embd));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "context_length", &c.n_ctx_train));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "attention.head_count", &c.n_head));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "attention.head_count_kv", &c.n_head_kv));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "attention.key_length", &c.head_dim));
  DFLASH_RETURN_IF_ERROR(read_key(f, a + "attention.layer_norm_rms_epsilon", &c.rms_eps));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "rope.dimension_count", &c.n_rot));
  DFLASH_RETURN_IF_ERROR(read_key(f, a + "rope.freq_base", &c.rope_theta));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "ssm.conv_kernel", &c.conv_kernel));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "ssm.state_size", &c.ssm_d_state));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "ssm.group_count", &c.ssm_n_k_heads));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "ssm.time_step_rank", &c.ssm_n_v_heads));
  DFLASH_RETURN_IF_ERROR(read_dim(f, a + "ssm.inner_size", &c.ssm_d_inner));
  if (c.arch == "qwen35moe") {
    DFLASH_RETURN_IF_ERROR(read_dim(f, a + "expert_count", &c.n_expert));
    DFLASH_RETURN_IF_ERROR(read_dim(f, a + "expert_used_count", &c.n_expert_used));
    DFLASH_RETURN_IF_ERROR(read_dim(f, a + "expert_feed_forward_length", &c.n_ff_exp));
    DFLASH_ASSIGN_OR_RETURN(uint32_t shexp, f.get_u32_or(a + "expert_shared_feed_forward_length", 0));
    c.n_ff_shexp = shexp;
  } else {
    DFLASH_RETURN_IF_ERROR(read_dim(f, a + "feed_forward_length", &c.n_ff));
  }
  // Which layers are recurrent: an explicit per-layer list if present, else every layer but each
  // full_attention_interval-th.
  c.is_recurrent.assign(static_cast<size_t>(c.n_layer), false);
  if (f.has(a + "attention.recurrent_layers")) {
    DFLASH_ASSIGN_OR_RETURN(std::vector<bool> rl, f.get_array<bool>(a + "attention.recurrent_layers"));
    if (static_cast<int64_t>(rl.size()) < c.n_layer)
      return util::corrupt(strfmt("%s: %sattention.recurrent_layers has %zu entries, expected %lld",
                                  f.path().c_str(), a.c_str(), rl.size(), (long long)c.n_layer));
    for (int64_t i = 0; i < c.n_layer; ++i) c.is_recurrent[static_cast<size_t>(i)] = rl[static_cast<size_t>(i)];
  } else {
    DFLASH_ASSIGN_OR_RETURN(uint32_t interval, f.get_u32_or(a + "full_attention_interval", 4));
    if (interval == 0) return util::corrupt(f.path() + ": full_attention_interval is 0");
    for (int64_t i = 0; i < c.n_layer; ++i) c.is_recurrent[static_cast<size_t>(i)] = (i + 1) % interval != 0;
  }
  // Sanity: dimensions the forward relies on.
  auto bad = [&](const char* what) {
    return util::corrupt(strfmt("%s: inconsistent Qwen3.5 metadata: %s", f.path().c_str(), what));
  };
  if (c.n_layer <= 0 || c.n_embd <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.head_dim <= 0)
    return bad("layer/embedding/head counts must be positive");
  if (c.n_head % c.n_head_kv) return bad("attention.head_count is not a multiple of head_count_kv");
  if (c.n_rot <= 0 || c.n_rot > c.head_dim || c.n_rot % 2) return bad("rope.dimension_count must be even and ≤ key_length");
  if (c.ssm_n_k_heads <= 0 || c.ssm_n_v_heads <= 0 || c.ssm_d_state <= 0) return bad("ssm head counts must be positive");
  if (c.ssm_n_v_heads % c.ssm_n_k_heads) return bad("ssm.time_step_rank is not a multiple of ssm.group_count");
  if (c.ssm_d_inner % c.ssm_n_v_heads) return bad("ssm.inner_size is not a multiple of ssm.time_step_rank");
  if (c.head_v_dim() != c.ssm_d_state) return bad("value head dim differs from ssm.state_size");
  if (c.conv_kernel < 1 || c.conv_kernel > 16) return bad("ssm.conv_kernel out of range");
  return c;
}

// ---------------------------------------------------------------------------------------------
// Weights and state

namespace {

struct Layer {
  bool recurrent = false;
  Tensor attn_norm, post_norm;
  // Gated DeltaNet
  Tensor qkv, z, conv1d, dt_bias, ssm_a, beta, alpha, ssm_norm, ssm_out;
  // gated attention
  Tensor wq, wk, wv, wo, q_norm, k_norm;
  // dense FFN
  Tensor ffn_gate, ffn_up, ffn_down;
  // MoE
  Tensor gate_inp, gate_exps, up_exps, down_exps, gate_shexp, up_shexp, down_shexp, gate_inp_shexp;
};

// Per-token inputs of a DeltaNet layer's state updates, recorded during a verify so that a partial
// accept can be replayed onto the checkpoint (DESIGN.md, "State and rollback").
struct TapeLayer {
  util::AlignedVector<float> qkv_raw;  // [T][conv_dim] pre-conv inputs (rebuild the conv window)
  util::AlignedVector<float> k;        // [T][Hk][Dk] after l2norm
  util::AlignedVector<float> v;        // [T][Hv][Dv]
  std::vector<float> g;        // [T][Hv] log-decay
  std::vector<float> beta;     // [T][Hv] post-sigmoid
};

}  // namespace

// Rows [row0, row0 + rows) of a forward: consecutive tokens of one sequence from position pos0, with
// that sequence's state.
struct Qwen35::RowGroup {
  int64_t row0, rows, pos0;
  std::vector<util::AlignedVector<float>>& conv;
  std::vector<util::AlignedVector<float>>& ssm;
  std::vector<util::AlignedVector<float>>& kcache;
  std::vector<util::AlignedVector<float>>& vcache;
};

struct Qwen35::Impl {
  std::shared_ptr<const formats::GgufFile> file;
  util::ThreadPool* pool = nullptr;
  Tensor token_embd, output_norm, output;
  std::vector<Layer> layers;
  kernels::PackedWeights packed;  // the matrices re-laid out for this CPU's matmul kernel

  // State. Conv window [(K-1)][conv_dim] and delta-rule state [Hv][Dk][Dv] (Dk-major, as
  // kernels/deltanet.h) per recurrent layer; K and V caches [n_kv][n_ctx][head_dim] per attention layer.
  std::vector<util::AlignedVector<float>> conv;
  // Cache-line aligned: the delta-rule kernel reads and writes whole vectors of a state's rows in place
  // (a decode step at malloc's 16-byte alignment: 47 against 34 µs per 16 heads of 128², 1 thread).
  std::vector<util::AlignedVector<float>> ssm;
  std::vector<util::AlignedVector<float>> kcache, vcache;
  // Multi-sequence batching (Qwen35Options::n_seq): the current sequence's state is the four
  // vectors above; every other sequence s keeps its own in parked[s] (set_sequence swaps them).
  struct SeqState {
    std::vector<util::AlignedVector<float>> conv, ssm, kcache, vcache;
    int64_t n_past = 0;
  };
  std::vector<SeqState> parked;
  int cur_seq = 0;
  // Rows [row0, row0 + rows) of a forward belong to sequence seq, from position pos0.
  RowGroup group(int64_t row0, int64_t rows, int64_t pos0, int seq) {
    if (seq == cur_seq) return {row0, rows, pos0, conv, ssm, kcache, vcache};
    SeqState& p = parked[static_cast<size_t>(seq)];
    return {row0, rows, pos0, p.conv, p.ssm, p.kcache, p.vcache};
  }

  // Verify bookkeeping.
  bool checkpointed = false;
  int64_t ckpt_pos = 0;
  int64_t verify_len = 0;
  // The delta-rule states are not copied at a checkpoint: the verify reads ssm and writes ssm_work,
  // and keep() swaps the two (all accepted) or replays the accepted tokens onto ssm (which still
  // holds the checkpoint). Conv windows are small and copied.
  std::vector<util::AlignedVector<float>> ckpt_conv;
  std::vector<util::AlignedVector<float>> ssm_work;
  std::vector<TapeLayer> tape;
  // Oracle mode: state after every verify token, [T][state] per layer.
  std::vector<std::vector<float>> inter_ssm, inter_conv;

  // Activations (sized once for max tokens per forward chunk).
  int64_t cap_tokens = 0;
  // Cache-line aligned, as every buffer the kernels stream with full vectors.
  util::AlignedVector<float> x, h, tmp, ffn_a, ffn_b, qkv, qkv_conv, zbuf, bbuf, abuf, gbuf, core;
  util::AlignedVector<float> q, k, v, qg, attn;
  std::vector<float> router;
  // Outputs of the last forward.
  util::AlignedVector<float> logits;  // [rows][n_vocab]
  // A verify's LM head is lazy (spec::TargetModel::set_logits_hint): the final-normed rows wait in
  // head_in and logits(i) computes them on first request, head_first of them together, then the rest.
  util::AlignedVector<float> head_in;  // [rows][n_embd]
  int64_t head_rows = 0;       // rows whose head input is in head_in
  int64_t head_done = 0;       // rows of logits computed so far (lazy verify); n_logit_rows otherwise
  int64_t head_first = 0;      // rows the first request computes (0: all)
  std::vector<float> features;  // [tokens][n_capture × n_embd]
  int64_t n_logit_rows = 0;
  bool capture_all = false;
  std::vector<float> all_layers;  // [n_layer][tokens][n_embd]
  int64_t all_layers_tokens = 0;
};

Qwen35::~Qwen35() = default;

namespace {
Status bind(const formats::GgufFile& f, const std::string& name, std::vector<int64_t> ne, Tensor* out,
            bool required = true) {
  return bind_tensor(f, {name}, ne, out, required);
}
}  // namespace

Result<std::unique_ptr<Qwen35>> Qwen35::load(std::shared_ptr<const formats::GgufFile> file,
                                             const Qwen35Options& opts, util::ThreadPool* pool) {
  const formats::GgufFile& f = *file;
  DFLASH_ASSIGN_OR_RETURN(Qwen35Config c, Qwen35Config::from_gguf(f));
  std::unique_ptr<Qwen35> m(new Qwen35());
  m->cfg_ = c;
  m->opts_ = opts;
  m->impl_ = std::make_unique<Impl>();
  Impl& I = *m->impl_;
  I.file = file;
  I.pool = pool ? pool : &util::ThreadPool::global();

  if (opts.n_ctx <= 0) return util::invalid_argument("context size must be positive");
  if (opts.n_batch <= 0 || opts.max_verify <= 0) return util::invalid_argument("batch sizes must be positive");
  if (opts.n_seq < 1 || opts.n_seq > 256)
    return util::invalid_argument(strfmt("n_seq must be in [1, 256], got %d", opts.n_seq));
  for (int l : opts.capture_layers)
    if (l < 0 || l >= c.n_layer)
      return util::invalid_argument(strfmt("capture layer %d is outside the target's %lld layers", l,
                                           (long long)c.n_layer));

  // Vocabulary size comes from the embedding table.
  const formats::GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  if (!emb) return util::not_found(f.path() + ": tensor 'token_embd.weight' is missing");
  m->cfg_.n_vocab = emb->tensor.ne[1];
  Qwen35Config& C = m->cfg_;
  const int64_t H = C.n_embd, V = C.n_vocab;
  DFLASH_RETURN_IF_ERROR(bind(f, "token_embd.weight", {H, V}, &I.token_embd));
  if (!formats::codec_supported(I.token_embd.dtype))
    return util::unsupported(f.path() + ": token_embd.weight has an unsupported type");
  DFLASH_RETURN_IF_ERROR(bind(f, "output_norm.weight", {H}, &I.output_norm));
  DFLASH_RETURN_IF_ERROR(bind(f, "output.weight", {H, V}, &I.output, /*required=*/false));
  if (!I.output.data) I.output = I.token_embd;  // tied embeddings

  const int64_t Hv = C.ssm_n_v_heads, Dv = C.head_v_dim(), hd = C.head_dim;
  // The layer schedule in the metadata can be wrong: converters that only know
  // full_attention_interval write it for checkpoints with an explicit, non-periodic layer_types.
  // The tensors present are the ground truth; follow them and say so.
  for (int64_t il = 0; il < C.n_layer; ++il) {
    const bool has_gdn = f.find_tensor(strfmt("blk.%lld.attn_qkv.weight", (long long)il)) != nullptr;
    const bool has_attn = f.find_tensor(strfmt("blk.%lld.attn_q.weight", (long long)il)) != nullptr;
    const bool rec = C.is_recurrent[static_cast<size_t>(il)];
    if (has_gdn != has_attn && has_gdn != rec) {
      LOG_WARN("%s: layer %lld is %s by its tensors but %s by the metadata's layer schedule; following the tensors",
               f.path().c_str(), (long long)il, has_gdn ? "Gated DeltaNet" : "full attention",
               rec ? "Gated DeltaNet" : "full attention");
      C.is_recurrent[static_cast<size_t>(il)] = has_gdn;
    }
  }
  I.layers.resize(static_cast<size_t>(C.n_layer));
  for (int64_t il = 0; il < C.n_layer; ++il) {
    Layer& L = I.layers[static_cast<size_t>(il)];
    L.recurrent = C.is_recurrent[static_cast<size_t>(il)];
    auto n = [&](const char* s) { return strfmt("blk.%lld.%s", (long long)il, s); };
    DFLASH_RETURN_IF_ERROR(bind(f, n("attn_norm.weight"), {H}, &L.attn_norm));
    DFLASH_RETURN_IF_ERROR(bind(f, n("post_attention_norm.weight"), {H}, &L.post_norm));
    if (L.recurrent) {
      DFLASH_RETURN_IF_ERROR(bind(f, n("attn_qkv.weight"), {H, C.conv_dim()}, &L.qkv));
      DFLASH_RETURN_IF_ERROR(bind(f, n("attn_gate.weight"), {H, C.ssm_d_inner}, &L.z));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ssm_conv1d.weight"), {C.conv_kernel, C.conv_dim()}, &L.conv1d));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ssm_dt.bias"), {Hv}, &L.dt_bias));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ssm_a"), {Hv}, &L.ssm_a));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ssm_beta.weight"), {H, Hv}, &L.beta));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ssm_alpha.weight"), {H, Hv}, &L.alpha));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ssm_norm.weight"), {Dv}, &L.ssm_norm));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ssm_out.weight"), {C.ssm_d_inner, H}, &L.ssm_out));
      if (L.conv1d.dtype != DType::kF32)
        return util::unsupported(f.path() + ": " + n("ssm_conv1d.weight") + " must be f32");
    } else {
      DFLASH_RETURN_IF_ERROR(bind(f, n("attn_q.weight"), {H, 2 * C.n_head * hd}, &L.wq));
      DFLASH_RETURN_IF_ERROR(bind(f, n("attn_k.weight"), {H, C.n_head_kv * hd}, &L.wk));
      DFLASH_RETURN_IF_ERROR(bind(f, n("attn_v.weight"), {H, C.n_head_kv * hd}, &L.wv));
      DFLASH_RETURN_IF_ERROR(bind(f, n("attn_output.weight"), {C.n_head * hd, H}, &L.wo));
      DFLASH_RETURN_IF_ERROR(bind(f, n("attn_q_norm.weight"), {hd}, &L.q_norm));
      DFLASH_RETURN_IF_ERROR(bind(f, n("attn_k_norm.weight"), {hd}, &L.k_norm));
    }
    if (C.moe()) {
      const int64_t E = C.n_expert, F = C.n_ff_exp;
      DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_gate_inp.weight"), {H, E}, &L.gate_inp));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_gate_exps.weight"), {H, F, E}, &L.gate_exps));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_up_exps.weight"), {H, F, E}, &L.up_exps));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_down_exps.weight"), {F, H, E}, &L.down_exps));
      if (C.n_ff_shexp > 0) {
        DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_gate_shexp.weight"), {H, C.n_ff_shexp}, &L.gate_shexp));
        DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_up_shexp.weight"), {H, C.n_ff_shexp}, &L.up_shexp));
        DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_down_shexp.weight"), {C.n_ff_shexp, H}, &L.down_shexp));
        // The shared-expert gate is a {H} vector or an {H, 1} matrix depending on the converter;
        // either way it is used as a one-row matrix.
        const formats::GgufTensorInfo* sg = f.find_tensor(n("ffn_gate_inp_shexp.weight"));
        if (sg && sg->tensor.n_dims == 1) {
          DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_gate_inp_shexp.weight"), {H}, &L.gate_inp_shexp));
          L.gate_inp_shexp.n_dims = 2;
          L.gate_inp_shexp.ne[1] = 1;
        } else {
          DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_gate_inp_shexp.weight"), {H, 1}, &L.gate_inp_shexp));
        }
      }
    } else {
      DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_gate.weight"), {H, C.n_ff}, &L.ffn_gate));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_up.weight"), {H, C.n_ff}, &L.ffn_up));
      DFLASH_RETURN_IF_ERROR(bind(f, n("ffn_down.weight"), {C.n_ff, H}, &L.ffn_down));
    }
  }

  // Matrices the matmul kernel reads faster re-laid out (a no-op on CPUs without such a kernel).
  // MoE expert stacks stay in place: they are read sparsely and can be larger than memory, and the mapping
  // costs them nothing measurable (35B-A3B shape, 4 layers: decode 40.8–41.0 tok/s mapped, 39.9–41.6 copied).
  I.packed.set_copy_in_place(f.mapped());
  I.packed.add(&I.output);
  for (Layer& L : I.layers)
    for (Tensor* t : {&L.qkv, &L.z, &L.beta, &L.alpha, &L.ssm_out, &L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate,
                      &L.ffn_up, &L.ffn_down, &L.gate_inp, &L.gate_shexp, &L.up_shexp, &L.down_shexp})
      I.packed.add(t);
  if (I.packed.count() + I.packed.copied() > 0)
    LOG_DEBUG("%s: %zu matrices re-laid out for the matmul kernel, %zu copied out of the mapping (%.1f MiB)",
              f.path().c_str(), I.packed.count(), I.packed.copied(), (I.packed.bytes() + I.packed.copied_bytes()) / 1048576.0);

  // State buffers.
  const size_t n_layer = static_cast<size_t>(C.n_layer);
  I.conv.resize(n_layer);
  I.ssm.resize(n_layer);
  I.kcache.resize(n_layer);
  I.vcache.resize(n_layer);
  I.tape.resize(n_layer);
  for (size_t il = 0; il < n_layer; ++il) {
    if (I.layers[il].recurrent) {
      I.conv[il].assign(static_cast<size_t>((C.conv_kernel - 1) * C.conv_dim()), 0.0f);
      I.ssm[il].assign(static_cast<size_t>(Hv * C.ssm_d_state * Dv), 0.0f);
    } else {
      const size_t kv = static_cast<size_t>(opts.n_ctx * C.n_head_kv * hd);
      I.kcache[il].assign(kv, 0.0f);
      I.vcache[il].assign(kv, 0.0f);
    }
  }
  I.parked.resize(static_cast<size_t>(opts.n_seq));
  for (int sq = 1; sq < opts.n_seq; ++sq) {
    Impl::SeqState& ps = I.parked[static_cast<size_t>(sq)];
    ps.conv = I.conv;
    ps.ssm = I.ssm;
    ps.kcache = I.kcache;
    ps.vcache = I.vcache;
  }
  // Activation buffers for the largest chunk a forward processes at once.
  const int64_t T = std::max({opts.n_batch, opts.max_verify, static_cast<int64_t>(opts.n_seq)});
  I.cap_tokens = T;
  const int64_t ff = C.moe() ? std::max(C.n_ff_exp, C.n_ff_shexp) : C.n_ff;
  auto sz = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
  I.x.resize(sz(T, H));
  I.h.resize(sz(T, H));
  I.tmp.resize(sz(T, std::max(H, C.n_head * hd)));
  I.ffn_a.resize(sz(T, ff));
  I.ffn_b.resize(sz(T, ff));
  I.qkv.resize(sz(T, C.conv_dim()));
  I.qkv_conv.resize(sz(T, C.conv_dim()));
  I.zbuf.resize(sz(T, C.ssm_d_inner));
  I.core.resize(sz(T, C.ssm_d_inner));
  I.bbuf.resize(sz(T, Hv));
  I.abuf.resize(sz(T, Hv));
  I.gbuf.resize(sz(T, Hv));
  I.qg.resize(sz(T, 2 * C.n_head * hd));
  I.q.resize(sz(T, C.n_head * hd));
  I.k.resize(sz(T, C.n_head_kv * hd));
  I.v.resize(sz(T, C.n_head_kv * hd));
  I.attn.resize(sz(T, C.n_head * hd));
  if (C.moe()) I.router.resize(sz(T, C.n_expert));
  return m;
}

// ---------------------------------------------------------------------------------------------
// Forward

Status Qwen35::forward(std::span<const int32_t> tokens, bool all_logits) {
  Impl& I = *impl_;
  const Qwen35Config& C = cfg_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return util::invalid_argument("forward: no tokens");
  if (n_past_ + n > opts_.n_ctx)
    return util::out_of_range(strfmt("context full: %lld tokens in the state + %lld new exceed the context size %lld "
                                     "(raise --ctx-size)", (long long)n_past_, (long long)n, (long long)opts_.n_ctx));
  DFLASH_RETURN_IF_ERROR(check_tokens(tokens));
  if (I.checkpointed && (I.verify_len > 0 || n > opts_.max_verify))
    return util::invalid_argument(strfmt("a checkpointed forward takes one block of at most %lld tokens",
                                         (long long)opts_.max_verify));

  size_outputs(n, all_logits ? n : 1);
  if (I.checkpointed) {
    I.verify_len = n;
    for (size_t il = 0; il < I.layers.size(); ++il) {
      if (!I.layers[il].recurrent) continue;
      TapeLayer& tp = I.tape[il];
      tp.qkv_raw.resize(static_cast<size_t>(n * C.conv_dim()));
      tp.k.resize(static_cast<size_t>(n * C.key_dim()));
      tp.v.resize(static_cast<size_t>(n * C.ssm_d_inner));
      tp.g.resize(static_cast<size_t>(n * C.ssm_n_v_heads));
      tp.beta.resize(static_cast<size_t>(n * C.ssm_n_v_heads));
    }
    if (opts_.keep_intermediate_states) {
      I.inter_ssm.assign(I.layers.size(), {});
      I.inter_conv.assign(I.layers.size(), {});
    }
  }

  const int64_t chunk = I.checkpointed ? n : opts_.n_batch;
  for (int64_t off = 0; off < n; off += chunk) {
    const int64_t m = std::min(chunk, n - off);
    const RowGroup g = I.group(0, m, n_past_ + off, I.cur_seq);
    run_layers(tokens.data() + off, m, &g, 1, off, all_logits, off + m == n);
  }
  n_past_ += n;
  return Status::ok();
}

Status Qwen35::forward_batch(std::span<const int32_t> tokens, std::span<const int> seqs) {
  Impl& I = *impl_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0 || seqs.size() != tokens.size())
    return util::invalid_argument("forward_batch: one token per listed sequence, at least one");
  if (n > I.cap_tokens)
    return util::invalid_argument(strfmt("forward_batch: %lld rows exceed the %lld the model was sized for",
                                         (long long)n, (long long)I.cap_tokens));
  if (I.checkpointed) return util::invalid_argument("forward_batch: not while a verify checkpoint is open");
  DFLASH_RETURN_IF_ERROR(check_tokens(tokens));
  std::vector<bool> seen(static_cast<size_t>(opts_.n_seq), false);
  std::vector<RowGroup> groups;
  groups.reserve(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    const int sq = seqs[static_cast<size_t>(r)];
    if (sq < 0 || sq >= opts_.n_seq || seen[static_cast<size_t>(sq)])
      return util::invalid_argument(strfmt("forward_batch: sequence %d is out of range [0, %d) or listed twice", sq,
                                           opts_.n_seq));
    seen[static_cast<size_t>(sq)] = true;
    const int64_t past = sq == I.cur_seq ? n_past_ : I.parked[static_cast<size_t>(sq)].n_past;
    if (past + 1 > opts_.n_ctx)
      return util::out_of_range(strfmt("context full: sequence %d has %lld tokens, the context size is %lld "
                                       "(raise --ctx-size)", sq, (long long)past, (long long)opts_.n_ctx));
    groups.push_back(I.group(r, 1, past, sq));
  }
  size_outputs(n, n);
  run_layers(tokens.data(), n, groups.data(), static_cast<int>(groups.size()), 0, /*all_logits=*/true, true);
  for (int64_t r = 0; r < n; ++r) {
    const int sq = seqs[static_cast<size_t>(r)];
    if (sq == I.cur_seq)
      ++n_past_;
    else
      ++I.parked[static_cast<size_t>(sq)].n_past;
  }
  return Status::ok();
}

Status Qwen35::set_sequence(int seq) {
  Impl& I = *impl_;
  if (seq < 0 || seq >= opts_.n_seq)
    return util::invalid_argument(strfmt("sequence %d is out of range [0, %d) (Qwen35Options::n_seq)", seq, opts_.n_seq));
  if (I.checkpointed) return util::invalid_argument("set_sequence: not while a verify checkpoint is open");
  if (seq == I.cur_seq) return Status::ok();
  // Park the current sequence's state, then take the requested one's (vector swaps, no copies).
  auto exchange = [&](Impl::SeqState& s) {
    I.conv.swap(s.conv);
    I.ssm.swap(s.ssm);
    I.kcache.swap(s.kcache);
    I.vcache.swap(s.vcache);
    std::swap(n_past_, s.n_past);
  };
  exchange(I.parked[static_cast<size_t>(I.cur_seq)]);
  exchange(I.parked[static_cast<size_t>(seq)]);
  I.cur_seq = seq;
  return Status::ok();
}

int Qwen35::sequence() const { return impl_->cur_seq; }

Status Qwen35::check_tokens(std::span<const int32_t> tokens) const {
  for (int32_t t : tokens)
    if (t < 0 || t >= cfg_.n_vocab)
      return util::invalid_argument(strfmt("token id %d is outside the vocabulary [0, %lld)", t, (long long)cfg_.n_vocab));
  return Status::ok();
}

// Output buffers of a forward over n rows with logits for logit_rows of them.
void Qwen35::size_outputs(int64_t n, int64_t logit_rows) {
  Impl& I = *impl_;
  I.n_logit_rows = logit_rows;
  I.head_rows = 0;  // run_layers makes a verify's head lazy
  I.head_done = logit_rows;
  I.logits.resize(static_cast<size_t>(logit_rows * cfg_.n_vocab));
  I.features.resize(static_cast<size_t>(n * feature_dim()));
  if (I.capture_all) {
    I.all_layers.resize(static_cast<size_t>(cfg_.n_layer * n * cfg_.n_embd));
    I.all_layers_tokens = n;
  }
}

// The layer stack over m rows. Each row group has its own sequence state and starting position: one
// group of m consecutive tokens for a plain forward, one group per row (a token of a different
// sequence each) for forward_batch. Row-wise work (norms, matmuls, FFN) runs on all m rows at once;
// the recurrent and attention parts per group.
void Qwen35::run_layers(const int32_t* tok, int64_t m, const RowGroup* groups, int n_groups, int64_t off,
                        bool all_logits, bool last_chunk) {
  Impl& I = *impl_;
  const Qwen35Config& C = cfg_;
  const int64_t H = C.n_embd, V = C.n_vocab;
  const int64_t fdim = feature_dim();
  const int64_t n = I.all_layers_tokens;
  float* x = I.x.data();
  float* h = I.h.data();
  util::profile::Envelope prof("[forward]", m);

  ops::embed(I.token_embd, tok, m, x);

  for (int64_t il = 0; il < C.n_layer; ++il) {
    const size_t li = static_cast<size_t>(il);
    const Layer& L = I.layers[li];
    ops::rmsnorm(x, L.attn_norm.as<float>(), m, H, C.rms_eps, h);
    if (L.recurrent) {
      // ---- Gated DeltaNet (qwen35.md §2.2) ----
      const int64_t Hk = C.ssm_n_k_heads, Hv = C.ssm_n_v_heads, Dk = C.ssm_d_state, Dv = C.head_v_dim();
      const int64_t CD = C.conv_dim(), KD = C.key_dim(), DI = C.ssm_d_inner;
      float* qkv = I.qkv.data();
      float* z = I.zbuf.data();
      float* b = I.bbuf.data();
      float* a = I.abuf.data();
      ops::matmul(L.qkv, h, m, qkv, *I.pool);
      ops::matmul(L.z, h, m, z, *I.pool);
      ops::matmul(L.beta, h, m, b, *I.pool);
      ops::matmul(L.alpha, h, m, a, *I.pool);
      // beta = σ(b); g = softplus(a + dt_bias) · ssm_a   (ssm_a = −exp(A_log))
      float* g = I.gbuf.data();
      ops::deltanet_gates(b, a, L.dt_bias.as<float>(), L.ssm_a.as<float>(), m, Hv, b, g);
      if (I.checkpointed) {
        TapeLayer& tp = I.tape[li];
        std::memcpy(tp.qkv_raw.data(), qkv, static_cast<size_t>(m * CD) * sizeof(float));
      }
      // Causal depthwise conv over [window ; qkv] then SiLU; the window keeps pre-conv inputs.
      float* qc = I.qkv_conv.data();
      for (int gi = 0; gi < n_groups; ++gi) {
        const RowGroup& G = groups[gi];
        ops::conv1d_silu(qkv + G.row0 * CD, G.rows, CD, L.conv1d.as<float>(), C.conv_kernel, G.conv[li].data(),
                         qc + G.row0 * CD, I.pool);
      }
      // Split into q, k (Hk heads) and v (Hv heads); l2-normalise q and k, scale q by 1/sqrt(Dk).
      ops::deltanet_qk_norm(qc, m, CD, Hk, Dk, C.rms_eps);
      float* o = I.core.data();
      if (I.checkpointed) {  // one group: the verify block
        util::AlignedVector<float>& S = groups[0].ssm[li];
        TapeLayer& tp = I.tape[li];
        for (int64_t t = 0; t < m; ++t) {
          std::memcpy(tp.k.data() + t * KD, qc + t * CD + KD, static_cast<size_t>(KD) * sizeof(float));
          std::memcpy(tp.v.data() + t * DI, qc + t * CD + 2 * KD, static_cast<size_t>(DI) * sizeof(float));
        }
        std::memcpy(tp.g.data(), g, static_cast<size_t>(m * Hv) * sizeof(float));
        std::memcpy(tp.beta.data(), b, static_cast<size_t>(m * Hv) * sizeof(float));
        std::vector<float>* inter = opts_.keep_intermediate_states ? &I.inter_ssm[li] : nullptr;
        ops::deltanet_recurrent(qc, m, CD, Hk, Hv, Dk, Dv, g, b, I.ssm_work[li].data(), o, inter, *I.pool, S.data());
        if (opts_.keep_intermediate_states) {
          // conv windows after each token, for the oracle
          std::vector<float>& ic = I.inter_conv[li];
          const int64_t W = (C.conv_kernel - 1) * CD;
          ic.resize(static_cast<size_t>(m * W));
          const util::AlignedVector<float>& base = I.ckpt_conv[li];
          for (int64_t t = 0; t < m; ++t)
            ops::conv_window_after(base.data(), tp.qkv_raw.data(), t + 1, CD, C.conv_kernel, ic.data() + t * W);
        }
      } else {
        for (int gi = 0; gi < n_groups; ++gi) {
          const RowGroup& G = groups[gi];
          const int64_t r0 = G.row0;
          if (G.rows == 1 || opts_.delta_chunk <= 0)
            ops::deltanet_recurrent(qc + r0 * CD, G.rows, CD, Hk, Hv, Dk, Dv, g + r0 * Hv, b + r0 * Hv,
                                    G.ssm[li].data(), o + r0 * DI, nullptr, *I.pool);
          else
            ops::deltanet_chunked(qc + r0 * CD, G.rows, CD, Hk, Hv, Dk, Dv, g + r0 * Hv, b + r0 * Hv,
                                  G.ssm[li].data(), o + r0 * DI, opts_.delta_chunk, *I.pool);
        }
      }
      // Gated RMSNorm per value head: norm(o)·w·silu(z); then the output projection.
      ops::gated_rmsnorm(o, z, L.ssm_norm.as<float>(), m * Hv, Dv, C.rms_eps, o, I.pool);
      ops::matmul(L.ssm_out, o, m, h, *I.pool);
    } else {
      // ---- gated full attention (qwen35.md §3) ----
      const int64_t nh = C.n_head, nkv = C.n_head_kv, hd = C.head_dim;
      float* qg = I.qg.data();
      ops::matmul(L.wq, h, m, qg, *I.pool);
      float* q = I.q.data();
      float* gate = I.attn.data();  // reuse: gate rows
      ops::split_query_gate(qg, m, nh, hd, q, gate);
      float* k = I.k.data();
      float* v = I.v.data();
      ops::matmul(L.wk, h, m, k, *I.pool);
      ops::matmul(L.wv, h, m, v, *I.pool);
      ops::head_rmsnorm(q, L.q_norm.as<float>(), m, nh, hd, C.rms_eps);
      ops::head_rmsnorm(k, L.k_norm.as<float>(), m, nkv, hd, C.rms_eps);
      float* out = I.tmp.data();
      for (int gi = 0; gi < n_groups; ++gi) {
        const RowGroup& G = groups[gi];
        float* qr = q + G.row0 * nh * hd;
        float* kr = k + G.row0 * nkv * hd;
        ops::rope_neox(qr, G.rows, nh, hd, C.n_rot, G.pos0, C.rope_theta);
        ops::rope_neox(kr, G.rows, nkv, hd, C.n_rot, G.pos0, C.rope_theta);
        float* kc = G.kcache[li].data();
        float* vc = G.vcache[li].data();
        ops::kv_append(kc, kr, G.rows, nkv, hd, opts_.n_ctx, G.pos0);
        ops::kv_append(vc, v + G.row0 * nkv * hd, G.rows, nkv, hd, opts_.n_ctx, G.pos0);
        ops::attention_causal(qr, G.rows, nh, hd, kc, vc, nkv, opts_.n_ctx, G.pos0, out + G.row0 * nh * hd, *I.pool);
      }
      ops::mul_sigmoid(out, gate, m * nh * hd, I.pool);  // output gate
      ops::matmul(L.wo, out, m, h, *I.pool);
    }
    ops::add(x, h, m * H);  // residual
    // ---- FFN ----
    ops::rmsnorm(x, L.post_norm.as<float>(), m, H, C.rms_eps, h);
    if (C.moe()) {
      ops::moe_ffn(L.gate_inp, L.gate_exps, L.up_exps, L.down_exps, C.n_expert_used,
                   L.gate_shexp.data ? &L.gate_shexp : nullptr, L.up_shexp.data ? &L.up_shexp : nullptr,
                   L.down_shexp.data ? &L.down_shexp : nullptr,
                   L.gate_inp_shexp.data ? &L.gate_inp_shexp : nullptr, h, m, H, I.tmp.data(),
                   I.ffn_a.data(), I.ffn_b.data(), I.router.data(), *I.pool);
      std::memcpy(h, I.tmp.data(), static_cast<size_t>(m * H) * sizeof(float));
    } else {
      ops::matmul(L.ffn_gate, h, m, I.ffn_a.data(), *I.pool);
      ops::matmul(L.ffn_up, h, m, I.ffn_b.data(), *I.pool);
      ops::swiglu(I.ffn_a.data(), I.ffn_b.data(), m * C.n_ff, I.ffn_a.data(), I.pool);
      ops::matmul(L.ffn_down, I.ffn_a.data(), m, h, *I.pool);
    }
    ops::add(x, h, m * H);
    // Capture the residual stream after this layer (HF hidden_states[il + 1]).
    // For the last layer this is the final-norm output: transformers' hidden_states[n_layer] is
    // post-norm, and that is what drafters trained on it read (docs/dflash-reference-notes.md §2).
    for (size_t cj = 0; cj < opts_.capture_layers.size(); ++cj) {
      if (opts_.capture_layers[cj] != il) continue;
      for (int64_t t = 0; t < m; ++t) {
        float* dst = I.features.data() + (off + t) * fdim + static_cast<int64_t>(cj) * H;
        if (il == C.n_layer - 1) {
          ops::rmsnorm(x + t * H, I.output_norm.as<float>(), 1, H, C.rms_eps, dst);
        } else {
          std::memcpy(dst, x + t * H, static_cast<size_t>(H) * sizeof(float));
        }
      }
    }
    if (I.capture_all)
      std::memcpy(I.all_layers.data() + (il * n + off) * H, x, static_cast<size_t>(m * H) * sizeof(float));
  }
  // Final norm and LM head for the rows whose logits are wanted. A verify block only normalises: its
  // rows after the first rejected draft are never read, and on a large vocabulary (0.8B shape: 254 M
  // weights, a third of the model) computing them costs up to 2.5 decodes at 16 tokens.
  if (all_logits && I.checkpointed && opts_.lazy_verify_head && n_groups == 1) {
    I.head_in.resize(static_cast<size_t>((off + m) * H));
    ops::rmsnorm(x, I.output_norm.as<float>(), m, H, C.rms_eps, I.head_in.data() + off * H);
    I.head_rows = off + m;
    I.head_done = 0;
  } else if (all_logits) {
    ops::rmsnorm(x, I.output_norm.as<float>(), m, H, C.rms_eps, h);
    ops::matmul(I.output, h, m, I.logits.data() + off * V, *I.pool);
  } else if (last_chunk) {
    ops::rmsnorm(x + (m - 1) * H, I.output_norm.as<float>(), 1, H, C.rms_eps, h);
    ops::matmul(I.output, h, 1, I.logits.data(), *I.pool);
  }
}

const float* Qwen35::logits(int64_t i) const {
  Impl& I = *impl_;
  if (i >= I.head_done && i < I.head_rows) {
    // First request: head_first rows (at least up to i); later ones: everything left.
    const int64_t want = I.head_done == 0 && I.head_first > 0 ? std::max(I.head_first, i + 1) : I.head_rows;
    const int64_t n = std::min(want, I.head_rows) - I.head_done;
    ops::matmul(I.output, I.head_in.data() + I.head_done * cfg_.n_embd, n,
                I.logits.data() + I.head_done * cfg_.n_vocab, *I.pool);
    I.head_done += n;
  }
  return I.logits.data() + i * cfg_.n_vocab;
}

void Qwen35::set_logits_hint(int64_t rows) { impl_->head_first = std::max<int64_t>(rows, 0); }
const float* Qwen35::features(int64_t i) const {
  return impl_->features.data() + i * feature_dim();
}

void Qwen35::checkpoint() {
  util::profile::Scope prof("checkpoint");
  Impl& I = *impl_;
  I.checkpointed = true;
  I.ckpt_pos = n_past_;
  I.verify_len = 0;
  I.ckpt_conv.resize(I.layers.size());
  I.ssm_work.resize(I.layers.size());
  for (size_t il = 0; il < I.layers.size(); ++il) {
    if (!I.layers[il].recurrent) continue;
    I.ckpt_conv[il] = I.conv[il];
    I.ssm_work[il].resize(I.ssm[il].size());  // allocated once; its contents are overwritten by the verify
  }
}

Status Qwen35::keep(int64_t n) {
  Impl& I = *impl_;
  if (!I.checkpointed) return util::internal_error("keep() without checkpoint()");
  if (n < 0 || n > I.verify_len)
    return util::invalid_argument(strfmt("keep(%lld) but the verify fed %lld tokens", (long long)n, (long long)I.verify_len));
  const Qwen35Config& C = cfg_;
  for (size_t il = 0; il < I.layers.size(); ++il) {
    if (!I.layers[il].recurrent) continue;
    if (n == I.verify_len && n > 0) {  // everything accepted: the verify's result becomes the state
      I.ssm[il].swap(I.ssm_work[il]);
      continue;
    }
    const TapeLayer& tp = I.tape[il];
    if (opts_.keep_intermediate_states) {
      if (n == 0) {
        I.conv[il] = I.ckpt_conv[il];
      } else {
        const size_t s = I.ssm[il].size(), w = I.conv[il].size();
        std::memcpy(I.ssm[il].data(), I.inter_ssm[il].data() + (n - 1) * s, s * sizeof(float));
        std::memcpy(I.conv[il].data(), I.inter_conv[il].data() + (n - 1) * w, w * sizeof(float));
      }
      continue;
    }
    // ssm still holds the checkpoint: replay the first n recorded updates onto it (no outputs needed).
    ops::deltanet_replay(tp.k.data(), tp.v.data(), tp.g.data(), tp.beta.data(), n, C.ssm_n_k_heads,
                         C.ssm_n_v_heads, C.ssm_d_state, C.head_v_dim(), I.ssm[il].data(), *I.pool);
    ops::conv_window_after(I.ckpt_conv[il].data(), tp.qkv_raw.data(), n, C.conv_dim(), C.conv_kernel,
                           I.conv[il].data());
  }
  n_past_ = I.ckpt_pos + n;  // attention layers: the KV cache is truncated by the length alone
  I.checkpointed = false;
  I.verify_len = 0;
  return Status::ok();
}

void Qwen35::reset() {
  Impl& I = *impl_;
  n_past_ = 0;
  I.checkpointed = false;
  I.verify_len = 0;
  I.head_rows = 0;
  for (auto& c : I.conv) std::fill(c.begin(), c.end(), 0.0f);
  for (auto& s : I.ssm) std::fill(s.begin(), s.end(), 0.0f);
}

const Tensor& Qwen35::token_embd() const { return impl_->token_embd; }
const Tensor& Qwen35::output_head() const { return impl_->output; }
const Tensor& Qwen35::output_norm() const { return impl_->output_norm; }

std::span<const float> Qwen35::conv_state(int il) const { return impl_->conv[static_cast<size_t>(il)]; }
std::span<const float> Qwen35::ssm_state(int il) const { return impl_->ssm[static_cast<size_t>(il)]; }
void Qwen35::set_capture_all_layers(bool on) { impl_->capture_all = on; }
const float* Qwen35::layer_output(int il, int64_t token) const {
  const Impl& I = *impl_;
  return I.all_layers.data() + (il * I.all_layers_tokens + token) * cfg_.n_embd;
}

}  // namespace dflash::model
