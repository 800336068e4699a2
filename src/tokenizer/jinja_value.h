// Runtime values of the Jinja interpreter (internal header). Semantics follow Python as Jinja2 exposes it:
// reference-semantics lists and dicts, insertion-ordered dicts, Python truthiness/equality/str()/repr().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace dflash::tokenizer::jinja {

class Value;
class Interpreter;

struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;  // only changes how repr() prints it: (a, b)
};

struct DictData {
  std::vector<std::pair<Value, Value>> items;  // insertion order, like Python dicts
  const Value* find(const Value& key) const;
  const Value* find_str(std::string_view key) const;  // string key, without building a Value
  Value* find(const Value& key);
  void set(const Value& key, Value v);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

using NativeFn = std::function<Value(Interpreter&, CallArgs&)>;

struct CallableData {
  std::string name;
  NativeFn fn;
};

class Value {
 public:
  enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable };

  Value() = default;  // undefined
  static Value undefined() { return Value(); }
  // An undefined that remembers why it is undefined, for the error raised when it is used:
  // "'x' is undefined", "'dict object' has no attribute 'foo'".
  static Value undefined(std::string hint) {
    Value v; v.s_ = std::make_shared<const std::string>(std::move(hint)); return v;
  }
  std::string undefined_message() const { return s_ ? *s_ : std::string("value is undefined"); }
  static Value none() { Value v; v.kind_ = Kind::kNone; return v; }
  static Value boolean(bool b) { Value v; v.kind_ = Kind::kBool; v.i_ = b; return v; }
  static Value integer(int64_t i) { Value v; v.kind_ = Kind::kInt; v.i_ = i; return v; }
  static Value floating(double f) { Value v; v.kind_ = Kind::kFloat; v.f_ = f; return v; }
  static Value string(std::string s) {
    Value v; v.kind_ = Kind::kString; v.s_ = std::make_shared<const std::string>(std::move(s)); return v;
  }
  static Value list(std::vector<Value> items = {}, bool tuple = false) {
    Value v; v.kind_ = Kind::kList; v.list_ = std::make_shared<ListData>();
    v.list_->items = std::move(items); v.list_->is_tuple = tuple; return v;
  }
  static Value dict() { Value v; v.kind_ = Kind::kDict; v.dict_ = std::make_shared<DictData>(); return v; }
  static Value namespace_() { Value v = dict(); v.kind_ = Kind::kNamespace; return v; }
  static Value callable(std::string name, NativeFn fn) {
    Value v; v.kind_ = Kind::kCallable;
    v.fn_ = std::make_shared<CallableData>(CallableData{std::move(name), std::move(fn)}); return v;
  }
  // Throws TemplateError for JSON nested deeper than 512 levels (keeps the C++ stack bounded).
  static Value from_json(const nlohmann::ordered_json& j, int depth = 0);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const { return i_; }  // valid for kInt and kBool
  double as_double() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(i_); }
  const std::string& str() const { return *s_; }
  std::vector<Value>& items() const { return list_->items; }
  ListData& list_data() const { return *list_; }
  DictData& dict_data() const { return *dict_; }
  const CallableData& fn() const { return *fn_; }

  bool truthy() const;
  // Python str(): what {{ x }} prints.
  std::string to_str() const;
  // Python repr(): used for items inside printed lists/dicts.
  std::string repr() const;
  // Jinja's type names for messages: "str", "int", "list", "dict", "undefined", ...
  const char* type_name() const;

 private:
  Kind kind_ = Kind::kUndefined;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<ListData> list_;
  std::shared_ptr<DictData> dict_;  // also the attribute table of a namespace
  std::shared_ptr<CallableData> fn_;
};

// Python ==, with 1 == 1.0 == True and deep comparison of containers.
bool values_equal(const Value& a, const Value& b);
// Python <; throws TemplateError for unorderable types.
bool values_less(const Value& a, const Value& b);
// Python float repr(): 1.0, 0.1, 1e+20, 1.5e-07, inf, nan.
std::string py_float_repr(double d);
// Python repr() of a str: 'abc', "it's".
std::string py_str_repr(std::string_view s);

struct JsonDumpOptions {
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string indent;       // empty with has_indent=false: compact; json.dumps(indent=...) otherwise
  bool has_indent = false;
  std::string item_sep = ", ";
  std::string key_sep = ": ";
};
// Python json.dumps(); throws TemplateError for values JSON cannot hold (undefined, callables, namespaces).
void json_dump(const Value& v, const JsonDumpOptions& opt, std::string& out, int depth = 0);

// UTF-8 helpers (strings are UTF-8; Python indexes them by code point).
std::vector<uint32_t> utf8_decode(std::string_view s);
void utf8_append(std::string& out, uint32_t cp);
std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end);
size_t utf8_length(std::string_view s);
bool is_py_space(uint32_t cp);

}  // namespace dflash::tokenizer::jinja
