// A non-owning view of n-dimensional data: dtype, shape, data pointer. Weights are views into the
// mmap'd model file. Shapes are listed innermost-first, as GGUF stores them: ne[0] is the length of
// a row (contiguous), ne[1] the number of rows, and so on. A weight W of a linear map in→out has
// ne = {in, out}: row r holds the in-weights of output r.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "tensor/dtype.h"

namespace dflash::tensor {

constexpr int kMaxDims = 4;

struct Tensor {
  std::string name;
  DType dtype = DType::kF32;
  int n_dims = 0;
  std::array<int64_t, kMaxDims> ne{1, 1, 1, 1};
  const void* data = nullptr;
  // Optional copy of data in a layout a matmul kernel reads faster (kernels::PackedWeights sets it
  // and owns it). data stays the source for everything else.
  const void* packed = nullptr;
  int packed_layout = 0;  // which layout packed holds (kernels::PackedWeights), 0 = none
  bool data_copied = false;  // data is a kernels::PackedWeights copy in anonymous memory, not the file's

  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_bytes() const { return row_size(dtype, ne[0]); }
  size_t nbytes() const { return row_bytes() * static_cast<size_t>(rows()); }
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * row_bytes();
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data);
  }
  std::string shape_string() const;  // "[1024, 248320]"
};

}  // namespace dflash::tensor
