// Chat templates: turn an OpenAI-style message list into the prompt text a model was trained on, by rendering
// the model's Jinja `chat_template` (GGUF key tokenizer.chat_template) exactly as transformers'
// apply_chat_template does. Models without a template get a built-in ChatML template.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "tokenizer/jinja.h"
#include "util/status.h"

namespace dflash::tokenizer {

struct ChatOptions {
  bool add_generation_prompt = true;
  std::optional<bool> enable_thinking;          // Qwen3/3.5: false → empty <think></think> block
  std::optional<nlohmann::ordered_json> tools;  // JSON array of tool schemas; absent → `tools` is None
  std::optional<std::string> bos_token;         // transformers passes the tokenizer's special tokens
  std::optional<std::string> eos_token;
  // Further template variables (e.g. request "chat_template_kwargs"); they override everything above.
  nlohmann::ordered_json extra_context = nlohmann::ordered_json::object();
  jinja::RenderLimits limits;
};

class ChatTemplate {
 public:
  // Parses a template; syntax errors name the line and column.
  static util::Result<ChatTemplate> from_source(std::string_view source);
  // The GGUF value of tokenizer.chat_template, or nullopt/empty when the key is absent → ChatML fallback.
  static util::Result<ChatTemplate> from_gguf(const std::optional<std::string>& chat_template);
  // Built-in ChatML: "<|im_start|>{role}\n{content}<|im_end|>\n"... + "<|im_start|>assistant\n".
  static ChatTemplate chatml();
  static std::string_view chatml_source();

  // messages: JSON array of {"role": ..., "content": ...} objects (content may be a string, null or a list
  // of parts; tool_calls, reasoning_content etc. are passed through). Use nlohmann::ordered_json so that
  // key order (visible through tojson) is kept.
  util::Result<std::string> render(const nlohmann::ordered_json& messages, const ChatOptions& options = {}) const;

  const std::string& source() const { return source_; }
  bool is_fallback() const { return fallback_; }

 private:
  ChatTemplate(jinja::Template t, std::string source, bool fallback)
      : template_(std::move(t)), source_(std::move(source)), fallback_(fallback) {}
  jinja::Template template_;
  std::string source_;
  bool fallback_ = false;
};

}  // namespace dflash::tokenizer
