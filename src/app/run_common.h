// Options shared by the commands that generate (run, bench, serve): model paths, prompt, sampling.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace dflash::app {

struct RunArgs {
  std::string model, draft, prompt, prompt_file, tokens, system;
  int n_predict = 128;
  int64_t n_ctx = 4096;
  int threads = 0;
  int block_size = 0;
  float temperature = 0.0f, top_p = 1.0f, min_p = 0.0f;
  int top_k = 0;
  uint64_t seed = 0;
  bool chat = false, no_think = false, raw_special = false;
  std::vector<std::string> stop;
  bool ar = false, compare = false, quiet = false, adaptive = false;
  bool no_mmap = false;
  bool profile = false;
  int lookup = 0;  // > 0: n-gram lookup drafting (no drafter model)
  bool lookup_hybrid = false;  // with --lookup and a drafter: DFlash + lookup
  double draft_min_conf = spec::kDefaultDraftMinConfidence;  // DecodeOptions::draft_min_confidence

  engine::EngineOptions engine_options() const;
  engine::GenerateRequest request(std::vector<int32_t> prompt) const;
};

void add_model_options(CLI::App* sub, RunArgs& a);
void add_run_options(CLI::App* sub, RunArgs& a);
// Adds --profile; run_profiled() turns per-op accounting on, runs the command and prints the table.
void add_profile_flag(CLI::App* sub, bool& on);
int run_profiled(bool on, const std::function<int()>& body);

// The prompt as token ids: --tokens, or the text of -p / -f, raw by default (DFlash drafters are
// trained on raw continuations) or through the model's chat template with --chat.
util::Result<std::vector<int32_t>> build_prompt(const RunArgs& a, const engine::Engine& e);

// Text → ids, raw or through the model's chat template (one user turn, optional system turn).
util::Result<std::vector<int32_t>> encode_text(const std::string& text, bool chat, const std::string& system,
                                               bool no_think, const engine::Engine& e);

// "a\\nb" → "a\nb" (also \t and \\), for prompts given on one line.
std::string unescape(const std::string& s);

}  // namespace dflash::app
