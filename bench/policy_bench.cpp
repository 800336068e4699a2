// What the adaptive block policy costs per decoding round (next_block_size + observe), against a
// synthetic drafter: draft k is accepted with probability p given the ones before it, and a round of
// block B costs 1 + 0.25·(B−1) plain rounds. p = 0.1 settles on plain decoding (B = 1), p = 0.8 on
// drafting. A plain round of the shipped target takes ~2.5–5 ms on 2 threads, so 10 µs is 0.2–0.4 %.
#include <benchmark/benchmark.h>

#include <random>

#include "spec/adaptive.h"

namespace {

void BM_AdaptivePolicyRound(benchmark::State& state) {
  const double p = static_cast<double>(state.range(0)) / 100.0;
  dflash::spec::AdaptiveBlockPolicy pol(16);
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(0, 1);
  auto round = [&] {
    const int b = pol.next_block_size(16);
    int acc = 0;
    while (acc < b - 1 && u(rng) < p) ++acc;
    pol.observe(b, acc, 1e-3 * (1.0 + 0.25 * (b - 1)));
    return b;
  };
  for (int r = 0; r < 200; ++r) round();  // past the probe schedule
  for (auto _ : state) benchmark::DoNotOptimize(round());
}
BENCHMARK(BM_AdaptivePolicyRound)->ArgName("accept_pct")->Arg(10)->Arg(80)->Unit(benchmark::kMicrosecond);

}  // namespace
