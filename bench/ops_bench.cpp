// Micro-benchmarks of the non-matmul kernels at Qwen3.5-0.8B shapes.
//   attention: 8 query heads / 2 kv heads, head_dim 256, over 1k/4k/16k cached tokens, 1 or 16 queries
//   delta rule: 16 value heads, Dk = Dv = 128 (one step, and a 512-token prefill: recurrent vs chunked)
// The last argument of each benchmark is the number of threads (the caller counts as one).
#include <benchmark/benchmark.h>

#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/conv1d.h"
#include "kernels/deltanet.h"
#include "kernels/norm.h"
#include "kernels/rope.h"
#include "kernels/select.h"
#include "util/aligned.h"
#include "util/thread_pool.h"

namespace {
using namespace dflash;
using namespace dflash::kernels;

util::ThreadPool* pool_for(int64_t threads) {
  static std::map<int64_t, std::unique_ptr<util::ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<util::ThreadPool>(int(threads));
  return p.get();
}

std::vector<float> rnd(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void BM_Attention(benchmark::State& st) {
  const int64_t n_kv = st.range(0), n_q = st.range(1), threads = st.range(2);
  const int64_t n_head = 8, n_kv_head = 2, hd = 256;
  auto k = rnd(size_t(n_kv * n_kv_head * hd), 1), v = rnd(size_t(n_kv * n_kv_head * hd), 2);
  auto q = rnd(size_t(n_q * n_head * hd), 3);
  std::vector<float> out(size_t(n_q * n_head * hd));
  KvView kv{k.data(), v.data(), n_kv, n_kv_head, hd, hd, n_kv * hd};  // head-major
  AttnArgs a{q.data(), n_q, n_head, n_head * hd, hd, out.data(), n_head * hd, 1.0f / 16.0f};
  AttnMask m;
  m.kind = MaskKind::kCausal;
  m.q_pos0 = n_kv - n_q;
  util::ThreadPool* pool = pool_for(threads);
  for (auto _ : st) {
    attention(a, kv, m, pool);
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * 2 * n_kv * n_kv_head * hd * int64_t(sizeof(float)));
  st.counters["GFLOP/s"] = benchmark::Counter(double(st.iterations()) * 4.0 * n_q * n_head * n_kv * hd * 1e-9,
                                             benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Attention)
    ->ArgNames({"keys", "queries", "threads"})
    ->ArgsProduct({{1024, 4096, 16384}, {1, 16}, {1, 2}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

struct DeltaBench {
  DeltaShape s{16, 16, 128, 128, HeadMap::kGrouped};
  std::vector<float> row, g, beta, out;
  util::AlignedVector<float> state;  // as the model keeps it (cache-line aligned rows)
  int64_t stride;
  explicit DeltaBench(int64_t T) {
    stride = 2 * s.n_k_heads * s.dk + s.n_v_heads * s.dv;
    row = rnd(size_t(T * stride), 4);
    l2norm_heads(row.data(), T, 2 * s.n_k_heads, s.dk, stride, s.dk, 1e-6f);
    g = rnd(size_t(T * s.n_v_heads), 5, -1.0f, 0.0f);
    beta = rnd(size_t(T * s.n_v_heads), 6, 0.0f, 1.0f);
    state.assign(size_t(s.n_v_heads * s.dk * s.dv), 0.0f);
    out.resize(size_t(T * s.n_v_heads * s.dv));
  }
  DeltaInputs in(int64_t T) const {
    DeltaInputs x;
    x.q = row.data();
    x.k = row.data() + s.n_k_heads * s.dk;
    x.v = row.data() + 2 * s.n_k_heads * s.dk;
    x.q_stride = x.k_stride = x.v_stride = stride;
    x.g = g.data();
    x.beta = beta.data();
    x.n_tokens = T;
    return x;
  }
};

void BM_DeltaStep(benchmark::State& st) {
  const int64_t threads = st.range(0);
  DeltaBench b(1);
  util::ThreadPool* pool = pool_for(threads);
  for (auto _ : st) {
    delta_rule_recurrent(b.s, b.state.data(), b.in(1), b.out.data(), b.s.n_v_heads * b.s.dv, pool);
    benchmark::DoNotOptimize(b.out.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(b.state.size() * sizeof(float)));
}
BENCHMARK(BM_DeltaStep)->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();

// A verify block: the rows before the block are read from a checkpoint (state_in) and the result written
// to the work state, as Qwen35 does for a block of 16 (0.8B shape per layer: 16 heads of 128²).
void BM_DeltaVerify(benchmark::State& st) {
  const int64_t T = st.range(0), threads = st.range(1);
  DeltaBench b(T);
  util::ThreadPool* pool = pool_for(threads);
  const std::vector<float> r = rnd(b.state.size(), 9, -0.1f, 0.1f);
  const util::AlignedVector<float> ckpt(r.begin(), r.end());
  for (auto _ : st) {
    delta_rule_recurrent(b.s, b.state.data(), b.in(T), b.out.data(), b.s.n_v_heads * b.s.dv, pool, ckpt.data());
    benchmark::DoNotOptimize(b.out.data());
  }
}
BENCHMARK(BM_DeltaVerify)
    ->ArgNames({"tokens", "threads"})
    ->ArgsProduct({{16}, {1, 2}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_DeltaPrefill(benchmark::State& st) {
  const int64_t T = st.range(0), chunk = st.range(1), threads = st.range(2);
  DeltaBench b(T);
  util::ThreadPool* pool = pool_for(threads);
  for (auto _ : st) {
    std::fill(b.state.begin(), b.state.end(), 0.0f);
    if (chunk == 0)
      delta_rule_recurrent(b.s, b.state.data(), b.in(T), b.out.data(), b.s.n_v_heads * b.s.dv, pool);
    else
      delta_rule_chunked(b.s, b.state.data(), b.in(T), b.out.data(), b.s.n_v_heads * b.s.dv, chunk, pool);
    benchmark::DoNotOptimize(b.out.data());
  }
  st.counters["tok/s"] = benchmark::Counter(double(st.iterations()) * double(T), benchmark::Counter::kIsRate);
}
// chunk 0 = recurrent form, for comparison.
BENCHMARK(BM_DeltaPrefill)
    ->ArgNames({"tokens", "chunk", "threads"})
    ->ArgsProduct({{16, 512}, {0, 16, 64}, {1, 2}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_Conv1d(benchmark::State& st) {
  const int64_t T = st.range(0), C = 6144, K = 4;  // 0.8B conv_dim
  auto x = rnd(size_t(T * C), 7), w = rnd(size_t(C * K), 8);
  std::vector<float> state(size_t((K - 1) * C), 0.0f), out(size_t(T * C));
  for (auto _ : st) {
    causal_conv1d(x.data(), C, w.data(), state.data(), out.data(), C, T, C, K, true);
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["tok/s"] = benchmark::Counter(double(st.iterations()) * double(T), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Conv1d)->ArgName("tokens")->Arg(1)->Arg(16)->Unit(benchmark::kMicrosecond);

void BM_RmsNorm(benchmark::State& st) {
  const int64_t T = st.range(0), H = 1024;
  auto x = rnd(size_t(T * H), 9), w = rnd(size_t(H), 10);
  std::vector<float> y(x.size());
  for (auto _ : st) {
    rmsnorm(x.data(), w.data(), y.data(), T, H, 1e-6f);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * T * H * 8);
}
BENCHMARK(BM_RmsNorm)->ArgName("tokens")->Arg(1)->Arg(16);

void BM_Rope(benchmark::State& st) {
  const int64_t T = st.range(0), H = 8, hd = 256, n_rot = 64;
  auto x = rnd(size_t(T * H * hd), 11);
  std::vector<int64_t> pos(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = 4000 + t;
  for (auto _ : st) {
    rope(x.data(), T, H, H * hd, hd, n_rot, pos.data(), 1e7f);
    benchmark::DoNotOptimize(x.data());
  }
}
BENCHMARK(BM_Rope)->ArgName("tokens")->Arg(1)->Arg(16);

void BM_Softmax(benchmark::State& st) {
  const int64_t n = 248320;
  auto x = rnd(size_t(n), 12, -20.0f, 20.0f);
  auto y = x;
  for (auto _ : st) {
    y = x;
    softmax(y.data(), 1, n);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * n * 4);
}
BENCHMARK(BM_Softmax)->Unit(benchmark::kMicrosecond);

void BM_Argmax(benchmark::State& st) {
  const int64_t n = 248320;  // Qwen3.5 vocabulary
  auto x = rnd(size_t(n), 13);
  x[size_t(n - 5)] = 10.0f;
  for (auto _ : st) benchmark::DoNotOptimize(argmax(x.data(), n));
  st.SetBytesProcessed(int64_t(st.iterations()) * n * 4);
}
BENCHMARK(BM_Argmax)->Unit(benchmark::kMicrosecond);

void BM_TopK(benchmark::State& st) {
  const int64_t n = 248320;
  const int k = int(st.range(0));
  auto x = rnd(size_t(n), 14);
  std::vector<float> v(64);
  std::vector<int32_t> idx(64);
  for (auto _ : st) benchmark::DoNotOptimize(topk(x.data(), n, k, v.data(), idx.data()));
  st.SetBytesProcessed(int64_t(st.iterations()) * n * 4);
}
BENCHMARK(BM_TopK)->ArgName("k")->Arg(1)->Arg(20)->Arg(64)->Unit(benchmark::kMicrosecond);

}  // namespace
