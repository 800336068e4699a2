#include "kernels/deltanet.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/norm.h"
#include "kernels/ref/ops_ref.h"
#include "ops_test_util.h"
#include "util/thread_pool.h"

namespace dflash::kernels {
namespace {
using testing::all_close;
using testing::rel_err;

// Random token inputs laid out like the conv output row: [q heads | k heads | v heads] per token,
// q and k L2-normalised (q scaled by Dk^-0.5), g ≤ 0 (with a few 0 and very negative entries),
// beta in (0, 1).
struct Inputs {
  std::vector<float> row, g, beta;
  int64_t stride = 0;
  DeltaInputs view(const DeltaShape& s, int64_t T) const {
    DeltaInputs in;
    in.q = row.data();
    in.k = row.data() + s.n_k_heads * s.dk;
    in.v = row.data() + 2 * s.n_k_heads * s.dk;
    in.q_stride = in.k_stride = in.v_stride = stride;
    in.g = g.data();
    in.beta = beta.data();
    in.n_tokens = T;
    return in;
  }
};

Inputs make_inputs(const DeltaShape& s, int64_t T, uint32_t seed) {
  Inputs x;
  x.stride = 2 * s.n_k_heads * s.dk + s.n_v_heads * s.dv;
  x.row = testing::randn(size_t(T * x.stride), seed);
  l2norm_heads(x.row.data(), T, s.n_k_heads, s.dk, x.stride, s.dk, 1e-6f, 1.0f / std::sqrt(float(s.dk)));
  l2norm_heads(x.row.data() + s.n_k_heads * s.dk, T, s.n_k_heads, s.dk, x.stride, s.dk, 1e-6f);
  x.g = testing::uniform(size_t(T * s.n_v_heads), seed + 1, -1.5f, 0.0f);
  x.beta = testing::uniform(size_t(T * s.n_v_heads), seed + 2, 0.05f, 0.99f);
  std::mt19937 rng(seed + 3);
  for (auto& g : x.g) {
    const unsigned r = rng() % 16;
    if (r == 0) g = 0.0f;
    if (r == 1) g = -30.0f;
  }
  return x;
}

TEST(DeltaRule, HeadMapping) {
  DeltaShape g{2, 6, 4, 4, HeadMap::kGrouped}, t{2, 6, 4, 4, HeadMap::kTiled};
  const int64_t grouped[] = {0, 0, 0, 1, 1, 1}, tiled[] = {0, 1, 0, 1, 0, 1};
  for (int64_t h = 0; h < 6; ++h) {
    EXPECT_EQ(g.qk_head(h), grouped[h]);
    EXPECT_EQ(t.qk_head(h), tiled[h]);
  }
}

TEST(DeltaRule, RecurrentMatchesReferenceBothHeadMaps) {
  util::ThreadPool pool(3);
  for (HeadMap map : {HeadMap::kGrouped, HeadMap::kTiled})
    for (auto [dk, dv] : {std::pair<int64_t, int64_t>{16, 16}, {12, 20}, {33, 7}, {128, 128}}) {
      DeltaShape s{2, 4, dk, dv, map};
      const int64_t T = dk == 128 ? 9 : 23;
      auto x = make_inputs(s, T, uint32_t(dk * 3 + dv));
      auto st0 = testing::randn(size_t(s.n_v_heads * dk * dv), 5, 0.1f);
      auto st_fast = st0;
      auto st_ref = st0;  // both Dk-major
      const int64_t out_stride = s.n_v_heads * dv + 1;
      std::vector<float> got(size_t(T * out_stride), 0.0f), want(got.size(), 0.0f);
      delta_rule_recurrent(s, st_fast.data(), x.view(s, T), got.data(), out_stride, &pool);
      ref::delta_rule_recurrent(s, st_ref.data(), x.view(s, T), want.data(), out_stride);
      SCOPED_TRACE(::testing::Message() << "map " << int(map) << " dk " << dk << " dv " << dv);
      EXPECT_TRUE(all_close(got, want, 1e-6, 1e-5));
      EXPECT_TRUE(all_close(st_fast, st_ref, 1e-6, 1e-5));
      // Tape replay (no outputs) reaches the same state.
      auto st_replay = st0;
      DeltaInputs in = x.view(s, T);
      in.q = nullptr;
      delta_rule_recurrent(s, st_replay.data(), in, nullptr, 0, nullptr);
      EXPECT_TRUE(all_close(st_replay, st_fast, 0, 0));
    }
}

// A verify reads the checkpointed state and writes another buffer: same bits as running in place
// on a copy, the source untouched, for token counts across the 16-token blocking and odd shapes.
TEST(DeltaRule, SeparateInputStateEqualsInPlaceAndLeavesTheSourceAlone) {
  util::ThreadPool pool(2);
  for (auto [dk, dv] : {std::pair<int64_t, int64_t>{128, 128}, {33, 7}})
    for (int64_t T : {0, 1, 2, 15, 16, 17, 40}) {
      DeltaShape s{2, 4, dk, dv, HeadMap::kTiled};
      auto x = make_inputs(s, std::max<int64_t>(T, 1), uint32_t(T + dk));
      const auto st0 = testing::randn(size_t(s.n_v_heads * dk * dv), 11, 0.1f);
      auto in_place = st0;
      std::vector<float> src = st0, dst(st0.size(), 7.0f);
      const int64_t os = s.n_v_heads * dv;
      std::vector<float> o1(size_t(std::max<int64_t>(T, 1) * os)), o2(o1.size());
      delta_rule_recurrent(s, in_place.data(), x.view(s, T), o1.data(), os, &pool);
      delta_rule_recurrent(s, dst.data(), x.view(s, T), o2.data(), os, &pool, src.data());
      SCOPED_TRACE(::testing::Message() << "dk " << dk << " dv " << dv << " T " << T);
      EXPECT_EQ(dst, in_place);
      EXPECT_EQ(src, st0);
      if (T > 0) {
        EXPECT_EQ(o2, o1);
      }
    }
}

// Greedy speculative decoding is lossless only if feeding T tokens in one call (verify) gives the
// bits of T one-token calls (decode): outputs and state. (Caught late: the first token of a call took
// its k·row from a 4-accumulator dot product, later tokens from the fused pass's single accumulator,
// so verify rows ≥ 1 differed from decode in the last bits at Dk = 128.)
TEST(DeltaRule, OneCallEqualsTokenByTokenBitForBit) {
  util::ThreadPool pool(2);
  for (auto [dk, dv] : {std::pair<int64_t, int64_t>{128, 128}, {64, 32}, {96, 16}, {40, 24}, {33, 7}, {16, 16}})
    for (int64_t T : {2, 5, 16, 17, 35}) {
      DeltaShape s{2, 4, dk, dv, HeadMap::kTiled};
      auto x = make_inputs(s, T, uint32_t(7 * T + dk));
      const auto st0 = testing::randn(size_t(s.n_v_heads * dk * dv), 13, 0.1f);
      const int64_t os = s.n_v_heads * dv;
      std::vector<float> batch = st0, steps = st0;
      std::vector<float> ob(size_t(T * os)), ot(ob.size());
      delta_rule_recurrent(s, batch.data(), x.view(s, T), ob.data(), os, &pool);
      for (int64_t t = 0; t < T; ++t) {
        DeltaInputs one = x.view(s, 1);
        one.q += t * x.stride;
        one.k += t * x.stride;
        one.v += t * x.stride;
        one.g += t * s.n_v_heads;
        one.beta += t * s.n_v_heads;
        delta_rule_recurrent(s, steps.data(), one, ot.data() + t * os, os, &pool);
      }
      SCOPED_TRACE(::testing::Message() << "dk " << dk << " dv " << dv << " T " << T);
      ASSERT_EQ(ob, ot) << "outputs";
      ASSERT_EQ(batch, steps) << "state";
    }
}

TEST(DeltaRule, TiledOnReorderedHeadsEqualsGrouped) {
  // llama.cpp's conversion moves value head h = a·r + s (qk head a, slot s) to h' = s·Hk + a;
  // the tiled map on reordered v/g/beta must then reproduce the grouped result, reordered.
  const int64_t Hk = 2, Hv = 6, r = Hv / Hk, dk = 8, dv = 8, T = 13;
  DeltaShape grouped{Hk, Hv, dk, dv, HeadMap::kGrouped}, tiled{Hk, Hv, dk, dv, HeadMap::kTiled};
  auto x = make_inputs(grouped, T, 77);
  Inputs y = x;
  auto perm = [&](int64_t h) { return (h % r) * Hk + h / r; };
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < Hv; ++h) {
      for (int64_t j = 0; j < dv; ++j)
        y.row[size_t(t * x.stride + 2 * Hk * dk + perm(h) * dv + j)] = x.row[size_t(t * x.stride + 2 * Hk * dk + h * dv + j)];
      y.g[size_t(t * Hv + perm(h))] = x.g[size_t(t * Hv + h)];
      y.beta[size_t(t * Hv + perm(h))] = x.beta[size_t(t * Hv + h)];
    }
  std::vector<float> sg(size_t(Hv * dk * dv), 0.0f), stl = sg, og(size_t(T * Hv * dv)), ot(og.size());
  delta_rule_recurrent(grouped, sg.data(), x.view(grouped, T), og.data(), Hv * dv);
  delta_rule_recurrent(tiled, stl.data(), y.view(tiled, T), ot.data(), Hv * dv);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < Hv; ++h)
      for (int64_t j = 0; j < dv; ++j)
        ASSERT_EQ(ot[size_t(t * Hv * dv + perm(h) * dv + j)], og[size_t(t * Hv * dv + h * dv + j)]);
  // And the tiled map on the *unreordered* input differs (the flag matters).
  std::vector<float> st2(sg.size(), 0.0f), o2(og.size());
  delta_rule_recurrent(tiled, st2.data(), x.view(tiled, T), o2.data(), Hv * dv);
  EXPECT_GT(rel_err(o2, og), 1e-3);
}

TEST(DeltaRule, ChunkedMatchesRecurrentOnLongSequences) {
  util::ThreadPool pool(2);
  const bool small = testing::sanitized();
  struct Cfg {
    int64_t Hk, Hv, dk, dv, chunk;
    HeadMap map;
  };
  const Cfg cfgs[] = {{2, 4, 32, 24, 64, HeadMap::kGrouped}, {2, 4, 32, 24, 16, HeadMap::kTiled},
                      {1, 2, 128, 128, 64, HeadMap::kGrouped}, {3, 3, 9, 11, 7, HeadMap::kGrouped}};
  for (const Cfg& c : cfgs) {
    DeltaShape s{c.Hk, c.Hv, c.dk, c.dv, c.map};
    std::vector<int64_t> lengths = {1, 2, 5, 63, 64, 65, 129, 300};
    if (small || c.dk == 128) lengths = {1, 64, 65, 200};
    for (int64_t T : lengths) {
      SCOPED_TRACE(::testing::Message() << "dk " << c.dk << " dv " << c.dv << " chunk " << c.chunk << " T " << T);
      auto x = make_inputs(s, T, uint32_t(T * 31 + c.dk));
      auto st0 = testing::randn(size_t(s.n_v_heads * c.dk * c.dv), uint32_t(T), 0.2f);
      auto st_rec = st0, st_chk = st0;
      const int64_t out_stride = s.n_v_heads * c.dv;
      std::vector<float> o_rec(size_t(T * out_stride)), o_chk(o_rec.size());
      delta_rule_recurrent(s, st_rec.data(), x.view(s, T), o_rec.data(), out_stride, &pool);
      delta_rule_chunked(s, st_chk.data(), x.view(s, T), o_chk.data(), out_stride, c.chunk, &pool);
      EXPECT_LT(rel_err(o_chk, o_rec), 1e-5);
      EXPECT_LT(rel_err(st_chk, st_rec), 1e-5);
      EXPECT_TRUE(all_close(o_chk, o_rec, 2e-6, 1e-4));
      // State-only chunked (prefill that needs no outputs) gives the same state.
      auto st_only = st0;
      delta_rule_chunked(s, st_only.data(), x.view(s, T), nullptr, 0, c.chunk, nullptr);
      EXPECT_TRUE(all_close(st_only, st_chk, 0, 0));
    }
  }
}

TEST(DeltaRule, RetrievesStoredValuesWithOrthonormalKeys) {
  // g = 0, beta = 1: writing v_i under orthonormal keys k_i makes S = Σ k_i v_iᵀ; a query k_m reads v_m.
  const int64_t dk = 16, dv = 8, n = 10;
  DeltaShape s{1, 1, dk, dv, HeadMap::kGrouped};
  // Orthonormal keys: Gram–Schmidt on random vectors.
  auto raw = testing::randn(size_t(n * dk), 4);
  for (int64_t i = 0; i < n; ++i) {
    float* ki = raw.data() + i * dk;
    for (int64_t j = 0; j < i; ++j) {
      const float* kj = raw.data() + j * dk;
      double d = 0;
      for (int64_t x = 0; x < dk; ++x) d += double(ki[x]) * kj[x];
      for (int64_t x = 0; x < dk; ++x) ki[x] -= float(d) * kj[x];
    }
    double nn = 0;
    for (int64_t x = 0; x < dk; ++x) nn += double(ki[x]) * ki[x];
    for (int64_t x = 0; x < dk; ++x) ki[x] /= float(std::sqrt(nn));
  }
  auto vals = testing::randn(size_t(n * dv), 6);
  std::vector<float> zeros_g(size_t(n), 0.0f), ones_b(size_t(n), 1.0f);
  for (bool chunked : {false, true}) {
    std::vector<float> st(size_t(dk * dv), 0.0f);
    DeltaInputs w;
    w.k = raw.data();
    w.v = vals.data();
    w.k_stride = dk;
    w.v_stride = dv;
    w.g = zeros_g.data();
    w.beta = ones_b.data();
    w.n_tokens = n;
    if (chunked)
      delta_rule_chunked(s, st.data(), w, nullptr, 0, 4);
    else
      delta_rule_recurrent(s, st.data(), w, nullptr, 0);
    // Read: one token per stored key with k = 0 (no write), q = k_m.
    std::vector<float> kzero(size_t(n * dk), 0.0f), out(size_t(n * dv));
    DeltaInputs r = w;
    r.q = raw.data();
    r.q_stride = dk;
    r.k = kzero.data();
    r.n_tokens = n;
    delta_rule_recurrent(s, st.data(), r, out.data(), dv);
    EXPECT_TRUE(all_close(out, vals, 1e-5, 1e-5)) << "chunked " << chunked;
  }
}

}  // namespace
}  // namespace dflash::kernels
