// Recursive-descent parser with Jinja2's grammar and operator precedence (jinja2/parser.py order:
// condexpr < or < and < not < compare < +,- < ~ < *,/,//,% < ** < unary < postfix/filters/tests).
// GCC 12 reports a false -Wrestrict inside libstdc++ for `"literal" + std::string&&` (GCC bug 105651).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
#include <initializer_list>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_error.h"

namespace dflash::tokenizer::jinja {
namespace {

constexpr int kMaxParseDepth = 200;  // nested expressions/statements; keeps the C++ stack bounded

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : toks_(std::move(toks)) {}

  std::unique_ptr<Program> run() {
    auto prog = std::make_unique<Program>();
    std::string which;
    prog->body = subparse({}, &which);
    return prog;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxParseDepth) p_->fail("template nested too deeply (more than 200 levels)");
    }
    ~DepthGuard() { --p_->depth_; }
    Parser* p_;
  };

  const Token& peek(size_t k = 0) const {
    size_t j = i_ + k;
    return j < toks_.size() ? toks_[j] : toks_.back();
  }
  const Token& next() {
    const Token& t = peek();
    if (i_ < toks_.size() - 1) ++i_;
    return t;
  }
  bool at_op(const char* op, size_t k = 0) const {
    const Token& t = peek(k);
    return t.type == Token::Type::kOp && t.text == op;
  }
  bool at_name(const char* n, size_t k = 0) const {
    const Token& t = peek(k);
    return t.type == Token::Type::kName && t.text == n;
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Token::Type::kData: return "template data";
      case Token::Type::kVarBegin: return "'{{'";
      case Token::Type::kVarEnd: return "'}}'";
      case Token::Type::kBlockBegin: return "'{%'";
      case Token::Type::kBlockEnd: return "'%}'";
      case Token::Type::kName: return "'" + t.text + "'";
      case Token::Type::kString: return "string literal";
      case Token::Type::kInt: case Token::Type::kFloat: return "number '" + t.text + "'";
      case Token::Type::kOp: return "'" + t.text + "'";
      case Token::Type::kEof: return "end of template";
    }
    return "token";
  }
  [[noreturn]] void fail(const std::string& msg) const { fail_at(msg, peek()); }
  [[noreturn]] void fail_at(const std::string& msg, const Token& t) const {
    throw TemplateError(msg, t.line, t.col);
  }
  void expect_op(const char* op) {
    if (!at_op(op)) fail(std::string("expected '") + op + "', got " + describe(peek()));
    next();
  }
  void expect_block_end() {
    if (peek().type != Token::Type::kBlockEnd) fail("expected end of statement block '%}', got " + describe(peek()));
    next();
  }
  std::string expect_name() {
    if (peek().type != Token::Type::kName) fail("expected a name, got " + describe(peek()));
    return next().text;
  }

  ExprPtr make(Expr::Kind k, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = at.line;
    e->col = at.col;
    return e;
  }
  StmtPtr make_stmt(Stmt::Kind k, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->line = line;
    return s;
  }

  // ------------------------------------------------------------ statements

  Body subparse(std::initializer_list<const char*> ends, std::string* which) {
    DepthGuard g(this);
    Body body;
    while (true) {
      const Token& t = peek();
      switch (t.type) {
        case Token::Type::kEof: {
          if (ends.size() == 0) return body;
          std::string names;
          for (const char* e : ends) names += std::string(names.empty() ? "" : " or ") + "'" + e + "'";
          fail("unexpected end of template; the innermost open block needs " + names);
        }
        case Token::Type::kData: {
          auto s = make_stmt(Stmt::Kind::kText, t.line);
          s->text = t.text;
          body.push_back(std::move(s));
          next();
          break;
        }
        case Token::Type::kVarBegin: {
          next();
          auto s = make_stmt(Stmt::Kind::kOutput, t.line);
          s->expr = parse_tuple(true, false);
          if (peek().type != Token::Type::kVarEnd) fail("expected end of print statement '}}', got " + describe(peek()));
          next();
          body.push_back(std::move(s));
          break;
        }
        case Token::Type::kBlockBegin: {
          next();
          const Token& n = peek();
          if (n.type != Token::Type::kName) fail("expected a statement name after '{%', got " + describe(n));
          for (const char* e : ends) {
            if (n.text == e) {
              *which = e;
              next();
              return body;
            }
          }
          body.push_back(parse_statement());
          break;
        }
        default:
          fail("unexpected " + describe(t));
      }
    }
  }

  StmtPtr parse_statement() {
    const Token& t = peek();
    std::string kw = t.text;
    int line = t.line;
    if (kw == "if") return parse_if();
    if (kw == "for") return parse_for();
    if (kw == "set") return parse_set();
    if (kw == "macro") return parse_macro();
    if (kw == "call") return parse_call_block();
    if (kw == "filter") return parse_filter_block();
    if (kw == "with") return parse_with();
    if (kw == "break" || kw == "continue") {
      if (loop_depth_ == 0) fail("'" + kw + "' outside of a loop");
      next();
      expect_block_end();
      return make_stmt(kw == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue, line);
    }
    if (kw == "generation") {  // transformers' AssistantTracker extension: renders its body
      next();
      expect_block_end();
      auto s = make_stmt(Stmt::Kind::kScope, line);
      std::string which;
      s->body = subparse({"endgeneration"}, &which);
      expect_block_end();
      return s;
    }
    if (kw == "include" || kw == "extends" || kw == "block" || kw == "import" || kw == "from" ||
        kw == "autoescape" || kw == "do" || kw == "trans") {
      fail("unsupported statement '" + kw + "' (not available in chat templates)");
    }
    if (kw.rfind("end", 0) == 0 || kw == "elif" || kw == "else")
      fail("unexpected '" + kw + "' (no open block it could close)");
    fail("unknown statement '" + kw + "'");
  }

  StmtPtr parse_if() {
    int line = next().line;
    auto s = make_stmt(Stmt::Kind::kIf, line);
    while (true) {
      ExprPtr cond = parse_tuple(false, false);
      expect_block_end();
      std::string which;
      Body body = subparse({"elif", "else", "endif"}, &which);
      s->branches.emplace_back(std::move(cond), std::move(body));
      if (which == "elif") continue;
      if (which == "else") {
        expect_block_end();
        s->else_body = subparse({"endif"}, &which);
      }
      expect_block_end();
      return s;
    }
  }

  Target parse_target(bool allow_attr) {
    Target t;
    bool paren = at_op("(");
    if (paren) next();
    t.names.push_back(expect_name());
    if (allow_attr && !paren && at_op(".")) {
      next();
      t.attr = expect_name();
      return t;
    }
    while (at_op(",")) {
      next();
      t.is_tuple = true;
      if (peek().type != Token::Type::kName) break;
      t.names.push_back(expect_name());
    }
    if (paren) {
      expect_op(")");
      t.is_tuple = true;
    }
    return t;
  }

  StmtPtr parse_for() {
    int line = next().line;
    auto s = make_stmt(Stmt::Kind::kFor, line);
    s->target = parse_target(false);
    if (!at_name("in")) fail("expected 'in' in for loop, got " + describe(peek()));
    next();
    s->expr = parse_tuple(false, false);
    if (at_name("if")) {
      next();
      s->cond = parse_expression(true);
    }
    if (at_name("recursive")) fail("recursive for loops are not supported");
    expect_block_end();
    std::string which;
    ++loop_depth_;
    s->body = subparse({"endfor", "else"}, &which);
    --loop_depth_;
    if (which == "else") {
      expect_block_end();
      s->else_body = subparse({"endfor"}, &which);
    }
    expect_block_end();
    return s;
  }

  StmtPtr parse_set() {
    int line = next().line;
    Target target = parse_target(true);
    if (at_op("=")) {
      next();
      auto s = make_stmt(Stmt::Kind::kSet, line);
      s->target = std::move(target);
      s->expr = parse_tuple(true, false);
      expect_block_end();
      return s;
    }
    auto s = make_stmt(Stmt::Kind::kSetBlock, line);
    if (target.is_tuple || !target.attr.empty()) fail("block set needs a single name as target");
    s->target = std::move(target);
    if (at_op("|")) s->expr = parse_filters(nullptr);
    expect_block_end();
    std::string which;
    s->body = subparse({"endset"}, &which);
    expect_block_end();
    return s;
  }

  void parse_params(Stmt& s) {
    expect_op("(");
    while (!at_op(")")) {
      if (!s.params.empty()) expect_op(",");
      if (at_op(")")) break;
      s.params.push_back(expect_name());
      if (at_op("=")) {
        next();
        s.defaults.push_back(parse_expression(true));
      } else {
        if (!s.defaults.empty() && s.defaults.back()) fail("non-default argument follows default argument");
        s.defaults.push_back(nullptr);
      }
    }
    next();
  }

  StmtPtr parse_macro() {
    int line = next().line;
    auto s = make_stmt(Stmt::Kind::kMacro, line);
    s->name = expect_name();
    parse_params(*s);
    expect_block_end();
    std::string which;
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = subparse({"endmacro"}, &which);
    loop_depth_ = saved;
    if (peek().type == Token::Type::kName) next();  // {% endmacro name %}
    expect_block_end();
    return s;
  }

  StmtPtr parse_call_block() {
    int line = next().line;
    auto s = make_stmt(Stmt::Kind::kCallBlock, line);
    if (at_op("(")) parse_params(*s);
    s->expr = parse_expression(true);
    if (s->expr->kind != Expr::Kind::kCall) fail("expected a macro call in call block");
    expect_block_end();
    std::string which;
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = subparse({"endcall"}, &which);
    loop_depth_ = saved;
    expect_block_end();
    return s;
  }

  StmtPtr parse_filter_block() {
    int line = next().line;
    auto s = make_stmt(Stmt::Kind::kFilterBlock, line);
    s->expr = parse_filters(nullptr, /*first_inline=*/true);
    expect_block_end();
    std::string which;
    s->body = subparse({"endfilter"}, &which);
    expect_block_end();
    return s;
  }

  StmtPtr parse_with() {
    int line = next().line;
    auto s = make_stmt(Stmt::Kind::kWith, line);
    while (peek().type != Token::Type::kBlockEnd) {
      if (!s->assigns.empty()) expect_op(",");
      std::string n = expect_name();
      expect_op("=");
      s->assigns.emplace_back(n, parse_expression(true));
    }
    expect_block_end();
    std::string which;
    s->body = subparse({"endwith"}, &which);
    expect_block_end();
    return s;
  }

  // ------------------------------------------------------------ expressions

  bool is_tuple_end() const {
    const Token& t = peek();
    return t.type == Token::Type::kVarEnd || t.type == Token::Type::kBlockEnd || at_op(")") ||
           at_name("recursive") || at_name("if");
  }

  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens) {
    const Token& start = peek();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end()) break;
      items.push_back(parse_expression(with_condexpr));
      if (at_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (items.size() == 1) return std::move(items[0]);
      if (!explicit_parens) fail("expected an expression, got " + describe(peek()));
    }
    auto e = make(Expr::Kind::kTuple, start);
    e->children = std::move(items);
    return e;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard g(this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    ExprPtr e = parse_or();
    while (at_name("if")) {
      const Token& t = next();
      auto c = make(Expr::Kind::kCond, t);
      ExprPtr test = parse_or();
      ExprPtr otherwise;
      if (at_name("else")) {
        next();
        otherwise = parse_condexpr();
      }
      c->children.push_back(std::move(test));
      c->children.push_back(std::move(e));
      c->children.push_back(std::move(otherwise));
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(Expr::Kind k, const Token& at, ExprPtr l, ExprPtr r, std::string op = {}) {
    auto e = make(k, at);
    e->name = std::move(op);
    e->children.push_back(std::move(l));
    e->children.push_back(std::move(r));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (at_name("or")) {
      const Token& t = next();
      l = binary(Expr::Kind::kOr, t, std::move(l), parse_and());
    }
    return l;
  }
  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (at_name("and")) {
      const Token& t = next();
      l = binary(Expr::Kind::kAnd, t, std::move(l), parse_not());
    }
    return l;
  }
  ExprPtr parse_not() {
    if (at_name("not")) {
      DepthGuard g(this);
      const Token& t = next();
      auto e = make(Expr::Kind::kNot, t);
      e->children.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    const Token& start = peek();
    ExprPtr first = parse_math1();
    std::vector<std::string> ops;
    std::vector<ExprPtr> operands;
    while (true) {
      const Token& t = peek();
      std::string op;
      if (t.type == Token::Type::kOp &&
          (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == "<=" || t.text == ">" || t.text == ">=")) {
        op = t.text;
        next();
      } else if (at_name("in")) {
        op = "in";
        next();
      } else if (at_name("not") && at_name("in", 1)) {
        op = "not in";
        next();
        next();
      } else {
        break;
      }
      ops.push_back(op);
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return first;
    auto e = make(Expr::Kind::kCompare, start);
    e->children.push_back(std::move(first));
    for (auto& o : operands) e->children.push_back(std::move(o));
    e->ops = std::move(ops);
    return e;
  }
  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (at_op("+") || at_op("-")) {
      const Token& t = next();
      std::string op = t.text;
      l = binary(Expr::Kind::kBinary, t, std::move(l), parse_concat(), op);
    }
    return l;
  }
  ExprPtr parse_concat() {
    ExprPtr l = parse_math2();
    while (at_op("~")) {
      const Token& t = next();
      l = binary(Expr::Kind::kBinary, t, std::move(l), parse_math2(), "~");
    }
    return l;
  }
  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& t = next();
      std::string op = t.text;
      l = binary(Expr::Kind::kBinary, t, std::move(l), parse_pow(), op);
    }
    return l;
  }
  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (at_op("**")) {
      const Token& t = next();
      l = binary(Expr::Kind::kBinary, t, std::move(l), parse_unary(true), "**");
    }
    return l;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(this);
    ExprPtr node;
    if (at_op("-") || at_op("+")) {
      const Token& t = next();
      node = make(t.text == "-" ? Expr::Kind::kNeg : Expr::Kind::kPos, t);
      node->children.push_back(parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.type) {
      case Token::Type::kName: {
        next();
        if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
          auto e = make(Expr::Kind::kLiteral, t);
          e->literal = Value::boolean(t.text[0] == 't' || t.text[0] == 'T');
          return e;
        }
        if (t.text == "none" || t.text == "None") {
          auto e = make(Expr::Kind::kLiteral, t);
          e->literal = Value::none();
          return e;
        }
        auto e = make(Expr::Kind::kName, t);
        e->name = t.text;
        return e;
      }
      case Token::Type::kString: {
        std::string s = next().text;
        while (peek().type == Token::Type::kString) s += next().text;  // adjacent literals concatenate
        auto e = make(Expr::Kind::kLiteral, t);
        e->literal = Value::string(std::move(s));
        return e;
      }
      case Token::Type::kInt: {
        next();
        auto e = make(Expr::Kind::kLiteral, t);
        e->literal = Value::integer(t.ival);
        return e;
      }
      case Token::Type::kFloat: {
        next();
        auto e = make(Expr::Kind::kLiteral, t);
        e->literal = Value::floating(t.fval);
        return e;
      }
      case Token::Type::kOp:
        if (t.text == "(") {
          next();
          ExprPtr e = parse_tuple(true, true);
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          next();
          auto e = make(Expr::Kind::kList, t);
          while (!at_op("]")) {
            if (!e->children.empty()) expect_op(",");
            if (at_op("]")) break;
            e->children.push_back(parse_expression(true));
          }
          next();
          return e;
        }
        if (t.text == "{") {
          next();
          auto e = make(Expr::Kind::kDict, t);
          while (!at_op("}")) {
            if (!e->children.empty()) expect_op(",");
            if (at_op("}")) break;
            e->children.push_back(parse_expression(true));
            expect_op(":");
            e->children.push_back(parse_expression(true));
          }
          next();
          return e;
        }
        break;
      default:
        break;
    }
    fail("unexpected " + describe(t) + " in expression");
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (at_op(".") || at_op("[")) node = parse_subscript(std::move(node));
      else if (at_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (at_op("|")) node = parse_filters(std::move(node));
      else if (at_name("is")) node = parse_test(std::move(node));
      else if (at_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    DepthGuard g(this);
    const Token& t = next();
    if (t.text == ".") {
      const Token& a = peek();
      if (a.type == Token::Type::kName) {
        next();
        auto e = make(Expr::Kind::kAttr, a);
        e->name = a.text;
        e->children.push_back(std::move(node));
        return e;
      }
      if (a.type == Token::Type::kInt) {
        next();
        auto e = make(Expr::Kind::kItem, a);
        auto lit = make(Expr::Kind::kLiteral, a);
        lit->literal = Value::integer(a.ival);
        e->children.push_back(std::move(node));
        e->children.push_back(std::move(lit));
        return e;
      }
      fail("expected an attribute name after '.', got " + describe(a));
    }
    // '[' subscript or slice
    ExprPtr parts[3];
    int colons = 0;
    bool single = true;
    if (!at_op(":")) parts[0] = parse_tuple_in_subscript();
    while (at_op(":") && colons < 2) {
      next();
      ++colons;
      single = false;
      if (!at_op(":") && !at_op("]")) parts[colons] = parse_expression(true);
    }
    expect_op("]");
    if (single) {
      auto e = make(Expr::Kind::kItem, t);
      e->children.push_back(std::move(node));
      e->children.push_back(std::move(parts[0]));
      return e;
    }
    auto e = make(Expr::Kind::kSlice, t);
    e->children.push_back(std::move(node));
    for (auto& p : parts) e->children.push_back(std::move(p));
    return e;
  }
  ExprPtr parse_tuple_in_subscript() { return parse_expression(true); }

  void parse_call_args(Expr& e) {
    expect_op("(");
    while (!at_op(")")) {
      if (!e.args.empty() || !e.kwargs.empty()) expect_op(",");
      if (at_op(")")) break;
      if (at_op("*") || at_op("**")) fail("*args / **kwargs in calls are not supported");
      if (peek().type == Token::Type::kName && at_op("=", 1)) {
        std::string n = next().text;
        next();
        e.kwargs.emplace_back(n, parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail("positional argument follows keyword argument");
        e.args.push_back(parse_expression(true));
      }
    }
    next();
  }

  ExprPtr parse_call(ExprPtr node) {
    DepthGuard g(this);
    auto e = make(Expr::Kind::kCall, peek());
    e->children.push_back(std::move(node));
    parse_call_args(*e);
    return e;
  }

  std::string dotted_name() {
    std::string n = expect_name();
    while (at_op(".")) {
      next();
      n += "." + expect_name();
    }
    return n;
  }

  // subject | f1(args) | f2 ... ; with a null subject for filter blocks and block sets.
  ExprPtr parse_filters(ExprPtr subject, bool first_inline = false) {
    DepthGuard g(this);
    bool first = true;
    while (at_op("|") || (first && first_inline)) {
      if (!(first && first_inline)) next();
      first = false;
      const Token& nt = peek();
      std::string name = dotted_name();
      if (!has_filter(name)) fail_at("no filter named '" + name + "'", nt);
      auto e = make(Expr::Kind::kFilter, nt);
      e->name = name;
      e->children.push_back(std::move(subject));
      if (at_op("(")) parse_call_args(*e);
      subject = std::move(e);
    }
    return subject;
  }

  ExprPtr parse_test(ExprPtr node) {
    DepthGuard g(this);
    next();  // 'is'
    bool negated = false;
    if (at_name("not")) {
      next();
      negated = true;
    }
    const Token& nt = peek();
    std::string name = dotted_name();
    if (!has_test(name)) fail_at("no test named '" + name + "'", nt);
    auto e = make(Expr::Kind::kTest, nt);
    e->name = name;
    e->negated = negated;
    e->children.push_back(std::move(node));
    const Token& a = peek();
    if (at_op("(")) {
      parse_call_args(*e);
    } else if ((a.type == Token::Type::kName || a.type == Token::Type::kString || a.type == Token::Type::kInt ||
                a.type == Token::Type::kFloat || at_op("[") || at_op("{")) &&
               !at_name("else") && !at_name("or") && !at_name("and")) {
      if (at_name("is")) fail("you cannot chain multiple tests with 'is'");
      e->args.push_back(parse_postfix(parse_primary()));
    }
    return e;
  }

  std::vector<Token> toks_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

std::unique_ptr<Program> parse(std::string_view source) { return Parser(lex(source)).run(); }

}  // namespace dflash::tokenizer::jinja
