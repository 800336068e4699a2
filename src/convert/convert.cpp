// HF checkpoint → GGUF. Facts (names, keys, transformations): ../shared/reference/llamacpp.md §B,
// qwen35.md §7–8, docs/dflash-reference-notes.md §8, docs/convert.md. The plan is built first (every
// tensor mapped, every shape checked against config.json), then the writer pulls the tensors one by
// one; a tensor is produced row by row from the mmap'd sources, so nothing but the output tensor in
// flight is held in memory.
#include "convert/convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "convert/hf_config.h"
#include "formats/gguf.h"
#include "formats/quant.h"
#include "formats/safetensors.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/hf_json.h"
#include "util/log.h"
#include "util/mmap_file.h"
#include "util/progress.h"
#include "util/thread_pool.h"

namespace dflash::convert {

namespace fs = std::filesystem;
using formats::FileType;
using formats::GgufValue;
using formats::GgufWriter;
using formats::SafetensorsTensor;
using tensor::DType;
using util::Result;
using util::Status;
using util::strfmt;

Result<OutType> parse_outtype(std::string_view s) {
  std::string l(s);
  for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "auto") return OutType::kAuto;
  if (l == "f32") return OutType::kF32;
  if (l == "f16") return OutType::kF16;
  if (l == "bf16") return OutType::kBF16;
  if (l == "q8_0") return OutType::kQ8_0;
  if (l == "q4_k_m") return OutType::kQ4_K_M;
  return util::invalid_argument("unknown --outtype '" + l + "' (auto, f32, f16, bf16, q8_0, q4_k_m)");
}

const char* outtype_name(OutType t) {
  switch (t) {
    case OutType::kAuto: return "auto";
    case OutType::kF32: return "f32";
    case OutType::kF16: return "f16";
    case OutType::kBF16: return "bf16";
    case OutType::kQ8_0: return "q8_0";
    case OutType::kQ4_K_M: return "q4_k_m";
  }
  return "?";
}

Result<DraftFormat> parse_draft_format(std::string_view s) {
  if (s == "dflash") return DraftFormat::kUpstream;
  if (s == "dflash-draft") return DraftFormat::kFork;
  return util::invalid_argument("unknown --draft-format '" + std::string(s) + "' (dflash, dflash-draft)");
}

namespace {

// ---------------------------------------------------------------------------------------------
// The plan: one entry per output tensor.

enum class Op { kCopy, kPlusOne, kNegExp };

struct RowRef {
  int src;      // index into OutTensor::srcs
  int64_t row;  // row of that source (rows have the output's row length)
};

struct OutTensor {
  std::string name;
  std::vector<int64_t> ne;  // GGUF order, innermost first
  std::vector<const SafetensorsTensor*> srcs;
  std::function<RowRef(int64_t)> row_of;  // null: one source, rows in order
  std::vector<int64_t> col_perm;          // empty: identity; else out col c ← src col col_perm[c]
  Op op = Op::kCopy;
  DType dtype = DType::kF32;
};

int64_t n_rows(const std::vector<int64_t>& ne) {
  int64_t r = 1;
  for (size_t i = 1; i < ne.size(); ++i) r *= ne[i];
  return r;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

// Context for tensor errors: which file holds the tensor.
std::string where(const SafetensorsTensor* t) {
  return "tensor " + util::quote(t->name) + " in " + (t->file ? *t->file : std::string("the checkpoint"));
}

Status expect_shape(const SafetensorsTensor* t, const std::vector<int64_t>& want, const std::string& why) {
  if (t->shape == want) return Status::ok();
  return util::invalid_argument("shape mismatch: " + where(t) + " is " + shape_str(t->shape) + ", config.json implies " +
                                shape_str(want) + " (" + why + ")");
}

// Grouped (HF) → tiled (ggml) V-head order: tiled head j = m·Hk + g holds HF head g·r + m
// (llamacpp.md §B, tools/reference/README.md). Returns the source index of element `i` of a block of
// Hv heads × `hd` elements.
int64_t tiled_from_grouped(int64_t i, int64_t Hk, int64_t r, int64_t hd) {
  const int64_t j = i / hd, d = i % hd;
  const int64_t g = j % Hk, m = j / Hk;
  return (g * r + m) * hd + d;
}

// ---------------------------------------------------------------------------------------------
// Source tensors by normalized name, with what was skipped.

struct Sources {
  std::vector<std::string> order;  // normalized names in file data order
  std::map<std::string, const SafetensorsTensor*> by_name;
  std::set<std::string> used;
  size_t n_vision = 0, n_mtp = 0;

  const SafetensorsTensor* find(const std::string& n) const {
    auto it = by_name.find(n);
    return it == by_name.end() ? nullptr : it->second;
  }
  Result<const SafetensorsTensor*> need(const std::string& n, const std::string& dir, const std::string& why) {
    const SafetensorsTensor* t = find(n);
    if (!t) return util::not_found("missing tensor " + util::quote(n) + " in " + dir + " (" + why + ")");
    used.insert(n);
    return t;
  }
};

// ---------------------------------------------------------------------------------------------
// GGUF metadata helpers

Status add_tokenizer(GgufWriter& w, const std::string& tok_dir, int64_t n_vocab) {
  const std::string tj = (fs::path(tok_dir) / "tokenizer.json").string();
  DFLASH_ASSIGN_OR_RETURN(tokenizer::TokenizerData d, tokenizer::load_hf_tokenizer(tj));
  // transformers ≥ 4.47 saves the template next to the config instead of inside it.
  const std::string jinja = (fs::path(tok_dir) / "chat_template.jinja").string();
  if (d.chat_template.empty() && util::file_exists(jinja)) {
    DFLASH_ASSIGN_OR_RETURN(d.chat_template, util::read_text_file(jinja));
  }
  auto kvs = tokenizer::tokenizer_to_gguf_kvs(d, n_vocab);
  if (!kvs.is_ok()) return kvs.status().with_context(tj);
  for (const auto& kv : *kvs) {
    GgufValue v;
    if (const auto* s = std::get_if<std::string>(&kv.value)) v = GgufValue::string(*s);
    else if (const auto* u = std::get_if<uint32_t>(&kv.value)) v = GgufValue::u32(*u);
    else if (const auto* b = std::get_if<bool>(&kv.value)) v = GgufValue::boolean(*b);
    else if (const auto* sa = std::get_if<std::vector<std::string>>(&kv.value)) v = GgufValue::array_strings(*sa);
    else v = GgufValue::array_i32(std::get<std::vector<int32_t>>(kv.value));
    DFLASH_RETURN_IF_ERROR(w.set(kv.key, std::move(v)));
  }
  return Status::ok();
}

// Where the tokenizer comes from, or why there is none.
Result<std::string> tokenizer_dir(const std::string& hf_dir, const ConvertOptions& o, bool drafter) {
  if (!o.tokenizer_from.empty()) {
    const std::string tj = (fs::path(o.tokenizer_from) / "tokenizer.json").string();
    if (!util::file_exists(tj))
      return util::not_found("--tokenizer-from " + o.tokenizer_from + ": no tokenizer.json there (pass the target model's HF directory)");
    return o.tokenizer_from;
  }
  if (util::file_exists((fs::path(hf_dir) / "tokenizer.json").string())) return hf_dir;
  if (drafter)
    return util::not_found(hf_dir + " has no tokenizer.json: DFlash drafters ship no tokenizer; pass --tokenizer-from TARGET_DIR "
                           "(the target model's HF directory) or --no-tokenizer");
  return util::not_found(hf_dir + "/tokenizer.json: not found; the GGUF needs the tokenizer (pass --tokenizer-from DIR, or "
                         "--no-tokenizer to write a file without one)");
}

// RoPE theta: rope_parameters.rope_theta, then the legacy top-level rope_theta, then --rope-theta.
// Never a default: a wrong theta silently collapses long-context quality (dflash.md).
Result<double> rope_theta(const HfConfig& c, const HfConfig& rope, const ConvertOptions& o) {
  DFLASH_ASSIGN_OR_RETURN(std::optional<double> nested, rope.opt_number("rope_theta"));
  DFLASH_ASSIGN_OR_RETURN(std::optional<double> top, c.opt_number("rope_theta"));
  std::optional<double> t = nested ? nested : top;
  if (t && o.rope_theta && std::fabs(*t - *o.rope_theta) > 1e-6 * std::fabs(*t))
    return util::invalid_argument(strfmt("%s says rope_theta %g but --rope-theta is %g; drop the flag", c.file().c_str(), *t,
                                         *o.rope_theta));
  if (!t) t = o.rope_theta;
  if (!t)
    return util::invalid_argument(c.file() +
                                  ": no RoPE theta (neither rope_parameters.rope_theta nor rope_theta); refusing to guess, "
                                  "pass --rope-theta THETA (the value the model was trained with)");
  if (!(*t > 0) || !std::isfinite(*t)) return c.error("rope_theta", strfmt("must be positive (is %g)", *t));
  return *t;
}

Status check_rope_type(const HfConfig& rope) {
  DFLASH_ASSIGN_OR_RETURN(std::optional<std::string> rt, rope.opt_string("rope_type"));
  if (rt && *rt != "default")
    return rope.error("rope_parameters.rope_type", "is '" + *rt + "': only unscaled RoPE ('default') is supported");
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Qwen3.5 targets

struct Target {
  bool moe = false;
  int64_t L = 0, H = 0, V = 0, n_ff = 0, n_head = 0, n_kv = 0, hd = 0, ctx = 0;
  int64_t K = 0, Hk = 0, Hv = 0, Dk = 0, Dv = 0;
  int64_t E = 0, E_used = 0, F_exp = 0, F_sh = 0;
  double eps = 1e-6, theta = 0;
  int64_t n_rot = 0;
  std::vector<int32_t> sections;
  std::vector<bool> recurrent;
  int64_t interval = 4;   // written to full_attention_interval
  bool periodic = true;   // recurrent == the interval rule
};

Result<Target> parse_target(const HfConfig& top, bool moe, const ConvertOptions& o) {
  DFLASH_ASSIGN_OR_RETURN(const HfConfig c, top.text_fields());
  Target t;
  t.moe = moe;
  DFLASH_ASSIGN_OR_RETURN(t.L, c.positive_size("num_hidden_layers"));
  DFLASH_ASSIGN_OR_RETURN(t.H, c.positive_size("hidden_size"));
  DFLASH_ASSIGN_OR_RETURN(t.V, c.positive_size("vocab_size"));
  DFLASH_ASSIGN_OR_RETURN(t.n_head, c.positive_size("num_attention_heads"));
  DFLASH_ASSIGN_OR_RETURN(t.n_kv, c.positive_size("num_key_value_heads"));
  DFLASH_ASSIGN_OR_RETURN(t.hd, c.positive_size_or("head_dim", t.H / t.n_head));
  DFLASH_ASSIGN_OR_RETURN(t.ctx, c.positive_size_or("max_position_embeddings", 0));
  if (moe) {
    DFLASH_ASSIGN_OR_RETURN(t.E, c.positive_size("num_experts"));
    DFLASH_ASSIGN_OR_RETURN(t.E_used, c.positive_size("num_experts_per_tok"));
    DFLASH_ASSIGN_OR_RETURN(t.F_exp, c.positive_size("moe_intermediate_size"));
    DFLASH_ASSIGN_OR_RETURN(t.F_sh, c.positive_size_or("shared_expert_intermediate_size", 0));
    if (t.E_used > t.E) return c.error("num_experts_per_tok", "exceeds num_experts");
    if (c.has("intermediate_size")) {
      DFLASH_ASSIGN_OR_RETURN(t.n_ff, c.positive_size("intermediate_size"));
    }
  } else {
    DFLASH_ASSIGN_OR_RETURN(t.n_ff, c.positive_size("intermediate_size"));
  }
  DFLASH_ASSIGN_OR_RETURN(t.K, c.positive_size("linear_conv_kernel_dim"));
  DFLASH_ASSIGN_OR_RETURN(t.Hk, c.positive_size("linear_num_key_heads"));
  DFLASH_ASSIGN_OR_RETURN(t.Hv, c.positive_size("linear_num_value_heads"));
  DFLASH_ASSIGN_OR_RETURN(t.Dk, c.positive_size("linear_key_head_dim"));
  DFLASH_ASSIGN_OR_RETURN(t.Dv, c.positive_size("linear_value_head_dim"));
  if (t.Hv % t.Hk) return c.error("linear_num_value_heads", "must be a multiple of linear_num_key_heads");
  if (t.n_head % t.n_kv) return c.error("num_attention_heads", "must be a multiple of num_key_value_heads");
  DFLASH_ASSIGN_OR_RETURN(t.eps, c.number("rms_norm_eps"));

  DFLASH_ASSIGN_OR_RETURN(HfConfig rope, c.object("rope_parameters"));
  DFLASH_RETURN_IF_ERROR(check_rope_type(rope));
  DFLASH_ASSIGN_OR_RETURN(t.theta, rope_theta(c, rope, o));
  // partial_rotary_factor: top level (what the public converter reads), else rope_parameters, else
  // Qwen3.5's class default 0.25 (qwen35.md §1.2).
  DFLASH_ASSIGN_OR_RETURN(std::optional<double> prf, c.opt_number("partial_rotary_factor"));
  if (!prf) {
    DFLASH_ASSIGN_OR_RETURN(prf, rope.opt_number("partial_rotary_factor"));
  }
  const double factor = prf ? *prf : 0.25;
  t.n_rot = static_cast<int64_t>(static_cast<double>(t.hd) * factor);
  if (t.n_rot <= 0 || t.n_rot > t.hd || t.n_rot % 2) return c.error("partial_rotary_factor", "gives an invalid rotary dimension");
  DFLASH_ASSIGN_OR_RETURN(std::optional<std::vector<int64_t>> ms, rope.opt_int_array("mrope_section"));
  if (ms) {
    if (ms->size() > 4) return rope.error("rope_parameters.mrope_section", "has more than 4 entries");
    for (int64_t s : *ms) t.sections.push_back(static_cast<int32_t>(s));
  } else {
    t.sections = {static_cast<int32_t>(t.n_rot / 2)};  // text-only rotation: one section
  }
  while (t.sections.size() < 4) t.sections.push_back(0);

  // Layer schedule: layer_types is the truth; without it, every full_attention_interval-th layer.
  DFLASH_ASSIGN_OR_RETURN(std::optional<int64_t> fai, c.opt_integer("full_attention_interval"));
  if (fai && *fai <= 0) return c.error("full_attention_interval", "must be positive");
  const int64_t cfg_interval = fai ? *fai : 4;  // Qwen3.5's class default (qwen35.md §1.2)
  DFLASH_ASSIGN_OR_RETURN(std::optional<std::vector<std::string>> lt,
                          c.opt_choice_list("layer_types", t.L, "num_hidden_layers", {"linear_attention", "full_attention"}));
  t.recurrent.assign(static_cast<size_t>(t.L), false);
  if (lt) {
    for (int64_t i = 0; i < t.L; ++i) t.recurrent[static_cast<size_t>(i)] = (*lt)[static_cast<size_t>(i)] == "linear_attention";
  } else {
    for (int64_t i = 0; i < t.L; ++i) t.recurrent[static_cast<size_t>(i)] = (i + 1) % cfg_interval != 0;
  }
  // The smallest interval that reproduces the schedule; none: not periodic (written explicitly as
  // attention.recurrent_layers, with the interval the public converter would write).
  t.periodic = false;
  for (int64_t n = 1; n <= t.L + 1 && !t.periodic; ++n) {
    bool ok = true;
    for (int64_t i = 0; i < t.L && ok; ++i) ok = t.recurrent[static_cast<size_t>(i)] == ((i + 1) % n != 0);
    if (ok) {
      t.periodic = true;
      t.interval = n;
    }
  }
  if (!t.periodic) t.interval = cfg_interval;
  return t;
}

// Tensors shard by shard, by name within a shard: the order the public converter writes them in
// (safetensors' own data order groups by dtype, which would reorder mixed BF16/F32 checkpoints).
std::vector<const SafetensorsTensor*> converter_order(const formats::SafetensorsModel& st) {
  std::vector<const SafetensorsTensor*> v;
  for (const formats::SafetensorsFile& f : st.shards()) {
    const size_t begin = v.size();
    for (const SafetensorsTensor& t : f.tensors()) v.push_back(&t);
    std::sort(v.begin() + static_cast<std::ptrdiff_t>(begin), v.end(),
              [](const SafetensorsTensor* a, const SafetensorsTensor* b) { return a->name < b->name; });
  }
  return v;
}

// Normalizes a target tensor name: "model.language_model.X" / "model.X" → "X", "lm_head.weight" →
// "lm_head.weight"; vision and MTP tensors are counted and dropped. Unknown prefixes: error.
Result<Sources> collect_target_sources(const formats::SafetensorsModel& st, const std::string& dir) {
  Sources s;
  for (const SafetensorsTensor* t : converter_order(st)) {
    const std::string& n = t->name;
    std::string norm;
    if (n.rfind("model.language_model.", 0) == 0) norm = n.substr(21);
    else if (n.rfind("model.visual.", 0) == 0 || n.rfind("visual.", 0) == 0) { ++s.n_vision; continue; }
    else if (n.rfind("mtp.", 0) == 0) { ++s.n_mtp; continue; }
    else if (n == "lm_head.weight") norm = n;
    else if (n.rfind("model.", 0) == 0) norm = n.substr(6);
    else return util::invalid_argument("unexpected " + where(t) + " (not a Qwen3.5 text, vision or MTP tensor)");
    if (s.by_name.count(norm)) return util::invalid_argument("duplicate " + where(t));
    s.by_name[norm] = t;
    s.order.push_back(norm);
  }
  (void)dir;
  return s;
}

// Parses "layers.<i>.<rest>"; false when the name is not a layer tensor.
bool layer_name(const std::string& n, int64_t* il, std::string* rest) {
  if (n.rfind("layers.", 0) != 0) return false;
  size_t p = 7, q = n.find('.', p);
  if (q == std::string::npos || q == p) return false;
  int64_t v = 0;
  for (size_t i = p; i < q; ++i) {
    if (n[i] < '0' || n[i] > '9' || v > 1000000) return false;
    v = v * 10 + (n[i] - '0');
  }
  *il = v;
  *rest = n.substr(q + 1);
  return true;
}

Result<std::vector<OutTensor>> plan_target(const Target& T, Sources& S, const std::string& dir) {
  std::vector<OutTensor> out;
  const int64_t H = T.H, r = T.Hv / T.Hk, KD = T.Hk * T.Dk, VD = T.Hv * T.Dv, CD = 2 * KD + VD;
  const bool reorder = r > 1;
  auto simple = [&](const std::string& gname, const SafetensorsTensor* t, std::vector<int64_t> ne, Op op = Op::kCopy) {
    OutTensor o;
    o.name = gname;
    o.ne = std::move(ne);
    o.srcs = {t};
    o.op = op;
    out.push_back(std::move(o));
  };
  // Rows [skip, skip + Hv·hd) of a 2-D source move from grouped to tiled head order.
  auto v_rows = [&](OutTensor& o, int64_t skip, int64_t hd) {
    if (!reorder) return;
    const int64_t Hk = T.Hk;
    o.row_of = [skip, Hk, r, hd](int64_t row) -> RowRef {
      if (row < skip) return {0, row};
      return {0, skip + tiled_from_grouped(row - skip, Hk, r, hd)};
    };
  };
  std::set<int64_t> experts_done;  // layers whose expert tensors were emitted
  for (const std::string& n : S.order) {
    const SafetensorsTensor* t = S.find(n);
    int64_t il = -1;
    std::string rest;
    if (n == "embed_tokens.weight") {
      DFLASH_RETURN_IF_ERROR(expect_shape(t, {T.V, H}, "vocab_size, hidden_size"));
      simple("token_embd.weight", t, {H, T.V});
    } else if (n == "lm_head.weight") {
      DFLASH_RETURN_IF_ERROR(expect_shape(t, {T.V, H}, "vocab_size, hidden_size"));
      simple("output.weight", t, {H, T.V});
    } else if (n == "norm.weight") {
      DFLASH_RETURN_IF_ERROR(expect_shape(t, {H}, "hidden_size"));
      simple("output_norm.weight", t, {H}, Op::kPlusOne);
    } else if (layer_name(n, &il, &rest)) {
      if (il >= T.L)
        return util::invalid_argument(where(t) + ": layer " + std::to_string(il) + " but num_hidden_layers is " + std::to_string(T.L));
      const bool rec = T.recurrent[static_cast<size_t>(il)];
      const std::string b = "blk." + std::to_string(il) + ".";
      const std::string kind = rec ? "linear_attention" : "full_attention";
      auto wrong_kind = [&]() {
        return util::invalid_argument(where(t) + ": config.json says layer " + std::to_string(il) + " is " + kind +
                                      " (layer_types / full_attention_interval)");
      };
      const bool is_linear = rest.rfind("linear_attn.", 0) == 0, is_attn = rest.rfind("self_attn.", 0) == 0;
      if ((is_linear && !rec) || (is_attn && rec)) return wrong_kind();
      if (rest == "input_layernorm.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {H}, "hidden_size"));
        simple(b + "attn_norm.weight", t, {H}, Op::kPlusOne);
      } else if (rest == "post_attention_layernorm.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {H}, "hidden_size"));
        simple(b + "post_attention_norm.weight", t, {H}, Op::kPlusOne);
      } else if (rest == "linear_attn.in_proj_qkv.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {CD, H}, "2·linear_num_key_heads·linear_key_head_dim + linear_num_value_heads·linear_value_head_dim, hidden_size"));
        simple(b + "attn_qkv.weight", t, {H, CD});
        v_rows(out.back(), 2 * KD, T.Dv);
      } else if (rest == "linear_attn.in_proj_z.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {VD, H}, "linear_num_value_heads·linear_value_head_dim, hidden_size"));
        simple(b + "attn_gate.weight", t, {H, VD});
        v_rows(out.back(), 0, T.Dv);
      } else if (rest == "linear_attn.in_proj_b.weight" || rest == "linear_attn.in_proj_a.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {T.Hv, H}, "linear_num_value_heads, hidden_size"));
        simple(b + (rest == "linear_attn.in_proj_b.weight" ? "ssm_beta.weight" : "ssm_alpha.weight"), t, {H, T.Hv});
        v_rows(out.back(), 0, 1);
      } else if (rest == "linear_attn.conv1d.weight") {
        // HF [conv_dim, 1, K] (depthwise Conv1d), squeezed to ggml {K, conv_dim}.
        if (t->shape.size() == 2) DFLASH_RETURN_IF_ERROR(expect_shape(t, {CD, T.K}, "conv_dim, linear_conv_kernel_dim"));
        else DFLASH_RETURN_IF_ERROR(expect_shape(t, {CD, 1, T.K}, "conv_dim, 1, linear_conv_kernel_dim"));
        simple(b + "ssm_conv1d.weight", t, {T.K, CD});
        v_rows(out.back(), 2 * KD, T.Dv);
      } else if (rest == "linear_attn.dt_bias" || rest == "linear_attn.A_log") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {T.Hv}, "linear_num_value_heads"));
        const bool a = rest == "linear_attn.A_log";
        simple(b + (a ? "ssm_a" : "ssm_dt.bias"), t, {T.Hv}, a ? Op::kNegExp : Op::kCopy);
        if (reorder)
          for (int64_t i = 0; i < T.Hv; ++i) out.back().col_perm.push_back(tiled_from_grouped(i, T.Hk, r, 1));
      } else if (rest == "linear_attn.norm.weight") {
        // The gated norm is a plain weight (no +1): qwen35.md §8.1.
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {T.Dv}, "linear_value_head_dim"));
        simple(b + "ssm_norm.weight", t, {T.Dv});
      } else if (rest == "linear_attn.out_proj.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {H, VD}, "hidden_size, linear_num_value_heads·linear_value_head_dim"));
        simple(b + "ssm_out.weight", t, {VD, H});
        if (reorder)
          for (int64_t i = 0; i < VD; ++i) out.back().col_perm.push_back(tiled_from_grouped(i, T.Hk, r, T.Dv));
      } else if (rest == "self_attn.q_proj.weight") {
        // [query | gate] interleaved per head, kept as stored (llamacpp.md §B.2).
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {2 * T.n_head * T.hd, H}, "2·num_attention_heads·head_dim, hidden_size"));
        simple(b + "attn_q.weight", t, {H, 2 * T.n_head * T.hd});
      } else if (rest == "self_attn.k_proj.weight" || rest == "self_attn.v_proj.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {T.n_kv * T.hd, H}, "num_key_value_heads·head_dim, hidden_size"));
        simple(b + (rest[10] == 'k' ? "attn_k.weight" : "attn_v.weight"), t, {H, T.n_kv * T.hd});
      } else if (rest == "self_attn.o_proj.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {H, T.n_head * T.hd}, "hidden_size, num_attention_heads·head_dim"));
        simple(b + "attn_output.weight", t, {T.n_head * T.hd, H});
      } else if (rest == "self_attn.q_norm.weight" || rest == "self_attn.k_norm.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {T.hd}, "head_dim"));
        simple(b + (rest[10] == 'q' ? "attn_q_norm.weight" : "attn_k_norm.weight"), t, {T.hd}, Op::kPlusOne);
      } else if (!T.moe && (rest == "mlp.gate_proj.weight" || rest == "mlp.up_proj.weight")) {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {T.n_ff, H}, "intermediate_size, hidden_size"));
        simple(b + (rest == "mlp.gate_proj.weight" ? "ffn_gate.weight" : "ffn_up.weight"), t, {H, T.n_ff});
      } else if (!T.moe && rest == "mlp.down_proj.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {H, T.n_ff}, "hidden_size, intermediate_size"));
        simple(b + "ffn_down.weight", t, {T.n_ff, H});
      } else if (T.moe && rest == "mlp.gate.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {T.E, H}, "num_experts, hidden_size"));
        simple(b + "ffn_gate_inp.weight", t, {H, T.E});
      } else if (T.moe && (rest == "mlp.shared_expert.gate_proj.weight" || rest == "mlp.shared_expert.up_proj.weight")) {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {T.F_sh, H}, "shared_expert_intermediate_size, hidden_size"));
        simple(b + (rest == "mlp.shared_expert.gate_proj.weight" ? "ffn_gate_shexp.weight" : "ffn_up_shexp.weight"), t, {H, T.F_sh});
      } else if (T.moe && rest == "mlp.shared_expert.down_proj.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {H, T.F_sh}, "hidden_size, shared_expert_intermediate_size"));
        simple(b + "ffn_down_shexp.weight", t, {T.F_sh, H});
      } else if (T.moe && rest == "mlp.shared_expert_gate.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {1, H}, "1, hidden_size"));
        simple(b + "ffn_gate_inp_shexp.weight", t, {H, 1});
      } else if (T.moe && rest.rfind("mlp.experts.", 0) == 0) {
        if (experts_done.count(il)) continue;  // emitted with the first expert tensor of the layer
        experts_done.insert(il);
        const std::string pre = "layers." + std::to_string(il) + ".mlp.experts.";
        const int64_t E = T.E, F = T.F_exp;
        if (S.find(pre + "gate_up_proj") || S.find(pre + "gate_up_proj.weight")) {
          // Fused layout (hub checkpoints): gate_up_proj [E, 2F, H] (gate rows first), down_proj [E, H, F].
          const std::string gu = S.find(pre + "gate_up_proj") ? pre + "gate_up_proj" : pre + "gate_up_proj.weight";
          const std::string dn = S.find(pre + "down_proj") ? pre + "down_proj" : pre + "down_proj.weight";
          DFLASH_ASSIGN_OR_RETURN(const SafetensorsTensor* tgu, S.need(gu, dir, "fused MoE experts"));
          DFLASH_ASSIGN_OR_RETURN(const SafetensorsTensor* tdn, S.need(dn, dir, "fused MoE experts"));
          DFLASH_RETURN_IF_ERROR(expect_shape(tgu, {E, 2 * F, H}, "num_experts, 2·moe_intermediate_size, hidden_size"));
          DFLASH_RETURN_IF_ERROR(expect_shape(tdn, {E, H, F}, "num_experts, hidden_size, moe_intermediate_size"));
          simple(b + "ffn_down_exps.weight", tdn, {F, H, E});
          for (int half = 0; half < 2; ++half) {
            simple(b + (half == 0 ? "ffn_gate_exps.weight" : "ffn_up_exps.weight"), tgu, {H, F, E});
            out.back().row_of = [F, half](int64_t row) -> RowRef { return {0, (row / F) * 2 * F + half * F + row % F}; };
          }
        } else {
          // Per-expert layout (transformers' save_pretrained): stacked into {.., .., E}.
          for (const char* proj : {"down_proj", "gate_proj", "up_proj"}) {
            OutTensor o;
            const bool down = proj[0] == 'd';
            o.name = b + (down ? "ffn_down_exps.weight" : proj[0] == 'g' ? "ffn_gate_exps.weight" : "ffn_up_exps.weight");
            o.ne = down ? std::vector<int64_t>{F, H, E} : std::vector<int64_t>{H, F, E};
            for (int64_t e = 0; e < E; ++e) {
              DFLASH_ASSIGN_OR_RETURN(const SafetensorsTensor* te,
                                      S.need(pre + std::to_string(e) + "." + proj + ".weight", dir, "num_experts is " + std::to_string(E)));
              DFLASH_RETURN_IF_ERROR(down ? expect_shape(te, {H, F}, "hidden_size, moe_intermediate_size")
                                          : expect_shape(te, {F, H}, "moe_intermediate_size, hidden_size"));
              o.srcs.push_back(te);
            }
            const int64_t rows_per = down ? H : F;
            o.row_of = [rows_per](int64_t row) -> RowRef { return {static_cast<int>(row / rows_per), row % rows_per}; };
            out.push_back(std::move(o));
          }
        }
        continue;  // sources were marked used by need()
      } else {
        return util::invalid_argument("unexpected " + where(t) + " (not part of a Qwen3.5" + std::string(T.moe ? "-MoE" : "") +
                                      " " + kind + " layer)");
      }
    } else {
      return util::invalid_argument("unexpected " + where(t) + " (not a Qwen3.5 text-model tensor)");
    }
    S.used.insert(n);
  }
  // Every tensor the schedule requires must be there.
  auto require = [&](const std::string& n, const std::string& why) -> Status {
    if (!S.find(n)) return util::not_found("missing tensor " + util::quote(n) + " in " + dir + " (" + why + ")");
    return Status::ok();
  };
  DFLASH_RETURN_IF_ERROR(require("embed_tokens.weight", "the token embedding"));
  DFLASH_RETURN_IF_ERROR(require("norm.weight", "the final norm"));
  for (int64_t il = 0; il < T.L; ++il) {
    const std::string p = "layers." + std::to_string(il) + ".";
    const bool rec = T.recurrent[static_cast<size_t>(il)];
    const std::string why = "config.json says layer " + std::to_string(il) + " is " + (rec ? "linear_attention" : "full_attention");
    std::vector<std::string> need = {"input_layernorm.weight", "post_attention_layernorm.weight"};
    if (rec) {
      for (const char* s : {"in_proj_qkv.weight", "in_proj_z.weight", "in_proj_b.weight", "in_proj_a.weight", "conv1d.weight",
                            "dt_bias", "A_log", "norm.weight", "out_proj.weight"})
        need.push_back(std::string("linear_attn.") + s);
    } else {
      for (const char* s : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "q_norm.weight", "k_norm.weight"})
        need.push_back(std::string("self_attn.") + s);
    }
    if (!T.moe) {
      for (const char* s : {"mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}) need.push_back(s);
    } else {
      need.push_back("mlp.gate.weight");
      if (T.F_sh > 0)
        for (const char* s : {"mlp.shared_expert.gate_proj.weight", "mlp.shared_expert.up_proj.weight",
                              "mlp.shared_expert.down_proj.weight", "mlp.shared_expert_gate.weight"})
          need.push_back(s);
      if (!experts_done.count(il)) need.push_back("mlp.experts.0.gate_proj.weight");
    }
    for (const std::string& s : need) DFLASH_RETURN_IF_ERROR(require(p + s, why));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// DFlash drafters

struct Drafter {
  int64_t L = 0, H = 0, V = 0, n_ff = 0, n_head = 0, n_kv = 0, hd = 0, ctx = 0;
  double eps = 1e-6, theta = 0;
  int64_t block_size = 16, mask_token_id = -1;
  std::vector<int64_t> target_layer_ids;
  int64_t sliding_window = 0;
  std::vector<bool> swa;  // per layer
  std::optional<double> input_embedding_scale, output_multiplier, softcap;
};

Result<Drafter> parse_drafter(const HfConfig& c, const ConvertOptions& o) {
  Drafter d;
  DFLASH_ASSIGN_OR_RETURN(d.L, c.positive_size("num_hidden_layers"));
  DFLASH_ASSIGN_OR_RETURN(d.H, c.positive_size("hidden_size"));
  DFLASH_ASSIGN_OR_RETURN(d.V, c.positive_size_or("vocab_size", 0));
  DFLASH_ASSIGN_OR_RETURN(d.n_ff, c.positive_size("intermediate_size"));
  DFLASH_ASSIGN_OR_RETURN(d.n_head, c.positive_size("num_attention_heads"));
  DFLASH_ASSIGN_OR_RETURN(d.n_kv, c.positive_size("num_key_value_heads"));
  DFLASH_ASSIGN_OR_RETURN(d.hd, c.positive_size_or("head_dim", d.H / d.n_head));
  DFLASH_ASSIGN_OR_RETURN(d.ctx, c.positive_size_or("max_position_embeddings", 0));
  if (d.n_head % d.n_kv) return c.error("num_attention_heads", "must be a multiple of num_key_value_heads");
  DFLASH_ASSIGN_OR_RETURN(d.eps, c.number("rms_norm_eps"));
  DFLASH_ASSIGN_OR_RETURN(HfConfig rope, c.object("rope_parameters"));
  DFLASH_RETURN_IF_ERROR(check_rope_type(rope));
  DFLASH_ASSIGN_OR_RETURN(d.theta, rope_theta(c, rope, o));

  // DFlash fields: dflash_config.<name> first, then the top level (the authors' _draft_value).
  DFLASH_ASSIGN_OR_RETURN(HfConfig dc, c.object("dflash_config"));
  auto draft_int = [&](const std::string& k) -> Result<std::optional<int64_t>> {
    DFLASH_ASSIGN_OR_RETURN(std::optional<int64_t> v, dc.opt_integer(k));
    if (v) return v;
    return c.opt_integer(k);
  };
  auto draft_num = [&](const std::string& k) -> Result<std::optional<double>> {
    DFLASH_ASSIGN_OR_RETURN(std::optional<double> v, dc.opt_number(k));
    if (v) return v;
    return c.opt_number(k);
  };
  DFLASH_ASSIGN_OR_RETURN(std::optional<int64_t> bs, draft_int("block_size"));
  d.block_size = bs ? *bs : 16;  // the authors' default
  if (d.block_size < 2 || d.block_size > 64) return c.error("block_size", strfmt("is %lld (2..64)", (long long)d.block_size));
  DFLASH_ASSIGN_OR_RETURN(std::optional<int64_t> mask, draft_int("mask_token_id"));
  if (!mask) return c.error("mask_token_id", "is missing (neither dflash_config.mask_token_id nor mask_token_id); the drafter cannot run without it");
  if (*mask < 0 || (d.V > 0 && *mask >= d.V)) return c.error("mask_token_id", "is outside the vocabulary");
  d.mask_token_id = *mask;
  DFLASH_ASSIGN_OR_RETURN(std::optional<std::vector<int64_t>> ids, dc.opt_int_array("target_layer_ids"));
  if (!ids) {
    DFLASH_ASSIGN_OR_RETURN(ids, c.opt_int_array("target_layer_ids"));
  }
  if (!ids) {
    // The authors' build_target_layer_ids(num_target_layers, num_hidden_layers).
    DFLASH_ASSIGN_OR_RETURN(std::optional<int64_t> nt, draft_int("num_target_layers"));
    if (!nt) return c.error("target_layer_ids", "is missing and so is num_target_layers");
    std::vector<int64_t> v;
    if (d.L == 1) {
      v.push_back(*nt / 2);
    } else {
      const double start = 1, span = static_cast<double>(*nt - 3) - start;
      for (int64_t i = 0; i < d.L; ++i) v.push_back(std::llround(start + static_cast<double>(i) * span / static_cast<double>(d.L - 1)));
    }
    ids = v;
  }
  if (ids->empty()) return c.error("target_layer_ids", "is empty");
  for (int64_t id : *ids)
    if (id < 0 || id > 4096) return c.error("target_layer_ids", strfmt("has an invalid layer id %lld", (long long)id));
  d.target_layer_ids = *ids;

  DFLASH_ASSIGN_OR_RETURN(std::optional<std::vector<std::string>> lt,
                          c.opt_choice_list("layer_types", d.L, "num_hidden_layers", {"full_attention", "sliding_attention"}));
  d.swa.assign(static_cast<size_t>(d.L), false);
  if (lt) {
    for (int64_t i = 0; i < d.L; ++i) d.swa[static_cast<size_t>(i)] = (*lt)[static_cast<size_t>(i)] == "sliding_attention";
  }
  if (std::find(d.swa.begin(), d.swa.end(), true) != d.swa.end()) {
    DFLASH_ASSIGN_OR_RETURN(std::optional<int64_t> sw, c.opt_integer("sliding_window"));
    if (!sw || *sw <= 0) return c.error("sliding_window", "must be set: layer_types has sliding_attention layers");
    d.sliding_window = *sw;
  }
  DFLASH_ASSIGN_OR_RETURN(d.input_embedding_scale, draft_num("input_embedding_scale"));
  DFLASH_ASSIGN_OR_RETURN(d.output_multiplier, draft_num("output_multiplier"));
  DFLASH_ASSIGN_OR_RETURN(d.softcap, draft_num("final_logit_softcapping"));
  return d;
}

Result<std::vector<OutTensor>> plan_drafter(const Drafter& D, DraftFormat fmt, Sources& S, const std::string& dir) {
  std::vector<OutTensor> out;
  const bool fork = fmt == DraftFormat::kFork;
  const int64_t H = D.H, nf = H * static_cast<int64_t>(D.target_layer_ids.size());
  auto simple = [&](const std::string& gname, const SafetensorsTensor* t, std::vector<int64_t> ne) {
    OutTensor o;
    o.name = gname;
    o.ne = std::move(ne);
    o.srcs = {t};
    out.push_back(std::move(o));
  };
  for (const std::string& n : S.order) {
    const SafetensorsTensor* t = S.find(n);
    int64_t il = -1;
    std::string rest;
    // Drafter norms are plain Qwen3 RMSNorm weights (x̂·w): no +1 (dflash.md).
    if (n == "fc.weight") {
      DFLASH_RETURN_IF_ERROR(expect_shape(t, {H, nf}, "hidden_size, len(target_layer_ids)·hidden_size"));
      simple(fork ? "dflash_fc.weight" : "fc.weight", t, {nf, H});
    } else if (n == "hidden_norm.weight") {
      DFLASH_RETURN_IF_ERROR(expect_shape(t, {H}, "hidden_size"));
      simple(fork ? "dflash_hidden_norm.weight" : "enc.output_norm.weight", t, {H});
    } else if (n == "norm.weight") {
      DFLASH_RETURN_IF_ERROR(expect_shape(t, {H}, "hidden_size"));
      simple("output_norm.weight", t, {H});
    } else if (n == "embed_tokens.weight" || n == "lm_head.weight") {
      if (t->shape.size() != 2 || t->shape[1] != H || (D.V > 0 && t->shape[0] != D.V))
        return expect_shape(t, {D.V, H}, "vocab_size, hidden_size");
      simple(n == "lm_head.weight" ? "output.weight" : "token_embd.weight", t, {H, t->shape[0]});
    } else if (layer_name(n, &il, &rest)) {
      if (il >= D.L)
        return util::invalid_argument(where(t) + ": layer " + std::to_string(il) + " but num_hidden_layers is " + std::to_string(D.L));
      const std::string b = "blk." + std::to_string(il) + ".";
      if (rest == "input_layernorm.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {H}, "hidden_size"));
        simple(b + "attn_norm.weight", t, {H});
      } else if (rest == "post_attention_layernorm.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {H}, "hidden_size"));
        simple(b + (fork ? "post_attention_norm.weight" : "ffn_norm.weight"), t, {H});
      } else if (rest == "self_attn.q_proj.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {D.n_head * D.hd, H}, "num_attention_heads·head_dim, hidden_size"));
        simple(b + "attn_q.weight", t, {H, D.n_head * D.hd});
      } else if (rest == "self_attn.k_proj.weight" || rest == "self_attn.v_proj.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {D.n_kv * D.hd, H}, "num_key_value_heads·head_dim, hidden_size"));
        simple(b + (rest[10] == 'k' ? "attn_k.weight" : "attn_v.weight"), t, {H, D.n_kv * D.hd});
      } else if (rest == "self_attn.o_proj.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {H, D.n_head * D.hd}, "hidden_size, num_attention_heads·head_dim"));
        simple(b + "attn_output.weight", t, {D.n_head * D.hd, H});
      } else if (rest == "self_attn.q_norm.weight" || rest == "self_attn.k_norm.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {D.hd}, "head_dim"));
        simple(b + (rest[10] == 'q' ? "attn_q_norm.weight" : "attn_k_norm.weight"), t, {D.hd});
      } else if (rest == "mlp.gate_proj.weight" || rest == "mlp.up_proj.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {D.n_ff, H}, "intermediate_size, hidden_size"));
        simple(b + (rest == "mlp.gate_proj.weight" ? "ffn_gate.weight" : "ffn_up.weight"), t, {H, D.n_ff});
      } else if (rest == "mlp.down_proj.weight") {
        DFLASH_RETURN_IF_ERROR(expect_shape(t, {H, D.n_ff}, "hidden_size, intermediate_size"));
        simple(b + "ffn_down.weight", t, {D.n_ff, H});
      } else {
        return util::invalid_argument("unexpected " + where(t) + " (not part of a DFlash drafter layer)");
      }
    } else {
      return util::invalid_argument("unexpected " + where(t) + " (not a DFlash drafter tensor)");
    }
    S.used.insert(n);
  }
  auto require = [&](const std::string& n) -> Status {
    if (!S.find(n)) return util::not_found("missing tensor " + util::quote(n) + " in " + dir + " (DFlash drafter)");
    return Status::ok();
  };
  for (const char* n : {"fc.weight", "hidden_norm.weight", "norm.weight"}) DFLASH_RETURN_IF_ERROR(require(n));
  for (int64_t il = 0; il < D.L; ++il)
    for (const char* s : {"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                          "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                          "self_attn.q_norm.weight", "self_attn.k_norm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                          "mlp.down_proj.weight"})
      DFLASH_RETURN_IF_ERROR(require("layers." + std::to_string(il) + "." + s));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tensor production

// One output row: source row → f32 → column permutation → op → encode.
void produce_rows(const OutTensor& o, int64_t begin, int64_t end, uint8_t* dst) {
  const int64_t n = o.ne[0];
  const size_t rb = tensor::row_size(o.dtype, n);
  std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  std::vector<uint8_t> raw;
  for (int64_t row = begin; row < end; ++row) {
    const RowRef ref = o.row_of ? o.row_of(row) : RowRef{0, row};
    const SafetensorsTensor* s = o.srcs[static_cast<size_t>(ref.src)];
    const size_t sb = tensor::row_size(s->dtype, n);
    // Source data may be unaligned (safetensors header length is arbitrary): copy first.
    raw.resize(sb);
    std::memcpy(raw.data(), static_cast<const uint8_t*>(s->data) + static_cast<size_t>(ref.row) * sb, sb);
    formats::dequantize_row(s->dtype, raw.data(), a.data(), n);
    float* x = a.data();
    if (!o.col_perm.empty()) {
      for (int64_t c = 0; c < n; ++c) b[static_cast<size_t>(c)] = a[static_cast<size_t>(o.col_perm[static_cast<size_t>(c)])];
      x = b.data();
    }
    if (o.op == Op::kPlusOne)
      for (int64_t c = 0; c < n; ++c) x[c] = x[c] + 1.0f;
    else if (o.op == Op::kNegExp)
      for (int64_t c = 0; c < n; ++c) x[c] = -std::exp(x[c]);
    formats::quantize_row(o.dtype, x, dst + static_cast<size_t>(row) * rb, n);
  }
}

// Source rows are checked once here so that produce_rows can index without checks.
Status check_sources(const OutTensor& o) {
  const int64_t rows = n_rows(o.ne);
  for (const SafetensorsTensor* s : o.srcs) {
    if (!formats::codec_supported(s->dtype)) return util::unsupported(where(s) + ": dtype cannot be read");
    if (s->numel() % o.ne[0]) return util::internal_error(where(s) + ": row length does not divide");
  }
  auto src_rows = [&](int i) { return o.srcs[static_cast<size_t>(i)]->numel() / o.ne[0]; };
  if (!o.row_of) {
    if (o.srcs.size() != 1 || src_rows(0) != rows) return util::internal_error("plan for " + o.name + ": row count mismatch");
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      RowRef ref = o.row_of(r);
      if (ref.src < 0 || static_cast<size_t>(ref.src) >= o.srcs.size() || ref.row < 0 || ref.row >= src_rows(ref.src))
        return util::internal_error("plan for " + o.name + ": row map out of range");
    }
  }
  for (int64_t c : o.col_perm)
    if (c < 0 || c >= o.ne[0]) return util::internal_error("plan for " + o.name + ": column map out of range");
  return Status::ok();
}

// The dtype of the first ≥2-D source tensor decides --outtype auto (the public converter's heuristic,
// except that an F32 checkpoint stays F32).
FileType auto_file_type(const std::vector<OutTensor>& plan) {
  for (const OutTensor& o : plan)
    for (const SafetensorsTensor* s : o.srcs)
      if (s->shape.size() >= 2) {
        if (s->dtype == DType::kBF16) return FileType::kMostlyBF16;
        if (s->dtype == DType::kF16) return FileType::kMostlyF16;
        return FileType::kAllF32;
      }
  return FileType::kAllF32;
}

FileType file_type_of(OutType t, const std::vector<OutTensor>& plan) {
  switch (t) {
    case OutType::kF32: return FileType::kAllF32;
    case OutType::kF16: return FileType::kMostlyF16;
    case OutType::kBF16: return FileType::kMostlyBF16;
    case OutType::kQ8_0: return FileType::kMostlyQ8_0;
    case OutType::kQ4_K_M: return FileType::kMostlyQ4_K_M;
    case OutType::kAuto: break;
  }
  return auto_file_type(plan);
}

std::string model_name(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

}  // namespace

Result<ConvertReport> convert_hf_to_gguf(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& opts) {
  // Cheap checks first: a long conversion must not end in "file exists".
  std::error_code ec;
  if (!fs::is_directory(hf_dir, ec)) return util::not_found(hf_dir + ": not a directory (expected a Hugging Face checkpoint directory)");
  if (!opts.overwrite && fs::exists(out_path, ec))
    return util::invalid_argument(out_path + " already exists; pass --force to overwrite it");
  DFLASH_ASSIGN_OR_RETURN(HfConfig cfg, HfConfig::load((fs::path(hf_dir) / "config.json").string()));
  DFLASH_ASSIGN_OR_RETURN(std::optional<std::vector<std::string>> archs, cfg.opt_string_array("architectures"));
  if (!archs || archs->empty()) return cfg.error("architectures", "is missing (cannot tell which model this is)");
  const std::string arch = (*archs)[0];
  enum class Kind { kDense, kMoe, kDrafter } kind;
  if (arch == "Qwen3_5ForCausalLM" || arch == "Qwen3_5ForConditionalGeneration") kind = Kind::kDense;
  else if (arch == "Qwen3_5MoeForCausalLM" || arch == "Qwen3_5MoeForConditionalGeneration") kind = Kind::kMoe;
  else if (arch == "DFlashDraftModel") kind = Kind::kDrafter;
  else
    return util::unsupported(cfg.file() + ": architecture '" + arch +
                             "' is not supported (Qwen3_5ForCausalLM, Qwen3_5ForConditionalGeneration, Qwen3_5MoeForCausalLM, "
                             "Qwen3_5MoeForConditionalGeneration, DFlashDraftModel)");

  ConvertReport rep;
  rep.hf_architecture = arch;
  // Tokenizer location is checked before the weights are read: a missing tokenizer is the most
  // common mistake with drafters.
  std::string tok_dir;
  if (!opts.no_tokenizer) {
    DFLASH_ASSIGN_OR_RETURN(tok_dir, tokenizer_dir(hf_dir, opts, kind == Kind::kDrafter));
  }

  DFLASH_ASSIGN_OR_RETURN(formats::SafetensorsModel st, formats::SafetensorsModel::open(hf_dir));

  GgufWriter w;
  std::vector<OutTensor> plan;
  std::string a;  // GGUF arch
  int64_t n_vocab = 0, n_layers = 0;
  bool tied = false;
  std::optional<Target> target;
  std::optional<Drafter> drafter;
  if (kind != Kind::kDrafter) {
    DFLASH_ASSIGN_OR_RETURN(Target t, parse_target(cfg, kind == Kind::kMoe, opts));
    DFLASH_ASSIGN_OR_RETURN(Sources S, collect_target_sources(st, hf_dir));
    DFLASH_ASSIGN_OR_RETURN(plan, plan_target(t, S, hf_dir));
    rep.n_skipped_vision = S.n_vision;
    rep.n_skipped_mtp = S.n_mtp;
    if (S.n_vision || S.n_mtp)
      LOG_INFO("convert: skipped %zu vision-tower tensors (model.visual.*) and %zu MTP tensors (mtp.*): only the text model is converted",
               S.n_vision, S.n_mtp);
    a = t.moe ? "qwen35moe" : "qwen35";
    n_vocab = t.V;
    n_layers = t.L;
    tied = !S.find("lm_head.weight");
    target = std::move(t);
  } else {
    DFLASH_ASSIGN_OR_RETURN(Drafter d, parse_drafter(cfg, opts));
    Sources S;
    for (const SafetensorsTensor* t : converter_order(st)) {
      // Some exports prefix the drafter's tensors with "model."; the z-lab layout has none.
      std::string n = t->name.rfind("model.", 0) == 0 ? t->name.substr(6) : t->name;
      if (S.by_name.count(n)) return util::invalid_argument("duplicate " + where(t));
      S.by_name[n] = t;
      S.order.push_back(n);
    }
    DFLASH_ASSIGN_OR_RETURN(plan, plan_drafter(d, opts.draft_format, S, hf_dir));
    a = opts.draft_format == DraftFormat::kFork ? "dflash-draft" : "dflash";
    n_vocab = d.V;
    n_layers = d.L;
    drafter = std::move(d);
  }
  rep.gguf_architecture = a;

  const FileType ft = file_type_of(opts.outtype, plan);
  rep.file_type = ft;
  formats::RecipeContext rc;
  rc.file_type = ft;
  rc.n_layers = static_cast<int>(n_layers);
  rc.tied_embeddings = tied;
  for (OutTensor& o : plan) {
    o.dtype = formats::recipe_dtype(rc, o.name, o.ne);
    DFLASH_RETURN_IF_ERROR(check_sources(o));
  }
  if (opts.outtype == OutType::kAuto)
    LOG_INFO("convert: --outtype auto: keeping the checkpoint's precision (%s)", formats::file_type_name(ft));

  // ---- metadata, in the order the public converter writes it ----
  const std::string p = a + ".";
  auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
  DFLASH_RETURN_IF_ERROR(w.set_string("general.architecture", a));
  DFLASH_RETURN_IF_ERROR(w.set_string("general.type", "model"));
  DFLASH_RETURN_IF_ERROR(w.set_string("general.name", model_name(hf_dir)));
  if (target) {
    const Target& t = *target;
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "block_count", u32(t.L)));
    if (t.ctx) DFLASH_RETURN_IF_ERROR(w.set_u32(p + "context_length", u32(t.ctx)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "embedding_length", u32(t.H)));
    if (t.n_ff) DFLASH_RETURN_IF_ERROR(w.set_u32(p + "feed_forward_length", u32(t.n_ff)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "attention.head_count", u32(t.n_head)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "attention.head_count_kv", u32(t.n_kv)));
    DFLASH_RETURN_IF_ERROR(w.set(p + "rope.dimension_sections", GgufValue::array_i32(t.sections)));
    DFLASH_RETURN_IF_ERROR(w.set_f32(p + "rope.freq_base", static_cast<float>(t.theta)));
    DFLASH_RETURN_IF_ERROR(w.set_f32(p + "attention.layer_norm_rms_epsilon", static_cast<float>(t.eps)));
    if (t.moe) {
      DFLASH_RETURN_IF_ERROR(w.set_u32(p + "expert_count", u32(t.E)));
      DFLASH_RETURN_IF_ERROR(w.set_u32(p + "expert_used_count", u32(t.E_used)));
    }
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "attention.key_length", u32(t.hd)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "attention.value_length", u32(t.hd)));
    DFLASH_RETURN_IF_ERROR(w.set_u32("general.file_type", static_cast<uint32_t>(ft)));
    if (t.moe) {
      DFLASH_RETURN_IF_ERROR(w.set_u32(p + "expert_feed_forward_length", u32(t.F_exp)));
      if (t.F_sh) DFLASH_RETURN_IF_ERROR(w.set_u32(p + "expert_shared_feed_forward_length", u32(t.F_sh)));
    }
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "ssm.conv_kernel", u32(t.K)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "ssm.state_size", u32(t.Dk)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "ssm.group_count", u32(t.Hk)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "ssm.time_step_rank", u32(t.Hv)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "ssm.inner_size", u32(t.Dv * t.Hv)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "full_attention_interval", u32(t.interval)));
    if (!t.periodic) {
      // No interval describes this schedule: write it per layer (upstream's key, which our loader
      // and later llama.cpp read); the tensors present say the same (docs/convert.md).
      std::vector<uint8_t> rl;
      for (bool b : t.recurrent) rl.push_back(b ? 1 : 0);
      DFLASH_RETURN_IF_ERROR(w.set(p + "attention.recurrent_layers", GgufValue::array_raw(formats::GgufType::kBool, rl.data(), rl.size())));
      LOG_INFO("convert: layer_types is not periodic; writing %sattention.recurrent_layers", p.c_str());
    }
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "rope.dimension_count", u32(t.n_rot)));
  } else {
    const Drafter& d = *drafter;
    const bool fork = opts.draft_format == DraftFormat::kFork;
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "block_count", u32(d.L)));
    if (d.ctx) DFLASH_RETURN_IF_ERROR(w.set_u32(p + "context_length", u32(d.ctx)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "embedding_length", u32(d.H)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "feed_forward_length", u32(d.n_ff)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "attention.head_count", u32(d.n_head)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "attention.head_count_kv", u32(d.n_kv)));
    DFLASH_RETURN_IF_ERROR(w.set_f32(p + "rope.freq_base", static_cast<float>(d.theta)));
    DFLASH_RETURN_IF_ERROR(w.set_f32(p + "attention.layer_norm_rms_epsilon", static_cast<float>(d.eps)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "attention.key_length", u32(d.hd)));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "attention.value_length", u32(d.hd)));
    DFLASH_RETURN_IF_ERROR(w.set_u32("general.file_type", static_cast<uint32_t>(ft)));
    DFLASH_RETURN_IF_ERROR(w.set_bool(p + "attention.causal", false));
    DFLASH_RETURN_IF_ERROR(w.set_u32(p + "rope.dimension_count", u32(d.hd)));
    std::vector<int32_t> ids;
    for (int64_t id : d.target_layer_ids) ids.push_back(static_cast<int32_t>(fork ? id : id + 1));
    if (fork) {
      DFLASH_RETURN_IF_ERROR(w.set_u32(p + "dflash.block_size", u32(d.block_size)));
      DFLASH_RETURN_IF_ERROR(w.set_u32(p + "dflash.mask_token_id", u32(d.mask_token_id)));
      DFLASH_RETURN_IF_ERROR(w.set(p + "dflash.target_layer_ids", GgufValue::array_i32(ids)));
      DFLASH_RETURN_IF_ERROR(w.set_u32(p + "dflash.n_target_features", u32(d.H * static_cast<int64_t>(ids.size()))));
    } else {
      // Upstream stores hidden-state indices (its runtime taps a layer's input): layer id + 1.
      DFLASH_RETURN_IF_ERROR(w.set(p + "target_layers", GgufValue::array_i32(ids)));
      DFLASH_RETURN_IF_ERROR(w.set_u32(p + "target_hidden_size", u32(d.H)));
      DFLASH_RETURN_IF_ERROR(w.set_u32(p + "block_size", u32(d.block_size)));
      DFLASH_RETURN_IF_ERROR(w.set_u32(p + "mask_token_id", u32(d.mask_token_id)));
    }
    if (d.sliding_window > 0) {
      DFLASH_RETURN_IF_ERROR(w.set_u32(p + "attention.sliding_window", u32(d.sliding_window)));
      std::vector<uint8_t> pat;
      for (bool b : d.swa) pat.push_back(b ? 1 : 0);
      DFLASH_RETURN_IF_ERROR(w.set(p + "attention.sliding_window_pattern", GgufValue::array_raw(formats::GgufType::kBool, pat.data(), pat.size())));
    }
    if (d.input_embedding_scale) DFLASH_RETURN_IF_ERROR(w.set_f32(p + "input_embedding_scale", static_cast<float>(*d.input_embedding_scale)));
    if (d.output_multiplier) DFLASH_RETURN_IF_ERROR(w.set_f32(p + "logit_scale", static_cast<float>(*d.output_multiplier)));
    if (d.softcap) DFLASH_RETURN_IF_ERROR(w.set_f32(p + "final_logit_softcapping", static_cast<float>(*d.softcap)));
  }
  DFLASH_RETURN_IF_ERROR(w.set_u32("general.quantization_version", 2));
  if (!opts.no_tokenizer) {
    int64_t nv = n_vocab;
    if (nv <= 0) {  // drafter config without vocab_size: the tokenizer source's model decides
      auto tcfg = HfConfig::load((fs::path(tok_dir) / "config.json").string());
      if (tcfg.is_ok()) {
        auto merged = tcfg->text_fields();
        HfConfig c = merged.is_ok() ? *merged : *tcfg;
        auto v = c.opt_integer("vocab_size");
        if (v.is_ok() && *v) nv = **v;
      }
    }
    DFLASH_RETURN_IF_ERROR(add_tokenizer(w, tok_dir, nv > 0 ? nv : -1));
  }
  if (drafter) DFLASH_RETURN_IF_ERROR(w.set_u32("tokenizer.ggml.mask_token_id", u32(drafter->mask_token_id)));

  // ---- tensors ----
  uint64_t total = 0;
  for (const OutTensor& o : plan) total += tensor::row_size(o.dtype, o.ne[0]) * static_cast<uint64_t>(n_rows(o.ne));
  std::optional<util::Progress> progress;
  if (opts.progress) progress.emplace("convert " + model_name(hf_dir), total, "B", stderr, 5.0);
  util::ThreadPool& pool = util::ThreadPool::global();
  for (const OutTensor& o : plan) {
    const OutTensor* op = &o;
    DFLASH_RETURN_IF_ERROR(w.add_tensor(o.name, o.dtype, o.ne, [op, &pool, &progress](uint8_t* dst, size_t nbytes) {
      const int64_t rows = n_rows(op->ne);
      // Quantised rows are the slow part; spread them over the pool (copies are memory-bound anyway).
      pool.parallel_range(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, op->ne[0] / 64)),
                          [&](int64_t b, int64_t e, int) { produce_rows(*op, b, e, dst); });
      if (progress) progress->add(nbytes, op->name);
      return Status::ok();
    }));
  }
  rep.n_tensors = plan.size();
  rep.file_bytes = w.file_size();
  Status st_w = w.write(out_path, opts.overwrite);
  if (!st_w.is_ok()) return st_w.with_context(out_path);
  if (progress) progress->finish(out_path);
  return rep;
}

}  // namespace dflash::convert
