#include "kernels/matmul.h"

// GCC 12 at -O3 reports false -Wrestrict warnings inside std::string assignments and concatenations
// (GCC bug 105651) once this file's inlining reaches them.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "formats/quant.h"
#include "hwy/targets.h"
#include "kernels/matmul_impl.h"
#include "kernels/matmul_isa.h"
#include "kernels/quantize_act.h"
#include "kernels/ref/matmul_ref.h"

namespace dflash::kernels {
namespace {

using tensor::DType;

bool sanitized() { return std::getenv("DFLASH_SANITIZED") != nullptr; }

// Random weight bytes in the block layout of `t`: random quants and 6/8-bit scales, sane fp16 d's.
std::vector<uint8_t> random_weights(DType t, int64_t in, int64_t rows, std::mt19937& rng) {
  const size_t bytes = tensor::row_size(t, in) * size_t(rows);
  std::vector<uint8_t> buf(bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : buf) b = uint8_t(byte(rng));
  std::uniform_real_distribution<float> ud(2e-4f, 4e-3f);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  auto h = [&](float v) { return tensor::fp32_to_fp16(v); };
  const int64_t n = in * rows;
  switch (t) {
    case DType::kF32: {
      auto* p = reinterpret_cast<float*>(buf.data());
      for (int64_t i = 0; i < n; ++i) p[i] = nd(rng);
      break;
    }
    case DType::kF16: {
      auto* p = reinterpret_cast<uint16_t*>(buf.data());
      for (int64_t i = 0; i < n; ++i) p[i] = h(nd(rng));
      break;
    }
    case DType::kBF16: {
      auto* p = reinterpret_cast<uint16_t*>(buf.data());
      for (int64_t i = 0; i < n; ++i) p[i] = tensor::fp32_to_bf16(nd(rng));
      break;
    }
    case DType::kQ8_0: {
      auto* p = reinterpret_cast<tensor::BlockQ8_0*>(buf.data());
      for (int64_t b = 0; b < n / 32; ++b) p[b].d = h((b % 7 == 3 ? -1.0f : 1.0f) * ud(rng));
      break;
    }
    case DType::kQ4_K: {
      auto* p = reinterpret_cast<tensor::BlockQ4_K*>(buf.data());
      for (int64_t b = 0; b < n / 256; ++b) p[b].d = h(ud(rng)), p[b].dmin = h(ud(rng));
      break;
    }
    case DType::kQ5_K: {
      auto* p = reinterpret_cast<tensor::BlockQ5_K*>(buf.data());
      for (int64_t b = 0; b < n / 256; ++b) p[b].d = h(ud(rng)), p[b].dmin = h(ud(rng));
      break;
    }
    case DType::kQ6_K: {
      auto* p = reinterpret_cast<tensor::BlockQ6_K*>(buf.data());
      for (int64_t b = 0; b < n / 256; ++b) p[b].d = h(ud(rng));
      break;
    }
    default:
      ADD_FAILURE() << "no generator for " << tensor::dtype_name(t);
  }
  return buf;
}

// Activations with some structure: an all-zero 32-block, a large outlier, mixed magnitudes.
std::vector<float> random_acts(int64_t in, int64_t n_tokens, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(size_t(in * n_tokens));
  for (auto& v : x) v = nd(rng);
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* xt = &x[size_t(t * in)];
    if (t % 3 == 1 && in >= 64)
      for (int i = 32; i < 64; ++i) xt[i] = 0.0f;
    if (t % 4 == 2) xt[in / 2] = 40.0f;
    if (t % 5 == 4)
      for (int64_t i = 0; i < in; ++i) xt[i] *= 1e-3f;
  }
  return x;
}

tensor::Tensor make_tensor(DType t, int64_t in, int64_t rows, const std::vector<uint8_t>& data) {
  tensor::Tensor w;
  w.name = "w";
  w.dtype = t;
  w.n_dims = 2;
  w.ne = {in, rows, 1, 1};
  w.data = data.data();
  return w;
}

struct Ref {
  std::vector<float> exact;    // matmul_int
  std::vector<double> f64;     // dequantised W · x
  std::vector<double> absdot;  // Σ |w||x|, the magnitude rounding scales with
  std::vector<double> qbound;  // bound on the activation-quantisation error
};

Ref make_ref(const tensor::Tensor& w, const std::vector<float>& x, int64_t n_tokens) {
  const int64_t in = w.ne[0], rows = w.rows();
  Ref r;
  r.exact.resize(size_t(n_tokens * rows));
  r.f64.resize(size_t(n_tokens * rows));
  r.absdot.assign(size_t(n_tokens * rows), 0.0);
  r.qbound.assign(size_t(n_tokens * rows), 0.0);
  ref::matmul_int(w, x.data(), n_tokens, r.exact.data());
  ref::matmul_f64(w, x.data(), n_tokens, r.f64.data());
  const DType adt = ref::act_dtype(w.dtype);
  const int64_t qb = adt == DType::kQ8_0 ? 32 : (adt == DType::kQ8_K ? 256 : 0);
  std::vector<float> wr(static_cast<size_t>(in));
  for (int64_t row = 0; row < rows; ++row) {
    formats::dequantize_row(w.dtype, w.row(row), wr.data(), in);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = &x[size_t(t * in)];
      double a = 0, q = 0;
      for (int64_t i0 = 0; i0 < in; i0 += (qb ? qb : in)) {
        const int64_t len = qb ? qb : in;
        double amax = 0;
        for (int64_t i = i0; i < i0 + len; ++i) amax = std::max(amax, double(std::fabs(xt[i])));
        for (int64_t i = i0; i < i0 + len; ++i) {
          a += std::fabs(double(wr[i]) * xt[i]);
          if (qb) q += std::fabs(double(wr[i])) * amax / 254.0;
        }
      }
      r.absdot[size_t(t * rows + row)] = a;
      r.qbound[size_t(t * rows + row)] = q * 1.001;
    }
  }
  return r;
}

void expect_close(const Ref& r, const std::vector<float>& y, int64_t n_tokens, int64_t rows,
                  bool exact_mirror) {
  int failures = 0;
  for (int64_t i = 0; i < n_tokens * rows && failures < 5; ++i) {
    const double tight = 1e-5 * r.absdot[size_t(i)] + 1e-30;
    if (exact_mirror && !(std::fabs(double(y[size_t(i)]) - r.exact[size_t(i)]) <= tight)) {
      ADD_FAILURE() << "vs integer ref at token " << i / rows << " row " << i % rows << ": got "
                    << y[size_t(i)] << " want " << r.exact[size_t(i)] << " (tol " << tight << ")";
      ++failures;
    }
    const double loose = r.qbound[size_t(i)] + tight;
    if (!(std::fabs(double(y[size_t(i)]) - r.f64[size_t(i)]) <= loose)) {
      ADD_FAILURE() << "vs f64 ref at token " << i / rows << " row " << i % rows << ": got "
                    << y[size_t(i)] << " want " << r.f64[size_t(i)] << " (tol " << loose << ")";
      ++failures;
    }
  }
}

// One forced kernel configuration: ISA plus the AVX2 K-quant variant (pair_madd), the VNNI width and
// the Q8_0 kernel choices.
struct Variant {
  MatmulIsa isa;
  int pair = -1;  // AVX2 only
  int width = 0;     // VNNI only
  int amx_min = 0;   // AMX: fewest tokens that take the tiles for K-quants (0 = default)
  int rows16 = -1;   // VNNI: 0 = the per-row kernels (default: the 16-row ones, Q8_0 and Q4_K)
  int amx_q8 = -1;   // Q8_0 on AMX: 1 = the tiles (default: the 16-row VNNI kernel)
  bool hwy_avx2 = false;  // Highway-dispatched kernels (F32/F16/BF16) run their AVX2 code
  void apply() const {
    hwy::SetSupportedTargetsForTest(hwy_avx2 ? (hwy::SupportedTargets() & ~(HWY_AVX3 | HWY_AVX3_DL)) : 0);
    set_matmul_isa(isa);
    detail::set_avx2_pair_madd(pair);
    detail::set_vnni_width(width);
    detail::set_amx_k_min_tokens(amx_min);
    detail::set_rows16(rows16);
    detail::set_amx_q8(amx_q8);
  }
  std::string name() const {
    std::string n = matmul_isa_name(isa);
    if (isa == MatmulIsa::kAvx2) n += pair == 1 ? "/pair_madd" : "/plain";
    if (isa == MatmulIsa::kAvx512Vnni) n += "/" + std::to_string(width);
    if (isa == MatmulIsa::kAmx)
      n += "/vnni" + std::to_string(width) + "/min" + std::to_string(amx_min);
    if (rows16 == 0) n += "/per_row";
    if (amx_q8 == 1) n += "/q8_tiles";
    if (hwy_avx2) n += "/hwy_avx2";
    return n;
  }
};

// The AVX-512 kernels the CPU has: VNNI at both widths (Q8_0 also with its per-row kernel); AMX when
// present, with its default split (K-quant batches below a few tokens go to VNNI, with the same bits;
// Q8_0 on the 16-row VNNI kernel) and with the tiles forced for every batch and for Q8_0.
std::vector<Variant> avx512_variants() {
  std::vector<Variant> v = {{MatmulIsa::kAvx512Vnni, -1, 256},
                            {MatmulIsa::kAvx512Vnni, -1, 512},
                            {MatmulIsa::kAvx512Vnni, -1, 256, 0, 0}};
  if (matmul_best_isa() >= MatmulIsa::kAmx) {
    v.push_back({MatmulIsa::kAmx, -1, 256});
    v.push_back({MatmulIsa::kAmx, -1, 256, 1, -1, 1});
  }
  return v;
}

// Scalar and every SIMD path the CPU has: on a VNNI machine the AVX2 kernels are still run
// (forced), so both stay covered.
std::vector<Variant> all_variants() {
  std::vector<Variant> v = {{MatmulIsa::kScalar}};
  if (matmul_best_isa() >= MatmulIsa::kAvx2) {
    v.push_back({MatmulIsa::kAvx2, 0});
    v.push_back({MatmulIsa::kAvx2, 1});
    v.push_back({MatmulIsa::kAvx2, 0, 0, 0, 0});  // Q8_0's per-row AVX2 kernel
    if (matmul_best_isa() >= MatmulIsa::kAvx512Vnni) {
      Variant f{MatmulIsa::kAvx2, 0};
      f.hwy_avx2 = true;  // the float kernels' AVX2 code, as an AVX2-only CPU runs it
      v.push_back(f);
    }
  }
  if (matmul_best_isa() >= MatmulIsa::kAvx512Vnni)
    for (const Variant& a : avx512_variants()) v.push_back(a);
  return v;
}

void reset_variants() {
  hwy::SetSupportedTargetsForTest(0);
  set_matmul_isa(matmul_best_isa());
  detail::set_rows16(-1);
  detail::set_amx_q8(-1);
  detail::set_amx_rows16(-1);
  detail::set_avx2_pair_madd(-1);
  detail::set_vnni_width(0);
  detail::set_amx_k_min_tokens(0);
}

class MatmulTest : public ::testing::TestWithParam<DType> {
 protected:
  void TearDown() override { reset_variants(); }
};

TEST(MatmulIsa, ForcedIsaIsTheOneRun) {
  for (const Variant& v : all_variants()) {
    v.apply();
    EXPECT_EQ(matmul_isa(), v.isa) << v.name();
  }
  reset_variants();
  EXPECT_EQ(matmul_isa(), matmul_best_isa());
}

TEST(MatmulIsa, ParsesEnvironmentNames) {
  MatmulIsa isa{};
  EXPECT_TRUE(parse_matmul_isa("scalar", &isa));
  EXPECT_EQ(isa, MatmulIsa::kScalar);
  EXPECT_TRUE(parse_matmul_isa("avx2", &isa));
  EXPECT_EQ(isa, MatmulIsa::kAvx2);
  for (const char* n : {"avx512vnni", "avx512", "vnni"}) {
    EXPECT_TRUE(parse_matmul_isa(n, &isa)) << n;
    EXPECT_EQ(isa, MatmulIsa::kAvx512Vnni) << n;
  }
  EXPECT_TRUE(parse_matmul_isa("amx", &isa));
  EXPECT_EQ(isa, MatmulIsa::kAmx);
  EXPECT_FALSE(parse_matmul_isa("avx9", &isa));
  EXPECT_FALSE(parse_matmul_isa("", &isa));
}

TEST_P(MatmulTest, MatchesReferencesAcrossShapesThreadsAndIsas) {
  const DType t = GetParam();
  const int64_t bs = tensor::info(t).block_size;
  std::vector<int64_t> ins;
  if (bs == 1)
    ins = {37, 291};
  else
    ins = {bs, bs * 3};
  if (bs == 32) ins.push_back(32 * 9);
  std::vector<int64_t> outs = {1, 5, 67, 300};
  std::vector<int64_t> toks = {1, 2, 3, 7, 16, 33, 64};
  if (sanitized()) {
    outs = {1, 67};
    toks = {1, 3, 7, 33};
  }
  const std::vector<Variant> isas = all_variants();
  util::ThreadPool p1(1), p2(2), p3(3);
  util::ThreadPool* pools[] = {&p1, &p2, &p3};
  std::mt19937 rng(1234 + int(t));
  for (int64_t in : ins) {
    for (int64_t out : outs) {
      const auto data = random_weights(t, in, out, rng);
      const auto w = make_tensor(t, in, out, data);
      ASSERT_TRUE(matmul_check(w).is_ok());
      const int64_t max_tok = toks.back();
      const auto x = random_acts(in, max_tok, rng);
      for (int64_t n : toks) {
        const Ref r = make_ref(w, x, n);
        for (const Variant& v : isas) {
          v.apply();
          for (auto* pool : pools) {
            SCOPED_TRACE(::testing::Message()
                         << tensor::dtype_name(t) << " in=" << in << " out=" << out << " n=" << n
                         << " isa=" << v.name() << " threads=" << pool->size());
            std::vector<float> y(size_t(n * out + 8), -7.0f);
            matmul(w, x.data(), n, y.data(), *pool);
            for (int k = 0; k < 8; ++k) ASSERT_EQ(y[size_t(n * out + k)], -7.0f) << "wrote past y";
            expect_close(r, y, n, out, /*exact_mirror=*/true);
            if (HasFailure()) return;
          }
        }
      }
    }
  }
}

TEST_P(MatmulTest, RowRangesAndExpertsMatchFullMatmul) {
  const DType t = GetParam();
  const int64_t bs = tensor::info(t).block_size;
  const int64_t in = bs == 1 ? 64 : bs * 2, out = 19, n_exp = 3, n = 5;
  std::mt19937 rng(99);
  const auto data = random_weights(t, in, out * n_exp, rng);
  tensor::Tensor w = make_tensor(t, in, out * n_exp, data);
  w.n_dims = 3;
  w.ne = {in, out, n_exp, 1};
  const auto x = random_acts(in, n, rng);
  util::ThreadPool pool(2);
  std::vector<float> full(size_t(n * out * n_exp));
  matmul(w, x.data(), n, full.data(), pool);
  for (int64_t e = 0; e < n_exp; ++e) {
    std::vector<float> y(size_t(n * out));
    matmul_expert(w, e, x.data(), n, y.data(), pool);
    for (int64_t tk = 0; tk < n; ++tk)
      for (int64_t r = 0; r < out; ++r)
        ASSERT_EQ(y[size_t(tk * out + r)], full[size_t(tk * out * n_exp + e * out + r)])
            << "expert " << e << " token " << tk << " row " << r;
  }
  std::vector<float> y(size_t(n * 7));
  matmul_rows(w, 30, 37, x.data(), n, y.data(), pool);
  for (int64_t tk = 0; tk < n; ++tk)
    for (int64_t r = 0; r < 7; ++r)
      ASSERT_EQ(y[size_t(tk * 7 + r)], full[size_t(tk * out * n_exp + 30 + r)]);
}

// A token's output must not depend on the batch it comes in, the tiling or the thread count:
// speculative verification (n tokens) must reproduce plain decoding (1 token) bit for bit.
TEST_P(MatmulTest, ResultsAreBitIdenticalAcrossBatchSizesAndThreads) {
  const DType t = GetParam();
  const int64_t bs = tensor::info(t).block_size;
  // in·n ≥ 2^16 so the batch also takes the parallel activation-quantisation path.
  const int64_t in = bs == 1 ? 1031 : (bs == 32 ? 32 * 33 : 256 * 5), out = 37, n = 64;
  std::mt19937 rng(5);
  const auto data = random_weights(t, in, out, rng);
  const auto w = make_tensor(t, in, out, data);
  const auto x = random_acts(in, n, rng);
  util::ThreadPool p1(1), p3(3);
  for (const Variant& v : all_variants()) {
    v.apply();
    std::vector<float> batch(size_t(n * out));
    matmul(w, x.data(), n, batch.data(), p3);
    for (int64_t tk = 0; tk < n; ++tk) {
      std::vector<float> one(static_cast<size_t>(out));
      matmul(w, x.data() + tk * in, 1, one.data(), p1);
      for (int64_t r = 0; r < out; ++r)
        ASSERT_EQ(one[size_t(r)], batch[size_t(tk * out + r)])
            << v.name() << " token " << tk << " row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, MatmulTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                           DType::kQ4_K, DType::kQ5_K, DType::kQ6_K),
                         [](const auto& info) {
                           return std::string(tensor::dtype_name(info.param));
                         });

// ---------------- Pre-packed weights ----------------
// The packed copy (PackedWeights) must give the same bits for every batch, thread count and row slice
// (slices off a 16-row boundary re-lay their rows out on the fly), match the integer reference, and
// must only be made where a kernel reads it. Layouts: AMX Q8_0 tiles,
// and the 16-row kernels' for Q8_0, Q4_K, Q5_K and Q6_K (AVX2 and VNNI) (also checked with AMX
// forced down to VNNI and AVX2, and with the per-row kernels, which read no copy).
TEST(PackedWeights, PackedCopyGivesTheSameBitsForEveryBatchAndSlice) {
  std::mt19937 rng(77);
  const auto data = random_weights(DType::kQ8_0, 96, 5, rng);
  tensor::Tensor probe = make_tensor(DType::kQ8_0, 96, 5, data);
  const std::vector<uint8_t> zeros(48);
  tensor::Tensor f32 = make_tensor(DType::kF32, 4, 3, zeros);
  {
    PackedWeights none;
    none.add(&f32);
    EXPECT_EQ(f32.packed, nullptr) << "f32 has no packed layout";
  }
  if (matmul_best_isa() < MatmulIsa::kAvx2) {
    PackedWeights none;
    none.add(&probe);
    EXPECT_EQ(probe.packed, nullptr) << "packed although no kernel here reads it";
    GTEST_SKIP() << "no AVX2 on this CPU: only the in-place kernels run (checked that nothing is packed)";
  }
  std::vector<MatmulIsa> isas = {MatmulIsa::kAvx2};
  if (matmul_best_isa() >= MatmulIsa::kAvx512Vnni) isas.push_back(MatmulIsa::kAvx512Vnni);
  if (matmul_best_isa() >= MatmulIsa::kAmx) isas.push_back(MatmulIsa::kAmx);
  for (MatmulIsa isa : isas) {
    set_matmul_isa(isa);
    detail::set_rows16(0);
    PackedWeights none;
    tensor::Tensor w = probe;
    none.add(&w);
    if (isa != MatmulIsa::kAmx) {
      EXPECT_EQ(w.packed, nullptr) << matmul_isa_name(isa) << ": the per-row kernels read no copy";
    }
    detail::set_rows16(-1);
  }
  std::vector<int64_t> outs = {1, 5, 16, 37, 300}, toks = {1, 2, 3, 4, 5, 16, 17, 33, 64};
  if (sanitized()) toks = {1, 3, 17};
  util::ThreadPool p1(1), p2(2), p3(3);
  for (DType t : {DType::kQ8_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K})
  for (MatmulIsa isa : isas) {
    set_matmul_isa(isa);
    detail::set_amx_q8(isa == MatmulIsa::kAmx ? 1 : -1);  // AMX: the tiles' layout
    SCOPED_TRACE(::testing::Message() << tensor::dtype_name(t) << " " << matmul_isa_name(isa));
    const std::vector<int64_t> ins =
        t == DType::kQ8_0 ? std::vector<int64_t>{32, 96, 288} : std::vector<int64_t>{256, 768};
    for (int64_t in : ins) {
      for (int64_t out : outs) {
        const auto wdata = random_weights(t, in, out, rng);
        const tensor::Tensor plain = make_tensor(t, in, out, wdata);
        tensor::Tensor w = plain;
        PackedWeights pw;
        pw.add(&w);
        ASSERT_NE(w.packed, nullptr);
        if (t != DType::kQ8_0)  // the 16-row kernels' layout (AMX machines too: it serves decoding)
          EXPECT_EQ(pw.bytes(), size_t((out + 15) / 16) * detail::prepack_rows16_group_bytes(t, in));
        else if (isa == MatmulIsa::kAmx)
          EXPECT_EQ(pw.bytes(), size_t((out + 15) / 16) * size_t(in / 32) * (16 * 32 + 32));
        else
          EXPECT_EQ(pw.bytes(), size_t((out + 15) / 16) * (size_t(in / 32) * 16 * 32 + (size_t(in / 32) * 32 + 63) / 64 * 64));
        const auto x = random_acts(in, toks.back(), rng);
        // The bits every batch, thread count and row slice must give: each token alone (a decode).
        std::vector<float> gemv(size_t(toks.back() * out));
        for (int64_t tk = 0; tk < toks.back(); ++tk) matmul(w, x.data() + tk * in, 1, gemv.data() + tk * out, p1);
        expect_close(make_ref(plain, x, toks.back()), gemv, toks.back(), out, /*exact_mirror=*/true);
        if (HasFailure()) return;
        for (int64_t n : toks) {
          const std::vector<float> want(gemv.begin(), gemv.begin() + n * out);
          for (auto* pool : {&p1, &p2, &p3}) {
            std::vector<float> got(size_t(n * out + 8), -7.0f);
            matmul(w, x.data(), n, got.data(), *pool);
            for (int k = 0; k < 8; ++k) ASSERT_EQ(got[size_t(n * out + k)], -7.0f) << "wrote past y";
            for (int64_t i = 0; i < n * out; ++i)
              ASSERT_EQ(got[size_t(i)], want[size_t(i)])
                  << "in=" << in << " out=" << out << " n=" << n << " threads=" << pool->size() << " i=" << i;
          }
          // Slices: from a group boundary the packed copy is read, elsewhere the rows in place.
          for (auto [r0, r1] : {std::pair<int64_t, int64_t>{16, out}, {3, out}, {0, std::min<int64_t>(out, 17)}}) {
            if (r0 >= r1) continue;
            std::vector<float> part(size_t(n * (r1 - r0)));
            matmul_rows(w, r0, r1, x.data(), n, part.data(), p2);
            for (int64_t tk = 0; tk < n; ++tk)
              for (int64_t r = r0; r < r1; ++r)
                ASSERT_EQ(part[size_t(tk * (r1 - r0) + (r - r0))], want[size_t(tk * out + r)])
                    << "rows [" << r0 << ", " << r1 << ") token " << tk << " row " << r;
          }
        }
        if (isa == MatmulIsa::kAmx && t == DType::kQ8_0) {
          // A copy packed for AMX is not read by the VNNI kernel (another layout): still right.
          set_matmul_isa(MatmulIsa::kAvx512Vnni);
          std::vector<float> want(size_t(3 * out)), got(size_t(3 * out));
          matmul(plain, x.data(), 3, want.data(), p2);
          matmul(w, x.data(), 3, got.data(), p2);
          EXPECT_EQ(want, got) << "in=" << in << " out=" << out;
          set_matmul_isa(isa);
        }
      }
    }
  }
  reset_variants();
}

// A matrix that decoding reads in place is copied as it is out of the file mapping (huge pages): data then
// points at a copy with the same bytes and every batch gives the bits of the original; one whose decode
// kernel reads a re-laid-out copy, or any with set_copy_in_place(false), keeps its data pointer.
TEST(PackedWeights, MatrixDecodedInPlaceIsCopiedWithTheSameBytes) {
  std::mt19937 rng(91);
  util::ThreadPool pool(2);
  std::vector<MatmulIsa> isas = {MatmulIsa::kScalar};
  for (MatmulIsa i : {MatmulIsa::kAvx2, MatmulIsa::kAvx512Vnni, MatmulIsa::kAmx})
    if (matmul_best_isa() >= i) isas.push_back(i);
  for (MatmulIsa isa : isas)
    for (DType t : {DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K}) {
      set_matmul_isa(isa);
      SCOPED_TRACE(::testing::Message() << tensor::dtype_name(t) << " " << matmul_isa_name(isa));
      const int64_t in = 512, out = 37;
      const auto wdata = random_weights(t, in, out, rng);
      const tensor::Tensor plain = make_tensor(t, in, out, wdata);
      // The same matrix without the in-place copy (with its re-laid-out copy, if any: the kernel choice
      // may depend on it, so the bits are compared against this).
      tensor::Tensor w_off = plain;
      PackedWeights off;
      off.set_copy_in_place(false);
      off.add(&w_off);
      EXPECT_EQ(w_off.data, plain.data);
      EXPECT_FALSE(w_off.data_copied);
      EXPECT_EQ(off.copied(), 0u);
      tensor::Tensor w = plain;
      PackedWeights pw;
      pw.add(&w);
      // Decoding reads the rows in place: float weights everywhere, every dtype on the scalar and per-row
      // paths, Q6_K also on VNNI / AMX (its 16-row copy only serves batches); AVX2 decodes K-quants and
      // Q8_0 from the copy, VNNI / AMX Q8_0 and Q4_K too.
      const bool in_place = t == DType::kF16 || t == DType::kBF16 || isa == MatmulIsa::kScalar ||
                            (t == DType::kQ6_K && isa >= MatmulIsa::kAvx512Vnni);
      EXPECT_EQ(w.data_copied, in_place);
      EXPECT_EQ(w.data != plain.data, in_place);
      EXPECT_EQ(pw.copied(), in_place ? 1u : 0u);
      EXPECT_EQ(pw.copied_bytes(), in_place ? plain.nbytes() : 0u);
      ASSERT_EQ(std::memcmp(w.data, plain.data, plain.nbytes()), 0);
      for (int64_t n : {1, 3, 16}) {
        const auto x = random_acts(in, n, rng);
        std::vector<float> want(size_t(n * out)), got(size_t(n * out));
        matmul(w_off, x.data(), n, want.data(), pool);
        matmul(w, x.data(), n, got.data(), pool);
        EXPECT_EQ(want, got) << "n=" << n;
      }
      // Added again (a drafter borrowing the target's LM head): no second copy.
      const void* first = w.data;
      PackedWeights again;
      again.add(&w);
      EXPECT_EQ(w.data, first);
      EXPECT_EQ(again.copied(), 0u);
    }
  reset_variants();
}

// The 16-row kernels (AVX2 and VNNI) and the AMX kernel run the same per-(row, token) sequence for
// Q8_0: their results are equal bit for bit (so any of them may serve any batch).
TEST(Matmul, Q8_0SixteenRowKernelsAndAmxAgreeBitwise) {
  if (matmul_best_isa() < MatmulIsa::kAvx512Vnni) GTEST_SKIP() << "needs two of AVX2, AVX-512 VNNI, AMX";
  std::mt19937 rng(31);
  util::ThreadPool pool(2);
  for (int64_t in : {32, 320, 1024}) {
    const int64_t out = 53;
    const auto data = random_weights(DType::kQ8_0, in, out, rng);
    const auto w = make_tensor(DType::kQ8_0, in, out, data);
    const auto x = random_acts(in, 19, rng);
    for (int64_t n : {1, 2, 4, 5, 16, 19}) {
      auto run = [&](MatmulIsa isa, int amx_q8, int amx_rows16 = -1) {
        set_matmul_isa(isa);
        detail::set_amx_q8(amx_q8);
        detail::set_amx_rows16(amx_rows16);
        tensor::Tensor packed = w;  // as a model load leaves it: the 16-row kernels need their copy
        PackedWeights pw;
        pw.add(&packed);
        EXPECT_NE(packed.packed, nullptr);
        std::vector<float> y(size_t(n * out));
        matmul(packed, x.data(), n, y.data(), pool);
        detail::set_amx_q8(-1);
        detail::set_amx_rows16(-1);
        return y;
      };
      const std::vector<float> vnni = run(MatmulIsa::kAvx512Vnni, -1);
      std::vector<std::pair<const char*, std::vector<float>>> others = {{"avx2", run(MatmulIsa::kAvx2, -1)}};
      if (matmul_best_isa() >= MatmulIsa::kAmx) {
        // The tiles in place (rows16 kernels off), and the default: from 4 tokens the tiles on the copy.
        others.push_back({"amx tiles in place", run(MatmulIsa::kAmx, 1, 0)});
        others.push_back({"amx default", run(MatmulIsa::kAmx, -1)});
      }
      for (const auto& [name, y] : others)
        for (int64_t i = 0; i < n * out; ++i)
          ASSERT_EQ(y[size_t(i)], vnni[size_t(i)])
              << name << " vs vnni, in=" << in << " n=" << n << " token " << i / out << " row " << i % out;
    }
  }
  reset_variants();
}

// ---------------- K-quant 16-row kernels: AVX2 against VNNI ----------------
// The canonical K-quant sequence per (row, token), written out in scalar code: exact integer isum (and
// imin) per super-block, then acc = fma(float(isum), d·dx, acc), acc = fma(−float(imin), dmin·dx, acc)
// (Q6_K: isum over q − 32, no min term). Every K-quant kernel must give exactly these bits.
float canonical_kquant(DType t, const uint8_t* row, const tensor::BlockQ8_K* x, int64_t in) {
  float acc = 0.0f;
  for (int64_t b = 0; b < in / 256; ++b) {
    const tensor::BlockQ8_K& xb = x[b];
    int32_t isum = 0, imin = 0;
    float d = 0.0f, dmin = 0.0f;
    if (t == DType::kQ6_K) {
      const auto& w = reinterpret_cast<const tensor::BlockQ6_K*>(row)[b];
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, s = (e % 128) / 32, l = e % 32;
        const uint8_t lo = w.ql[64 * h + 32 * (s & 1) + l];
        const int q = ((s < 2 ? lo : lo >> 4) & 0xF) | (((w.qh[32 * h + l] >> (2 * s)) & 3) << 4);
        isum += int32_t(w.scales[e / 16]) * (q - 32) * xb.qs[e];
      }
      d = tensor::fp16_to_fp32(w.d);
    } else {
      const bool q5 = t == DType::kQ5_K;
      const uint8_t* scales = q5 ? reinterpret_cast<const tensor::BlockQ5_K*>(row)[b].scales
                                 : reinterpret_cast<const tensor::BlockQ4_K*>(row)[b].scales;
      const uint8_t* qs = q5 ? reinterpret_cast<const tensor::BlockQ5_K*>(row)[b].qs
                             : reinterpret_cast<const tensor::BlockQ4_K*>(row)[b].qs;
      const uint8_t* qh = q5 ? reinterpret_cast<const tensor::BlockQ5_K*>(row)[b].qh : nullptr;
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, mn;
        formats::k_scale_min(j, scales, &sc, &mn);
        for (int l = 0; l < 32; ++l) {
          const int q = ((qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF) | (qh ? ((qh[l] >> j) & 1) << 4 : 0);
          isum += int32_t(sc) * q * xb.qs[32 * j + l];
          imin += int32_t(mn) * xb.qs[32 * j + l];
        }
      }
      const auto* w4 = reinterpret_cast<const tensor::BlockQ4_K*>(row + b * tensor::info(t).type_size);
      d = tensor::fp16_to_fp32(w4->d);  // d and dmin lead both block types
      dmin = tensor::fp16_to_fp32(w4->dmin);
    }
    acc = std::fma(float(isum), d * xb.d, acc);
    if (t != DType::kQ6_K) acc = std::fma(-float(imin), dmin * xb.d, acc);
  }
  return acc;
}

// The AVX2 16-row kernels (no VNNI) for Q4_K, Q5_K and Q6_K: on their packed copy and re-laying rows out
// on the fly, every batch 1..17 (all token-pass remainders and a second 16-token activation group), row
// counts that are not multiples of 16 (partial groups and halves), random and extreme quants (the int16
// partial sums at their bounds). Each must equal the canonical sequence bit for bit, hence the VNNI
// 16-row kernels and the AMX ones on the same copy (compared directly where the CPU has them), and the
// AVX2 packer's copy must equal the AVX-512 one byte for byte. The kernels are called directly, so Q6_K
// and n = 1 run on them too, then through matmul() as the selection routes each batch.
TEST(Matmul, KQuantSixteenRowAvx2KernelsMatchVnniAndCanonicalBitwise) {
  if (matmul_best_isa() < MatmulIsa::kAvx2) GTEST_SKIP() << "no AVX2 on this CPU";
  const bool vnni = matmul_best_isa() >= MatmulIsa::kAvx512Vnni;
  std::mt19937 rng(2027);
  util::ThreadPool pool(2);
  constexpr int64_t kMaxN = 17;
  for (DType t : {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K})
    for (bool extreme : {false, true})
      for (int64_t in : {256, 768})
        for (int64_t out : {13, 37}) {
          SCOPED_TRACE(::testing::Message() << tensor::dtype_name(t) << (extreme ? " extreme" : " random")
                                            << " in=" << in << " out=" << out);
          auto data = random_weights(t, in, out, rng);
          std::vector<float> x(size_t(in * kMaxN));
          std::normal_distribution<float> nd;
          for (int64_t i = 0; i < in * kMaxN; ++i) x[size_t(i)] = nd(rng);
          if (extreme) {  // top quants and scales (Q6_K: scales ±127 / −128) against activations q = ±127
            const size_t ts = tensor::info(t).type_size;
            for (size_t blk = 0; blk < data.size() / ts; ++blk) {
              uint8_t* p = data.data() + blk * ts;
              if (t == DType::kQ6_K) {  // q = 63, or q = 0 (with sc = −128: sc·(q − 32) = 4096, the AMX fold's top)
                std::memset(p, (blk / 3) % 2 ? 0x00 : 0xFF, 128 + 64);
                std::memset(p + 192, blk % 3 == 0 ? 0x80 : (blk % 3 == 1 ? 0x7F : 0x81), 16);
              } else {
                std::memset(p + 4, 0xFF, 12);
                std::memset(p + 16, 0xFF, t == DType::kQ5_K ? 32 + 128 : 128);
              }
            }
            for (int64_t i = 0; i < in * kMaxN; ++i) {
              const int64_t tk = i / in;
              x[size_t(i)] = tk % 3 == 0 ? 1.0f : tk % 3 == 1 ? -1.0f : ((i / 5) % 2 ? -1.0f : 1.0f);
            }
          }
          const tensor::Tensor w = make_tensor(t, in, out, data);
          const size_t row_bytes = w.row_bytes();
          const int64_t nb = in / 256;
          std::vector<tensor::BlockQ8_K> xq(size_t(nb * kMaxN));
          for (int64_t tk = 0; tk < kMaxN; ++tk) quantize_act_q8_k(x.data() + tk * in, xq.data() + tk * nb, in);
          std::vector<float> want(size_t(kMaxN * out));
          for (int64_t tk = 0; tk < kMaxN; ++tk)
            for (int64_t r = 0; r < out; ++r)
              want[size_t(tk * out + r)] = canonical_kquant(t, data.data() + r * row_bytes, xq.data() + tk * nb, in);

          // The copies, as PackedWeights makes them under each ISA.
          auto packed_copy = [&](MatmulIsa isa, PackedWeights* pw) {
            set_matmul_isa(isa);
            tensor::Tensor c = w;
            pw->add(&c);
            EXPECT_NE(c.packed, nullptr) << matmul_isa_name(isa);
            return c;
          };
          PackedWeights pw2, pw512;
          const tensor::Tensor avx2_copy = packed_copy(MatmulIsa::kAvx2, &pw2);
          ASSERT_NE(avx2_copy.packed, nullptr);
          const size_t copy_bytes = size_t((out + 15) / 16) * detail::prepack_rows16_group_bytes(t, in);
          ASSERT_EQ(pw2.bytes(), copy_bytes);
          if (vnni) {
            const tensor::Tensor vnni_copy = packed_copy(MatmulIsa::kAvx512Vnni, &pw512);
            ASSERT_NE(vnni_copy.packed, nullptr);
            ASSERT_EQ(std::memcmp(avx2_copy.packed, vnni_copy.packed, copy_bytes), 0)
                << "the AVX2 packer's bytes differ from the AVX-512 packer's";
          }
          reset_variants();

          // The activations of all kMaxN tokens packed as ap lays them out, 64-byte aligned in buf; returns
          // them and the bytes of one 16-token group.
          auto packed_acts = [&](const detail::ActPack& ap, std::vector<uint8_t>& buf) {
            const size_t bytes = ap.group_bytes(nb);
            buf.resize(bytes * 2 + 64);
            uint8_t* al = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
            ap.pack(reinterpret_cast<const uint8_t*>(xq.data()), size_t(nb) * sizeof(tensor::BlockQ8_K), kMaxN, nb, al);
            return std::pair<const uint8_t*, size_t>{al, bytes};
          };
          std::vector<uint8_t> act, amx_act;
          const auto [act_al, gbytes] = packed_acts(detail::act_pack_rows16(t), act);
          // The AMX kernels on the same copy take their activations in another layout (tile rows).
          const bool amx = matmul_best_isa() >= MatmulIsa::kAmx;
          const auto [amx_act_al, amx_gbytes] =
              amx ? packed_acts(detail::act_pack_rows16_amx(t), amx_act) : std::pair<const uint8_t*, size_t>{};
          struct Run {
            const char* name;
            detail::RowsFn fn;
            const void* copy;
            const uint8_t* act;
            size_t act_stride;
          };
          std::vector<Run> runs = {
              {"avx2 16-row, packed copy", detail::rows_fn_rows16_avx2(t), avx2_copy.packed, act_al, gbytes},
              {"avx2 16-row, on the fly", detail::rows_fn_rows16_avx2(t), nullptr, act_al, gbytes}};
          if (vnni) {
            runs.push_back({"vnni 16-row, packed copy", detail::rows_fn_rows16(t), avx2_copy.packed, act_al, gbytes});
            runs.push_back({"vnni 16-row, on the fly", detail::rows_fn_rows16(t), nullptr, act_al, gbytes});
          }
          if (amx) {
            runs.push_back({"amx 16-row, packed copy", detail::rows_fn_rows16_amx(t), avx2_copy.packed, amx_act_al,
                            amx_gbytes});
            runs.push_back({"amx 16-row, on the fly", detail::rows_fn_rows16_amx(t), nullptr, amx_act_al, amx_gbytes});
          }
          for (const Run& run : runs) {
            ASSERT_NE(run.fn, nullptr) << run.name;
            for (int64_t n = 1; n <= kMaxN; ++n) {
              detail::RowsArgs a;
              a.w = data.data();
              a.w_stride = row_bytes;
              a.in = in;
              a.act = run.act;
              a.act_stride = run.act_stride;
              a.n_tokens = n;
              a.ldy = out;
              a.w_packed = static_cast<const uint8_t*>(run.copy);
              std::vector<float> y(size_t(n * out + 8), -7.0f);
              a.y = y.data();
              // Two calls split at a 16-row boundary, as the thread pool splits rows.
              run.fn(a, 0, std::min<int64_t>(16, out));
              if (out > 16) run.fn(a, 16, out);
              for (int k = 0; k < 8; ++k) ASSERT_EQ(y[size_t(n * out + k)], -7.0f) << run.name << ": wrote past y";
              for (int64_t i = 0; i < n * out; ++i)
                ASSERT_EQ(y[size_t(i)], want[size_t(i)])
                    << run.name << " n=" << n << " token " << i / out << " row " << i % out;
            }
          }
          // Through matmul() with AVX2 forced: the selection's kernels (per-row ones for some batches) on the copy.
          set_matmul_isa(MatmulIsa::kAvx2);
          for (int64_t n = 1; n <= kMaxN; ++n) {
            std::vector<float> y(size_t(n * out));
            matmul(avx2_copy, x.data(), n, y.data(), pool);
            for (int64_t i = 0; i < n * out; ++i)
              ASSERT_EQ(y[size_t(i)], want[size_t(i)]) << "matmul, avx2, n=" << n << " token " << i / out << " row " << i % out;
          }
          reset_variants();
        }
}

// ---------------- AVX-512 VNNI kernels ----------------
// Every batch size 1..64 (all tile remainders), odd shapes, both vector widths: against the integer
// and f64 references, GEMM row t == GEMV of token t bit for bit, and the same bits on 1..3 threads.
class MatmulVnniTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (matmul_best_isa() < MatmulIsa::kAvx512Vnni)
      GTEST_SKIP() << "this CPU has no AVX-512 F/BW/VL + VNNI; the VNNI kernels cannot run here "
                      "(the AVX2 and scalar paths are covered by MatmulTest)";
  }
  void TearDown() override { reset_variants(); }
};

TEST_P(MatmulVnniTest, EveryBatchSizeMatchesReferenceAndGemvBitwise) {
  const DType t = GetParam();
  const int64_t bs = tensor::info(t).block_size;
  // Q8_0: odd block counts exercise the single-block tail of the 512-bit kernel.
  const std::vector<int64_t> ins =
      bs == 32 ? std::vector<int64_t>{32, 32 * 7, 32 * 33} : std::vector<int64_t>{256, 256 * 3};
  const std::vector<int64_t> outs =
      sanitized() ? std::vector<int64_t>{5} : std::vector<int64_t>{1, 37};
  const int64_t max_n = sanitized() ? 17 : 64;
  util::ThreadPool p1(1), p2(2), p3(3);
  std::mt19937 rng(4321 + int(t));
  for (int64_t in : ins) {
    for (int64_t out : outs) {
      const auto data = random_weights(t, in, out, rng);
      const auto w = make_tensor(t, in, out, data);
      const auto x = random_acts(in, max_n, rng);
      const Ref r =
          make_ref(w, x, max_n);  // token results do not depend on n: prefixes serve all n
      for (const Variant& v : avx512_variants()) {
        v.apply();
        ASSERT_EQ(matmul_isa(), v.isa);
        ASSERT_EQ(detail::vnni_width(), v.width);
        // GEMV of every token alone: the bits each batch must reproduce.
        std::vector<float> gemv(size_t(max_n * out));
        for (int64_t tk = 0; tk < max_n; ++tk)
          matmul(w, x.data() + tk * in, 1, gemv.data() + tk * out, p1);
        for (int64_t n = 1; n <= max_n; ++n) {
          SCOPED_TRACE(::testing::Message() << tensor::dtype_name(t) << " in=" << in
                                            << " out=" << out << " n=" << n << " " << v.name());
          std::vector<float> y1(size_t(n * out)), y2(size_t(n * out)),
              y3(size_t(n * out) + 4, -7.0f);
          matmul(w, x.data(), n, y1.data(), p1);
          matmul(w, x.data(), n, y2.data(), p2);
          matmul(w, x.data(), n, y3.data(), p3);
          for (int k = 0; k < 4; ++k) ASSERT_EQ(y3[size_t(n * out + k)], -7.0f) << "wrote past y";
          for (int64_t i = 0; i < n * out; ++i) {
            ASSERT_EQ(y1[size_t(i)], gemv[size_t(i)])
                << "GEMM vs GEMV, token " << i / out << " row " << i % out;
            ASSERT_EQ(y2[size_t(i)], y1[size_t(i)]) << "2 vs 1 threads at " << i;
            ASSERT_EQ(y3[size_t(i)], y1[size_t(i)]) << "3 vs 1 threads at " << i;
          }
          if (n == max_n || n % 8 == 1) {  // the references are slow; every tile remainder 1
            expect_close(r, y1, n, out, /*exact_mirror=*/true);
            if (HasFailure()) return;
          }
        }
        expect_close(r, gemv, max_n, out, /*exact_mirror=*/true);
        if (HasFailure()) return;
      }
    }
  }
}

// Extreme blocks: all weights at their largest magnitude against activations of ±127 (the int16
// pair bound of the scale step, the Q8_0 −128 weight) must still match the integer reference.
TEST_P(MatmulVnniTest, ExtremeQuantsMatchIntegerReference) {
  const DType t = GetParam();
  const int64_t bs = tensor::info(t).block_size;
  const int64_t in = bs * 2, out = 4, n = 3;
  std::mt19937 rng(77);
  auto data = random_weights(t, in, out, rng);
  // Saturate the quant bytes (keep the fp16 scales): 0xFF = top nibbles / bits, Q8_0 q = −1;
  // 0x80 for Q8_0 = −128.
  const size_t type_size = tensor::info(t).type_size;
  for (size_t blk = 0; blk < data.size() / type_size; ++blk) {
    uint8_t* p = data.data() + blk * type_size;
    switch (t) {
      case DType::kQ8_0:
        std::memset(p + 2, blk % 2 ? 0x80 : 0x7F, 32);
        break;
      case DType::kQ4_K:
        std::memset(p + 16, 0xFF, 128);
        std::memset(p + 4, 0xFF, 12);  // scales and mins 63
        break;
      case DType::kQ5_K:
        std::memset(p + 16, 0xFF, 32 + 128);
        std::memset(p + 4, 0xFF, 12);
        break;
      case DType::kQ6_K:
        std::memset(p, 0xFF, 128 + 64);                   // q = 63 everywhere
        std::memset(p + 192, blk % 2 ? 0x80 : 0x7F, 16);  // scales −128 / 127
        break;
      default:
        break;
    }
  }
  const auto w = make_tensor(t, in, out, data);
  std::vector<float> x(size_t(in * n));
  // Token 0 all +1, token 1 all −1 (every product at its bound), token 2 mixed: q = ±127.
  for (int64_t i = 0; i < in * n; ++i) {
    const int64_t tk = i / in;
    x[size_t(i)] = tk == 0 ? 1.0f : tk == 1 ? -1.0f : ((i / 3) % 2 ? -1.0f : 1.0f);
  }
  const Ref r = make_ref(w, x, n);
  util::ThreadPool pool(2);
  for (const Variant& v : avx512_variants()) {
    v.apply();
    std::vector<float> y(size_t(n * out));
    matmul(w, x.data(), n, y.data(), pool);
    SCOPED_TRACE(v.name());
    expect_close(r, y, n, out, /*exact_mirror=*/true);
  }
}

INSTANTIATE_TEST_SUITE_P(QuantDtypes, MatmulVnniTest,
                         ::testing::Values(DType::kQ8_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K),
                         [](const auto& info) {
                           return std::string(tensor::dtype_name(info.param));
                         });

TEST(Matmul, CheckRejectsBadTensors) {
  std::vector<uint8_t> data(1024);
  tensor::Tensor w = make_tensor(DType::kQ4_K, 100, 2, data);
  util::Status s = matmul_check(w);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("multiple of 256"), std::string::npos) << s.message();
  w = make_tensor(DType::kQ4_0, 32, 2, data);
  s = matmul_check(w);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("q4_0"), std::string::npos) << s.message();
  w = make_tensor(DType::kQ8_0, 64, 2, data);
  EXPECT_TRUE(matmul_check(w).is_ok());
}

// ---------------- activation quantisers ----------------

class QuantizeActTest : public ::testing::Test {
 protected:
  void TearDown() override { set_matmul_isa(matmul_best_isa()); }
};

TEST_F(QuantizeActTest, FastMatchesReferenceBitExactly) {
  std::mt19937 rng(7);
  const int64_t n = 256 * 5;
  auto x = random_acts(n, 1, rng);
  for (int i = 0; i < 256; ++i) x[size_t(512 + i)] = 0.0f;  // an all-zero super-block
  x[3] = 1e30f;
  x[700] = -3e-30f;
  std::vector<ActQ8_0> a(n / 32), b(n / 32);
  std::vector<tensor::BlockQ8_K> c(n / 256), d(n / 256);
  quantize_act_q8_0(x.data(), a.data(), n);
  ref::quantize_act_q8_0(x.data(), b.data(), n);
  quantize_act_q8_k(x.data(), c.data(), n);
  ref::quantize_act_q8_k(x.data(), d.data(), n);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].d, b[i].d) << "block " << i;
    ASSERT_EQ(std::memcmp(a[i].qs, b[i].qs, 32), 0) << "block " << i;
  }
  for (size_t i = 0; i < c.size(); ++i) {
    ASSERT_EQ(c[i].d, d[i].d) << "block " << i;
    ASSERT_EQ(std::memcmp(c[i].qs, d[i].qs, 256), 0) << "block " << i;
    ASSERT_EQ(std::memcmp(c[i].bsums, d[i].bsums, sizeof(c[i].bsums)), 0) << "block " << i;
  }
}

TEST_F(QuantizeActTest, ReferenceRoundTripsWithinHalfAStep) {
  std::mt19937 rng(8);
  const int64_t n = 256 * 3;
  const auto x = random_acts(n, 1, rng);
  std::vector<tensor::BlockQ8_K> q(n / 256);
  ref::quantize_act_q8_k(x.data(), q.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const auto& blk = q[size_t(i / 256)];
    const float back = blk.d * blk.qs[i % 256];
    EXPECT_LE(std::fabs(back - x[size_t(i)]), blk.d * 0.5001f + 1e-30f) << i;
    EXPECT_GE(blk.qs[i % 256], -127);
  }
  int16_t s = 0;
  for (int i = 0; i < 16; ++i) s = int16_t(s + q[0].qs[16 + i]);
  EXPECT_EQ(q[0].bsums[1], s);
}

}  // namespace
}  // namespace dflash::kernels
