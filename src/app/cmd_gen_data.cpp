// dflash gen-data: the target's own greedy responses (and its hidden states at the drafter's layers)
// as training data for a DFlash drafter — tools/train/train_drafter.py reads the output directly.
#include <cstdio>
#include <sstream>

#include "app/command.h"
#include "app/run_common.h"
#include "engine/engine.h"
#include "engine/gen_data.h"

namespace dflash::app {
namespace {

struct GenDataArgs {
  RunArgs model;
  std::string prompts, out, features;
  int64_t gen_len = 256, max_seqs = 0;
  double max_minutes = 0;
  int parallel = 8;
  bool no_stop = false;
};

int fail(const std::string& msg) {
  std::fprintf(stderr, "dflash gen-data: %s\n", msg.c_str());
  return 1;
}

int run_gen_data(const GenDataArgs& a) {
  engine::EngineOptions eo = a.model.engine_options();
  if (!a.features.empty()) {
    std::stringstream ss(a.features);
    std::string item;
    while (std::getline(ss, item, ',')) {
      char* end = nullptr;
      long v = std::strtol(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || v < 0)
        return fail("--features takes comma-separated target layer ids (the drafter's target_layer_ids), got '" +
                    a.features + "'");
      eo.capture_layers.push_back(static_cast<int>(v));
    }
  }
  if (a.parallel < 1 || a.parallel > 64) return fail("--parallel must be in [1, 64]");
  eo.n_seq = a.parallel;
  auto eng = engine::Engine::load(eo);
  if (!eng.is_ok()) return fail(eng.status().to_string());
  engine::Engine& e = **eng;
  engine::GenDataOptions o;
  o.prompts_dir = a.prompts;
  o.out_dir = a.out;
  o.gen_len = a.gen_len;
  o.features = !eo.capture_layers.empty();
  o.max_seqs = a.max_seqs;
  o.max_minutes = a.max_minutes;
  o.parallel = a.parallel;
  if (!a.no_stop) o.stop_tokens = e.eos_tokens();
  auto r = engine::generate_training_data(e.target(), o);
  if (!r.is_ok()) return fail(r.status().to_string());
  std::printf("gen-data: %s with %lld sequences in %s (%lld this run, %lld tokens generated in %.1f s: %.1f tok/s)\n",
              r->complete ? "done" : "paused", (long long)r->seqs_total, a.out.c_str(), (long long)r->seqs_this_run,
              (long long)r->gen_tokens, r->seconds, r->gen_tokens / std::max(1e-9, r->seconds));
  return 0;
}

}  // namespace

DFLASH_COMMAND(Command{
    "gen-data", "Generate DFlash drafter training data with the target (greedy responses + hidden-state features)",
    [](CLI::App* sub) -> std::function<int()> {
      auto a = std::make_shared<GenDataArgs>();
      add_model_options(sub, a->model);
      sub->add_option("--prompts", a->prompts, "Directory with the prompts (tokens.bin + index.bin)")->required();
      sub->add_option("-o,--out", a->out, "Output directory (resumed if it holds an interrupted run)")->required();
      sub->add_option("-n,--gen-len", a->gen_len, "Response tokens per prompt")->capture_default_str();
      sub->add_option("--features", a->features,
                      "Also write features.bin: comma-separated target layer ids (the drafter's target_layer_ids)");
      sub->add_option("--max-seqs", a->max_seqs, "Only the first N prompts (0: all)");
      sub->add_option("--max-minutes", a->max_minutes, "Stop cleanly after this long; rerun to continue");
      sub->add_flag("--no-stop", a->no_stop, "Do not stop responses at end-of-text tokens");
      sub->add_option("--parallel", a->parallel,
                      "Sequences decoded together (one batched forward per step; the output does not depend on it)")
          ->capture_default_str();
      return [a] { return run_gen_data(*a); };
    }});

}  // namespace dflash::app
