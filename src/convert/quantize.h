// dflash quantize: GGUF → GGUF with the per-tensor types of a llama.cpp file-type mix
// (formats/quant_recipe.h), every metadata key copied (general.file_type and
// general.quantization_version updated), tensors converted on the thread pool and streamed to an
// atomic output one tensor at a time (peak memory ≈ the largest output tensor).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/quant_recipe.h"
#include "tensor/tensor.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace dflash::convert {

struct QuantizeOptions {
  formats::FileType file_type = formats::FileType::kMostlyQ4_K_M;
  int threads = 0;                // 0: the global pool (DFLASH_THREADS or all cores)
  bool allow_requantize = false;  // re-round tensors that are already quantised
  bool overwrite = false;
  bool progress = true;           // progress bar on stderr
};

struct TensorPlan {
  tensor::Tensor src;  // view into the input file
  tensor::DType to = tensor::DType::kF32;
  uint64_t bytes_in = 0, bytes_out = 0;
  bool requantize = false;  // src is quantised and gets rounded again
  std::string note;         // why `to` differs from the mix's base type ("K-quant fallback", "more bits")
};

struct QuantizePlan {
  std::string input;
  formats::FileType file_type = formats::FileType::kMostlyQ4_K_M;
  int n_layers = 0;
  bool tied_embeddings = false;
  std::vector<TensorPlan> tensors;
  uint64_t in_file_size = 0, out_file_size = 0;
  int n_requantized = 0;
};

// Decides every tensor's output type. Errors (naming the file and tensor): a tensor that is already
// quantised would be rounded again and !allow_requantize; a type this build cannot decode would have
// to change. Converting a quantised tensor to F32 is exact and always allowed.
util::Result<QuantizePlan> plan_quantize(const formats::GgufFile& in, const QuantizeOptions& opts);

// The plan as a table (name, shape, from → to, bytes, note) and the resulting total size.
std::string format_plan(const QuantizePlan& plan);

// Writes the quantised file. `plan` must come from plan_quantize(in, opts).
util::Status write_quantized(const formats::GgufFile& in, const QuantizePlan& plan, const QuantizeOptions& opts,
                             const std::string& out_path);

// Converts all rows of `src` to `to` into `dst` (row_size(to, ne[0]) · rows bytes), rows in parallel.
// A row with NaN or Inf is an error naming the tensor and row (llama.cpp refuses those too).
util::Status convert_tensor_data(const tensor::Tensor& src, tensor::DType to, uint8_t* dst, util::ThreadPool& pool);

}  // namespace dflash::convert
