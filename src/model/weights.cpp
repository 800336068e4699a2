#include "model/weights.h"

#include "kernels/matmul.h"

namespace dflash::model {

using util::strfmt;

util::Status bind_tensor(const formats::GgufFile& f, const std::vector<std::string>& names,
                         const std::vector<int64_t>& ne, tensor::Tensor* out, bool required) {
  const formats::GgufTensorInfo* ti = nullptr;
  for (const auto& n : names)
    if ((ti = f.find_tensor(n))) break;
  if (!ti) {
    if (!required) return util::Status::ok();
    std::string alts;
    for (const auto& n : names) alts += (alts.empty() ? "'" : " or '") + n + "'";
    return util::not_found(strfmt("%s: tensor %s is missing", f.path().c_str(), alts.c_str()));
  }
  const tensor::Tensor& t = ti->tensor;
  bool ok = static_cast<size_t>(t.n_dims) <= ne.size();
  for (size_t i = 0; ok && i < ne.size(); ++i) ok = t.ne[i] == ne[i];
  if (!ok) {
    std::string w = "[";
    for (size_t i = 0; i < ne.size(); ++i) w += (i ? ", " : "") + std::to_string(ne[i]);
    return util::corrupt(strfmt("%s: tensor '%s' has shape %s, expected %s]", f.path().c_str(), t.name.c_str(),
                                t.shape_string().c_str(), w.c_str()));
  }
  if (ne.size() >= 2) {
    if (!kernels::matmul_check(t).is_ok())
      return util::unsupported(strfmt("%s: tensor '%s' has type %s, which this engine cannot compute with "
                                      "(supported: f32 f16 bf16 q8_0 q4_K q5_K q6_K)",
                                      f.path().c_str(), t.name.c_str(), tensor::dtype_name(t.dtype)));
  } else if (t.dtype != tensor::DType::kF32) {
    return util::unsupported(strfmt("%s: tensor '%s' must be f32 (norms, biases and gates), got %s",
                                    f.path().c_str(), t.name.c_str(), tensor::dtype_name(t.dtype)));
  }
  *out = t;
  return util::Status::ok();
}

}  // namespace dflash::model
