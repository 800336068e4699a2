// Tokens and syntax tree of the Jinja subset (internal header).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace dflash::tokenizer::jinja {

struct Token {
  enum class Type { kData, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };
  Type type;
  std::string text;  // data text, name, decoded string literal, operator
  int64_t ival = 0;
  double fval = 0;
  int line = 0;
  int col = 0;
};

// Lexes with transformers' settings: trim_blocks, lstrip_blocks, keep_trailing_newline=False.
// Throws TemplateError.
std::vector<Token> lex(std::string_view source);

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral, kName, kList, kTuple, kDict, kAttr, kItem, kSlice, kCall, kFilter, kTest,
    kNeg, kPos, kNot, kAnd, kOr, kBinary, kCompare, kCond,
  };
  Kind kind;
  int line = 0;
  int col = 0;
  Value literal;                    // kLiteral
  std::string name;                 // kName, kAttr attribute, kFilter/kTest name, kBinary operator
  std::vector<ExprPtr> children;    // operands (kSlice: obj, start, stop, step; absent parts are null)
  std::vector<std::string> ops;     // kCompare: operators between children
  std::vector<ExprPtr> args;        // call/filter/test positional arguments
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;             // kTest: "is not"
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Target {  // assignment target: name, tuple of names, or namespace attribute (ns.attr)
  std::vector<std::string> names;
  bool is_tuple = false;
  std::string attr;  // non-empty: names[0].attr
};

struct Stmt {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kSetBlock, kMacro, kCallBlock, kFilterBlock, kWith,
                    kBreak, kContinue, kScope };
  Kind kind;
  int line = 0;
  std::string text;                                   // kText
  ExprPtr expr;                                       // kOutput, kSet value, kFor iterable, kCallBlock call,
                                                      // kFilterBlock/kSetBlock filter chain (subject null)
  std::vector<std::pair<ExprPtr, Body>> branches;     // kIf: (condition, body)...
  Body body;
  Body else_body;                                     // kIf, kFor
  Target target;                                      // kSet, kSetBlock, kFor
  ExprPtr cond;                                       // kFor "if" filter
  bool recursive = false;
  std::string name;                                   // kMacro
  std::vector<std::string> params;                    // kMacro, kCallBlock (caller params)
  std::vector<ExprPtr> defaults;                      // aligned with params, null = no default
  std::vector<std::pair<std::string, ExprPtr>> assigns;  // kWith
  bool uses_caller = false;                           // kMacro body references `caller`
};

struct Program {
  Body body;
};

// Throws TemplateError with line/column set.
std::unique_ptr<Program> parse(std::string_view source);

}  // namespace dflash::tokenizer::jinja
