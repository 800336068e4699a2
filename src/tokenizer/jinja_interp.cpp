// Tree-walking evaluator. Scoping follows Jinja2: for-loop bodies (per iteration), macros, block sets, filter
// and with blocks get a child scope; if-blocks do not. Macros close over their defining scope (looked up live).
// GCC 12 reports a false -Wrestrict inside libstdc++ for `"literal" + std::string&&` (GCC bug 105651).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
#include <cmath>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_error.h"

namespace dflash::tokenizer::jinja {

Interpreter::~Interpreter() {
  for (auto& ns : namespaces_) ns.dict_data().items.clear();
  for (auto& s : macro_scopes_) s->vars.clear();
}

void Interpreter::charge(uint64_t units) {
  work_ += units + 1;
  if (work_ > limits_.max_work)
    throw TemplateError("template exceeded its work limit (too many loop iterations, calls or output bytes)");
}

void Interpreter::check_size(size_t bytes) {
  if (bytes > limits_.max_output_bytes)
    throw TemplateError("output too large (limit " + std::to_string(limits_.max_output_bytes) + " bytes)");
}

void Interpreter::append(std::string& out, const std::string& s) {
  charge(s.size());
  check_size(out.size() + s.size());
  out += s;
}

Value Interpreter::make_namespace() {
  Value v = Value::namespace_();
  namespaces_.push_back(v);
  return v;
}

std::string Interpreter::render(const Program& prog, const Value& context) {
  auto root = std::make_shared<Scope>();
  if (context.is_dict()) {
    for (const auto& kv : context.dict_data().items)
      if (kv.first.is_string()) root->vars[kv.first.str()] = kv.second;
  }
  macro_scopes_.push_back(root);
  std::string out;
  exec_body(prog.body, root, out);
  return out;
}

Interpreter::Flow Interpreter::exec_body(const Body& body, const ScopePtr& scope, std::string& out) {
  for (const auto& s : body) {
    Flow f = exec(*s, scope, out);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s, const ScopePtr& scope, std::string& out) {
  try {
    switch (s.kind) {
      case Stmt::Kind::kText: append(out, s.text); return Flow::kNormal;
      case Stmt::Kind::kOutput: {
        Value v = eval(*s.expr, scope);
        if (v.is_string()) append(out, v.str());
        else append(out, v.to_str());
        return Flow::kNormal;
      }
      case Stmt::Kind::kIf: {
        for (const auto& br : s.branches)
          if (eval(*br.first, scope).truthy()) return exec_body(br.second, scope, out);
        return exec_body(s.else_body, scope, out);
      }
      case Stmt::Kind::kFor: return exec_for(s, scope, out);
      case Stmt::Kind::kSet: exec_set(s, scope, eval(*s.expr, scope)); return Flow::kNormal;
      case Stmt::Kind::kSetBlock:
      case Stmt::Kind::kFilterBlock: {
        auto inner = std::make_shared<Scope>();
        inner->parent = scope;
        std::string buf;
        exec_body(s.body, inner, buf);
        Value v = Value::string(std::move(buf));
        // Apply the filter chain (innermost subject is null) to the captured text.
        std::vector<const Expr*> chain;
        for (const Expr* f = s.expr.get(); f; f = f->children[0].get()) chain.push_back(f);
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
          CallArgs args;
          eval_args(**it, scope, args);
          v = apply_filter((*it)->name, v, args);
        }
        if (s.kind == Stmt::Kind::kSetBlock) exec_set(s, scope, v);
        else append(out, v.to_str());
        return Flow::kNormal;
      }
      case Stmt::Kind::kMacro: define_macro(s, scope); return Flow::kNormal;
      case Stmt::Kind::kCallBlock: {
        const Expr& call_expr = *s.expr;
        Value callee = eval(*call_expr.children[0], scope);
        CallArgs args;
        eval_args(call_expr, scope, args);
        const Stmt* body_stmt = &s;
        ScopePtr site = scope;
        macro_scopes_.push_back(scope);
        args.kw.emplace_back("caller", Value::callable("caller", [body_stmt, site](Interpreter& in, CallArgs& a) {
          return in.call_macro(*body_stmt, site, a);
        }));
        Value v = call(callee, args);
        append(out, v.to_str());
        return Flow::kNormal;
      }
      case Stmt::Kind::kWith: {
        auto inner = std::make_shared<Scope>();
        inner->parent = scope;
        for (const auto& a : s.assigns) inner->vars[a.first] = eval(*a.second, scope);
        return exec_body(s.body, inner, out);
      }
      case Stmt::Kind::kScope: {
        auto inner = std::make_shared<Scope>();
        inner->parent = scope;
        exec_body(s.body, inner, out);
        return Flow::kNormal;
      }
      case Stmt::Kind::kBreak: return Flow::kBreak;
      case Stmt::Kind::kContinue: return Flow::kContinue;
    }
  } catch (TemplateError& e) {
    if (e.line == 0) e.line = s.line;
    throw;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s, const ScopePtr& scope, std::string& out) {
  Value seq = eval(*s.expr, scope);
  std::vector<Value> items = iterate(seq);
  auto bind = [&](Scope& sc, const Value& item) {
    const Target& t = s.target;
    if (!t.is_tuple) {
      sc.vars[t.names[0]] = item;
      return;
    }
    std::vector<Value> parts = iterate(item);
    if (parts.size() != t.names.size())
      throw TemplateError(parts.size() < t.names.size()
                              ? "not enough values to unpack (expected " + std::to_string(t.names.size()) +
                                    ", got " + std::to_string(parts.size()) + ")"
                              : "too many values to unpack (expected " + std::to_string(t.names.size()) + ")");
    for (size_t i = 0; i < parts.size(); ++i) sc.vars[t.names[i]] = parts[i];
  };
  if (s.cond) {
    std::vector<Value> kept;
    for (auto& it : items) {
      charge(1);
      auto sc = std::make_shared<Scope>();
      sc->parent = scope;
      bind(*sc, it);
      if (eval(*s.cond, sc).truthy()) kept.push_back(std::move(it));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    auto sc = std::make_shared<Scope>();
    sc->parent = scope;
    exec_body(s.else_body, sc, out);
    return Flow::kNormal;
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    charge(1);
    auto sc = std::make_shared<Scope>();
    sc->parent = scope;
    bind(*sc, items[i]);
    Value loop = Value::dict();
    auto& d = loop.dict_data();
    // Keys are distinct, so append directly (set() would search each time).
    auto put = [&d](const char* k, Value v) { d.items.emplace_back(Value::string(k), std::move(v)); };
    d.items.reserve(12);
    put("index", Value::integer(i + 1));
    put("index0", Value::integer(i));
    put("revindex", Value::integer(n - i));
    put("revindex0", Value::integer(n - i - 1));
    put("first", Value::boolean(i == 0));
    put("last", Value::boolean(i == n - 1));
    put("length", Value::integer(n));
    put("depth", Value::integer(1));
    put("depth0", Value::integer(0));
    if (i > 0) put("previtem", items[i - 1]);
    if (i + 1 < n) put("nextitem", items[i + 1]);
    d.set(Value::string("cycle"), Value::callable("cycle", [i](Interpreter&, CallArgs& a) {
      if (a.pos.empty()) throw TemplateError("no items for cycling given");
      return a.pos[static_cast<size_t>(i) % a.pos.size()];
    }));
    sc->vars["loop"] = loop;
    Flow f = exec_body(s.body, sc, out);
    if (f == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

void Interpreter::exec_set(const Stmt& s, const ScopePtr& scope, Value v) {
  const Target& t = s.target;
  if (!t.attr.empty()) {
    const Value* ns = scope->lookup(t.names[0]);
    if (!ns || !ns->is_namespace())
      throw TemplateError("cannot assign attribute on non-namespace object '" + t.names[0] + "'");
    ns->dict_data().set(Value::string(t.attr), std::move(v));
    return;
  }
  if (!t.is_tuple) {
    scope->vars[t.names[0]] = std::move(v);
    return;
  }
  std::vector<Value> parts = iterate(v);
  if (parts.size() != t.names.size())
    throw TemplateError("cannot unpack " + std::to_string(parts.size()) + " values into " +
                        std::to_string(t.names.size()) + " names");
  for (size_t i = 0; i < parts.size(); ++i) scope->vars[t.names[i]] = parts[i];
}

void Interpreter::define_macro(const Stmt& s, const ScopePtr& scope) {
  const Stmt* m = &s;
  ScopePtr def = scope;
  macro_scopes_.push_back(scope);
  scope->vars[s.name] = Value::callable(s.name, [m, def](Interpreter& in, CallArgs& a) {
    return in.call_macro(*m, def, a);
  });
}

Value Interpreter::call_macro(const Stmt& m, const ScopePtr& def_scope, CallArgs& args) {
  if (call_depth_ >= limits_.max_call_depth)
    throw TemplateError("macro calls nested too deeply (limit " + std::to_string(limits_.max_call_depth) + ")");
  charge(1);
  struct DepthGuard {
    int& d;
    explicit DepthGuard(int& x) : d(x) { ++d; }
    ~DepthGuard() { --d; }
  } guard(call_depth_);
  auto scope = std::make_shared<Scope>();
  scope->parent = def_scope;
  std::string label = m.kind == Stmt::Kind::kMacro ? "macro '" + m.name + "'" : "caller";
  std::vector<bool> set(m.params.size(), false);
  Value varargs = Value::list({}, true);
  for (size_t i = 0; i < args.pos.size(); ++i) {
    if (i < m.params.size()) {
      scope->vars[m.params[i]] = args.pos[i];
      set[i] = true;
    } else {
      varargs.items().push_back(args.pos[i]);
    }
  }
  Value kwargs = Value::dict();
  for (auto& kv : args.kw) {
    bool matched = false;
    for (size_t i = 0; i < m.params.size(); ++i) {
      if (m.params[i] == kv.first) {
        if (set[i]) throw TemplateError(label + " got multiple values for argument '" + kv.first + "'");
        scope->vars[kv.first] = kv.second;
        set[i] = true;
        matched = true;
      }
    }
    if (matched) continue;
    if (kv.first == "caller") scope->vars["caller"] = kv.second;
    else kwargs.dict_data().set(Value::string(kv.first), kv.second);
  }
  for (size_t i = 0; i < m.params.size(); ++i) {
    if (set[i]) continue;
    if (m.defaults[i]) scope->vars[m.params[i]] = eval(*m.defaults[i], scope);
    else scope->vars[m.params[i]] = Value::undefined("parameter '" + m.params[i] + "' of " + label + " was not provided");
  }
  scope->vars["varargs"] = varargs;
  scope->vars["kwargs"] = kwargs;
  std::string out;
  exec_body(m.body, scope, out);
  return Value::string(std::move(out));
}

Value Interpreter::lookup(const std::string& name, const ScopePtr& scope) {
  if (const Value* v = scope->lookup(name)) return *v;
  Value g = builtin_global(name);
  if (!g.is_undefined()) return g;
  return Value::undefined("'" + name + "' is undefined");
}

void Interpreter::eval_args(const Expr& e, const ScopePtr& scope, CallArgs& args) {
  for (const auto& a : e.args) args.pos.push_back(eval(*a, scope));
  for (const auto& kv : e.kwargs) args.kw.emplace_back(kv.first, eval(*kv.second, scope));
}

Value Interpreter::eval(const Expr& e, const ScopePtr& scope) {
  try {
    return eval_inner(e, scope);
  } catch (TemplateError& err) {
    if (err.line == 0) {
      err.line = e.line;
      err.col = e.col;
    }
    throw;
  }
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_callable()) return callee.fn().fn(*this, args);
  if (callee.is_undefined()) fail_undefined(callee);
  throw TemplateError(std::string("'") + callee.type_name() + "' object is not callable");
}

Value Interpreter::eval_inner(const Expr& e, const ScopePtr& scope) {
  switch (e.kind) {
    case Expr::Kind::kLiteral: return e.literal;
    case Expr::Kind::kName: return lookup(e.name, scope);
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      std::vector<Value> items;
      items.reserve(e.children.size());
      for (const auto& c : e.children) items.push_back(eval(*c, scope));
      return Value::list(std::move(items), e.kind == Expr::Kind::kTuple);
    }
    case Expr::Kind::kDict: {
      Value d = Value::dict();
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        Value k = eval(*e.children[i], scope);
        if (k.is_list() && !k.list_data().is_tuple) throw TemplateError("unhashable type: 'list'");
        if (k.is_dict() || k.is_undefined()) throw TemplateError(std::string("unhashable type: '") + k.type_name() + "'");
        d.dict_data().set(k, eval(*e.children[i + 1], scope));
      }
      return d;
    }
    case Expr::Kind::kAttr: return get_attr(eval(*e.children[0], scope), e.name);
    case Expr::Kind::kItem: return get_item(eval(*e.children[0], scope), eval(*e.children[1], scope));
    case Expr::Kind::kSlice: {
      Value obj = eval(*e.children[0], scope);
      Value parts[3];
      for (int i = 0; i < 3; ++i) parts[i] = e.children[i + 1] ? eval(*e.children[i + 1], scope) : Value::none();
      return slice(obj, parts[0], parts[1], parts[2]);
    }
    case Expr::Kind::kCall: {
      const Expr& fe = *e.children[0];
      if (fe.kind == Expr::Kind::kAttr) {
        Value obj = eval(*fe.children[0], scope);
        CallArgs args;
        eval_args(e, scope, args);
        Value result;
        if (!obj.is_undefined() && call_method(obj, fe.name, args, &result)) return result;
        return call(get_attr(obj, fe.name), args);
      }
      Value callee = eval(fe, scope);
      CallArgs args;
      eval_args(e, scope, args);
      return call(callee, args);
    }
    case Expr::Kind::kFilter: {
      Value subject = eval(*e.children[0], scope);
      CallArgs args;
      eval_args(e, scope, args);
      return apply_filter(e.name, subject, args);
    }
    case Expr::Kind::kTest: {
      // `x is defined` must not fail on an undefined x, so evaluate the subject without throwing.
      Value subject = eval(*e.children[0], scope);
      CallArgs args;
      eval_args(e, scope, args);
      bool r = apply_test(e.name, subject, args);
      return Value::boolean(e.negated ? !r : r);
    }
    case Expr::Kind::kNeg:
    case Expr::Kind::kPos: {
      Value v = eval(*e.children[0], scope);
      if (v.is_undefined()) fail_undefined(v);
      if (!v.is_number())
        throw TemplateError(std::string("bad operand type for unary ") + (e.kind == Expr::Kind::kNeg ? "-" : "+") +
                            ": '" + v.type_name() + "'");
      if (e.kind == Expr::Kind::kPos) return v.is_bool() ? Value::integer(v.as_int()) : v;
      if (v.is_float()) return Value::floating(-v.as_double());
      if (v.as_int() == INT64_MIN) throw TemplateError("integer overflow");
      return Value::integer(-v.as_int());
    }
    case Expr::Kind::kNot: return Value::boolean(!eval(*e.children[0], scope).truthy());
    case Expr::Kind::kAnd: {
      Value l = eval(*e.children[0], scope);
      return l.truthy() ? eval(*e.children[1], scope) : l;
    }
    case Expr::Kind::kOr: {
      Value l = eval(*e.children[0], scope);
      return l.truthy() ? l : eval(*e.children[1], scope);
    }
    case Expr::Kind::kBinary:
      return binary_op(*this, e.name, eval(*e.children[0], scope), eval(*e.children[1], scope));
    case Expr::Kind::kCompare: {
      Value l = eval(*e.children[0], scope);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value r = eval(*e.children[i + 1], scope);
        const std::string& op = e.ops[i];
        bool ok;
        if (op == "==") ok = values_equal(l, r);
        else if (op == "!=") ok = !values_equal(l, r);
        else if (op == "in") ok = contains(r, l);
        else if (op == "not in") ok = !contains(r, l);
        else {
          if (l.is_undefined()) fail_undefined(l);
          if (r.is_undefined()) fail_undefined(r);
          if (op == "<") ok = values_less(l, r);
          else if (op == ">") ok = values_less(r, l);
          else if (op == "<=") ok = !values_less(r, l);
          else ok = !values_less(l, r);
          // <= and >= on unorderable-but-equal values still need the type check values_less does.
        }
        if (!ok) return Value::boolean(false);
        l = std::move(r);
      }
      return Value::boolean(true);
    }
    case Expr::Kind::kCond: {
      if (eval(*e.children[0], scope).truthy()) return eval(*e.children[1], scope);
      if (e.children[2]) return eval(*e.children[2], scope);
      return Value::undefined("the inline if-expression evaluated to false and has no else section");
    }
  }
  return Value::undefined();
}

Value Interpreter::apply_filter(const std::string& name, const Value& subject, CallArgs& args) {
  charge(1);
  return builtin_filter(*this, name, subject, args);
}

bool Interpreter::apply_test(const std::string& name, const Value& v, CallArgs& args) {
  return builtin_test(*this, name, v, args);
}

bool Interpreter::call_method(const Value& obj, const std::string& name, CallArgs& args, Value* result) {
  charge(1);
  return builtin_method(*this, obj, name, args, result);
}

Value Interpreter::get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined: fail_undefined(obj);
    case Value::Kind::kDict: {
      if (is_method_name(obj, name)) break;
      if (const Value* v = obj.dict_data().find_str(name)) return *v;
      return Value::undefined("'dict object' has no attribute '" + name + "'");
    }
    case Value::Kind::kNamespace: {
      if (const Value* v = obj.dict_data().find_str(name)) return *v;
      return Value::undefined("'Namespace object' has no attribute '" + name + "'");
    }
    default: break;
  }
  if (is_method_name(obj, name)) {
    // A bound method used as a value (e.g. passed around or printed); calling it dispatches to the built-in.
    Value self = obj;
    return Value::callable(name, [self, name](Interpreter& in, CallArgs& a) {
      Value r;
      in.call_method(self, name, a, &r);
      return r;
    });
  }
  return Value::undefined(std::string("'") + obj.type_name() + " object' has no attribute '" + name + "'");
}

Value Interpreter::get_item(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined: fail_undefined(obj);
    case Value::Kind::kDict: {
      if (const Value* v = obj.dict_data().find(key)) return *v;
      if (key.is_string() && is_method_name(obj, key.str())) return get_attr(obj, key.str());
      return Value::undefined("'dict object' has no attribute " + key.repr());
    }
    case Value::Kind::kList:
    case Value::Kind::kString: {
      if (key.is_int() || key.is_bool()) {
        int64_t i = key.as_int();
        if (obj.is_list()) {
          int64_t n = static_cast<int64_t>(obj.items().size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return Value::undefined(std::string(obj.type_name()) + " object has no element " + key.to_str());
          return obj.items()[static_cast<size_t>(i)];
        }
        auto cps = utf8_decode(obj.str());
        int64_t n = static_cast<int64_t>(cps.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined("str object has no element " + key.to_str());
        return Value::string(utf8_encode(cps, static_cast<size_t>(i), static_cast<size_t>(i) + 1));
      }
      if (key.is_string()) return get_attr(obj, key.str());
      return Value::undefined(std::string(obj.type_name()) + " object has no element " + key.repr());
    }
    case Value::Kind::kNamespace:
      if (key.is_string()) return get_attr(obj, key.str());
      break;
    default: break;
  }
  return Value::undefined(std::string("'") + obj.type_name() + " object' has no attribute " + key.repr());
}

}  // namespace dflash::tokenizer::jinja
