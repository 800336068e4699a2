// Interpreter core and built-in filters/tests/methods/globals (internal header).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_value.h"

namespace dflash::tokenizer::jinja {

struct Limits {
  size_t max_output_bytes = 16u << 20;  // any single rendered buffer or string value
  uint64_t max_work = 256u << 20;       // loop iterations + calls + bytes produced, summed over one render
  int max_call_depth = 100;             // nested macro calls
};

bool has_filter(std::string_view name);
bool has_test(std::string_view name);

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
  const Value* lookup(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using ScopePtr = std::shared_ptr<Scope>;

class Interpreter {
 public:
  explicit Interpreter(const Limits& limits) : limits_(limits) {}
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  std::string render(const Program& prog, const Value& context);

  // Used by the built-ins.
  Value call(const Value& callee, CallArgs& args);
  Value apply_filter(const std::string& name, const Value& subject, CallArgs& args);
  bool apply_test(const std::string& name, const Value& v, CallArgs& args);
  Value get_attr(const Value& obj, const std::string& name);
  Value get_item(const Value& obj, const Value& key);
  // Method call obj.name(args); returns false if obj has no such method.
  bool call_method(const Value& obj, const std::string& name, CallArgs& args, Value* result);
  Value make_namespace();
  // Counts work and enforces the size limit on a produced string.
  void charge(uint64_t units);
  void check_size(size_t bytes);
  const Limits& limits() const { return limits_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  Flow exec_body(const Body& body, const ScopePtr& scope, std::string& out);
  Flow exec(const Stmt& s, const ScopePtr& scope, std::string& out);
  Flow exec_for(const Stmt& s, const ScopePtr& scope, std::string& out);
  void exec_set(const Stmt& s, const ScopePtr& scope, Value v);
  void define_macro(const Stmt& s, const ScopePtr& scope);
  Value call_macro(const Stmt& m, const ScopePtr& def_scope, CallArgs& args);
  Value eval(const Expr& e, const ScopePtr& scope);
  Value eval_inner(const Expr& e, const ScopePtr& scope);
  void eval_args(const Expr& e, const ScopePtr& scope, CallArgs& args);
  Value lookup(const std::string& name, const ScopePtr& scope);
  void append(std::string& out, const std::string& s);

  Limits limits_;
  uint64_t work_ = 0;
  int call_depth_ = 0;
  // Namespaces and macro-defining scopes can form reference cycles (ns.x = ns; a macro stored in the scope
  // it closes over); they are cleared when the render ends so nothing leaks.
  std::vector<Value> namespaces_;
  std::vector<ScopePtr> macro_scopes_;
};

// Built-in dispatch (jinja_builtins.cpp).
Value builtin_filter(Interpreter& in, const std::string& name, const Value& subject, CallArgs& args);
bool builtin_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& args);
bool builtin_method(Interpreter& in, const Value& obj, const std::string& name, CallArgs& args, Value* result);
bool is_method_name(const Value& obj, const std::string& name);
Value builtin_global(const std::string& name);  // undefined if no such global

// Python-semantics helpers shared by the evaluator and the built-ins.
std::vector<Value> iterate(const Value& v);  // list(v); throws for non-iterables
bool contains(const Value& container, const Value& item);
Value binary_op(Interpreter& in, const std::string& op, const Value& a, const Value& b);
Value slice(const Value& v, const Value& start, const Value& stop, const Value& step);
[[noreturn]] void fail_undefined(const Value& v);

}  // namespace dflash::tokenizer::jinja
