#include "kernels/matmul.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include <sys/mman.h>

#include "formats/quant.h"
#include "kernels/matmul_impl.h"
#include "kernels/matmul_isa.h"
#include "kernels/quantize_act.h"
#include "kernels/ref/matmul_ref.h"
#include "util/log.h"

namespace dflash::kernels {

using tensor::DType;

// ---------------- ISA selection ----------------

namespace {
MatmulIsa detect_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // F16C via cpuid: clang's __builtin_cpu_supports does not know "f16c".
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  if (!avx2) return MatmulIsa::kScalar;
  const bool vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  if (vnni && detail::rows_fn_avx512vnni(DType::kQ8_0) != nullptr)
    return detail::amx_available() ? MatmulIsa::kAmx : MatmulIsa::kAvx512Vnni;
  return MatmulIsa::kAvx2;
#else
  return MatmulIsa::kScalar;
#endif
}

MatmulIsa isa_from_env(MatmulIsa best) {
  // DFLASH_MATMUL_ISA lowers the choice (benchmarks / debugging); a request above what the CPU
  // has is clamped to the best available.
  const char* e = std::getenv("DFLASH_MATMUL_ISA");
  if (!e || !*e) return best;
  MatmulIsa want = best;
  if (!parse_matmul_isa(e, &want))
    LOG_WARN("DFLASH_MATMUL_ISA=%s is not one of scalar, avx2, avx512vnni, amx; using %s", e,
             matmul_isa_name(best));
  return std::min(want, best);
}

std::atomic<int> g_isa{-1};
}  // namespace

MatmulIsa matmul_best_isa() {
  static const MatmulIsa best = detect_isa();
  return best;
}

MatmulIsa matmul_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = int(isa_from_env(matmul_best_isa()));
    g_isa.store(v, std::memory_order_relaxed);
  }
  return MatmulIsa(v);
}

void set_matmul_isa(MatmulIsa isa) {
  g_isa.store(int(std::min(isa, matmul_best_isa())), std::memory_order_relaxed);
}

const char* matmul_isa_name(MatmulIsa isa) {
  switch (isa) {
    case MatmulIsa::kScalar:
      return "scalar";
    case MatmulIsa::kAvx2:
      return "avx2";
    case MatmulIsa::kAvx512Vnni:
      return "avx512vnni";
    case MatmulIsa::kAmx:
      return "amx";
  }
  return "?";
}

bool parse_matmul_isa(std::string_view name, MatmulIsa* isa) {
  if (name == "scalar")
    *isa = MatmulIsa::kScalar;
  else if (name == "avx2")
    *isa = MatmulIsa::kAvx2;
  else if (name == "avx512vnni" || name == "avx512" || name == "vnni")
    *isa = MatmulIsa::kAvx512Vnni;
  else if (name == "amx")
    *isa = MatmulIsa::kAmx;
  else
    return false;
  return true;
}

// ---------------- driver ----------------

namespace {

bool matmul_dtype(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ8_0:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return true;
    default:
      return false;
  }
}

[[noreturn]] void die(const tensor::Tensor& w, const char* what) {
  std::fprintf(stderr, "dflash: matmul on tensor '%s' (%s, %s): %s\n", w.name.c_str(),
               tensor::dtype_name(w.dtype), w.shape_string().c_str(), what);
  std::abort();
}

struct Kernel {
  detail::RowsFn rows = nullptr;
  detail::ActPrepFn prep = nullptr;  // activation layout change the kernel needs, if any
  detail::ActPack pack;              // or a whole-batch packing (AMX)
  int row_tile = 1;                  // rows the kernel computes together; threads split whole tiles
  int packed_layout = 0;             // the Tensor::packed layout it reads (PackedWeights), 0 = none
};

// Tensor::packed_layout values (the tensor's dtype says which type's variant).
constexpr int kLayoutAmxQ8 = 1;   // prepack_q8_0
constexpr int kLayoutRows16 = 2;  // prepack_rows16

size_t packed_group_bytes(int layout, DType t, int64_t in) {
  return layout == kLayoutAmxQ8 ? detail::prepack_q8_0_group_bytes(in) : detail::prepack_rows16_group_bytes(t, in);
}

// The dtypes whose AMX kernel has a pre-packed weight layout.
bool amx_packs(DType t) { return t == DType::kQ8_0; }

// Kernel switches for A/B benchmarks and tests: setter value ≥ 0 wins, else the environment, else the
// default.
bool switch_on(const std::atomic<int>& forced, const char* env, bool dflt) {
  const int v = forced.load(std::memory_order_relaxed);
  if (v >= 0) return v == 1;
  const char* e = std::getenv(env);
  if (!e || !*e) return dflt;
  return std::string(e) != "0";
}
// On AVX2 / AVX-512 VNNI the 16-row kernels (default) or the per-row ones (DFLASH_ROWS16=0).
std::atomic<int> g_rows16{-1};
bool use_rows16() { return switch_on(g_rows16, "DFLASH_ROWS16", true); }
// On AMX machines Q8_0 batches with the 16-row copy run the 16-row VNNI kernel below 4 tokens and the AMX
// kernel on the same copy from 4 (rows16_amx_takes; same bits); without the copy, or with the rows16 AMX
// kernels off, batches from kAmxQ8MinTokens run the tiles in place. DFLASH_AMX_Q8=1 gives the tiles every batch.
std::atomic<int> g_amx_q8{-1};
bool use_amx_q8() { return switch_on(g_amx_q8, "DFLASH_AMX_Q8", false); }
constexpr int64_t kAmxQ8MinTokens = 32;

// copy16: the matrix has the 16-row layout's packed copy (or, asked by PackedWeights, would get it). The
// choice may depend on it but not on which rows of the matrix a call covers: a row slice that cannot
// read the copy re-lays its rows out on the fly and gives the same bits.

// Whether the AMX kernel takes this batch (isa == kAmx). Q8_0 without the 16-row copy (MoE expert
// stacks, DFLASH_NO_PREPACK) keeps the tiles for every batch: the per-row VNNI kernel's bits differ.
bool amx_takes(DType t, int64_t n_tokens, bool copy16) {
  if (t == DType::kQ8_0) return use_amx_q8() || !copy16 || n_tokens >= kAmxQ8MinTokens;
  // K-quants without the copy have no 16-row AMX kernel to take the middle sizes, and re-laying rows out
  // per call costs: the in-place tiles take them from 8 (Q6_K 12) tokens. 1 thread, 4 MiB, 16 tokens:
  // q4_K 680 against 969 µs on the fly, q6_K 745 against 976 (`BM_MatmulRowLength`, which has no copy).
  return n_tokens >= detail::amx_min_tokens(t, use_rows16() && copy16);
}

// Whether a 16-row kernel takes this batch (isa ≥ AVX2).
// - AVX2 without VNNI: the per-row AVX2 kernels' bits differ from the 16-row ones for every dtype (they keep
//   8 partial sums per token in float), so a matrix with the copy runs the 16-row kernel for every batch,
//   decoding included, and one without it (MoE expert stacks are not packed) the per-row kernels.
// - VNNI, with the copy: everything it covers except Q6_K batches of 1 or 2 tokens, which stay on the per-row
//   kernel (its copy is 1.47 × the Q6_K bytes, which such a pass does not repay: 671 MB, 2 tokens, 28–31
//   against 36.5–38 ms; 4 tokens 36 against 33–35). Two rows is the lazy LM head's usual first request.
//   Without the copy, re-laying rows out per call pays from 8 tokens (Q6_K 16) and not on AMX machines, and
//   only K-quants may switch kernels with the batch size (same bits); Q8_0 stays on the per-row kernel.
bool rows16_takes(MatmulIsa isa, DType t, int64_t n_tokens, bool copy16) {
  if (!use_rows16()) return false;
  if (isa == MatmulIsa::kAvx2) return copy16;
  if (copy16) return !(t == DType::kQ6_K && n_tokens <= 2);
  // Without the copy (MoE expert stacks) a call re-lays its rows out first, which pays only for long enough
  // batches. 96 MB, 2 threads, per-row against on the fly: q4_K 4 tokens 7.7 / 11.4 ms, 8 tokens 15.8 / 13.0;
  // q6_K 8 tokens 8.4 / 15.3, 16 tokens 17.7 / 18.8, 32 tokens 35.7 / 25.8. On AMX machines the in-place
  // tiles take those batches instead (amx_takes: q4_K 8 tokens 9.5 ms, q6_K 16 tokens 10.4 ms).
  if (isa == MatmulIsa::kAmx) return false;
  return t != DType::kQ8_0 && n_tokens >= (t == DType::kQ6_K ? 16 : 8);
}

// Whether the AMX kernels on the 16-row copy take this batch (isa == kAmx): K-quant batches of 10 or more
// tokens and Q8_0 batches of 4 or more that have the copy, verify blocks and prefill chunks alike (same bits
// as the VNNI 16-row kernels). Q8_0 on the copy against the VNNI 16-row kernel, 2 threads, ~100 MB
// (L3-resident here, as the shipped target), 768-wide: 4 tokens 2.17 against 2.44 ms, 8 2.71 / 3.13, 16
// 3.76 / 5.56, 32 9.42 against 15.4 (the tiles in place); 1536-wide 16 tokens 3.92 / 5.21.
// Decoding stays on the VNNI kernels. DFLASH_AMX_ROWS16=0 turns them off for A/B runs. Since session 16
// the scales are folded into the tiles (one C store per super-block instead of one per sub-block). VNNI
// 16-row kernels against the tiles, 1024-wide, ~200 MB, 2 threads, alternated: Q4_K 8 tokens 11.7–11.8
// against 12.2–12.6 ms, 10 13.3–13.4 against 13.4, 12 14.9–15.3 against 13.4–13.9, 16 17.3–17.6 against
// 15.0–15.2; Q6_K 8 13.9–14.0 against 14.0–14.5, 10 14.4–15.1 against 14.2, 12 16.2–16.3 against 14.7–15.0;
// Q5_K 16 16.3–16.9 against 13.9–14.2.
std::atomic<int> g_amx_rows16{-1};
constexpr int64_t kAmxRows16MinTokens = 10, kAmxRows16Q8MinTokens = 4;
bool rows16_amx_takes(DType t, int64_t n_tokens, bool copy16) {
  const bool kq = t == DType::kQ6_K || t == DType::kQ4_K || t == DType::kQ5_K;
  const int64_t min_tokens = t == DType::kQ8_0 ? kAmxRows16Q8MinTokens : kAmxRows16MinTokens;
  return (kq || t == DType::kQ8_0) && copy16 && n_tokens >= min_tokens && use_rows16() &&
         switch_on(g_amx_rows16, "DFLASH_AMX_ROWS16", true);
}

Kernel select_kernel(DType t, int64_t n_tokens, bool copy16) {
  const MatmulIsa isa = matmul_isa();
  Kernel k;
  if (isa == MatmulIsa::kAmx && rows16_amx_takes(t, n_tokens, copy16)) {
    k.rows = detail::rows_fn_rows16_amx(t);
    if (k.rows) {
      k.pack = detail::act_pack_rows16_amx(t);
      k.row_tile = detail::kRows16;
      k.packed_layout = kLayoutRows16;
    }
  }
  if (!k.rows && isa == MatmulIsa::kAmx && amx_takes(t, n_tokens, copy16)) {
    k.rows = detail::rows_fn_amx(t);
    if (k.rows) {
      k.pack = detail::act_pack_amx(t);
      k.row_tile = detail::kAmxRowTile;
      k.packed_layout = amx_packs(t) ? kLayoutAmxQ8 : 0;
    }
  }
  if (!k.rows && isa >= MatmulIsa::kAvx2 && rows16_takes(isa, t, n_tokens, copy16)) {
    k.rows = isa >= MatmulIsa::kAvx512Vnni ? detail::rows_fn_rows16(t) : detail::rows_fn_rows16_avx2(t);
    if (k.rows) {
      k.pack = detail::act_pack_rows16(t);
      k.row_tile = detail::kRows16;
      k.packed_layout = kLayoutRows16;
    }
  }
  if (!k.rows && isa >= MatmulIsa::kAvx512Vnni) {
    k.rows = detail::rows_fn_avx512vnni(t);
    if (k.rows) k.prep = detail::act_prep_avx512vnni(t);
  }
  if (!k.rows && isa >= MatmulIsa::kAvx2) {
    k.rows = detail::rows_fn_avx2(t);
    if (k.rows) k.prep = detail::act_prep_avx2(t);
  }
  if (!k.rows && isa != MatmulIsa::kScalar) k.rows = detail::rows_fn_float_simd(t);
  if (!k.rows) k.rows = detail::rows_fn_scalar(t);
  return k;
}

// Quantised activations of the calling thread; grows to the largest call, then stays. Cache-line aligned:
// the kernels and the tile loads read its rows in 64-byte pieces.
struct Scratch {
  struct Free {
    void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t(64)); }
  };
  std::unique_ptr<uint8_t[], Free> buf;
  size_t cap = 0;
  uint8_t* get(size_t n) {
    if (n > cap) {
      cap = std::max(n, cap + cap / 2);
      buf.reset(new (std::align_val_t(64)) uint8_t[cap]);
    }
    return buf.get();
  }
};
thread_local Scratch t_scratch, t_packed;

// Multiply-adds below which a job runs on the calling thread alone: a parallel dispatch costs a
// few microseconds, about what 2 cores do in ~20k int8 MACs... so keep chunks well above that.
constexpr int64_t kMinMacsPerChunk = 1 << 16;

}  // namespace

util::Status matmul_check(const tensor::Tensor& w) {
  if (!matmul_dtype(w.dtype))
    return util::unsupported("matmul: tensor '" + w.name + "' has dtype " +
                             tensor::dtype_name(w.dtype) +
                             "; expected one of f32 f16 bf16 q8_0 q4_K q5_K q6_K");
  const int64_t bs = tensor::info(w.dtype).block_size;
  if (w.ne[0] <= 0 || w.ne[0] % bs != 0)
    return util::invalid_argument("matmul: tensor '" + w.name + "' row length " +
                                  std::to_string(w.ne[0]) + " is not a positive multiple of " +
                                  std::to_string(bs) + " (block size of " +
                                  tensor::dtype_name(w.dtype) + ")");
  if (w.data == nullptr && w.nelements() > 0)
    return util::invalid_argument("matmul: tensor '" + w.name + "' has no data");
  return util::Status::ok();
}

void matmul_rows(const tensor::Tensor& w, int64_t row_begin, int64_t row_end, const float* x,
                 int64_t n_tokens, float* y, util::ThreadPool& pool) {
  if (!matmul_dtype(w.dtype)) die(w, "unsupported dtype (call matmul_check when binding)");
  const int64_t in = w.ne[0];
  const int64_t bs = tensor::info(w.dtype).block_size;
  if (in <= 0 || in % bs != 0) die(w, "row length is not a multiple of the block size");
  if (row_begin < 0 || row_end > w.rows() || row_begin > row_end) die(w, "row range out of bounds");
  const int64_t n_rows = row_end - row_begin;
  if (n_tokens <= 0 || n_rows == 0) return;

  detail::RowsArgs a;
  a.w = w.row(row_begin);
  a.w_stride = w.row_bytes();
  a.in = in;
  a.n_tokens = n_tokens;
  a.y = y;
  a.ldy = n_rows;

  const int64_t total_macs = in * n_tokens * n_rows;
  const int64_t macs_per_row = in * n_tokens;

  const Kernel kernel = select_kernel(w.dtype, n_tokens, w.packed != nullptr && w.packed_layout == kLayoutRows16);
  static_assert(detail::kAmxRowTile == detail::kRows16);
  if (w.packed && kernel.packed_layout != 0 && w.packed_layout == kernel.packed_layout &&
      row_begin % detail::kAmxRowTile == 0)
    a.w_packed = static_cast<const uint8_t*>(w.packed) +
                 size_t(row_begin / detail::kAmxRowTile) * packed_group_bytes(kernel.packed_layout, w.dtype, in);
  const DType adt = ref::act_dtype(w.dtype);
  if (adt == DType::kF32) {
    a.act = reinterpret_cast<const uint8_t*>(x);
    a.act_stride = size_t(in) * sizeof(float);
  } else {
    const bool q80 = adt == DType::kQ8_0;
    a.act_stride = q80 ? size_t(in / tensor::kQK8_0) * sizeof(ActQ8_0)
                       : size_t(in / tensor::kQK_K) * sizeof(tensor::BlockQ8_K);
    uint8_t* act = t_scratch.get(a.act_stride * size_t(n_tokens));
    a.act = act;
    auto quant = [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t) {
        uint8_t* dst = act + size_t(t) * a.act_stride;
        if (q80)
          quantize_act_q8_0(x + t * in, reinterpret_cast<ActQ8_0*>(dst), in);
        else
          quantize_act_q8_k(x + t * in, reinterpret_cast<tensor::BlockQ8_K*>(dst), in);
        if (kernel.prep) kernel.prep(dst, in / bs);
      }
    };
    // Quantising is ~1/out of the matmul's work; only big batches are worth a dispatch.
    if (n_tokens >= 8 && in * n_tokens >= (1 << 16))
      pool.parallel_range(n_tokens, 1, quant);
    else
      quant(0, n_tokens, 0);
    if (kernel.pack && n_tokens >= kernel.pack.min_tokens) {
      const int64_t nb = in / bs;
      const size_t gbytes = kernel.pack.group_bytes(nb);
      const int64_t groups = (n_tokens + kernel.pack.group - 1) / kernel.pack.group;
      uint8_t* packed = t_packed.get(gbytes * size_t(groups));
      kernel.pack.pack(act, a.act_stride, n_tokens, nb, packed);
      a.act = packed;
      a.act_stride = gbytes;
    }
  }

  const detail::RowsFn fn = kernel.rows;
  if (pool.size() == 1 || total_macs < 2 * kMinMacsPerChunk) {
    fn(a, 0, n_rows);
    return;
  }
  // Rows are split in units of the kernel's row tile.
  const int64_t unit = kernel.row_tile;
  const int64_t n_units = (n_rows + unit - 1) / unit;
  const int64_t grain =
      std::max<int64_t>(1, kMinMacsPerChunk / std::max<int64_t>(1, macs_per_row * unit));
  // A few chunks per thread: equal work when the threads run at equal speed, and a thread that
  // was preempted (shared machines) is helped by the others instead of stalling the call.
  const int chunks_per_thread = n_units >= 16 * grain * pool.size() ? 4 : 1;
  pool.parallel_range(
      n_units, grain,
      [&](int64_t u0, int64_t u1, int) { fn(a, u0 * unit, std::min(n_rows, u1 * unit)); },
      chunks_per_thread);
}

void matmul(const tensor::Tensor& w, const float* x, int64_t n_tokens, float* y,
            util::ThreadPool& pool) {
  matmul_rows(w, 0, w.rows(), x, n_tokens, y, pool);
}

void matmul_expert(const tensor::Tensor& w, int64_t expert, const float* x, int64_t n_tokens,
                   float* y, util::ThreadPool& pool) {
  const int64_t out = w.ne[1];
  if (expert < 0 || expert >= w.ne[2] * w.ne[3]) die(w, "expert index out of range");
  matmul_rows(w, expert * out, (expert + 1) * out, x, n_tokens, y, pool);
}

namespace detail {
void set_rows16(int mode) { g_rows16.store(mode < 0 ? -1 : (mode ? 1 : 0)); }
void set_amx_q8(int mode) { g_amx_q8.store(mode < 0 ? -1 : (mode ? 1 : 0)); }
void set_amx_rows16(int mode) { g_amx_rows16.store(mode < 0 ? -1 : (mode ? 1 : 0)); }
}  // namespace detail

PackedWeights::~PackedWeights() {
  for (const Arena& a : arenas_) munmap(a.base, a.size);
}

uint8_t* PackedWeights::allocate(size_t n) {
  n = (n + 63) / 64 * 64;
  if (arenas_.empty() || arenas_.back().used + n > arenas_.back().size) {
    constexpr size_t kHuge = size_t(2) << 20, kArena = size_t(64) << 20;
    const size_t size = std::max(kArena, (n + kHuge - 1) / kHuge * kHuge);
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);  // best effort
#endif
    arenas_.push_back({static_cast<uint8_t*>(p), size, 0});
  }
  Arena& a = arenas_.back();
  uint8_t* p = a.base + a.used;
  a.used += n;
  return p;
}

void PackedWeights::add(tensor::Tensor* w) {
  static const bool disabled = [] {
    const char* e = std::getenv("DFLASH_NO_PREPACK");
    return e && *e && std::string(e) != "0";
  }();
  if (disabled || w->data == nullptr || w->packed != nullptr || w->data_copied || !matmul_check(*w).is_ok()) return;
  // The layout of the kernel that decoding or a verify block runs (one per dtype and machine; other
  // batch sizes may take a kernel that reads the rows in place, e.g. AMX tiles for prefill chunks).
  int layout = 0;
  for (int64_t n : {1, 2, 16})
    if (layout == 0) layout = select_kernel(w->dtype, n, /*copy16=*/true).packed_layout;
  // Decoding reads this matrix in place (no layout, or Q6_K's per-row kernel): from the file mapping that
  // stream crosses a 4 KiB page every few rows and runs well below the DRAM rate (the 0.8B shape's tied
  // Q6_K LM head: 15 ms per token mapped against 9.7 from huge pages), so the rows are copied as they are
  // into the huge-page arena and data points there.
  if (copy_in_place_ && select_kernel(w->dtype, 1, layout == kLayoutRows16).packed_layout == 0) {
    if (uint8_t* c = allocate(w->nbytes())) {
      std::memcpy(c, w->data, w->nbytes());
      w->data = c;
      w->data_copied = true;
      copied_bytes_ += w->nbytes();
      ++copied_;
    }
  }
  if (layout == 0) return;
  const int64_t rows = w->rows(), in = w->ne[0];
  const int64_t groups = (rows + detail::kAmxRowTile - 1) / detail::kAmxRowTile;
  const size_t n = size_t(groups) * packed_group_bytes(layout, w->dtype, in);
  if (n == 0) return;
  uint8_t* p = allocate(n);
  if (!p) return;  // no memory for the copy: the in-place kernel still works
  const auto* src = static_cast<const uint8_t*>(w->data);
  if (layout == kLayoutAmxQ8)
    detail::prepack_q8_0(src, w->row_bytes(), rows, in, p);
  else
    detail::prepack_rows16(w->dtype, src, w->row_bytes(), rows, in, p);
  bytes_ += n;
  ++count_;
  w->packed = p;
  w->packed_layout = layout;
}

}  // namespace dflash::kernels
