// A Jinja2-subset template engine for chat templates (Hugging Face `chat_template` strings).
// Behaves like jinja2 3.1 in the ImmutableSandboxedEnvironment that transformers uses: trim_blocks,
// lstrip_blocks, loopcontrols, Undefined renders as "", tojson = json.dumps(ensure_ascii=False),
// raise_exception(msg) and strftime_now(fmt) globals. Errors are reported with the template line and column.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace dflash::tokenizer::jinja {

struct Program;

struct RenderLimits {
  size_t max_output_bytes = 16u << 20;  // also caps any single string the template builds
  uint64_t max_work = 256u << 20;       // loop iterations + calls + bytes produced in one render
  int max_call_depth = 100;             // nested macro calls (recursive macros)
};

class Template {
 public:
  // Parse errors: "line 3, column 12: expected ..." (kInvalidArgument).
  static util::Result<Template> parse(std::string_view source);

  // `context` must be a JSON object; its keys become template variables (key order is kept, as Python dicts).
  // Runtime errors: kInvalidArgument with "line N, column M: message"; raise_exception(msg) gives
  // "line N: template raised: msg".
  util::Result<std::string> render(const nlohmann::ordered_json& context, const RenderLimits& limits = {}) const;

  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  ~Template();

 private:
  Template();
  std::shared_ptr<const Program> program_;
};

}  // namespace dflash::tokenizer::jinja
