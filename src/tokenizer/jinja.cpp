// GCC 12 reports a false -Wrestrict inside libstdc++ for `"literal" + std::string&&` (GCC bug 105651).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
#include "tokenizer/jinja.h"

#include <new>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_error.h"

namespace dflash::tokenizer::jinja {

namespace {
std::string located(const TemplateError& e) {
  if (e.line <= 0) return e.message;
  std::string where = "line " + std::to_string(e.line);
  if (e.col > 0) where += ", column " + std::to_string(e.col);
  return where + ": " + e.message;
}
}  // namespace

Template::Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;
Template::~Template() = default;

util::Result<Template> Template::parse(std::string_view source) {
  try {
    Template t;
    t.program_ = std::shared_ptr<const Program>(jinja::parse(source));
    return t;
  } catch (const TemplateError& e) {
    return util::invalid_argument("chat template syntax error: " + located(e));
  } catch (const std::bad_alloc&) {
    return util::out_of_range("chat template: out of memory while parsing");
  }
}

util::Result<std::string> Template::render(const nlohmann::ordered_json& context, const RenderLimits& limits) const {
  if (!context.is_object()) return util::invalid_argument("chat template: render context must be a JSON object");
  try {
    Limits l;
    l.max_output_bytes = limits.max_output_bytes;
    l.max_work = limits.max_work;
    l.max_call_depth = limits.max_call_depth;
    Interpreter in(l);
    return in.render(*program_, Value::from_json(context));
  } catch (const TemplateError& e) {
    if (e.from_raise_exception)
      return util::invalid_argument("chat template raised an error (line " + std::to_string(e.line) +
                                    "): " + e.message);
    return util::invalid_argument("chat template error: " + located(e));
  } catch (const std::bad_alloc&) {
    return util::out_of_range("chat template: out of memory while rendering");
  } catch (const std::exception& e) {
    return util::internal_error(std::string("chat template: unexpected failure: ") + e.what());
  }
}

}  // namespace dflash::tokenizer::jinja
