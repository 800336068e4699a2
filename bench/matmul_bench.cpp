// Matmul micro-benchmarks: GEMV / GEMM per weight dtype on matrices larger than L3, thread-pool
// dispatch overhead, and a STREAM-like read bandwidth probe (the decode bound: weight bytes read
// per token / DRAM bandwidth). All use wall time; DFLASH_THREADS sets the pool size (default 2).
//
//   build/bin/dflash-microbench --benchmark_filter='Matmul|DramRead|Pool'
//
// BM_Matmul's matrices are ≥ 96 MB; DFLASH_BENCH_WEIGHT_MB=N makes them ≥ N MB where the last-level
// cache is larger than that.
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "hwy/targets.h"
#include "kernels/matmul.h"
#include "kernels/matmul_impl.h"
#include "kernels/matmul_isa.h"
#include "tensor/tensor.h"
#include "util/thread_pool.h"

namespace {

using namespace dflash;
using tensor::DType;

// DFLASH_HWY_AVX2=1: Highway-dispatched kernels (the float matmuls among them) run their AVX2 code, as on an
// AVX2-only CPU.
const bool g_hwy_avx2 = [] {
  const char* e = std::getenv("DFLASH_HWY_AVX2");
  if (e && e[0] == '1') hwy::DisableTargets(HWY_AVX3 | HWY_AVX3_DL);
  return e && e[0] == '1';
}();

int bench_threads() {
  const char* e = std::getenv("DFLASH_THREADS");
  return e && std::atoi(e) > 0 ? std::atoi(e) : 2;
}

util::ThreadPool& pool_of(int n) {
  static std::map<int, std::unique_ptr<util::ThreadPool>> pools;
  auto& p = pools[n];
  if (!p) p = std::make_unique<util::ThreadPool>(n);
  return *p;
}

// With --benchmark_repetitions=N, "_min" rows report the fastest repetition: on a shared machine
// the minimum is the least disturbed measurement.
double min_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
}

constexpr DType kTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ8_0,
                            DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};
// Matrix width; DFLASH_BENCH_IN (a multiple of 256) gives other model shapes, e.g. 1024 for the LM head of
// the 0.8B shape, whose rows are 4 super-blocks.
const int64_t kIn = [] {
  const char* e = std::getenv("DFLASH_BENCH_IN");
  const long v = e ? std::atol(e) : 0;
  return v > 0 && v % 256 == 0 ? int64_t(v) : int64_t(4096);
}();
// ≫ L3 on most machines (8–48 MiB); DFLASH_BENCH_WEIGHT_MB raises it where the last-level cache is
// larger (the AMX Xeon VMs report 300 MiB, which holds the default matrices).
size_t min_weight_bytes() {
  const char* e = std::getenv("DFLASH_BENCH_WEIGHT_MB");
  const long mb = e ? std::atol(e) : 0;
  return size_t(mb > 0 ? mb : 96) << 20;
}

struct Weights {
  uint8_t* data = nullptr;  // anonymous mmap; never freed (lives for the process)
  size_t size = 0;
  tensor::Tensor t;
};

// Random but well-formed weights (finite, normal floats; sane fp16 scales) of ≥ min_weight_bytes().
const Weights& weights(DType dt) {
  static std::map<DType, std::unique_ptr<Weights>> cache;
  auto& w = cache[dt];
  if (w) return *w;
  w = std::make_unique<Weights>();
  const size_t row = tensor::row_size(dt, kIn);
  int64_t rows = int64_t((min_weight_bytes() + row - 1) / row);
  rows = (rows + 63) / 64 * 64;
  w->size = row * size_t(rows);
  // Small pages by default, like mmap'd model files; DFLASH_BENCH_HUGEPAGES=1 asks for
  // transparent huge pages to show what they would buy.
  void* mem = mmap(nullptr, w->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) std::abort();
  if (const char* e = std::getenv("DFLASH_BENCH_HUGEPAGES"); e && std::atoi(e) > 0)
    madvise(mem, w->size, MADV_HUGEPAGE);
  w->data = static_cast<uint8_t*>(mem);
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= w->size; i += 8) {
    uint64_t v = rng();
    std::memcpy(w->data + i, &v, 8);
  }
  const uint16_t h = tensor::fp32_to_fp16(0.01f), hb = tensor::fp32_to_bf16(0.01f);
  uint8_t* p = w->data;
  const size_t n = size_t(kIn) * size_t(rows);
  switch (dt) {
    case DType::kF32:
      for (size_t i = 0; i < n; ++i) {
        float f = float(int(p[4 * i]) - 128) * 1e-3f;
        std::memcpy(p + 4 * i, &f, 4);
      }
      break;
    case DType::kF16:
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v = uint16_t((dt == DType::kF16 ? h : hb) ^ (p[2 * i] & 0x8f));
        std::memcpy(p + 2 * i, &v, 2);
      }
      break;
    case DType::kQ8_0:
      for (size_t b = 0; b < n / 32; ++b) std::memcpy(p + b * 34, &h, 2);
      break;
    case DType::kQ4_K:
    case DType::kQ5_K:
      for (size_t b = 0; b < n / 256; ++b) {
        uint8_t* blk = p + b * tensor::info(dt).type_size;
        std::memcpy(blk, &h, 2);
        std::memcpy(blk + 2, &h, 2);
      }
      break;
    case DType::kQ6_K:
      for (size_t b = 0; b < n / 256; ++b) std::memcpy(p + b * 210 + 208, &h, 2);
      break;
    default:
      break;
  }
  w->t.name = "bench";
  w->t.dtype = dt;
  w->t.n_dims = 2;
  w->t.ne = {kIn, rows, 1, 1};
  w->t.data = w->data;
  return *w;
}

// The matrix as a model load leaves it: with the copy kernels::PackedWeights makes for the kernel the
// current ISA selects (none when it reads the rows in place, or with DFLASH_NO_PREPACK=1).
const tensor::Tensor& as_loaded(DType dt) {
  static std::map<std::string, std::pair<std::unique_ptr<kernels::PackedWeights>, tensor::Tensor>> copies;
  const std::string key = std::string(tensor::dtype_name(dt)) + "/" + kernels::matmul_isa_name(kernels::matmul_isa()) +
                          "/" + std::to_string(kernels::detail::vnni_width());
  auto& c = copies[key];
  if (!c.first) {
    c.first = std::make_unique<kernels::PackedWeights>();
    c.second = weights(dt).t;
    c.first->add(&c.second);
  }
  return c.second;
}

// Args: dtype index, n_tokens.
void BM_Matmul(benchmark::State& state) {
  const DType dt = kTypes[state.range(0)];
  const int64_t n = state.range(1);
  const tensor::Tensor& w = as_loaded(dt);
  const int64_t out = w.ne[1];
  std::vector<float> x(size_t(kIn * n)), y(size_t(out * n));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  util::ThreadPool& pool = pool_of(bench_threads());
  kernels::matmul(w, x.data(), n, y.data(), pool);  // warm the scratch buffers
  for (auto _ : state) {
    kernels::matmul(w, x.data(), n, y.data(), pool);
    benchmark::ClobberMemory();
  }
  const double bytes = double(w.nbytes()), flops = 2.0 * double(kIn) * double(out) * double(n);
  state.counters["GB/s"] =
      benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_MB"] = bytes / 1e6;
  std::string isa = kernels::matmul_isa_name(kernels::matmul_isa());
  if (kernels::matmul_isa() >= kernels::MatmulIsa::kAvx512Vnni)
    isa += "/" + std::to_string(kernels::detail::vnni_width());
  state.SetLabel(std::string(tensor::dtype_name(dt)) + " " + std::to_string(kIn) + "x" +
                 std::to_string(out) + " n=" + std::to_string(n) + " " + isa +
                 " t=" + std::to_string(pool.size()) + (w.packed ? " packed" : ""));
}
BENCHMARK(BM_Matmul)
    ->ArgsProduct({{0, 1, 2, 3, 4, 5, 6}, {1, 2, 4, 8, 16, 32, 64}})
    ->ArgNames({"dtype", "n"})
    ->ComputeStatistics("min", min_of)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.3);

// The integer paths side by side in one run (Args: dtype index 3..6, n, path): 0 = AVX2,
// 1 = AVX-512 VNNI 256-bit, 2 = VNNI 512-bit, 3 = AMX (Q8_0; other dtypes run VNNI 256). Paths
// the CPU lacks are skipped. Same weights and
// counters as BM_Matmul, so GEMM(n)/GEMV ratios per path come from one process.
void BM_MatmulIsa(benchmark::State& state) {
  const int path = int(state.range(2));
  const kernels::MatmulIsa isa = path == 0   ? kernels::MatmulIsa::kAvx2
                                 : path == 3 ? kernels::MatmulIsa::kAmx
                                             : kernels::MatmulIsa::kAvx512Vnni;
  if (kernels::matmul_best_isa() < isa) {
    state.SkipWithError("CPU lacks this ISA");
    return;
  }
  kernels::set_matmul_isa(isa);
  kernels::detail::set_vnni_width(path == 2 ? 512 : path == 0 ? 0 : 256);
  BM_Matmul(state);
  kernels::set_matmul_isa(kernels::matmul_best_isa());
  kernels::detail::set_vnni_width(0);
}
BENCHMARK(BM_MatmulIsa)
    ->ArgsProduct({{3, 4, 5, 6}, {1, 16}, {0, 1, 2, 3}})
    ->ArgNames({"dtype", "n", "path"})
    ->ComputeStatistics("min", min_of)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.3);

// Compute throughput with cache-resident weights (4096 x 64: 72 KiB..1 MiB), one thread, CPU time:
// what the kernels do per core when memory is not the limit (ratio to n=1 shows batch reuse).
void BM_MatmulHot(benchmark::State& state) {
  const DType dt = kTypes[state.range(0)];
  const int64_t n = state.range(1);
  const Weights& big = weights(dt);
  tensor::Tensor w = big.t;
  w.ne[1] = 64;
  std::vector<float> x(size_t(kIn * n)), y(size_t(64 * n));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  util::ThreadPool& pool = pool_of(1);
  for (auto _ : state) {
    kernels::matmul(w, x.data(), n, y.data(), pool);
    benchmark::ClobberMemory();
  }
  const double macs = double(kIn) * 64.0 * double(n);
  state.counters["GMAC/s"] =
      benchmark::Counter(macs / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(tensor::dtype_name(dt)) + " n=" + std::to_string(n));
}
BENCHMARK(BM_MatmulHot)
    ->ArgsProduct({{0, 1, 2, 3, 4, 5, 6}, {1, 4, 16}})
    ->ArgNames({"dtype", "n"})
    ->ComputeStatistics("min", min_of)
    ->Unit(benchmark::kMicrosecond);

// Row length matters for the integer kernels: each (row, token tile) pays a fixed cost (block-loop
// set-up, horizontal sums), amortised over in / block_size blocks. Weights in×rows of ~4 MiB
// (L3-resident: compute, not DRAM), 1 thread, CPU time. Args: dtype index, in, n.
void BM_MatmulRowLength(benchmark::State& state) {
  const DType dt = kTypes[state.range(0)];
  const int64_t in = state.range(1), n = state.range(2);
  const int64_t rows = int64_t((size_t(4) << 20) / tensor::row_size(dt, in));
  const Weights& big = weights(dt);  // reuse its bytes: any well-formed blocks will do
  tensor::Tensor w = big.t;
  w.ne = {in, rows, 1, 1};
  std::vector<float> x(size_t(in * n)), y(size_t(rows * n));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  util::ThreadPool& pool = pool_of(1);
  for (auto _ : state) {
    kernels::matmul(w, x.data(), n, y.data(), pool);
    benchmark::ClobberMemory();
  }
  state.counters["GMAC/s"] = benchmark::Counter(double(in) * double(rows) * double(n) / 1e9,
                                                benchmark::Counter::kIsIterationInvariantRate);
  char label[96];
  std::snprintf(label, sizeof label, "%s %lldx%lld n=%lld %s", tensor::dtype_name(dt),
                (long long)in, (long long)rows, (long long)n,
                kernels::matmul_isa_name(kernels::matmul_isa()));
  state.SetLabel(label);
}
BENCHMARK(BM_MatmulRowLength)
    ->ArgsProduct({{3, 4, 6}, {768, 1024, 4096, 16384}, {1, 2, 4, 8, 16}})
    ->ArgNames({"dtype", "in", "n"})
    ->ComputeStatistics("min", min_of)
    ->Unit(benchmark::kMicrosecond);

// A model's access pattern: 64 distinct Q8_0 matrices of 768 x 2048 (~107 MB, like the embedded
// target's layers) called in turn, so each call finds its weights wherever a whole model pass left
// them; 2 threads. Args: n tokens, packed (1: the AMX pre-packed copy, kernels::PackedWeights).
// Time is per matmul call.
void BM_MatmulModelPass(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool packed = state.range(1) != 0;
  constexpr int64_t kInM = 768, kRows = 2048, kMats = 64;
  const size_t bytes = tensor::row_size(DType::kQ8_0, kInM) * size_t(kRows);
  static std::vector<std::vector<uint8_t>> store;
  if (store.empty()) {
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> byte(-64, 64);
    for (int64_t m = 0; m < kMats; ++m) {
      std::vector<uint8_t> buf(bytes);
      auto* blk = reinterpret_cast<tensor::BlockQ8_0*>(buf.data());
      for (size_t b = 0; b < bytes / sizeof(tensor::BlockQ8_0); ++b) {
        blk[b].d = tensor::fp32_to_fp16(1e-3f);
        for (auto& q : blk[b].qs) q = int8_t(byte(rng));
      }
      store.push_back(std::move(buf));
    }
  }
  kernels::PackedWeights pw;
  std::vector<tensor::Tensor> ws(kMats);
  for (int64_t m = 0; m < kMats; ++m) {
    tensor::Tensor& w = ws[size_t(m)];
    w.name = "bench";
    w.dtype = DType::kQ8_0;
    w.n_dims = 2;
    w.ne = {kInM, kRows, 1, 1};
    w.data = store[size_t(m)].data();
    if (packed) pw.add(&w);
  }
  if (packed && pw.count() == 0) {
    state.SkipWithError("no packed layout on this CPU (AMX only)");
    return;
  }
  std::vector<float> x(size_t(kInM * n)), y(size_t(kRows * n));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  util::ThreadPool& pool = pool_of(bench_threads());
  int64_t i = 0;
  for (auto _ : state) {
    kernels::matmul(ws[size_t(i++ % kMats)], x.data(), n, y.data(), pool);
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(double(bytes) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(kernels::matmul_isa_name(kernels::matmul_isa())) + (packed ? " packed" : " in place"));
}
BENCHMARK(BM_MatmulModelPass)
    ->ArgsProduct({{1, 2, 4, 8, 16}, {0, 1}})
    ->ArgNames({"n", "packed"})
    ->ComputeStatistics("min", min_of)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(0.5);

// Dispatch cost of an empty parallel_for over all threads (Arg: threads).
void BM_PoolDispatch(benchmark::State& state) {
  util::ThreadPool& pool = pool_of(int(state.range(0)));
  const int64_t tasks = pool.size();
  for (auto _ : state) pool.parallel_for(tasks, [](int64_t, int) {});
  state.SetLabel("empty parallel_for, " + std::to_string(tasks) + " tasks");
}
BENCHMARK(BM_PoolDispatch)
    ->Arg(2)
    ->Arg(3)
    ->ComputeStatistics("min", min_of)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Same, but parallel_range over 4096 rows with trivial work per chunk (what matmul issues).
void BM_PoolRange(benchmark::State& state) {
  util::ThreadPool& pool = pool_of(int(state.range(0)));
  std::vector<int64_t> sink(64 * 8);
  for (auto _ : state)
    pool.parallel_range(4096, 1,
                        [&](int64_t b, int64_t e, int tid) { sink[size_t(tid) * 8] += e - b; });
  benchmark::DoNotOptimize(sink.data());
}
BENCHMARK(BM_PoolRange)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);

// STREAM-like read-only bandwidth: sum of a 1 GiB buffer split over `threads` (Arg 0). Arg 1 = 1
// backs it with transparent huge pages (madvise), which removes the page-walk cost that 4 KiB pages
// add on a 1 GiB buffer: the hardware number. Arg 1 = 0 is what small-page mmap'd weights see.
uint64_t* dram_buffer(bool huge, size_t bytes) {
  static uint64_t* bufs[2] = {nullptr, nullptr};
  uint64_t*& b = bufs[huge ? 1 : 0];
  if (b) return b;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (huge) madvise(p, bytes, MADV_HUGEPAGE);
  b = static_cast<uint64_t*>(p);
  for (size_t i = 0; i < bytes / 8; ++i) b[i] = i * 0x9E3779B97F4A7C15ull;
  return b;
}

void BM_DramRead(benchmark::State& state) {
  constexpr size_t kBytes = size_t(1) << 30;
  const uint64_t* buf = dram_buffer(state.range(1) != 0, kBytes);
  if (!buf) {
    state.SkipWithError("mmap failed");
    return;
  }
  const int64_t n = int64_t(kBytes / 8);
  util::ThreadPool& pool = pool_of(int(state.range(0)));
  std::vector<uint64_t> part(size_t(pool.size()) * 8);
  for (auto _ : state) {
    pool.parallel_range(n, 1 << 16, [&](int64_t b, int64_t e, int tid) {
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      const uint64_t* p = buf;
      // One cache line per iteration, prefetched 1.5 KiB ahead like the matmul kernels (hardware
      // prefetchers stop at 4 KiB pages).
      int64_t i = b;
      for (; i + 8 <= e; i += 8) {
        __builtin_prefetch(p + i + 192);
        s0 += p[i] + p[i + 4];
        s1 += p[i + 1] + p[i + 5];
        s2 += p[i + 2] + p[i + 6];
        s3 += p[i + 3] + p[i + 7];
      }
      // (A tail of < 8 words per chunk is skipped: irrelevant for a bandwidth figure.)
      part[size_t(tid) * 8] += s0 + s1 + s2 + s3;
    });
  }
  benchmark::DoNotOptimize(part.data());
  state.counters["GB/s"] =
      benchmark::Counter(double(kBytes) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_DramRead)
    ->ArgsProduct({{1, 2}, {0, 1}})
    ->ArgNames({"threads", "hugepages"})
    ->ComputeStatistics("min", min_of)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(1.0);

}  // namespace
