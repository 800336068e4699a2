#include "convert/export_hf.h"

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>

#include "convert/quantize.h"
#include "formats/quant.h"
#include "formats/safetensors_writer.h"
#include "model/dflash.h"
#include "util/bulk_job.h"
#include "util/mmap_file.h"

namespace dflash::convert {

using formats::GgufFile;
using json = nlohmann::ordered_json;
using tensor::DType;
using util::quote;
using util::Result;
using util::Status;
using util::strfmt;
namespace fs = std::filesystem;

const char* hf_dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "float32";
    case DType::kF16: return "float16";
    case DType::kBF16: return "bfloat16";
    default: return "?";
  }
}

namespace {

bool is_float(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

// The shortest decimal that reads back as the same float32: GGUF stores f32, config.json should say
// 1e-06, not 9.999999974752427e-07.
double short_float(float f) {
  for (int p = 1; p <= 9; ++p) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*g", p, static_cast<double>(f));
    const double d = std::strtod(buf, nullptr);
    if (static_cast<float>(d) == f) return d;
  }
  return static_cast<double>(f);
}

// GGUF per-layer suffix → HF suffix under layers.N. (both dialects).
struct LayerName {
  const char* gguf;
  const char* hf;
  bool required;
};
constexpr LayerName kLayerNames[] = {
    {"attn_norm.weight", "input_layernorm.weight", true},
    {"post_attention_norm.weight", "post_attention_layernorm.weight", true},  // fork dialect
    {"ffn_norm.weight", "post_attention_layernorm.weight", true},             // upstream dialect
    {"attn_q.weight", "self_attn.q_proj.weight", true},
    {"attn_k.weight", "self_attn.k_proj.weight", true},
    {"attn_v.weight", "self_attn.v_proj.weight", true},
    {"attn_output.weight", "self_attn.o_proj.weight", true},
    {"attn_q.bias", "self_attn.q_proj.bias", false},
    {"attn_k.bias", "self_attn.k_proj.bias", false},
    {"attn_v.bias", "self_attn.v_proj.bias", false},
    {"attn_output.bias", "self_attn.o_proj.bias", false},
    {"attn_q_norm.weight", "self_attn.q_norm.weight", true},
    {"attn_k_norm.weight", "self_attn.k_norm.weight", true},
    {"ffn_gate.weight", "mlp.gate_proj.weight", true},
    {"ffn_up.weight", "mlp.up_proj.weight", true},
    {"ffn_down.weight", "mlp.down_proj.weight", true},
};

struct GlobalName {
  const char* gguf;
  const char* hf;
};
constexpr GlobalName kGlobalNames[] = {
    {"dflash_fc.weight", "fc.weight"},                   // fork
    {"fc.weight", "fc.weight"},                          // upstream
    {"dflash_hidden_norm.weight", "hidden_norm.weight"}, // fork
    {"enc.output_norm.weight", "hidden_norm.weight"},    // upstream
    {"hidden_norm.weight", "hidden_norm.weight"},        // an upstream revision spells it so
    {"output_norm.weight", "norm.weight"},
};

// HF name of a GGUF tensor; "" for the target's embedding / head (not part of the layout); nullopt
// when the layout has no place for it.
std::optional<std::string> hf_name_of(const std::string& name, int64_t n_layer) {
  if (name == "token_embd.weight" || name == "output.weight") return std::string();
  for (const auto& g : kGlobalNames)
    if (name == g.gguf) return std::string(g.hf);
  if (name.rfind("blk.", 0) == 0) {
    char* end = nullptr;
    const long il = std::strtol(name.c_str() + 4, &end, 10);
    if (end == name.c_str() + 4 || *end != '.' || il < 0 || il >= n_layer) return std::nullopt;
    const std::string suffix(end + 1);
    for (const auto& l : kLayerNames)
      if (suffix == l.gguf) return strfmt("layers.%ld.%s", il, l.hf);
  }
  return std::nullopt;
}

std::vector<int64_t> hf_shape(const tensor::Tensor& t) {
  std::vector<int64_t> s;
  for (int i = t.n_dims - 1; i >= 0; --i) s.push_back(t.ne[i]);
  return s;
}

}  // namespace

Result<HfExport> plan_export_hf(const GgufFile& in, const ExportHfOptions& opts) {
  auto cr = model::DFlashConfig::from_gguf(in);
  if (!cr.is_ok()) {
    if (cr.status().code() == util::ErrorCode::kNotFound && !in.has("general.architecture"))
      return util::unsupported(in.path() + ": no general.architecture: not a DFlash drafter GGUF");
    if (cr.status().code() == util::ErrorCode::kUnsupported)
      return util::unsupported(cr.status().message() + "; export-hf exports DFlash drafters only");
    return cr.status();
  }
  const model::DFlashConfig& c = *cr;
  const std::string a = c.arch + ".";
  HfExport e;

  // Tensors: every one must have a place, every required one must be there.
  std::set<std::string> seen;
  DType common = DType::kF32;
  bool first_matrix = true, uniform = true;
  bool bias = false;
  for (const auto& ti : in.tensors()) {
    const tensor::Tensor& t = ti.tensor;
    auto hf = hf_name_of(t.name, c.n_layer);
    if (!hf)
      return util::unsupported(in.path() + ": tensor " + quote(t.name) +
                               " has no place in the z-lab DFlashDraftModel layout (DFlash2 / DSpark drafters are "
                               "not supported by export-hf)");
    if (hf->empty()) {
      e.skipped.push_back(t.name);
      continue;
    }
    if (!seen.insert(*hf).second)
      return util::corrupt(in.path() + ": two tensors map to " + quote(*hf) + " (mixed dialect names?)");
    if (!formats::codec_supported(t.dtype) || t.dtype == DType::kQ8_K)
      return util::unsupported(in.path() + ": tensor " + quote(t.name) + " is " + tensor::dtype_name(t.dtype) +
                               ", which dflash cannot decode");
    if (hf->find("_proj.bias") != std::string::npos) bias = true;
    if (t.n_dims >= 2) {
      if (first_matrix) common = t.dtype;
      else if (t.dtype != common) uniform = false;
      first_matrix = false;
    }
    e.tensors.push_back(ExportTensor{t, *hf, hf_shape(t)});
  }
  auto need = [&](const std::string& hf, const std::string& gguf) -> Status {
    if (!seen.count(hf)) return util::not_found(in.path() + ": drafter tensor " + quote(gguf) + " is missing");
    return Status::ok();
  };
  DFLASH_RETURN_IF_ERROR(need("fc.weight", "dflash_fc.weight' (or 'fc.weight"));
  DFLASH_RETURN_IF_ERROR(need("hidden_norm.weight", "dflash_hidden_norm.weight' (or 'enc.output_norm.weight"));
  DFLASH_RETURN_IF_ERROR(need("norm.weight", "output_norm.weight"));
  for (int64_t il = 0; il < c.n_layer; ++il)
    for (const auto& l : kLayerNames)
      if (l.required && std::string(l.gguf) != "ffn_norm.weight" && std::string(l.gguf) != "post_attention_norm.weight")
        DFLASH_RETURN_IF_ERROR(need(strfmt("layers.%lld.%s", (long long)il, l.hf),
                                    strfmt("blk.%lld.%s", (long long)il, l.gguf)));
  for (int64_t il = 0; il < c.n_layer; ++il)
    DFLASH_RETURN_IF_ERROR(need(strfmt("layers.%lld.post_attention_layernorm.weight", (long long)il),
                                strfmt("blk.%lld.post_attention_norm.weight' (or 'blk.%lld.ffn_norm.weight",
                                       (long long)il, (long long)il)));

  if (opts.dtype) {
    if (!is_float(*opts.dtype))
      return util::invalid_argument(std::string("export-hf: --dtype must be f32, f16 or bf16, not ") +
                                    tensor::dtype_name(*opts.dtype));
    e.dtype = *opts.dtype;
  } else {
    e.dtype = (!first_matrix && uniform && is_float(common)) ? common : DType::kF32;
  }

  // Shape sanity against the config (the loader checks the same; a lying file fails here, not in torch).
  for (const auto& t : e.tensors) {
    if (t.hf_name == "fc.weight" && t.src.ne[1] != c.n_embd)
      return util::corrupt(strfmt("%s: fc output width %lld differs from embedding_length %lld", in.path().c_str(),
                                  (long long)t.src.ne[1], (long long)c.n_embd));
    if (t.hf_name == "fc.weight" && t.src.ne[0] % static_cast<int64_t>(c.target_layer_ids.size()) != 0)
      return util::corrupt(strfmt("%s: fc input width %lld is not a multiple of the %zu target layers",
                                  in.path().c_str(), (long long)t.src.ne[0], c.target_layer_ids.size()));
  }

  // config.json: the Qwen3 config plus the DFlash fields, as the authors' class reads them.
  json& j = e.config;
  j["architectures"] = json::array({"DFlashDraftModel"});
  j["model_type"] = "qwen3";
  j["attention_bias"] = bias;
  j["attention_dropout"] = 0.0;
  // The class reads dflash_config.<name> first, then the top level. block_size is also written at the
  // top level because the public GGUF converters (fork and upstream) read it only there.
  j["block_size"] = c.block_size;
  json dc = json::object();
  dc["block_size"] = c.block_size;
  dc["mask_token_id"] = c.mask_token_id;
  dc["target_layer_ids"] = c.target_layer_ids;
  if (c.input_embedding_scale != 1.0f) dc["input_embedding_scale"] = short_float(c.input_embedding_scale);
  if (c.output_multiplier != 1.0f) dc["output_multiplier"] = short_float(c.output_multiplier);
  if (c.logit_softcap > 0.0f) dc["final_logit_softcapping"] = short_float(c.logit_softcap);
  j["dflash_config"] = std::move(dc);
  j["dtype"] = hf_dtype_name(e.dtype);
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.n_embd;
  j["intermediate_size"] = c.n_ff;
  // The class defaults to bidirectional attention in the block (is_causal unset); a file that says its
  // attention is causal keeps saying so.
  DFLASH_ASSIGN_OR_RETURN(bool causal, in.get_bool_or(a + "attention.causal", false));
  if (causal) j["is_causal"] = true;
  json lt = json::array();
  for (bool swa : c.swa_layers) lt.push_back(swa ? "sliding_attention" : "full_attention");
  j["layer_types"] = std::move(lt);
  DFLASH_ASSIGN_OR_RETURN(uint32_t ctx_len, in.get_u32_or(a + "context_length", 32768));
  j["max_position_embeddings"] = ctx_len;
  j["num_attention_heads"] = c.n_head;
  j["num_hidden_layers"] = c.n_layer;
  j["num_key_value_heads"] = c.n_head_kv;
  int64_t n_target = 0;
  for (int id : c.target_layer_ids) n_target = std::max<int64_t>(n_target, id + 1);
  if (opts.num_target_layers > 0) {
    if (opts.num_target_layers < n_target)
      return util::invalid_argument(strfmt("%s: --num-target-layers %lld is too small: the drafter reads target layer %lld",
                                           in.path().c_str(), (long long)opts.num_target_layers,
                                           (long long)(n_target - 1)));
    n_target = opts.num_target_layers;
  }
  j["num_target_layers"] = n_target;
  j["rms_norm_eps"] = short_float(c.rms_eps);
  // transformers 5 reads rope_parameters; stacks on transformers 4 (vLLM, SGLang releases) read
  // rope_theta. Both carry the same theta.
  j["rope_parameters"] = {{"rope_theta", short_float(c.rope_theta)}, {"rope_type", "default"}};
  j["rope_theta"] = short_float(c.rope_theta);
  if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
  else j["sliding_window"] = nullptr;
  j["tie_word_embeddings"] = false;
  j["torch_dtype"] = hf_dtype_name(e.dtype);  // transformers 4 spelling of "dtype"
  j["use_cache"] = true;
  j["use_sliding_window"] = c.sliding_window > 0;
  // vocab_size: the target's (the drafter borrows its embedding and head). The fork dialect carries the
  // target tokenizer; otherwise an own head/embedding tells.
  int64_t vocab = 0;
  if (const auto* tok = in.find("tokenizer.ggml.tokens"); tok && tok->type() == formats::GgufType::kArray)
    vocab = static_cast<int64_t>(tok->size());
  for (const char* n : {"output.weight", "token_embd.weight"})
    if (const auto* t = in.find_tensor(n); t && vocab == 0) vocab = t->tensor.ne[1];
  if (vocab > 0) j["vocab_size"] = vocab;
  return e;
}

Status export_hf(const GgufFile& in, const std::string& dir, const ExportHfOptions& opts, int* narrowed_out) {
  DFLASH_ASSIGN_OR_RETURN(HfExport e, plan_export_hf(in, opts));
  const fs::path d(dir);
  const std::string st_path = (d / "model.safetensors").string();
  const std::string cfg_path = (d / "config.json").string();
  std::error_code ec;
  bool created_dir = false;
  if (fs::exists(d, ec)) {
    if (!fs::is_directory(d, ec)) return util::invalid_argument(dir + ": exists and is not a directory");
  } else {
    if (!fs::create_directory(d, ec) || ec)
      return util::io_error(dir + ": cannot create the output directory: " + ec.message());
    created_dir = true;
  }
  auto cleanup_dir = [&] {
    std::error_code e2;
    if (created_dir) fs::remove(d, e2);  // only removes it when empty
  };
  if (!opts.overwrite) {
    for (const std::string& p : {st_path, cfg_path})
      if (util::file_exists(p)) {
        cleanup_dir();
        return util::invalid_argument(p + ": already exists (pass --force to overwrite)");
      }
  }
  const bool st_existed = util::file_exists(st_path);

  uint64_t total = 0;
  for (const auto& t : e.tensors) total += t.src.nbytes();
  util::BulkJob job(opts.threads, opts.progress, "export-hf", total, "B");
  util::ThreadPool* pool = &job.pool();
  std::atomic<int> narrowed{0};

  formats::SafetensorsWriter w;
  DFLASH_RETURN_IF_ERROR(w.set_metadata("format", "pt"));  // transformers refuses files without it
  for (const auto& t : e.tensors) {
    const tensor::Tensor* src = &t.src;
    const DType to = e.dtype;
    util::Progress* prog = job.progress();
    Status st = w.add_tensor(t.hf_name, to, t.hf_shape, [src, to, pool, prog, &narrowed](uint8_t* dst, size_t n) {
      if (src->dtype == to) {
        std::memcpy(dst, src->data, n);
      } else {
        DFLASH_RETURN_IF_ERROR(convert_tensor_data(*src, to, dst, *pool));
        if (src->dtype == DType::kF32) {  // did the 16-bit type keep every value?
          std::vector<float> back(static_cast<size_t>(src->ne[0]));
          for (int64_t r = 0; r < src->rows(); ++r) {
            formats::dequantize_row(to, dst + static_cast<size_t>(r) * tensor::row_size(to, src->ne[0]), back.data(),
                                    src->ne[0]);
            if (std::memcmp(back.data(), src->row(r), back.size() * sizeof(float)) != 0) {
              narrowed.fetch_add(1);
              break;
            }
          }
        }
      }
      if (prog) prog->add(src->nbytes(), src->name);
      return Status::ok();
    });
    if (!st.is_ok()) {
      cleanup_dir();
      return st.with_context(in.path());
    }
  }
  Status st = w.write(st_path, opts.overwrite);
  if (!st.is_ok()) {
    job.cancel();
    cleanup_dir();
    return st;
  }
  job.finish(st_path);

  const std::string text = e.config.dump(2) + "\n";
  auto cw = util::AtomicFileWriter::create(cfg_path, opts.overwrite);
  st = cw.is_ok() ? (*cw)->write(text.data(), text.size()) : cw.status();
  if (st.is_ok()) st = (*cw)->commit();
  if (!st.is_ok()) {
    // Never leave a weights file without its config (unless it was there before and got replaced).
    if (!st_existed) std::remove(st_path.c_str());
    cleanup_dir();
    return st;
  }
  if (narrowed_out) *narrowed_out = narrowed.load();
  return Status::ok();
}

}  // namespace dflash::convert
