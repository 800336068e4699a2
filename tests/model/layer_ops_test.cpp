// model/layer_ops: the RoPE wrapper keeps the cos/sin tables of recent position ranges. A cached table
// must never be served for a call that differs in any key (positions, rotary width, theta), whatever
// the order of calls.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/rope.h"
#include "model/layer_ops.h"

namespace dflash::model {
namespace {

struct Call {
  int64_t m, nheads, hd, n_rot, pos0;
  float theta;
};

TEST(LayerOps, RopeTableCacheNeverServesAnotherCallsTable) {
  // Alternating keys that share some fields, repeated so every call meets a warm cache; three
  // distinct keys also push entries out of the two-entry cache.
  const std::vector<Call> calls = {
      {3, 2, 16, 16, 5, 1e4f},  {3, 2, 16, 16, 5, 1e6f},  {3, 2, 16, 8, 5, 1e4f},  {4, 2, 16, 16, 5, 1e4f},
      {3, 2, 16, 16, 6, 1e4f},  {3, 2, 16, 16, 5, 1e4f},  {3, 4, 32, 16, 5, 1e4f}, {3, 2, 16, 16, 5, 1e6f},
      {3, 2, 16, 8, 5, 1e4f},   {3, 2, 16, 16, 5, 1e4f},
  };
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int pass = 0; pass < 2; ++pass)
    for (size_t c = 0; c < calls.size(); ++c) {
      const Call& k = calls[c];
      std::vector<float> x(static_cast<size_t>(k.m * k.nheads * k.hd));
      for (float& v : x) v = u(rng);
      std::vector<float> want = x;
      std::vector<int64_t> pos(static_cast<size_t>(k.m));
      for (int64_t t = 0; t < k.m; ++t) pos[static_cast<size_t>(t)] = k.pos0 + t;
      kernels::rope(want.data(), k.m, k.nheads, k.nheads * k.hd, k.hd, k.n_rot, pos.data(), k.theta);
      ops::rope_neox(x.data(), k.m, k.nheads, k.hd, k.n_rot, k.pos0, k.theta);
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_EQ(x[i], want[i]) << "pass " << pass << " call " << c << " element " << i;
    }
}

}  // namespace
}  // namespace dflash::model
