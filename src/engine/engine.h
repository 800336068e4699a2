// The engine: loads a target (and optionally a DFlash drafter) from GGUF with its tokenizer and chat
// template, and generates text with streaming, stop tokens and stop strings. The CLI and the server
// both call this.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/dflash.h"
#include "model/qwen35.h"
#include "spec/decoder.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace dflash::engine {

struct EngineOptions {
  std::string target_path;
  std::string draft_path;  // empty: plain decoding only
  int64_t n_ctx = 4096;
  int64_t n_batch = 128;
  int threads = 0;  // 0: DFLASH_THREADS or all cores
  std::vector<int> capture_layers;  // target layers to capture when there is no drafter (gen-data)
  int n_seq = 1;  // independent target sequences for batched decoding (gen-data --parallel)
  bool no_mmap = false;  // copy weights into huge-page memory instead of mapping the files
};

struct GenerateRequest {
  std::vector<int32_t> prompt;
  spec::DecodeOptions decode;            // max_new_tokens, sampling, block size, extra stop tokens
  bool speculative = true;               // use the drafter when one is loaded
  bool stop_at_eos = true;               // stop on the tokenizer's end-of-sequence tokens
  std::vector<std::string> stop_strings; // never emitted, even when split across tokens
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (including a final stop token)
  std::string text;             // the streamed text (stop strings and special tokens excluded)
  spec::DecodeStats stats;
  std::string finish_reason;    // "stop", "length", "context" or "cancelled"
};

// Receives text as it becomes final; returning false cancels generation.
using TextCallback = std::function<bool(std::string_view text)>;

class Engine {
 public:
  static util::Result<std::unique_ptr<Engine>> load(const EngineOptions& opts);
  ~Engine();

  model::Qwen35& target() { return *target_; }
  model::DFlashDrafter* drafter() { return drafter_.get(); }
  // Null when the target GGUF carries no tokenizer (token-id prompts still work).
  const tokenizer::Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const tokenizer::ChatTemplate& chat_template() const { return *chat_template_; }
  const EngineOptions& options() const { return opts_; }
  std::vector<int32_t> eos_tokens() const { return eos_; }
  int64_t n_vocab() const { return target_->n_vocab(); }

  util::Result<std::vector<int32_t>> tokenize(std::string_view text, bool parse_special = true) const;
  util::Result<std::string> render_chat(const nlohmann::ordered_json& messages,
                                        const tokenizer::ChatOptions& opts) const;
  util::Result<GenerateResult> generate(const GenerateRequest& req, const TextCallback& on_text = nullptr);

 private:
  Engine() = default;
  EngineOptions opts_;
  std::shared_ptr<const formats::GgufFile> target_file_, draft_file_;
  std::unique_ptr<model::Qwen35> target_;
  std::unique_ptr<model::DFlashDrafter> drafter_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<tokenizer::ChatTemplate> chat_template_;
  std::vector<int32_t> eos_;
};

// Withholds text that could be the start of a stop string, so a stop string split across tokens
// never reaches the client. Text is cut only at UTF-8 character boundaries.
class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops);
  // Adds text; returns what may be emitted now. Sets stopped() when a stop string completed (the
  // returned text then ends right before it).
  std::string push(std::string_view text);
  // End of generation: everything still held back.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  size_t max_len_ = 0;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace dflash::engine
