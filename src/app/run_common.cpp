#include "app/run_common.h"

#include <cstdio>
#include <sstream>

#include "util/mmap_file.h"
#include "util/profile.h"

namespace dflash::app {

engine::EngineOptions RunArgs::engine_options() const {
  engine::EngineOptions o;
  o.target_path = model;
  o.draft_path = draft;
  o.n_ctx = n_ctx;
  o.threads = threads;
  o.no_mmap = no_mmap;
  return o;
}

engine::GenerateRequest RunArgs::request(std::vector<int32_t> prompt_ids) const {
  engine::GenerateRequest r;
  r.prompt = std::move(prompt_ids);
  r.decode.max_new_tokens = n_predict;
  r.decode.block_size = block_size;
  r.decode.lookup_ngram = lookup;
  r.decode.lookup_hybrid = lookup_hybrid;
  r.decode.draft_min_confidence = draft_min_conf;
  r.decode.sampling.temperature = temperature;
  r.decode.sampling.top_k = top_k;
  r.decode.sampling.top_p = top_p;
  r.decode.sampling.min_p = min_p;
  r.decode.sampling.seed = seed;
  r.stop_strings = stop;
  return r;
}

void add_model_options(CLI::App* sub, RunArgs& a) {
  sub->add_option("-m,--model", a.model, "Target model GGUF (qwen35 / qwen35moe)")->required();
  sub->add_option("--model-draft,--md", a.draft, "DFlash drafter GGUF (dflash or dflash-draft)");
  sub->add_option("-c,--ctx-size", a.n_ctx, "Context size in tokens")->capture_default_str();
  sub->add_option("-t,--threads", a.threads, "Threads (default: DFLASH_THREADS or all cores)");
  sub->add_flag("--no-mmap", a.no_mmap,
                "Copy the weights into memory (transparent huge pages where available) instead of mapping the files");
}

void add_run_options(CLI::App* sub, RunArgs& a) {
  add_model_options(sub, a);
  sub->add_option("-p,--prompt", a.prompt, "Prompt text");
  sub->add_option("-f,--file", a.prompt_file, "Read the prompt from a file");
  sub->add_option("--tokens", a.tokens, "Prompt as comma-separated token ids");
  sub->add_flag("--chat", a.chat, "Apply the model's chat template (raw continuation by default)");
  sub->add_option("--system", a.system, "System message (with --chat)");
  sub->add_flag("--no-think", a.no_think, "Chat: disable thinking (enable_thinking=false)");
  sub->add_option("-n,--n-predict", a.n_predict, "Tokens to generate")->capture_default_str();
  sub->add_option("--block-size", a.block_size, "DFlash block size (default: the drafter's)");
  sub->add_flag("--adaptive", a.adaptive, "Choose the block size per round from measured cost and acceptance");
  sub->add_option("--lookup", a.lookup,
                  "Draft by n-gram lookup in the prompt and output instead of with the DFlash drafter (prompt-lookup "
                  "decoding; n-grams of up to N tokens, 3 is a good start; no -md needed; block size default 16)")
      ->check(CLI::Range(1, 8));
  sub->add_flag("--lookup-hybrid", a.lookup_hybrid,
                "With --lookup and -md: DFlash + lookup (rounds with a full N-gram match verify the lookup "
                "proposal, the others the drafter's)");
  sub->add_option("--draft-min-conf", a.draft_min_conf,
                  "Verify only the drafts whose joint probability under the drafter is at least this (0 = verify "
                  "all; lossless either way)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  sub->add_option("--temp", a.temperature, "Temperature (0 = greedy)")->capture_default_str();
  sub->add_option("--top-k", a.top_k, "Top-k (0 = off)");
  sub->add_option("--top-p", a.top_p, "Top-p (1 = off)");
  sub->add_option("--min-p", a.min_p, "Min-p (0 = off)");
  sub->add_option("--seed", a.seed, "Sampling seed")->capture_default_str();
  sub->add_option("--stop", a.stop, "Stop string (repeatable)");
}

std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char c = s[i + 1];
      if (c == 'n' || c == 't' || c == '\\') {
        out.push_back(c == 'n' ? '\n' : c == 't' ? '\t' : '\\');
        ++i;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

util::Result<std::vector<int32_t>> build_prompt(const RunArgs& a, const engine::Engine& e) {
  const int sources = !a.prompt.empty() + !a.prompt_file.empty() + !a.tokens.empty();
  if (sources != 1) return util::invalid_argument("give exactly one of -p TEXT, -f FILE or --tokens IDS");
  if (!a.tokens.empty()) {
    std::vector<int32_t> ids;
    std::stringstream ss(a.tokens);
    std::string item;
    while (std::getline(ss, item, ',')) {
      try {
        size_t used = 0;
        long v = std::stol(item, &used);
        if (used != item.size() || v < 0 || v >= e.n_vocab()) throw std::out_of_range("id");
        ids.push_back(static_cast<int32_t>(v));
      } catch (const std::exception&) {
        return util::invalid_argument("--tokens: '" + item + "' is not a token id of this model");
      }
    }
    if (ids.empty()) return util::invalid_argument("--tokens: no ids given");
    return ids;
  }
  std::string text = a.prompt;
  if (!a.prompt_file.empty()) {
    DFLASH_ASSIGN_OR_RETURN(text, util::read_text_file(a.prompt_file));
  }
  return encode_text(text, a.chat, a.system, a.no_think, e);
}

util::Result<std::vector<int32_t>> encode_text(const std::string& text, bool chat, const std::string& system,
                                               bool no_think, const engine::Engine& e) {
  if (!chat) return e.tokenize(text);
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  if (!system.empty()) msgs.push_back({{"role", "system"}, {"content", system}});
  msgs.push_back({{"role", "user"}, {"content", text}});
  tokenizer::ChatOptions co;
  co.add_generation_prompt = true;
  if (no_think) co.enable_thinking = false;
  DFLASH_ASSIGN_OR_RETURN(std::string rendered, e.render_chat(msgs, co));
  return e.tokenize(rendered, /*parse_special=*/true);
}

void add_profile_flag(CLI::App* sub, bool& on) {
  sub->add_flag("--profile", on,
                "Print where the time went: wall-clock per op, grouped by tokens per forward (same as DFLASH_PROFILE=1)");
}

int run_profiled(bool on, const std::function<int()>& body) {
  if (on) util::profile::set_enabled(true);
  const int rc = body();
  if (util::profile::enabled()) std::fputs(util::profile::report().c_str(), stderr);
  return rc;
}

}  // namespace dflash::app
