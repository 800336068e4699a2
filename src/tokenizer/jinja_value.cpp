// GCC 12 reports a false -Wrestrict inside libstdc++ for `"literal" + std::string&&` (GCC bug 105651).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "tokenizer/jinja_error.h"
#include "tokenizer/utf8.h"

namespace dflash::tokenizer::jinja {

namespace {
constexpr int kMaxNesting = 256;  // printing/JSON of nested (possibly self-referencing) containers

void check_depth(int depth) {
  if (depth > kMaxNesting) throw TemplateError("value nested too deeply to print (more than 256 levels)");
}
}  // namespace

// ---------------------------------------------------------------- UTF-8

// Invalid bytes decode to U+DC80+byte (Python's surrogateescape) so that decode/encode is lossless.
std::vector<uint32_t> utf8_decode(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp = 0;
    size_t n = 0;
    if (c < 0x80) { out.push_back(c); ++i; continue; }
    if ((c & 0xE0) == 0xC0) { cp = c & 0x1F; n = 1; }
    else if ((c & 0xF0) == 0xE0) { cp = c & 0x0F; n = 2; }
    else if ((c & 0xF8) == 0xF0) { cp = c & 0x07; n = 3; }
    else { out.push_back(0xDC00 + c); ++i; continue; }
    bool ok = i + n < s.size();
    for (size_t k = 1; ok && k <= n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (cc & 0x3F);
    }
    if (ok) {
      // Reject overlong forms, surrogates and out-of-range values.
      static const uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
      if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) ok = false;
    }
    if (!ok) { out.push_back(0xDC00 + c); ++i; continue; }
    out.push_back(cp);
    i += n + 1;
  }
  return out;
}

void utf8_append(std::string& out, uint32_t cp) {
  // Lone surrogates U+DC80..U+DCFF carry raw bytes (surrogate escape); everything else is UTF-8.
  if (cp >= 0xDC80 && cp <= 0xDCFF) { out.push_back(static_cast<char>(cp - 0xDC00)); return; }
  dflash::tokenizer::utf8_append(out, cp);
}

std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) utf8_append(out, cps[i]);
  return out;
}

size_t utf8_length(std::string_view s) {
  bool ascii = true;
  for (char c : s) if (static_cast<unsigned char>(c) >= 0x80) { ascii = false; break; }
  return ascii ? s.size() : utf8_decode(s).size();
}

bool is_py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// ---------------------------------------------------------------- dict

const Value* DictData::find(const Value& key) const {
  for (const auto& kv : items)
    if (values_equal(kv.first, key)) return &kv.second;
  return nullptr;
}
const Value* DictData::find_str(std::string_view key) const {
  for (const auto& kv : items)
    if (kv.first.is_string() && kv.first.str() == key) return &kv.second;
  return nullptr;
}
Value* DictData::find(const Value& key) {
  for (auto& kv : items)
    if (values_equal(kv.first, key)) return &kv.second;
  return nullptr;
}
void DictData::set(const Value& key, Value v) {
  if (Value* slot = find(key)) { *slot = std::move(v); return; }
  items.emplace_back(key, std::move(v));
}

// ---------------------------------------------------------------- conversions

Value Value::from_json(const nlohmann::ordered_json& j, int depth) {
  if (depth > 512) throw TemplateError("JSON input nested too deeply (more than 512 levels)");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return integer(static_cast<int64_t>(u));
      return floating(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return floating(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e, depth + 1));
      return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value d = dict();
      for (auto it = j.begin(); it != j.end(); ++it)
        d.dict_data().items.emplace_back(string(it.key()), from_json(it.value(), depth + 1));
      return d;
    }
    default: return none();  // binary / discarded: not produced by JSON text
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined: case Kind::kNone: return false;
    case Kind::kBool: case Kind::kInt: return i_ != 0;
    case Kind::kFloat: return f_ != 0.0;
    case Kind::kString: return !s_->empty();
    case Kind::kList: return !list_->items.empty();
    case Kind::kDict: return !dict_->items.empty();
    case Kind::kNamespace: case Kind::kCallable: return true;
  }
  return false;
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined: return "undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return list_->is_tuple ? "tuple" : "list";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return "Namespace";
    case Kind::kCallable: return "function";
  }
  return "?";
}

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  // sci = [-]D[.DDD]e[+-]XX ; split into sign, digits, exponent.
  bool neg = sci[0] == '-';
  size_t p = neg ? 1 : 0;
  size_t e = sci.find('e');
  std::string digits;
  for (size_t i = p; i < e; ++i)
    if (sci[i] != '.') digits.push_back(sci[i]);
  int exp = std::atoi(sci.c_str() + e + 1);
  std::string out = neg ? "-" : "";
  if (exp >= -5 + 1 && exp < 16) {  // Python uses fixed notation for 1e-4 <= |d| < 1e16
    if (exp >= 0) {
      if (static_cast<int>(digits.size()) <= exp + 1) {
        out += digits + std::string(exp + 1 - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
      }
    } else {
      out += "0." + std::string(-exp - 1, '0') + digits;
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof(eb), "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += eb;
  }
  return out;
}

namespace {
bool py_printable(uint32_t cp) {
  if (cp < 0x20 || cp == 0x7F) return false;
  if (cp >= 0x80 && cp <= 0xA0) return false;
  if (cp == 0xAD) return false;
  if ((cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x206F))
    return false;
  if (cp == 0x3000 || cp == 0xFEFF || (cp >= 0xE000 && cp <= 0xF8FF) || (cp >= 0xD800 && cp <= 0xDFFF))
    return false;
  return true;
}
}  // namespace

std::string py_str_repr(std::string_view s) {
  bool has_sq = s.find('\'') != std::string_view::npos;
  bool has_dq = s.find('"') != std::string_view::npos;
  char q = (has_sq && !has_dq) ? '"' : '\'';
  std::string out(1, q);
  for (uint32_t cp : utf8_decode(s)) {
    if (cp == static_cast<uint32_t>(q) || cp == '\\') { out.push_back('\\'); out.push_back(static_cast<char>(cp)); }
    else if (cp == '\n') out += "\\n";
    else if (cp == '\r') out += "\\r";
    else if (cp == '\t') out += "\\t";
    else if (py_printable(cp)) utf8_append(out, cp);
    else {
      char b[16];
      if (cp >= 0xDC80 && cp <= 0xDCFF) std::snprintf(b, sizeof(b), "\\udc%02x", cp - 0xDC00);
      else if (cp < 0x100) std::snprintf(b, sizeof(b), "\\x%02x", cp);
      else if (cp < 0x10000) std::snprintf(b, sizeof(b), "\\u%04x", cp);
      else std::snprintf(b, sizeof(b), "\\U%08x", cp);
      out += b;
    }
  }
  out.push_back(q);
  return out;
}

namespace {
std::string repr_impl(const Value& v, int depth);

std::string container_str(const Value& v, int depth) {
  check_depth(depth);
  std::string out;
  if (v.is_list()) {
    const auto& ld = v.list_data();
    out += ld.is_tuple ? "(" : "[";
    for (size_t i = 0; i < ld.items.size(); ++i) {
      if (i) out += ", ";
      out += repr_impl(ld.items[i], depth + 1);
    }
    if (ld.is_tuple && ld.items.size() == 1) out += ",";
    out += ld.is_tuple ? ")" : "]";
    return out;
  }
  out += "{";
  bool first = true;
  for (const auto& kv : v.dict_data().items) {
    if (!first) out += ", ";
    first = false;
    out += repr_impl(kv.first, depth + 1) + ": " + repr_impl(kv.second, depth + 1);
  }
  out += "}";
  return out;
}

std::string str_impl(const Value& v, int depth) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return v.as_bool() ? "True" : "False";
    case Value::Kind::kInt: return std::to_string(v.as_int());
    case Value::Kind::kFloat: return py_float_repr(v.as_double());
    case Value::Kind::kString: return v.str();
    case Value::Kind::kList: case Value::Kind::kDict: return container_str(v, depth);
    case Value::Kind::kNamespace: {
      check_depth(depth);
      std::string out = "<Namespace {";
      bool first = true;
      for (const auto& kv : v.dict_data().items) {
        if (!first) out += ", ";
        first = false;
        out += repr_impl(kv.first, depth + 1) + ": " + repr_impl(kv.second, depth + 1);
      }
      return out + "}>";
    }
    case Value::Kind::kCallable: return "<function " + v.fn().name + ">";
  }
  return "";
}

std::string repr_impl(const Value& v, int depth) {
  if (v.is_string()) return py_str_repr(v.str());
  if (v.is_undefined()) return "Undefined";
  return str_impl(v, depth);
}
}  // namespace

std::string Value::to_str() const { return str_impl(*this, 0); }
std::string Value::repr() const { return repr_impl(*this, 0); }

// ---------------------------------------------------------------- comparison

bool values_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (!a.is_float() && !b.is_float()) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined: case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.str() == b.str();
    case Value::Kind::kList: {
      if (a.list_data().is_tuple != b.list_data().is_tuple) return false;
      const auto& x = a.items();
      const auto& y = b.items();
      if (&x == &y) return true;
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!values_equal(x[i], y[i])) return false;
      return true;
    }
    case Value::Kind::kDict: {
      const auto& x = a.dict_data();
      const auto& y = b.dict_data();
      if (&x == &y) return true;
      if (x.items.size() != y.items.size()) return false;
      for (const auto& kv : x.items) {
        const Value* o = y.find(kv.first);
        if (!o || !values_equal(kv.second, *o)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace: return &a.dict_data() == &b.dict_data();
    case Value::Kind::kCallable: return &a.fn() == &b.fn();
    default: return false;
  }
}

bool values_less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (!a.is_float() && !b.is_float()) return a.as_int() < b.as_int();
    return a.as_double() < b.as_double();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list() && a.list_data().is_tuple == b.list_data().is_tuple) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (values_equal(x[i], y[i])) continue;
      return values_less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  throw TemplateError(std::string("'<' not supported between instances of '") + a.type_name() + "' and '" +
                      b.type_name() + "'");
}

// ---------------------------------------------------------------- json.dumps

namespace {
void json_str(std::string_view s, bool ensure_ascii, std::string& out) {
  out.push_back('"');
  bool ascii = true;
  for (char c : s) if (static_cast<unsigned char>(c) >= 0x80) { ascii = false; break; }
  auto put_u = [&](uint32_t u) {
    char b[16];
    std::snprintf(b, sizeof(b), "\\u%04x", u);
    out += b;
  };
  auto one = [&](uint32_t cp) {
    switch (cp) {
      case '"': out += "\\\""; return;
      case '\\': out += "\\\\"; return;
      case '\n': out += "\\n"; return;
      case '\r': out += "\\r"; return;
      case '\t': out += "\\t"; return;
      case '\b': out += "\\b"; return;
      case '\f': out += "\\f"; return;
      default: break;
    }
    if (cp < 0x20) { put_u(cp); return; }
    if (ensure_ascii && cp >= 0x7F) {
      if (cp == 0x7F) { out.push_back(0x7F); return; }  // json.dumps leaves DEL alone
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        put_u(0xD800 + (v >> 10));
        put_u(0xDC00 + (v & 0x3FF));
      } else {
        put_u(cp);
      }
      return;
    }
    utf8_append(out, cp);
  };
  if (ascii) {
    for (char c : s) one(static_cast<unsigned char>(c));
  } else {
    for (uint32_t cp : utf8_decode(s)) one(cp);
  }
  out.push_back('"');
}

std::string json_float(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return py_float_repr(d);
}

std::string json_key(const Value& k) {
  switch (k.kind()) {
    case Value::Kind::kString: return k.str();
    case Value::Kind::kInt: return std::to_string(k.as_int());
    case Value::Kind::kBool: return k.as_bool() ? "true" : "false";
    case Value::Kind::kNone: return "null";
    case Value::Kind::kFloat: return json_float(k.as_double());
    default:
      throw TemplateError(std::string("keys must be str, int, float, bool or None, not ") + k.type_name());
  }
}
}  // namespace

void json_dump(const Value& v, const JsonDumpOptions& opt, std::string& out, int depth) {
  check_depth(depth);
  auto newline = [&](int level) {
    out.push_back('\n');
    for (int i = 0; i < level; ++i) out += opt.indent;
  };
  switch (v.kind()) {
    case Value::Kind::kNone: out += "null"; return;
    case Value::Kind::kBool: out += v.as_bool() ? "true" : "false"; return;
    case Value::Kind::kInt: out += std::to_string(v.as_int()); return;
    case Value::Kind::kFloat: out += json_float(v.as_double()); return;
    case Value::Kind::kString: json_str(v.str(), opt.ensure_ascii, out); return;
    case Value::Kind::kList: {
      const auto& items = v.items();
      if (items.empty()) { out += "[]"; return; }
      out.push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += opt.item_sep;
        if (opt.has_indent) newline(depth + 1);
        json_dump(items[i], opt, out, depth + 1);
      }
      if (opt.has_indent) newline(depth);
      out.push_back(']');
      return;
    }
    case Value::Kind::kDict: {
      const auto& d = v.dict_data();
      if (d.items.empty()) { out += "{}"; return; }
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& kv : d.items) items.push_back(&kv);
      if (opt.sort_keys) {
        std::stable_sort(items.begin(), items.end(),
                         [](const auto* a, const auto* b) { return values_less(a->first, b->first); });
      }
      out.push_back('{');
      bool first = true;
      for (const auto* kv : items) {
        if (!first) out += opt.item_sep;
        first = false;
        if (opt.has_indent) newline(depth + 1);
        json_str(json_key(kv->first), opt.ensure_ascii, out);
        out += opt.key_sep;
        json_dump(kv->second, opt, out, depth + 1);
      }
      if (opt.has_indent) newline(depth);
      out.push_back('}');
      return;
    }
    default:
      throw TemplateError(std::string("Object of type ") +
                          (v.is_undefined() ? "Undefined" : v.type_name()) + " is not JSON serializable");
  }
}

}  // namespace dflash::tokenizer::jinja
