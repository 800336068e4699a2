// Reading a model's metadata and binding its weight tensors from GGUF, with errors that name the
// file, the key or tensor, and what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "tensor/tensor.h"
#include "util/status.h"

namespace dflash::model {

// A required metadata value; `what` says whose ("model", "drafter") in the error.
template <typename T>
util::Status read_key(const formats::GgufFile& f, const std::string& key, T* out, const char* what = "model") {
  auto r = f.get<T>(key);
  if (!r.is_ok()) return r.status().with_context(f.path() + ": " + what + " metadata");
  *out = *r;
  return util::Status::ok();
}

// A required u32 value (a size or count) into an int64 field.
inline util::Status read_dim(const formats::GgufFile& f, const std::string& key, int64_t* out,
                             const char* what = "model") {
  uint32_t u = 0;
  DFLASH_RETURN_IF_ERROR(read_key(f, key, &u, what));
  *out = u;
  return util::Status::ok();
}

// Binds the first tensor found under `names` (alternative spellings of one weight) and checks its
// shape (innermost first) and type: matrices must be computable by kernels::matmul, vectors f32.
// A missing tensor is an error unless !required (then *out is left empty).
util::Status bind_tensor(const formats::GgufFile& f, const std::vector<std::string>& names,
                         const std::vector<int64_t>& ne, tensor::Tensor* out, bool required = true);

}  // namespace dflash::model
