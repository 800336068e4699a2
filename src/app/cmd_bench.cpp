// dflash bench: the numbers that decide whether DFlash pays on this machine.
//   target: weight bytes, DRAM read bandwidth and the decode bound it implies, prefill and decode
//           tok/s, and the verify cost ratio c(B) = time(verify of B tokens) / time(decode of 1);
#include <algorithm>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/command.h"
#include "app/run_common.h"
#include "engine/engine.h"
#include "spec/adaptive.h"
#include "util/profile.h"
#include "spec/decoder.h"
#include "util/mmap_file.h"
#include "kernels/bandwidth.h"
#include "model/qwen35.h"
#include "util/progress.h"
#include "util/thread_pool.h"
#include "util/timer.h"

namespace dflash::app {
namespace {

struct BenchArgs {
  std::string model, draft, prompts;
  int block_size = 0;
  bool adaptive = false;
  bool chat = false, no_think = false;  // pair mode: prompts through the chat template
  std::string system;
  std::string pair_blocks;  // extra fixed block sizes to compare in pair mode
  int threads = 0;
  int n_gen = 64;
  int n_prefill = 512;
  int reps = 5;
  int pair_reps = 1;  // pair mode: runs per (prompt, configuration); the fastest counts
  std::string blocks = "1,2,4,8,16";
  int64_t n_ctx = 4096;
  bool json = false;
  bool skip_bandwidth = false;
  bool no_mmap = false;
  bool profile = false;
  int lookup = 0;
  double draft_min_conf = spec::kDefaultDraftMinConfidence;
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

// Decode-phase totals of one configuration over the prompts (prefill is shared and identical in every
// mode; the first token comes from the prefill).
struct DecodeTotals {
  double t_decode = 0, t_draft = 0, t_verify = 0, t_rollback = 0;
  int64_t tokens = 0, rounds = 0, committed = 0, drafted = 0, accepted = 0;
  std::vector<int> sizes, blocks, committed_per_round;  // every round of the counted runs, in order: verified, asked, committed
  std::vector<double> round_seconds;
  void add(const spec::DecodeStats& s) {
    sizes.insert(sizes.end(), s.verify_sizes.begin(), s.verify_sizes.end());
    blocks.insert(blocks.end(), s.block_sizes.begin(), s.block_sizes.end());
    committed_per_round.insert(committed_per_round.end(), s.accept_lengths.begin(), s.accept_lengths.end());
    round_seconds.insert(round_seconds.end(), s.round_seconds.begin(), s.round_seconds.end());
    t_decode += s.t_decode_s;
    t_draft += s.t_draft_s;
    t_verify += s.t_verify_s;
    t_rollback += s.t_rollback_s;
    tokens += s.n_generated - 1;
    rounds += s.n_rounds;
    for (int x : s.accept_lengths) committed += x;
    drafted += s.n_drafted;
    accepted += s.n_accepted;
  }
  double tok_s() const { return t_decode > 0 ? tokens / t_decode : 0.0; }
  double tau() const { return rounds ? static_cast<double>(committed) / static_cast<double>(rounds) : 0.0; }
  double acceptance() const { return drafted ? static_cast<double>(accepted) / static_cast<double>(drafted) : 0.0; }
  double drafting_loss() const { return spec::drafting_loss(blocks, committed_per_round, round_seconds); }
};

// AR vs DFlash on the same prompts in one process (T = 0): tokens/s of each, speed-up, τ,
// acceptance, and whether every output is identical.
int run_pair_bench(const BenchArgs& a) {
  if (a.prompts.empty()) return fail(util::invalid_argument("--prompts FILE is needed with --model-draft"));
  auto text = util::read_text_file(a.prompts);
  if (!text.is_ok()) return fail(text.status());
  std::vector<std::string> prompts;
  std::stringstream ss(*text);
  std::string line;
  while (std::getline(ss, line))
    if (!line.empty()) prompts.push_back(unescape(line));
  if (prompts.empty()) return fail(util::invalid_argument(a.prompts + ": no prompts (one per line)"));
  engine::EngineOptions eo;
  eo.target_path = a.model;
  eo.draft_path = a.draft;
  eo.n_ctx = a.n_ctx;
  eo.threads = a.threads;
  eo.no_mmap = a.no_mmap;
  auto eng = engine::Engine::load(eo);
  if (!eng.is_ok()) return fail(eng.status());
  engine::Engine& e = **eng;
  // Configurations: plain decoding, DFlash at the main block, the extra fixed blocks, the adaptive
  // policy. They run interleaved, prompt by prompt, and each (prompt, configuration) keeps its
  // fastest of --pair-reps runs: on a shared machine a slow phase then hits every configuration
  // alike instead of whichever ran during it.
  struct Config {
    std::string name;
    bool speculative = true;
    int block = 0;
    spec::BlockPolicy* policy = nullptr;
    DecodeTotals total;
    int lookup = 0;  // n-gram lookup drafting instead of the drafter
    bool hybrid = false;  // with lookup: DFlash + lookup (DecodeOptions::lookup_hybrid)
    spec::BlockPolicy* lookup_policy = nullptr;  // with lookup: the policy of rounds with a full n-gram match
  };
  const int main_block = a.block_size > 0 ? a.block_size : e.drafter()->block_size();
  spec::AdaptiveBlockPolicy adaptive_policy(main_block);
  std::vector<Config> configs;
  configs.push_back({"ar", false, a.block_size, nullptr, {}});
  configs.push_back({"dflash", true, a.block_size, nullptr, {}});
  const std::vector<int> extra = a.pair_blocks.empty() ? std::vector<int>{} : parse_list(a.pair_blocks);
  for (int b : extra) configs.push_back({std::to_string(b), true, b, nullptr, {}});
  const size_t adaptive_at = configs.size();
  if (a.adaptive) configs.push_back({"adaptive", true, a.block_size, &adaptive_policy, {}});
  // --lookup N: n-gram lookup drafting at its default block, and with the adaptive policy.
  spec::AdaptiveBlockPolicy lookup_policy(spec::kLookupBlock), lookup_full_policy(spec::kLookupBlock);
  const size_t lookup_at = configs.size();
  if (a.lookup > 0) {
    configs.push_back({"lookup", true, spec::kLookupBlock, nullptr, {}, a.lookup});
    if (a.adaptive)
      configs.push_back({"lookup adaptive", true, spec::kLookupBlock, &lookup_policy, {}, a.lookup, false,
                         &lookup_full_policy});
  }
  // --lookup N with the drafter: DFlash + lookup at the drafter's block (and adaptive).
  spec::AdaptiveBlockPolicy hybrid_policy(main_block), hybrid_lookup_policy(main_block);
  const size_t hybrid_at = configs.size();
  if (a.lookup > 0) {
    configs.push_back({"dflash+lookup", true, a.block_size, nullptr, {}, a.lookup, true});
    if (a.adaptive)
      configs.push_back({"dflash+lookup adaptive", true, a.block_size, &hybrid_policy, {}, a.lookup, true,
                         &hybrid_lookup_policy});
  }
  const int reps = std::max(1, a.pair_reps);

  bool identical = true;
  nlohmann::json per_prompt = nlohmann::json::array();
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto ids = encode_text(prompts[i], a.chat, a.system, a.no_think, e);
    if (!ids.is_ok()) return fail(ids.status());
    std::vector<spec::DecodeStats> best(configs.size());
    std::vector<int32_t> ar_tokens;
    bool prompt_same = true;
    for (int rep = 0; rep < reps; ++rep) {
      for (size_t c = 0; c < configs.size(); ++c) {
        engine::GenerateRequest req;
        req.prompt = *ids;
        req.decode.max_new_tokens = a.n_gen;
        req.decode.block_size = configs[c].block;
        req.decode.draft_min_confidence = a.draft_min_conf;
        req.decode.policy = configs[c].policy;
        req.decode.lookup_ngram = configs[c].lookup;
        req.decode.lookup_hybrid = configs[c].hybrid;
        req.decode.lookup_policy = configs[c].lookup_policy;
        req.speculative = configs[c].speculative;
        auto r = e.generate(req);
        if (!r.is_ok()) return fail(r.status());
        if (c == 0 && rep == 0) ar_tokens = r->tokens;
        const bool same = r->tokens == ar_tokens;
        prompt_same = prompt_same && same;
        if (!same && !a.json)
          std::fprintf(stderr, "prompt %zu/%zu: %s OUTPUT DIFFERS from plain decoding\n", i + 1, prompts.size(),
                       configs[c].name.c_str());
        if (rep == 0 || r->stats.t_decode_s < best[c].t_decode_s) best[c] = r->stats;
      }
    }
    for (size_t c = 0; c < configs.size(); ++c) configs[c].total.add(best[c]);
    identical = identical && prompt_same;
    per_prompt.push_back({{"ar_tok_s", best[0].decode_tok_s()}, {"dflash_tok_s", best[1].decode_tok_s()},
                          {"tau", best[1].tau()}, {"identical", prompt_same}});
    if (!a.json)
      std::fprintf(stderr, "prompt %zu/%zu: AR %.2f tok/s, DFlash %.2f tok/s, tau %.2f\n", i + 1, prompts.size(),
                   best[0].decode_tok_s(), best[1].decode_tok_s(), best[1].tau());
  }
  const DecodeTotals& ar_total = configs[0].total;
  const DecodeTotals& df_total = configs[1].total;
  nlohmann::json out;
  if (!extra.empty()) {
    nlohmann::json fixed = nlohmann::json::object(), fixed_tau = nlohmann::json::object();
    for (size_t k = 0; k < extra.size(); ++k) {
      const DecodeTotals& t = configs[2 + k].total;
      fixed[std::to_string(extra[k])] = t.tok_s();
      fixed_tau[std::to_string(extra[k])] = t.tau();
      if (!a.json) std::fprintf(stderr, "fixed block %d: %.2f tok/s, tau %.2f\n", extra[k], t.tok_s(), t.tau());
    }
    out["fixed_block_tok_s"] = fixed;
    out["fixed_block_tau"] = fixed_tau;
  }
  if (a.lookup > 0) {
    const DecodeTotals& t = configs[lookup_at].total;
    out["lookup_tok_s"] = t.tok_s();
    out["lookup_tau"] = t.tau();
    out["lookup_ngram"] = a.lookup;
    if (!a.json) std::fprintf(stderr, "lookup (n-gram %d, block %d): %.2f tok/s, tau %.2f\n", a.lookup,
                              spec::kLookupBlock, t.tok_s(), t.tau());
    if (a.adaptive) {
      const DecodeTotals& ta = configs[lookup_at + 1].total;
      out["lookup_adaptive_tok_s"] = ta.tok_s();
      out["lookup_adaptive_tau"] = ta.tau();
      if (!a.json) std::fprintf(stderr, "lookup adaptive: %.2f tok/s, tau %.2f\n", ta.tok_s(), ta.tau());
    }
  }
  if (a.lookup > 0) {
    const DecodeTotals& t = configs[hybrid_at].total;
    out["hybrid_tok_s"] = t.tok_s();
    out["hybrid_tau"] = t.tau();
    if (!a.json) std::fprintf(stderr, "dflash+lookup (n-gram %d, block %d): %.2f tok/s, tau %.2f\n", a.lookup, main_block,
                              t.tok_s(), t.tau());
    if (a.adaptive) {
      const DecodeTotals& ta = configs[hybrid_at + 1].total;
      out["hybrid_adaptive_tok_s"] = ta.tok_s();
      out["hybrid_adaptive_tau"] = ta.tau();
      out["hybrid_adaptive_drafting_loss"] = ta.drafting_loss();
      if (!a.json) std::fprintf(stderr, "dflash+lookup adaptive: %.2f tok/s, tau %.2f\n", ta.tok_s(), ta.tau());
    }
  }
  if (a.adaptive) {
    const DecodeTotals& t = configs[adaptive_at].total;
    out["adaptive_tok_s"] = t.tok_s();
    out["adaptive_tau"] = t.tau();
    // Which blocks the policy verified, rounds per size (a lookup proposal may be shorter than asked).
    std::map<int, int64_t> rounds_per_size;
    for (int v : t.sizes) ++rounds_per_size[v];
    nlohmann::json hist = nlohmann::json::object();
    for (const auto& [b, n] : rounds_per_size) hist[std::to_string(b)] = n;
    out["adaptive_verify_sizes"] = hist;
    // What its drafting rounds cost against plain decoding in the same rounds (spec::drafting_loss): the
    // policy's price where plain decoding is best, free of the ±5 % that two identical configurations of
    // one run differ by on a shared machine; negative where drafting paid.
    const double drafting_loss = t.drafting_loss();
    out["adaptive_drafting_loss"] = drafting_loss;
    // The drafter configurations with a fixed block (plain decoding is B = 1): the fastest of them, and
    // the adaptive policy against it and against the drafter's own block.
    size_t best = 0;
    for (size_t c = 0; c < adaptive_at; ++c)
      if (configs[c].total.tok_s() > configs[best].total.tok_s()) best = c;
    const double best_tok_s = configs[best].total.tok_s();
    out["best_fixed_block"] = best == 0 ? 1 : best == 1 ? main_block : extra[best - 2];
    out["best_fixed_tok_s"] = best_tok_s;
    out["adaptive_vs_best_fixed"] = best_tok_s > 0 ? t.tok_s() / best_tok_s : 0.0;
    out["adaptive_vs_main_block"] = configs[1].total.tok_s() > 0 ? t.tok_s() / configs[1].total.tok_s() : 0.0;
    if (!a.json)
      std::fprintf(stderr,
                   "adaptive: %.2f tok/s, tau %.2f (%.2fx the best fixed block, B = %d; %.2fx B = %d; drafting "
                   "rounds cost %+.1f %% of its time against plain decoding)\n",
                   t.tok_s(), t.tau(), out["adaptive_vs_best_fixed"].get<double>(), out["best_fixed_block"].get<int>(),
                   out["adaptive_vs_main_block"].get<double>(), main_block, 100.0 * drafting_loss);
  }
  out["pair_reps"] = reps;
  // Where the DFlash decode time of the main configuration went.
  if (df_total.t_decode > 0)
    out["dflash_time_share"] = {{"draft", df_total.t_draft / df_total.t_decode},
                                {"verify", df_total.t_verify / df_total.t_decode},
                                {"rollback", df_total.t_rollback / df_total.t_decode}};
  out["model"] = a.model;
  out["no_mmap"] = a.no_mmap;
  out["draft"] = a.draft;
  out["prompts"] = prompts.size();
  out["threads"] = util::ThreadPool::global().size();
  out["n_predict"] = a.n_gen;
  out["chat"] = a.chat;
  out["block_size"] = main_block;
  out["draft_min_confidence"] = a.draft_min_conf;
  out["ar_tok_s"] = ar_total.tok_s();
  out["dflash_tok_s"] = df_total.tok_s();
  out["speedup"] = out["ar_tok_s"].get<double>() > 0 ? out["dflash_tok_s"].get<double>() / out["ar_tok_s"].get<double>() : 0.0;
  out["tau"] = df_total.tau();
  out["acceptance"] = df_total.acceptance();
  out["identical"] = identical;
  out["per_prompt"] = per_prompt;
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("AR %.2f tok/s, DFlash %.2f tok/s: speed-up %.2fx, tau %.2f, acceptance %.1f%%, outputs %s\n",
                out["ar_tok_s"].get<double>(), out["dflash_tok_s"].get<double>(), out["speedup"].get<double>(),
                out["tau"].get<double>(), 100.0 * out["acceptance"].get<double>(), identical ? "identical" : "DIFFER");
  }
  return identical ? 0 : 2;
}

int run_bench(const BenchArgs& a) {
  if (!a.draft.empty()) return run_pair_bench(a);
  if (a.threads > 0) util::ThreadPool::set_global_threads(a.threads);
  util::ThreadPool& pool = util::ThreadPool::global();
  nlohmann::json out;
  out["threads"] = pool.size();
  out["model"] = a.model;

  auto file = formats::GgufFile::open(a.model, a.no_mmap ? util::LoadMode::kRead : util::LoadMode::kMmap);
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
      tok = static_cast<int32_t>((tok * 7919 + 13) % std::min<int64_t>(m.n_vocab(), 30000));
    }
    t_decode1 = median(times);
    out["decode_tok_s"] = 1.0 / t_decode1;
    if (out.contains("dram_bound_tok_s"))
      out["decode_vs_dram_bound"] = out["decode_tok_s"].get<double>() / out["dram_bound_tok_s"].get<double>();
  }
  // Verify cost c(B): checkpoint + forward of B tokens + reading the logits the decode loop reads + keep,
  // reported with every token accepted (no replay), with half rejected (replay of B/2 tape entries) and
  // with the first draft rejected under a lazy LM head (see variant 2 below). The
  // rounds run back to back after the same 64-token prompt as the decode measurement, as they do
  // in the decode loop: a verify timed alone right after a prefill measured up to ~1.9 decodes at
  // B = 1 on a VM where the back-to-back cost is ~1.1.
  {
    nlohmann::json cb = nlohmann::json::object();
    for (int B : parse_list(a.blocks)) {
      std::vector<double> full, half, one_lazy;
      m.reset();
      util::Status st = m.forward(random_tokens(64), false);
      if (!st.is_ok()) return fail(st);
      for (int r = 0; r < 3 * std::max(1, a.reps); ++r) {
        const int variant = r % 3;  // 0: all accepted; 1: half rejected; 2: one kept, head rows on demand
        if (m.n_past() + B >= a.n_ctx) break;
        auto block = random_tokens(B);
        util::Timer t;
        util::profile::Envelope prof("[verify round]", B);
        // The decode loop reads the rows up to the first rejected draft: all B when everything is accepted,
        // kept + 1 otherwise. Variants 0 and 1 (kept B / 2) compute every row of the LM head with the first
        // request; variant 2 keeps one token (the first draft rejected: a weak drafter's usual round) and
        // tells the model that 2 rows will be read, as the decode loop's hint does when it guesses right,
        // so a lazy head computes only those.
        const int64_t kept = variant == 0 ? B : variant == 1 ? B / 2 : 1;
        const int64_t rows = std::min<int64_t>(B, kept + 1);
        m.checkpoint();
        m.set_logits_hint(variant == 2 ? rows : 0);
        st = m.forward(block, true);
        volatile float sink = 0.0f;
        if (st.is_ok())
          for (int64_t i = 0; i < rows; ++i) sink = sink + m.logits(i)[0];
        if (st.is_ok()) st = m.keep(kept);
        if (!st.is_ok()) return fail(st);
        (variant == 0 ? full : variant == 1 ? half : one_lazy).push_back(t.seconds());
      }
      if (full.empty() || half.empty() || one_lazy.empty()) continue;
      nlohmann::json e;
      e["verify_ms"] = median(full) * 1e3;
      e["c"] = median(full) / t_decode1;
      e["c_half_rejected"] = median(half) / t_decode1;
      e["c_one_kept_lazy_head"] = median(one_lazy) / t_decode1;
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
  std::printf("verify cost c(B)   B: c (all accepted) / c (half rejected, with replay) / c (first draft rejected, "
              "LM head rows on demand) / verify ms\n");
  for (auto& [k, v] : out["c_of_b"].items())
    std::printf("                   %3s: %.2f / %.2f / %.2f / %.1f ms\n", k.c_str(), v["c"].get<double>(),
                v["c_half_rejected"].get<double>(), v["c_one_kept_lazy_head"].get<double>(),
                v["verify_ms"].get<double>());
  return 0;
}

}  // namespace

DFLASH_COMMAND(Command{"bench", "Measure decode/prefill speed, the DRAM bound and c(B); with --model-draft, AR vs DFlash on prompts",
                       [](CLI::App* sub) -> std::function<int()> {
                         auto a = std::make_shared<BenchArgs>();
                         sub->add_option("-m,--model", a->model, "Target GGUF")->required();
                         sub->add_option("--model-draft,--md", a->draft,
                                         "DFlash drafter: run AR vs DFlash on --prompts instead of the target measurements");
                         sub->add_option("--prompts", a->prompts, "One prompt per line (\\n and \\t escapes decoded)");
                         sub->add_option("--block-size", a->block_size, "DFlash block size (default: the drafter's)");
                         sub->add_option("--pair-blocks", a->pair_blocks,
                                         "Pair mode: also time these fixed block sizes (e.g. 2,4,8,16)");
                         sub->add_flag("--adaptive", a->adaptive, "Pair mode: also time the adaptive block-size policy");
                         sub->add_option("--draft-min-conf", a->draft_min_conf,
                                         "Pair mode: verify only the drafts whose joint probability under the drafter is "
                                         "at least this, in every configuration (0 = verify all)")
                             ->check(CLI::Range(0.0, 1.0))
                             ->capture_default_str();
                         sub->add_option("--lookup", a->lookup,
                                         "Pair mode: also time n-gram lookup drafting (n-grams of up to N tokens) alone and as DFlash + lookup, "
                                         "with --adaptive also under the adaptive policy")
                             ->check(CLI::Range(1, 8));
                         sub->add_flag("--chat", a->chat, "Pair mode: wrap each prompt in the model's chat template");
                         sub->add_option("--system", a->system, "Pair mode with --chat: system message");
                         sub->add_flag("--no-think", a->no_think, "Pair mode with --chat: disable thinking in the template");
                         sub->add_option("-t,--threads", a->threads, "Threads (default: all cores or DFLASH_THREADS)");
                         sub->add_option("-n,--n-predict", a->n_gen, "Tokens to generate per measurement")->capture_default_str();
                         sub->add_option("--prefill", a->n_prefill, "Prompt tokens for the prefill measurement")->capture_default_str();
                         sub->add_option("--reps", a->reps, "Repetitions (medians are reported)")->capture_default_str();
                         sub->add_option("--pair-reps", a->pair_reps,
                                         "Pair mode: runs of each configuration per prompt, interleaved; the fastest "
                                         "counts (robust on shared machines)")
                             ->capture_default_str();
                         sub->add_option("--blocks", a->blocks, "Block sizes for c(B)")->capture_default_str();
                         sub->add_option("-c,--ctx-size", a->n_ctx, "Context size")->capture_default_str();
                         sub->add_flag("--no-bandwidth", a->skip_bandwidth, "Skip the DRAM bandwidth probe");
                         sub->add_flag("--json", a->json, "Print one JSON object");
                         sub->add_flag("--no-mmap", a->no_mmap,
                                       "Copy the weights into (huge-page) memory instead of mapping the file");
                         add_profile_flag(sub, a->profile);
                         return [a] { return run_profiled(a->profile, [a] { return run_bench(*a); }); };
                       }});

}  // namespace dflash::app
