// dflash run: generate from a prompt with the target alone or with DFlash (mirrors
// llama-speculative-simple). Text goes to stdout as it is produced; statistics to stderr.
#include <cstdio>
#include <sstream>

#include "app/command.h"
#include "app/run_common.h"
#include "engine/engine.h"
#include "spec/adaptive.h"
#include "util/mmap_file.h"

namespace dflash::app {
namespace {

int fail(const std::string& msg) {
  std::fprintf(stderr, "dflash run: %s\n", msg.c_str());
  return 1;
}

void print_stats(const char* label, const engine::GenerateResult& r, FILE* out) {
  const spec::DecodeStats& s = r.stats;
  std::fprintf(out, "\n[%s] prompt %lld tok, generated %lld tok in %.2f s: %.2f tok/s (prefill %.2f s)\n", label,
               (long long)s.n_prompt, (long long)s.n_generated, s.t_decode_s + s.t_prefill_s, s.decode_tok_s(),
               s.t_prefill_s);
  if (s.n_drafted > 0 || s.n_truncated > 0)
    std::fprintf(out, "[%s] drafted %lld, accepted %lld (%.1f%%), mean accepted length tau %.2f over %lld rounds\n",
                 label, (long long)s.n_drafted, (long long)s.n_accepted, 100.0 * s.acceptance(), s.tau(),
                 (long long)s.n_rounds);
  if (s.n_truncated > 0)
    std::fprintf(out, "[%s] %lld drafts below --draft-min-conf not verified\n", label, (long long)s.n_truncated);
  std::fprintf(out, "[%s] finish: %s\n", label, r.finish_reason.c_str());
}

int run(const RunArgs& a) {
  auto eng = engine::Engine::load(a.engine_options());
  if (!eng.is_ok()) return fail(eng.status().to_string());
  engine::Engine& e = **eng;
  auto prompt = build_prompt(a, e);
  if (!prompt.is_ok()) return fail(prompt.status().to_string());
  engine::GenerateRequest req = a.request(*prompt);
  const bool have_tok = e.tokenizer() != nullptr;
  // Drafting: the DFlash drafter, or n-gram lookup (--lookup), which needs no drafter model.
  const bool lookup = a.lookup > 0;
  const bool can_draft = lookup || e.drafter();
  const bool hybrid = lookup && a.lookup_hybrid && e.drafter();
  if (a.lookup_hybrid && !hybrid) return fail("--lookup-hybrid needs --lookup N and a drafter (-md)");
  const char* label = hybrid ? "dflash+lookup" : lookup ? "lookup" : "dflash";
  std::unique_ptr<spec::AdaptiveBlockPolicy> policy, lookup_policy;
  if (const int cap = spec::max_block_size(req.decode, e.drafter()); a.adaptive && cap > 1) {
    policy = std::make_unique<spec::AdaptiveBlockPolicy>(cap);
    req.decode.policy = policy.get();
    if (lookup) {
      lookup_policy = std::make_unique<spec::AdaptiveBlockPolicy>(cap);
      req.decode.lookup_policy = lookup_policy.get();
    }
  }

  auto stream = [&](std::string_view t) {
    std::fwrite(t.data(), 1, t.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  auto print_ids = [](const std::vector<int32_t>& ids) {
    for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
    std::printf("\n");
  };

  if (!a.compare) {
    req.speculative = !a.ar && can_draft;
    auto r = e.generate(req, a.quiet || !have_tok ? engine::TextCallback() : engine::TextCallback(stream));
    if (!r.is_ok()) return fail(r.status().to_string());
    if (!have_tok) print_ids(r->tokens);
    print_stats(req.speculative ? label : "ar", *r, stderr);
    return 0;
  }
  // --compare: plain decoding, then DFlash, on the same prompt; at T = 0 the outputs must agree.
  if (!can_draft) return fail("--compare needs a drafter (-md) or --lookup N");
  req.speculative = false;
  auto ar = e.generate(req);
  if (!ar.is_ok()) return fail(ar.status().to_string());
  req.speculative = true;
  auto df = e.generate(req, a.quiet || !have_tok ? engine::TextCallback() : engine::TextCallback(stream));
  if (!df.is_ok()) return fail(df.status().to_string());
  if (!have_tok) print_ids(df->tokens);
  print_stats("ar", *ar, stderr);
  print_stats(label, *df, stderr);
  const bool identical = ar->tokens == df->tokens;
  std::fprintf(stderr, "\nAR %.2f tok/s, %s %.2f tok/s: speed-up %.2fx, tau %.2f, outputs %s\n",
               ar->stats.decode_tok_s(), hybrid ? "DFlash+lookup" : lookup ? "lookup" : "DFlash", df->stats.decode_tok_s(),
               ar->stats.decode_tok_s() > 0 ? df->stats.decode_tok_s() / ar->stats.decode_tok_s() : 0.0,
               df->stats.tau(),
               identical ? "identical" : (a.temperature > 0 ? "differ (sampling)" : "DIFFER"));
  return identical || a.temperature > 0 ? 0 : 2;
}

}  // namespace

DFLASH_COMMAND(Command{"run", "Generate text from a prompt, with DFlash speculative decoding when -md is given",
                       [](CLI::App* sub) -> std::function<int()> {
                         auto a = std::make_shared<RunArgs>();
                         add_run_options(sub, *a);
                         sub->add_flag("--ar", a->ar, "Ignore the drafter: plain autoregressive decoding");
                         sub->add_flag("--compare", a->compare,
                                       "Run plain decoding and DFlash on the same prompt and compare speed and output");
                         sub->add_flag("-q,--quiet", a->quiet, "Do not print the generated text");
                         add_profile_flag(sub, a->profile);
                         return [a] { return run_profiled(a->profile, [a] { return run(*a); }); };
                       }});

}  // namespace dflash::app
