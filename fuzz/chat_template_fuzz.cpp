// libFuzzer target for the chat-template engine (src/tokenizer/jinja*, chat_template*).
// Input modes (first byte):
//   0x01 → the rest is a JSON message list, rendered through the Qwen3.5 template (data-driven paths);
//   else → the whole input is a template, rendered against a fixed tool-calling conversation.
// Any input must give a rendered string or an error Status: no crash, hang, leak or UB.
// Standalone build/run (until fuzz/CMakeLists.txt lists it):
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -DUTF8PROC_EXPORTS \
//     -DDFLASH_FUZZ_DATA_DIR=\"$PWD/tests/data\" -Isrc src/tokenizer/jinja*.cpp src/tokenizer/chat_template.cpp \
//     src/util/status.cpp fuzz/chat_template_fuzz.cpp -lutf8proc -o build-fuzz/chat_template_fuzz
//   build-fuzz/chat_template_fuzz -max_total_time=300 -max_len=8192 CORPUS_DIR   (seed: tests/data/chat-templates/*.jinja)
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "tokenizer/chat_template.h"
#include "tokenizer/jinja.h"

#ifndef DFLASH_FUZZ_DATA_DIR
#define DFLASH_FUZZ_DATA_DIR "tests/data"
#endif

namespace {
using Json = nlohmann::ordered_json;

const Json& context() {
  static const Json ctx = Json::parse(R"({
    "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi é 🌍"},
                 {"role": "assistant", "content": "<think>r</think>ok", "reasoning_content": "r",
                  "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": [1, 2.5, null], "b": "x"}}}]},
                 {"role": "tool", "content": "res"}, {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image"}]}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "array"}}}}}],
    "add_generation_prompt": true, "enable_thinking": false, "eos_token": "<|im_end|>", "documents": null})");
  return ctx;
}

const dflash::tokenizer::ChatTemplate* qwen35() {
  static const dflash::tokenizer::ChatTemplate* t = [] {
    std::ifstream f(std::string(DFLASH_FUZZ_DATA_DIR) + "/chat-templates/qwen3.5.jinja");
    std::stringstream ss;
    ss << f.rdbuf();
    auto r = dflash::tokenizer::ChatTemplate::from_source(ss.str());
    return r.is_ok() ? new dflash::tokenizer::ChatTemplate(std::move(r).value())
                     : new dflash::tokenizer::ChatTemplate(dflash::tokenizer::ChatTemplate::chatml());
  }();
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dflash::tokenizer::jinja::RenderLimits lim;
  lim.max_output_bytes = 1 << 20;
  lim.max_work = 1 << 21;
  if (size > 0 && data[0] == 0x01) {
    Json msgs = Json::parse(reinterpret_cast<const char*>(data) + 1, reinterpret_cast<const char*>(data) + size,
                            nullptr, /*allow_exceptions=*/false);
    if (msgs.is_discarded()) return 0;
    dflash::tokenizer::ChatOptions opt;
    opt.limits = lim;
    auto r = qwen35()->render(msgs, opt);
    (void)r;
    return 0;
  }
  auto t = dflash::tokenizer::jinja::Template::parse(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!t.is_ok()) return 0;
  auto r = t->render(context(), lim);
  (void)r;
  return 0;
}
