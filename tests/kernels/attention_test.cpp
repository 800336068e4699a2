#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "kernels/ref/ops_ref.h"
#include "ops_test_util.h"
#include "util/thread_pool.h"

namespace dflash::kernels {
namespace {
using testing::all_close;

struct Case {
  int64_t n_q, n_head, n_kv_head, head_dim, n_tokens;
  MaskKind mask;
  int64_t window = 0;
  bool head_major = true;
};

// Builds q, a KV cache with spare capacity and the requested mask, runs the kernel with the given
// pool and the double-precision reference, and compares.
void run_case(const Case& c, util::ThreadPool* pool, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "n_q " << c.n_q << " heads " << c.n_head << "/" << c.n_kv_head << " hd "
                                    << c.head_dim << " keys " << c.n_tokens << " mask " << int(c.mask)
                                    << " window " << c.window << " head_major " << c.head_major
                                    << " threads " << (pool ? pool->size() : 1));
  const int64_t cap = c.n_tokens + 5;
  const int64_t q_head_stride = c.head_dim + 1, q_token_stride = c.n_head * q_head_stride + 2;
  auto q = testing::randn(size_t(c.n_q * q_token_stride), seed, 1.0f);
  auto k = testing::randn(size_t(cap * c.n_kv_head * c.head_dim), seed + 1, 1.0f);
  auto v = testing::randn(size_t(cap * c.n_kv_head * c.head_dim), seed + 2, 1.0f);
  KvView kv{k.data(), v.data(), c.n_tokens, c.n_kv_head, c.head_dim, 0, 0};
  if (c.head_major) {
    kv.token_stride = c.head_dim;
    kv.head_stride = cap * c.head_dim;
  } else {
    kv.token_stride = c.n_kv_head * c.head_dim;
    kv.head_stride = c.head_dim;
  }
  AttnMask mask;
  mask.kind = c.mask;
  std::vector<uint8_t> allowed;
  std::vector<float> bias;
  if (c.mask == MaskKind::kCausal) {
    mask.q_pos0 = c.n_tokens - c.n_q;  // the queries are the last n_q cached tokens
    mask.window = c.window;
  } else if (c.mask == MaskKind::kBool || c.mask == MaskKind::kAdditive) {
    std::mt19937 rng(seed + 3);
    mask.mask_stride = c.n_tokens + 1;
    allowed.resize(size_t(c.n_q * mask.mask_stride));
    bias.resize(allowed.size());
    for (size_t i = 0; i < allowed.size(); ++i) {
      allowed[i] = (rng() % 3) != 0;
      bias[i] = allowed[i] ? float(int(rng() % 5) - 2) : -std::numeric_limits<float>::infinity();
    }
    if (c.n_q > 1)  // one query row sees nothing
      for (int64_t j = 0; j < mask.mask_stride; ++j) {
        allowed[size_t(mask.mask_stride + j)] = 0;
        bias[size_t(mask.mask_stride + j)] = -std::numeric_limits<float>::infinity();
      }
    mask.allowed = allowed.data();
    mask.bias = bias.data();
  }
  const int64_t out_stride = c.n_head * c.head_dim;
  std::vector<float> got(size_t(c.n_q * out_stride), 7.0f), want(got.size(), -7.0f);
  AttnArgs a{q.data(), c.n_q, c.n_head, q_token_stride, q_head_stride, got.data(), out_stride,
             1.0f / std::sqrt(float(c.head_dim))};
  attention(a, kv, mask, pool);
  a.out = want.data();
  ref::attention(a, kv, mask);
  EXPECT_TRUE(all_close(got, want, 2e-6, 2e-5));
  if ((c.mask == MaskKind::kBool || c.mask == MaskKind::kAdditive) && c.n_q > 1) {
    for (int64_t x = 0; x < out_stride; ++x) EXPECT_EQ(got[size_t(out_stride + x)], 0.0f);
  }
}

TEST(Attention, MatchesDoubleReferenceAcrossShapesMasksLayouts) {
  util::ThreadPool pool3(3);
  const bool small = testing::sanitized();
  uint32_t seed = 1;
  for (auto hd : {int64_t(7), int64_t(64), int64_t(80)})
    for (auto [nh, nkv] : {std::pair<int64_t, int64_t>{4, 1}, {6, 2}, {3, 3}})
      for (int64_t n_q : {1, 3, 16})
        for (int64_t nt : {int64_t(16), int64_t(37), small ? int64_t(150) : int64_t(700)})
          for (MaskKind m : {MaskKind::kNone, MaskKind::kCausal, MaskKind::kBool, MaskKind::kAdditive}) {
            if (n_q > nt) continue;
            run_case({n_q, nh, nkv, hd, nt, m, 0, (seed % 2) == 0}, (seed % 3 == 0) ? nullptr : &pool3, seed);
            seed += 5;
          }
}

TEST(Attention, SlidingWindowAndQwenShapes) {
  util::ThreadPool pool2(2);
  run_case({16, 8, 2, 256, 300, MaskKind::kCausal, 0, true}, &pool2, 11);
  run_case({16, 8, 2, 256, 300, MaskKind::kCausal, 20, true}, &pool2, 12);
  run_case({5, 4, 4, 32, 100, MaskKind::kCausal, 1, false}, &pool2, 13);  // window 1: only itself
  run_case({16, 32, 8, 128, 200, MaskKind::kNone, 0, true}, &pool2, 14);  // drafter block, non-causal
  run_case({16, 24, 4, 256, 90, MaskKind::kCausal, 0, true}, &pool2, 15);  // 27B: 6 q heads per kv head
  run_case({3, 40, 1, 16, 50, MaskKind::kCausal, 0, false}, &pool2, 16);   // more heads per group than a task holds
  run_case({2, 70, 2, 8, 40, MaskKind::kBool, 0, true}, nullptr, 17);
}

TEST(Attention, SplitKeysAcrossThreadsMatches) {
  // Few (kv head × query tile) tasks and a long cache: the flash-decoding split path.
  util::ThreadPool pool4(4);
  const int64_t nt = testing::sanitized() ? 1100 : 4100;
  run_case({1, 8, 2, 256, nt, MaskKind::kNone, 0, true}, &pool4, 21);
  run_case({1, 8, 2, 256, nt, MaskKind::kCausal, 0, false}, &pool4, 22);
  run_case({2, 4, 1, 64, nt, MaskKind::kCausal, 700, true}, &pool4, 23);
  run_case({3, 4, 1, 64, nt, MaskKind::kBool, 0, true}, &pool4, 24);
}

// Greedy speculative decoding needs a verify block's causal rows to equal one-query decoding bit for
// bit at every context length and thread count (the key split used to depend on the task count).
TEST(Attention, CausalBlockRowsEqualSingleQueryBitForBit) {
  const int64_t nh = 6, nkv = 2, hd = 128, B = 16;
  util::ThreadPool p2(2), p3(3);
  for (int64_t n_ctx : {40, 500, 513, 1100, 2100}) {
    const int64_t nt = n_ctx + B;  // keys of the block already appended
    auto k = testing::randn(size_t(nkv * nt * hd), uint32_t(n_ctx), 1.0f);
    auto v = testing::randn(size_t(nkv * nt * hd), uint32_t(n_ctx + 1), 1.0f);
    auto q = testing::randn(size_t(B * nh * hd), uint32_t(n_ctx + 2), 1.0f);
    for (util::ThreadPool* pool : {static_cast<util::ThreadPool*>(nullptr), &p2, &p3}) {
      std::vector<float> block(size_t(B * nh * hd));
      KvView kv{k.data(), v.data(), nt, nkv, hd, hd, nt * hd};
      AttnMask mask;
      mask.kind = MaskKind::kCausal;
      mask.q_pos0 = n_ctx;
      AttnArgs a{q.data(), B, nh, nh * hd, hd, block.data(), nh * hd, 1.0f / std::sqrt(float(hd))};
      attention(a, kv, mask, pool);
      for (int64_t i = 0; i < B; ++i) {
        std::vector<float> one(size_t(nh * hd));
        KvView kv1 = kv;
        kv1.n_tokens = n_ctx + i + 1;  // decoding: the cache ends at the query
        AttnMask m1 = mask;
        m1.q_pos0 = n_ctx + i;
        AttnArgs a1{q.data() + i * nh * hd, 1, nh, nh * hd, hd, one.data(), nh * hd, a.scale};
        attention(a1, kv1, m1, pool);
        for (int64_t x = 0; x < nh * hd; ++x)
          ASSERT_EQ(one[size_t(x)], block[size_t(i * nh * hd + x)])
              << "context " << n_ctx << " row " << i << " threads " << (pool ? pool->size() : 1);
      }
    }
  }
}

TEST(Attention, DominantKeyAndUniformScores) {
  // One key whose score dwarfs the rest: the output is that key's value.
  const int64_t hd = 16, nt = 50;
  std::vector<float> k(size_t(nt * hd), 0.0f), v = testing::randn(size_t(nt * hd), 5), q(hd, 0.0f);
  q[3] = 1.0f;
  k[size_t(31 * hd + 3)] = 1e3f;
  std::vector<float> out(hd);
  KvView kv{k.data(), v.data(), nt, 1, hd, hd, nt * hd};
  AttnArgs a{q.data(), 1, 1, hd, hd, out.data(), hd, 1.0f};
  attention(a, kv, AttnMask{});
  EXPECT_TRUE(all_close(out.data(), v.data() + 31 * hd, size_t(hd), 1e-6, 1e-6));
  // All scores equal: the mean of the visible values (causal: keys 0..9).
  std::fill(k.begin(), k.end(), 0.0f);
  AttnMask causal;
  causal.kind = MaskKind::kCausal;
  causal.q_pos0 = 9;
  attention(a, kv, causal);
  for (int64_t x = 0; x < hd; ++x) {
    double m = 0;
    for (int64_t j = 0; j < 10; ++j) m += v[size_t(j * hd + x)];
    EXPECT_NEAR(out[size_t(x)], m / 10, 1e-6);
  }
}

}  // namespace
}  // namespace dflash::kernels
