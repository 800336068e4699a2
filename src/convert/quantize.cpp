#include "convert/quantize.h"

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>

#include "formats/quant.h"
#include "util/bulk_job.h"

namespace dflash::convert {

using formats::FileType;
using formats::GgufFile;
using formats::GgufValue;
using formats::GgufWriter;
using tensor::DType;
using util::quote;
using util::Result;
using util::Status;
using util::strfmt;

namespace {

constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION: the block layouts in tensor/dtype.h

bool is_float(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }
// Plain element types that are not weights (token ids, masks); copied unchanged.
bool is_plain_non_float(DType t) {
  return t == DType::kI8 || t == DType::kI16 || t == DType::kI32 || t == DType::kI64 || t == DType::kF64;
}

DType base_type(FileType ft) {
  switch (ft) {
    case FileType::kAllF32: return DType::kF32;
    case FileType::kMostlyF16: return DType::kF16;
    case FileType::kMostlyBF16: return DType::kBF16;
    case FileType::kMostlyQ8_0: return DType::kQ8_0;
    case FileType::kMostlyQ4_K_M: return DType::kQ4_K;
    case FileType::kMostlyQ5_K_M: return DType::kQ5_K;
    case FileType::kMostlyQ6_K: return DType::kQ6_K;
  }
  return DType::kF32;
}

bool is_k_quant(DType t) { return t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K; }

int layer_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return -1;
  int v = 0;
  size_t i = 4;
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9' && v < 1000000; ++i) v = v * 10 + (name[i] - '0');
  return v;
}

// Why a tensor's type differs from the mix's base type (for the plan table).
std::string note_for(const tensor::Tensor& t, DType to, FileType ft) {
  const DType base = base_type(ft);
  if (to == base || to == DType::kF32 || to == t.dtype) return "";
  const int64_t row = t.ne[0];
  if (is_k_quant(base) && (to == DType::kQ8_0 || to == DType::kF16) && row % tensor::kQK_K != 0)
    return strfmt("row %" PRId64 " %% 256 != 0: K-quant fallback", row);
  if (base == DType::kQ8_0 && to == DType::kF16) return strfmt("row %" PRId64 " %% 32 != 0: fallback", row);
  if (to == DType::kQ6_K) {
    if (t.name == "output.weight" || t.name == "token_embd.weight") return "more bits: output matrix";
    return strfmt("more bits: layer %d", layer_of(t.name));
  }
  return "";
}

int count_layers(const GgufFile& in) {
  auto arch = in.get_string("general.architecture");
  if (arch.is_ok()) {
    auto n = in.get_u32(std::string(*arch) + ".block_count");
    if (n.is_ok()) return static_cast<int>(*n);
  }
  int n = 0;  // no block_count: the blk.N.* names tell
  for (const auto& t : in.tensors()) n = std::max(n, layer_of(t.tensor.name) + 1);
  return n;
}

Result<GgufWriter> build_writer(const GgufFile& in, const QuantizePlan& plan, util::ThreadPool* pool,
                                util::Progress* progress) {
  GgufWriter w;
  bool have_ft = false, have_qv = false;
  for (const auto& kv : in.metadata()) {
    if (kv.key == "general.file_type") {
      DFLASH_RETURN_IF_ERROR(w.set_u32(kv.key, static_cast<uint32_t>(plan.file_type)));
      have_ft = true;
    } else if (kv.key == "general.quantization_version") {
      DFLASH_RETURN_IF_ERROR(w.set_u32(kv.key, kQuantizationVersion));
      have_qv = true;
    } else {
      Status st = w.set(kv.key, kv.value);
      if (!st.is_ok()) return st.with_context(in.path());
    }
  }
  if (!have_ft) DFLASH_RETURN_IF_ERROR(w.set_u32("general.file_type", static_cast<uint32_t>(plan.file_type)));
  if (!have_qv) DFLASH_RETURN_IF_ERROR(w.set_u32("general.quantization_version", kQuantizationVersion));

  for (const TensorPlan& tp : plan.tensors) {
    const tensor::Tensor* src = &tp.src;
    const DType to = tp.to;
    const uint64_t bytes_in = tp.bytes_in;
    GgufWriter::FillFn fill = [src, to, pool, progress, bytes_in](uint8_t* dst, size_t n) -> Status {
      if (to == src->dtype) {
        std::memcpy(dst, src->data, n);
      } else {
        DFLASH_RETURN_IF_ERROR(convert_tensor_data(*src, to, dst, *pool));
      }
      if (progress) progress->add(bytes_in, src->name);
      return Status::ok();
    };
    Status st = w.add_tensor(src->name, to, std::span<const int64_t>(src->ne.data(), src->n_dims), std::move(fill));
    if (!st.is_ok()) return st.with_context(in.path());
  }
  return w;
}

}  // namespace

Status convert_tensor_data(const tensor::Tensor& src, DType to, uint8_t* dst, util::ThreadPool& pool) {
  if (!formats::codec_supported(src.dtype))
    return util::unsupported("tensor " + quote(src.name) + ": cannot decode " + tensor::dtype_name(src.dtype));
  if (!formats::codec_supported(to) || to == DType::kQ8_K)
    return util::unsupported("tensor " + quote(src.name) + ": cannot encode " + tensor::dtype_name(to));
  const int64_t n = src.ne[0];
  if (n % tensor::info(to).block_size != 0)
    return util::invalid_argument(strfmt("tensor %s: row length %" PRId64 " is not a multiple of the %s block (%" PRId64
                                         ")",
                                         quote(src.name).c_str(), n, tensor::dtype_name(to),
                                         tensor::info(to).block_size));
  const size_t out_row = tensor::row_size(to, n);
  const int64_t rows = src.rows();
  std::atomic<int64_t> bad_row{-1};
  // ~64K elements per task: small enough to balance, large enough that dispatch costs nothing.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(n, 1));
  pool.parallel_range(
      rows, grain,
      [&](int64_t r0, int64_t r1, int) {
        std::vector<float> buf(static_cast<size_t>(n));
        for (int64_t r = r0; r < r1; ++r) {
          formats::dequantize_row(src.dtype, src.row(r), buf.data(), n);
          for (float v : buf) {
            if (!std::isfinite(v)) {
              int64_t expect = -1;
              bad_row.compare_exchange_strong(expect, r);
              return;
            }
          }
          formats::quantize_row(to, buf.data(), dst + static_cast<size_t>(r) * out_row, n);
        }
      },
      4);
  if (bad_row.load() >= 0)
    return util::corrupt(strfmt("tensor %s: row %" PRId64 " contains NaN or Inf", quote(src.name).c_str(),
                                bad_row.load()));
  return Status::ok();
}

Result<QuantizePlan> plan_quantize(const GgufFile& in, const QuantizeOptions& opts) {
  QuantizePlan p;
  p.input = in.path();
  p.file_type = opts.file_type;
  p.n_layers = count_layers(in);
  p.tied_embeddings = in.find_tensor("output.weight") == nullptr;
  p.in_file_size = in.file_size();
  formats::RecipeContext ctx{opts.file_type, p.n_layers, p.tied_embeddings};
  for (const auto& ti : in.tensors()) {
    const tensor::Tensor& t = ti.tensor;
    TensorPlan tp;
    tp.src = t;
    tp.bytes_in = ti.nbytes;
    DType to = formats::recipe_dtype(ctx, t.name, std::span<const int64_t>(t.ne.data(), t.n_dims));
    if (to != t.dtype) {
      if (is_plain_non_float(t.dtype)) {
        to = t.dtype;
        tp.note = "kept: not a float tensor";
      } else if (!formats::codec_supported(t.dtype)) {
        return util::unsupported(in.path() + ": tensor " + quote(t.name) + " is " + tensor::dtype_name(t.dtype) +
                                 ", which dflash cannot decode; quantize from the F32/F16/BF16 file instead");
      } else if (!is_float(t.dtype) && to != DType::kF32) {
        tp.requantize = true;
        if (!opts.allow_requantize)
          return util::invalid_argument(in.path() + ": tensor " + quote(t.name) + " is already " +
                                        tensor::dtype_name(t.dtype) + "; rounding it again to " +
                                        tensor::dtype_name(to) +
                                        " loses more than quantizing the original — use the F32/F16/BF16 file, or "
                                        "pass --allow-requantize");
        ++p.n_requantized;
      }
    }
    tp.to = to;
    if (tp.note.empty()) tp.note = note_for(t, to, opts.file_type);
    if (tp.requantize) tp.note = std::string("requantized from ") + tensor::dtype_name(t.dtype) +
                                 (tp.note.empty() ? "" : "; " + tp.note);
    tp.bytes_out = tensor::row_size(to, t.ne[0]) * static_cast<uint64_t>(t.rows());
    p.tensors.push_back(std::move(tp));
  }
  DFLASH_ASSIGN_OR_RETURN(GgufWriter w, build_writer(in, p, nullptr, nullptr));
  p.out_file_size = w.file_size();
  return p;
}

std::string format_plan(const QuantizePlan& p) {
  size_t wname = 4, wshape = 5;
  for (const auto& t : p.tensors) {
    wname = std::max(wname, t.src.name.size());
    wshape = std::max(wshape, t.src.shape_string().size());
  }
  std::string o = strfmt("%s → %s (%zu tensors, %d layers%s)\n", p.input.c_str(), formats::file_type_name(p.file_type),
                         p.tensors.size(), p.n_layers, p.tied_embeddings ? ", tied embeddings" : "");
  o += strfmt("%-*s  %-*s  %-6s    %-6s %12s  %s\n", int(wname), "name", int(wshape), "shape", "from", "to", "bytes",
              "note");
  struct Sum {
    uint64_t n = 0, bytes = 0, params = 0;
  };
  std::map<std::string, Sum> by_type;
  uint64_t params = 0, tensor_bytes = 0;
  for (const auto& t : p.tensors) {
    o += strfmt("%-*s  %-*s  %-6s -> %-6s %12" PRIu64 "  %s\n", int(wname), t.src.name.c_str(), int(wshape),
                t.src.shape_string().c_str(), tensor::dtype_name(t.src.dtype), tensor::dtype_name(t.to), t.bytes_out,
                t.note.c_str());
    Sum& s = by_type[tensor::dtype_name(t.to)];
    ++s.n;
    s.bytes += t.bytes_out;
    s.params += static_cast<uint64_t>(t.src.nelements());
    params += static_cast<uint64_t>(t.src.nelements());
    tensor_bytes += t.bytes_out;
  }
  o += "\n";
  for (const auto& [name, s] : by_type)
    o += strfmt("  %-6s %5" PRIu64 " tensors %14" PRIu64 " bytes (%.2f bits/param)\n", name.c_str(), s.n, s.bytes,
                s.params ? 8.0 * double(s.bytes) / double(s.params) : 0.0);
  o += strfmt("input  %" PRIu64 " bytes (%s)\noutput %" PRIu64 " bytes (%s), %.2f bits/param over all tensors\n",
              p.in_file_size, util::human_bytes(double(p.in_file_size)).c_str(), p.out_file_size,
              util::human_bytes(double(p.out_file_size)).c_str(),
              params ? 8.0 * double(tensor_bytes) / double(params) : 0.0);
  return o;
}

Status write_quantized(const GgufFile& in, const QuantizePlan& plan, const QuantizeOptions& opts,
                       const std::string& out_path) {
  uint64_t total = 0;
  for (const auto& t : plan.tensors) total += t.bytes_in;
  util::BulkJob job(opts.threads, opts.progress, "quantize", total, "B");
  DFLASH_ASSIGN_OR_RETURN(GgufWriter w, build_writer(in, plan, &job.pool(), job.progress()));
  Status st = w.write(out_path, opts.overwrite);
  if (!st.is_ok()) {
    job.cancel();
    return st;
  }
  job.finish(out_path);
  return Status::ok();
}

}  // namespace dflash::convert
