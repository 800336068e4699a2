// Single-thread throughput of the reference quantisers (input MB/s of f32), e.g. to size model conversion.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "formats/quant.h"

namespace {

using dflash::tensor::DType;

void BM_QuantizeRow(benchmark::State& state, DType t, bool with_importance) {
  const int64_t n = 256 * 64;  // a 16384-wide row
  std::vector<float> x(n), imp(n);
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0.0f, 0.02f);
  for (auto& v : x) v = g(rng);
  for (auto& v : imp) v = 1.0f + 10.0f * std::abs(g(rng));
  std::vector<uint8_t> out(dflash::tensor::row_size(t, n));
  for (auto _ : state) {
    dflash::formats::quantize_row(t, x.data(), out.data(), n, with_importance ? imp.data() : nullptr);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * n * static_cast<int64_t>(sizeof(float)));
}

BENCHMARK_CAPTURE(BM_QuantizeRow, q8_0, DType::kQ8_0, false);
BENCHMARK_CAPTURE(BM_QuantizeRow, q8_k, DType::kQ8_K, false);
BENCHMARK_CAPTURE(BM_QuantizeRow, q4_k, DType::kQ4_K, false);
BENCHMARK_CAPTURE(BM_QuantizeRow, q4_k_imatrix, DType::kQ4_K, true);
BENCHMARK_CAPTURE(BM_QuantizeRow, q5_k, DType::kQ5_K, false);
BENCHMARK_CAPTURE(BM_QuantizeRow, q6_k, DType::kQ6_K, false);
BENCHMARK_CAPTURE(BM_QuantizeRow, f16, DType::kF16, false);

}  // namespace
