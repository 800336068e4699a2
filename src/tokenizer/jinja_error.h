// Internal error type of the Jinja interpreter. It never leaves the module: Template::parse/render catch it
// and turn it into util::Status with "line N, column M" attached.
#pragma once

#include <exception>
#include <string>
#include <utility>

namespace dflash::tokenizer::jinja {

struct TemplateError : std::exception {
  explicit TemplateError(std::string msg, int line_ = 0, int col_ = 0)
      : message(std::move(msg)), line(line_), col(col_) {}
  const char* what() const noexcept override { return message.c_str(); }
  std::string message;
  int line = 0;  // 1-based; 0 = not yet known (the statement executor fills it in)
  int col = 0;
  bool from_raise_exception = false;  // raised by the template itself via raise_exception()
};

}  // namespace dflash::tokenizer::jinja
