// dflash bench: the numbers that decide whether DFlash pays on this machine.
//   target: weight bytes, DRAM read bandwidth and the decode bound it implies, prefill and decode
//           tok/s, and the verify cost ratio c(B) = time(verify of B tokens) / time(decode of 1);
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/command.h"
#include "kernels/bandwidth.h"
#include "model/qwen35.h"
#include "util/progress.h"
#include "util/thread_pool.h"
#include "util/timer.h"

namespace dflash::app {
namespace {

struct BenchArgs {
  std::string model;
  int threads = 0;
  int n_gen = 64;
  int n_prefill = 512;
  int reps = 5;
  std::string blocks = "1,2,4,8,16";
  int64_t n_ctx = 4096;
  bool json = false;
  bool skip_bandwidth = false;
};

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) v.push_back(std::stoi(item));
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

int fail(const util::Status& st) {
  std::fprintf(stderr, "dflash bench: %s\n", st.to_string().c_str());
  return 1;
}

int run_bench(const BenchArgs& a) {
  if (a.threads > 0) util::ThreadPool::set_global_threads(a.threads);
  util::ThreadPool& pool = util::ThreadPool::global();
  nlohmann::json out;
  out["threads"] = pool.size();
  out["model"] = a.model;

  auto file = formats::GgufFile::open(a.model);
  if (!file.is_ok()) return fail(file.status());
  auto shared = std::make_shared<const formats::GgufFile>(std::move(*file));
  uint64_t weight_bytes = 0;
  for (const auto& t : shared->tensors()) weight_bytes += t.nbytes;
  model::Qwen35Options mo;
  mo.n_ctx = a.n_ctx;
  mo.n_batch = std::max(16, std::min(a.n_prefill, 512));
  auto loaded = model::Qwen35::load(shared, mo, &pool);
  if (!loaded.is_ok()) return fail(loaded.status());
  model::Qwen35& m = **loaded;
  out["weight_bytes"] = weight_bytes;

  if (!a.skip_bandwidth) {
    const double bw = kernels::measure_read_bandwidth(pool);
    out["bandwidth_gb_s"] = bw / 1e9;
    out["dram_bound_tok_s"] = bw / static_cast<double>(weight_bytes);
  }

  std::mt19937 rng(42);
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(std::min<int64_t>(m.n_vocab(), 30000)));
    return t;
  };

  // Prefill.
  {
    std::vector<double> times;
    auto prompt = random_tokens(a.n_prefill);
    for (int r = 0; r < std::max(1, a.reps / 2); ++r) {
      m.reset();
      util::Timer t;
      util::Status st = m.forward(prompt, false);
      if (!st.is_ok()) return fail(st);
      times.push_back(t.seconds());
    }
    out["prefill_tokens"] = a.n_prefill;
    out["prefill_tok_s"] = a.n_prefill / median(times);
  }
  // Decode (AR), one token at a time after a short prompt.
  double t_decode1 = 0.0;
  {
    m.reset();
    auto prompt = random_tokens(64);
    util::Status st = m.forward(prompt, false);
    if (!st.is_ok()) return fail(st);
    std::vector<double> times;
    int32_t tok = 1;
    for (int i = 0; i < a.n_gen; ++i) {
      util::Timer t;
      st = m.forward(std::span<const int32_t>(&tok, 1), false);
      if (!st.is_ok()) return fail(st);
      times.push_back(t.seconds());
      tok = static_cast<int32_t>((tok * 7919 + 13) % 30000);
    }
    t_decode1 = median(times);
    out["decode_tok_s"] = 1.0 / t_decode1;
    if (out.contains("dram_bound_tok_s"))
      out["decode_vs_dram_bound"] = out["decode_tok_s"].get<double>() / out["dram_bound_tok_s"].get<double>();
  }
  // Verify cost c(B): checkpoint + forward of B tokens with all logits + keep. Reported with every
  // token accepted (no replay) and with half rejected (restore + replay of B/2 tape entries).
  {
    nlohmann::json cb = nlohmann::json::object();
    for (int B : parse_list(a.blocks)) {
      std::vector<double> full, half;
      for (int r = 0; r < a.reps; ++r) {
        for (int variant = 0; variant < 2; ++variant) {
          m.reset();
          auto prompt = random_tokens(64);
          util::Status st = m.forward(prompt, false);
          if (!st.is_ok()) return fail(st);
          auto block = random_tokens(B);
          util::Timer t;
          m.checkpoint();
          st = m.forward(block, true);
          if (st.is_ok()) st = m.keep(variant == 0 ? B : B / 2);
          if (!st.is_ok()) return fail(st);
          (variant == 0 ? full : half).push_back(t.seconds());
        }
      }
      nlohmann::json e;
      e["verify_ms"] = median(full) * 1e3;
      e["c"] = median(full) / t_decode1;
      e["c_half_rejected"] = median(half) / t_decode1;
      cb[std::to_string(B)] = e;
    }
    out["c_of_b"] = cb;
  }

  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("model              %s\n", a.model.c_str());
  std::printf("threads            %d\n", pool.size());
  std::printf("weights            %s\n", util::human_bytes(static_cast<double>(weight_bytes)).c_str());
  if (out.contains("bandwidth_gb_s")) {
    std::printf("DRAM read          %.1f GB/s  → decode bound %.1f tok/s\n", out["bandwidth_gb_s"].get<double>(),
                out["dram_bound_tok_s"].get<double>());
  }
  std::printf("prefill            %.1f tok/s (%d tokens)\n", out["prefill_tok_s"].get<double>(), a.n_prefill);
  std::printf("decode             %.2f tok/s", out["decode_tok_s"].get<double>());
  if (out.contains("decode_vs_dram_bound"))
    std::printf("  (%.0f%% of the DRAM bound)", 100.0 * out["decode_vs_dram_bound"].get<double>());
  std::printf("\n");
  std::printf("verify cost c(B)   B: c (all accepted) / c (half rejected, with replay) / verify ms\n");
  for (auto& [k, v] : out["c_of_b"].items())
    std::printf("                   %3s: %.2f / %.2f / %.1f ms\n", k.c_str(), v["c"].get<double>(),
                v["c_half_rejected"].get<double>(), v["verify_ms"].get<double>());
  return 0;
}

}  // namespace

DFLASH_COMMAND(Command{"bench", "Measure decode/prefill speed, the DRAM bound and the verify cost c(B)",
                       [](CLI::App* sub) -> std::function<int()> {
                         auto a = std::make_shared<BenchArgs>();
                         sub->add_option("-m,--model", a->model, "Target GGUF")->required();
                         sub->add_option("-t,--threads", a->threads, "Threads (default: all cores or DFLASH_THREADS)");
                         sub->add_option("-n,--n-predict", a->n_gen, "Tokens to generate per measurement")->capture_default_str();
                         sub->add_option("--prefill", a->n_prefill, "Prompt tokens for the prefill measurement")->capture_default_str();
                         sub->add_option("--reps", a->reps, "Repetitions (medians are reported)")->capture_default_str();
                         sub->add_option("--blocks", a->blocks, "Block sizes for c(B)")->capture_default_str();
                         sub->add_option("-c,--ctx-size", a->n_ctx, "Context size")->capture_default_str();
                         sub->add_flag("--no-bandwidth", a->skip_bandwidth, "Skip the DRAM bandwidth probe");
                         sub->add_flag("--json", a->json, "Print one JSON object");
                         return [a] { return run_bench(*a); };
                       }});

}  // namespace dflash::app
