// Measurement tool (not part of the build or the tests): our quantisers vs the public ggml reference quantisers
// on the same data, each output decoded by both decoders (checks layout compatibility in both directions and
// compares error). Needs a local llama.cpp build (here /work/llama-fork, libggml-base) and a release build of
// this project:
//   g++ -O2 -std=c++20 -I/work/llama-fork/ggml/include -Isrc tools/reference/quant_compare_ggml.cpp \
//       build/libdflash_formats.a build/libdflash_tensor.a build/libdflash_util.a \
//       -L/work/llama-fork/build/bin -lggml-base -Wl,-rpath,/work/llama-fork/build/bin -o /tmp/quant_compare_ggml
//   /tmp/quant_compare_ggml
// dist 0 = N(0,1), 1 = student-t(3), 2 = 0.02*N(0,1); importance = exp(2*N(0,1)).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include <chrono>
#include "ggml.h"
#include "formats/quant.h"
using namespace dflash;
int main() {
  const int64_t n = 256 * 2048;
  for (int dist = 0; dist < 3; ++dist) {
    std::vector<float> x(n), imp(n);
    std::mt19937 rng(3 + dist);
    std::normal_distribution<float> g(0, 1);
    std::student_t_distribution<float> st(3.0f);
    for (auto& v : x) v = dist == 0 ? g(rng) : dist == 1 ? st(rng) : 0.02f * g(rng);
    for (auto& v : imp) v = std::exp(2.0f * g(rng));
    double rms = 0; for (float v : x) rms += double(v) * v; rms = std::sqrt(rms / n);
    struct T { tensor::DType ours; ggml_type theirs; const char* name; };
    for (T t : {T{tensor::DType::kQ8_0, GGML_TYPE_Q8_0, "q8_0"}, T{tensor::DType::kQ4_K, GGML_TYPE_Q4_K, "q4_K"},
                T{tensor::DType::kQ5_K, GGML_TYPE_Q5_K, "q5_K"}, T{tensor::DType::kQ6_K, GGML_TYPE_Q6_K, "q6_K"}}) {
      for (int use_imp = 0; use_imp < 2; ++use_imp) {
        const float* im = use_imp ? imp.data() : nullptr;
        size_t bytes = tensor::row_size(t.ours, n);
        std::vector<uint8_t> a(bytes), b(bytes);
        auto t0 = std::chrono::steady_clock::now();
        formats::quantize_row(t.ours, x.data(), a.data(), n, im);
        auto t1 = std::chrono::steady_clock::now();
        ggml_quantize_chunk(t.theirs, x.data(), b.data(), 0, n / 256, 256, im);
        auto t2 = std::chrono::steady_clock::now();
        std::vector<float> ya(n), yb(n), ya2(n), yb2(n);
        formats::dequantize_row(t.ours, a.data(), ya.data(), n);
        formats::dequantize_row(t.ours, b.data(), yb.data(), n);
        ggml_get_type_traits(t.theirs)->to_float(a.data(), ya2.data(), n);
        ggml_get_type_traits(t.theirs)->to_float(b.data(), yb2.data(), n);
        size_t mism = 0;
        double ea = 0, eb = 0, wa = 0, wb = 0;
        for (int64_t i = 0; i < n; ++i) {
          mism += (ya[i] != ya2[i]) + (yb[i] != yb2[i]);
          ea += (x[i] - ya[i]) * double(x[i] - ya[i]);
          eb += (x[i] - yb[i]) * double(x[i] - yb[i]);
          wa += imp[i] * (x[i] - ya[i]) * double(x[i] - ya[i]);
          wb += imp[i] * (x[i] - yb[i]) * double(x[i] - yb[i]);
        }
        std::printf("dist=%d %-5s imp=%d  rel_rmse ours %.5f ggml %.5f | imp-weighted mse ratio ours/ggml %.3f | "
                    "decoder mismatches %zu | ours %.1f MB/s ggml %.1f MB/s\n",
                    dist, t.name, use_imp, std::sqrt(ea / n) / rms, std::sqrt(eb / n) / rms, wa / wb, mism,
                    n * 4 / 1e6 / std::chrono::duration<double>(t1 - t0).count(),
                    n * 4 / 1e6 / std::chrono::duration<double>(t2 - t1).count());
      }
    }
  }
}
