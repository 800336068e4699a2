#include "tokenizer/chat_template.h"

#include <cstdlib>
#include <utility>
#include <vector>

namespace dflash::tokenizer {

namespace {
// Same text as tests/data/chat-templates/chatml.jinja (a test checks they agree).
constexpr std::string_view kChatMl = R"JINJA({%- for message in messages %}
    {{- '<|im_start|>' + message['role'] + '\n' }}
    {%- if message['content'] is string %}
        {{- message['content'] }}
    {%- elif message['content'] is iterable and message['content'] is not mapping %}
        {%- for part in message['content'] %}
            {%- if part['type'] == 'text' %}
                {{- part['text'] }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
    {{- '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)JINJA";

// Iterative, so a hostile request nested a million levels deep cannot overflow the stack here (nlohmann's
// copy constructor, used below, recurses).
bool nested_deeper_than(const nlohmann::ordered_json& root, size_t limit) {
  std::vector<std::pair<const nlohmann::ordered_json*, size_t>> stack{{&root, 0}};
  while (!stack.empty()) {
    auto [j, d] = stack.back();
    stack.pop_back();
    if (d > limit) return true;
    if (j->is_structured())
      for (const auto& c : *j) stack.emplace_back(&c, d + 1);
  }
  return false;
}
}  // namespace

std::string_view ChatTemplate::chatml_source() { return kChatMl; }

util::Result<ChatTemplate> ChatTemplate::from_source(std::string_view source) {
  auto t = jinja::Template::parse(source);
  if (!t.is_ok()) return t.status();
  return ChatTemplate(std::move(t).value(), std::string(source), false);
}

util::Result<ChatTemplate> ChatTemplate::from_gguf(const std::optional<std::string>& chat_template) {
  if (!chat_template || chat_template->empty()) return chatml();
  auto t = from_source(*chat_template);
  if (!t.is_ok()) return t.status().with_context("GGUF tokenizer.chat_template");
  return t;
}

ChatTemplate ChatTemplate::chatml() {
  auto t = jinja::Template::parse(kChatMl);
  // The built-in template is a constant that the tests parse; failure here is a programming error.
  if (!t.is_ok()) std::abort();
  return ChatTemplate(std::move(t).value(), std::string(kChatMl), true);
}

util::Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& messages,
                                               const ChatOptions& options) const {
  if (!messages.is_array()) return util::invalid_argument("chat messages must be a JSON array of message objects");
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].is_object())
      return util::invalid_argument("chat message " + std::to_string(i) + " must be a JSON object");
  }
  if (options.tools && !options.tools->is_array() && !options.tools->is_null())
    return util::invalid_argument("chat tools must be a JSON array of tool schemas");
  if (!options.extra_context.is_object())
    return util::invalid_argument("chat template extra context must be a JSON object");
  constexpr size_t kMaxDepth = 256;
  if (nested_deeper_than(messages, kMaxDepth) || (options.tools && nested_deeper_than(*options.tools, kMaxDepth)) ||
      nested_deeper_than(options.extra_context, kMaxDepth))
    return util::invalid_argument("chat messages/tools are nested more than 256 levels deep");
  // Same variables, in the same order, as transformers' render_jinja_template(messages=..., tools=...,
  // documents=..., add_generation_prompt=..., **special_tokens, **kwargs).
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  ctx["messages"] = messages;
  ctx["tools"] = options.tools ? *options.tools : nlohmann::ordered_json(nullptr);
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = options.add_generation_prompt;
  if (options.bos_token) ctx["bos_token"] = *options.bos_token;
  if (options.eos_token) ctx["eos_token"] = *options.eos_token;
  if (options.enable_thinking) ctx["enable_thinking"] = *options.enable_thinking;
  for (auto it = options.extra_context.begin(); it != options.extra_context.end(); ++it) ctx[it.key()] = it.value();
  return template_.render(ctx, options.limits);
}

}  // namespace dflash::tokenizer
