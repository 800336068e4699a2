// Built-in filters, tests, methods and globals, matching Jinja2 3.1 in an ImmutableSandboxedEnvironment as
// transformers configures it (its own tojson, raise_exception, strftime_now; mutating methods are unsafe).
// GCC 12 reports a false -Wrestrict inside libstdc++ for `"literal" + std::string&&` (GCC bug 105651).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <set>
#include <utf8proc.h>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_error.h"

namespace dflash::tokenizer::jinja {

// ---------------------------------------------------------------- helpers

[[noreturn]] void fail_undefined(const Value& v) { throw TemplateError(v.undefined_message()); }

namespace {

// Binds positional and keyword arguments to parameter names, Python style.
class Params {
 public:
  Params(const CallArgs& a, std::initializer_list<const char*> names, const std::string& fn)
      : names_(names), vals_(names_.size()), set_(names_.size(), false) {
    if (a.pos.size() > names_.size())
      throw TemplateError(fn + "() takes at most " + std::to_string(names_.size()) + " argument(s) (" +
                          std::to_string(a.pos.size()) + " given)");
    for (size_t i = 0; i < a.pos.size(); ++i) {
      vals_[i] = a.pos[i];
      set_[i] = true;
    }
    for (const auto& kv : a.kw) {
      size_t i = 0;
      while (i < names_.size() && kv.first != names_[i]) ++i;
      if (i == names_.size()) throw TemplateError(fn + "() got an unexpected keyword argument '" + kv.first + "'");
      if (set_[i]) throw TemplateError(fn + "() got multiple values for argument '" + kv.first + "'");
      vals_[i] = kv.second;
      set_[i] = true;
    }
  }
  bool has(size_t i) const { return set_[i]; }
  const Value& get(size_t i) const { return vals_[i]; }
  bool flag(size_t i, bool dflt) const { return set_[i] ? vals_[i].truthy() : dflt; }

 private:
  std::vector<const char*> names_;
  std::vector<Value> vals_;
  std::vector<bool> set_;
};

void no_args(const CallArgs& a, const std::string& fn) { Params p(a, {}, fn); }

std::string text(const Value& v) { return v.to_str(); }

const std::string& need_str(const Value& v, const std::string& what) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_string())
    throw TemplateError(what + " expects a string, got '" + std::string(v.type_name()) + "'");
  return v.str();
}

int64_t need_int(const Value& v, const std::string& what) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_int() && !v.is_bool())
    throw TemplateError(what + " expects an integer, got '" + std::string(v.type_name()) + "'");
  return v.as_int();
}

uint32_t cp_lower(uint32_t c) { return c < 0x80 ? static_cast<uint32_t>(std::tolower(static_cast<int>(c))) : static_cast<uint32_t>(utf8proc_tolower(static_cast<int32_t>(c))); }
uint32_t cp_upper(uint32_t c) { return c < 0x80 ? static_cast<uint32_t>(std::toupper(static_cast<int>(c))) : static_cast<uint32_t>(utf8proc_toupper(static_cast<int32_t>(c))); }
uint32_t cp_title(uint32_t c) { return c < 0x80 ? static_cast<uint32_t>(std::toupper(static_cast<int>(c))) : static_cast<uint32_t>(utf8proc_totitle(static_cast<int32_t>(c))); }
bool cp_cased(uint32_t c) { return cp_lower(c) != c || cp_upper(c) != c || cp_title(c) != c; }
bool cp_is_lower(uint32_t c) { return cp_upper(c) != c; }
bool cp_is_upper(uint32_t c) { return cp_lower(c) != c; }
bool cp_alpha(uint32_t c) {
  if (c < 0x80) return std::isalpha(static_cast<int>(c)) != 0;
  auto cat = utf8proc_category(static_cast<int32_t>(c));
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}
bool cp_digit(uint32_t c) {
  if (c < 0x80) return std::isdigit(static_cast<int>(c)) != 0;
  return utf8proc_category(static_cast<int32_t>(c)) == UTF8PROC_CATEGORY_ND;
}
bool cp_word(uint32_t c) {
  if (c == '_' || cp_alpha(c) || cp_digit(c)) return true;
  if (c < 0x80) return false;
  auto cat = utf8proc_category(static_cast<int32_t>(c));
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC || cat == UTF8PROC_CATEGORY_NL ||
         cat == UTF8PROC_CATEGORY_NO;
}

std::string map_cps(const std::string& s, uint32_t (*f)(uint32_t)) {
  std::string out;
  out.reserve(s.size());
  for (uint32_t c : utf8_decode(s)) utf8_append(out, f(c));
  return out;
}

std::string py_capitalize(const std::string& s) {
  auto cps = utf8_decode(s);
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) utf8_append(out, i == 0 ? cp_title(cps[i]) : cp_lower(cps[i]));
  return out;
}

std::string py_title(const std::string& s) {  // str.title()
  std::string out;
  bool prev_cased = false;
  for (uint32_t c : utf8_decode(s)) {
    if (prev_cased) utf8_append(out, cp_lower(c));
    else utf8_append(out, cp_title(c));
    prev_cased = cp_cased(c);
  }
  return out;
}

std::string jinja_title(const std::string& s) {  // the `title` filter: words split at [-\s({[<]+
  auto cps = utf8_decode(s);
  std::string out;
  bool word_start = true;
  for (uint32_t c : cps) {
    bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_py_space(c);
    if (sep) {
      utf8_append(out, c);
      word_start = true;
    } else {
      utf8_append(out, word_start ? cp_upper(c) : cp_lower(c));
      word_start = false;
    }
  }
  return out;
}

// str.strip/lstrip/rstrip with Python semantics (chars=None → whitespace).
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right) {
  auto cps = utf8_decode(s);
  std::vector<uint32_t> set;
  bool ws = chars.is_none() || chars.is_undefined();
  if (!ws) set = utf8_decode(need_str(chars, "strip"));
  auto strip_it = [&](uint32_t c) {
    return ws ? is_py_space(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t b = 0, e = cps.size();
  if (left) while (b < e && strip_it(cps[b])) ++b;
  if (right) while (e > b && strip_it(cps[e - 1])) --e;
  return utf8_encode(cps, b, e);
}

std::vector<Value> py_split(const std::string& s, const Value& sep, int64_t maxsplit, bool from_right) {
  std::vector<Value> out;
  if (sep.is_none() || sep.is_undefined()) {
    auto cps = utf8_decode(s);
    std::vector<std::pair<size_t, size_t>> words;
    if (!from_right) {
      size_t i = 0;
      while (i < cps.size()) {
        while (i < cps.size() && is_py_space(cps[i])) ++i;
        if (i >= cps.size()) break;
        if (maxsplit >= 0 && static_cast<int64_t>(words.size()) == maxsplit) {
          words.emplace_back(i, cps.size());  // Python keeps the remainder's trailing whitespace
          break;
        }
        size_t j = i;
        while (j < cps.size() && !is_py_space(cps[j])) ++j;
        words.emplace_back(i, j);
        i = j;
      }
      for (auto& w : words) out.push_back(Value::string(utf8_encode(cps, w.first, w.second)));
    } else {
      size_t i = cps.size();
      while (i > 0) {
        while (i > 0 && is_py_space(cps[i - 1])) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && static_cast<int64_t>(words.size()) == maxsplit) {
          words.emplace_back(0, i);
          break;
        }
        size_t j = i;
        while (j > 0 && !is_py_space(cps[j - 1])) --j;
        words.emplace_back(j, i);
        i = j;
      }
      std::reverse(words.begin(), words.end());
      for (auto& w : words) out.push_back(Value::string(utf8_encode(cps, w.first, w.second)));
    }
    return out;
  }
  const std::string& sp = need_str(sep, "split");
  if (sp.empty()) throw TemplateError("empty separator");
  std::vector<std::string> parts;
  if (!from_right) {
    size_t pos = 0;
    while (true) {
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) break;
      size_t f = s.find(sp, pos);
      if (f == std::string::npos) break;
      parts.push_back(s.substr(pos, f - pos));
      pos = f + sp.size();
    }
    parts.push_back(s.substr(pos));
  } else {
    size_t end = s.size();
    while (true) {
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) break;
      if (end < sp.size()) break;
      size_t f = s.rfind(sp, end - sp.size());
      if (f == std::string::npos) break;
      parts.push_back(s.substr(f + sp.size(), end - f - sp.size()));
      end = f;
    }
    parts.push_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
  }
  for (auto& p : parts) out.push_back(Value::string(std::move(p)));
  return out;
}

std::vector<std::string> py_splitlines(const std::string& s, bool keepends) {
  auto cps = utf8_decode(s);
  std::vector<std::string> out;
  size_t start = 0, i = 0;
  while (i < cps.size()) {
    uint32_t c = cps[i];
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
               c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) { ++i; continue; }
    size_t eol = i + 1;
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') eol = i + 2;
    out.push_back(utf8_encode(cps, start, keepends ? eol : i));
    start = i = eol;
  }
  if (start < cps.size()) out.push_back(utf8_encode(cps, start, cps.size()));
  return out;
}

std::string py_replace(Interpreter& in, const std::string& s, const std::string& old, const std::string& neu,
                       int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts `neu` between every code point (and at both ends).
    auto cps = utf8_decode(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) { out += neu; ++done; }
      if (i < cps.size()) utf8_append(out, cps[i]);
      in.check_size(out.size());
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t f = s.find(old, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += neu;
    in.check_size(out.size());
    pos = f + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  in.charge(out.size());
  return out;
}

int64_t py_count(const std::string& s, const std::string& sub) {
  if (sub.empty()) return static_cast<int64_t>(utf8_length(s)) + 1;
  int64_t n = 0;
  size_t pos = 0;
  while ((pos = s.find(sub, pos)) != std::string::npos) { ++n; pos += sub.size(); }
  return n;
}

int64_t cp_index_of_byte(const std::string& s, size_t byte_off) {
  return static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, byte_off)));
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string py_center(const std::string& s, int64_t width, uint32_t fill) {
  int64_t len = static_cast<int64_t>(utf8_length(s));
  if (width <= len) return s;
  if (width > (1 << 24)) throw TemplateError("center width too large");
  int64_t marg = width - len;
  int64_t left = marg / 2 + (marg & width & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i) utf8_append(out, fill);
  out += s;
  for (int64_t i = 0; i < marg - left; ++i) utf8_append(out, fill);
  return out;
}

// Python "%" string formatting: %s %r %d %i %f %e %g %x %o %c %% with optional flags/width/precision and
// %(name)s against a mapping.
std::string percent_format(const std::string& fmt, const Value& args) {
  std::vector<Value> pos;
  const Value* mapping = nullptr;
  if (args.is_list() && args.list_data().is_tuple) pos = args.items();
  else if (args.is_dict()) mapping = &args;
  else pos.push_back(args);
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') { out.push_back(fmt[i]); continue; }
    if (++i >= fmt.size()) throw TemplateError("incomplete format");
    if (fmt[i] == '%') { out.push_back('%'); continue; }
    const Value* arg = nullptr;
    if (fmt[i] == '(') {
      size_t e = fmt.find(')', i);
      if (e == std::string::npos || !mapping) throw TemplateError("format requires a mapping");
      arg = mapping->dict_data().find(Value::string(fmt.substr(i + 1, e - i - 1)));
      if (!arg) throw TemplateError("format key " + py_str_repr(fmt.substr(i + 1, e - i - 1)) + " not found");
      i = e + 1;
    }
    std::string spec = "%";
    while (i < fmt.size() && std::strchr("-+ #0", fmt[i])) spec.push_back(fmt[i++]);
    while (i < fmt.size() && (std::isdigit(static_cast<unsigned char>(fmt[i])) || fmt[i] == '.')) spec.push_back(fmt[i++]);
    if (i >= fmt.size()) throw TemplateError("incomplete format");
    char conv = fmt[i];
    if (!arg) {
      if (next >= pos.size()) throw TemplateError("not enough arguments for format string");
      arg = &pos[next++];
    }
    char buf[512];
    switch (conv) {
      case 's': case 'r': {
        std::string s = conv == 's' ? arg->to_str() : arg->repr();
        spec += "s";
        if (spec == "%s") out += s;
        else { std::snprintf(buf, sizeof(buf), spec.c_str(), s.c_str()); out += buf; }
        break;
      }
      case 'd': case 'i': case 'x': case 'X': case 'o': case 'c': {
        if (!arg->is_number()) throw TemplateError(std::string("%") + conv + " format: a number is required, not " + arg->type_name());
        int64_t v = arg->is_float() ? static_cast<int64_t>(arg->as_double()) : arg->as_int();
        spec += "ll";
        spec.push_back(conv == 'i' ? 'd' : conv);
        if (conv == 'c') { utf8_append(out, static_cast<uint32_t>(v)); break; }
        std::snprintf(buf, sizeof(buf), spec.c_str(), static_cast<long long>(v));
        out += buf;
        break;
      }
      case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
        if (!arg->is_number()) throw TemplateError(std::string("%") + conv + " format: a real number is required, not " + arg->type_name());
        spec.push_back(conv);
        std::snprintf(buf, sizeof(buf), spec.c_str(), arg->as_double());
        out += buf;
        break;
      }
      default: throw TemplateError(std::string("unsupported format character '") + conv + "'");
    }
  }
  if (!mapping && next < pos.size()) throw TemplateError("not all arguments converted during string formatting");
  return out;
}

// str.format with {} {0} {name} fields (no format specs).
std::string brace_format(Interpreter& in, const std::string& fmt, const CallArgs& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}' ) {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') { out.push_back('}'); ++i; continue; }
      throw TemplateError("single '}' encountered in format string");
    }
    if (c != '{') { out.push_back(c); continue; }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') { out.push_back('{'); ++i; continue; }
    size_t e = fmt.find('}', i);
    if (e == std::string::npos) throw TemplateError("single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, e - i - 1);
    if (field.find_first_of(":!") != std::string::npos) throw TemplateError("format specs in str.format are not supported");
    std::string head = field, rest;
    size_t dot = field.find_first_of(".[");
    if (dot != std::string::npos) { head = field.substr(0, dot); rest = field.substr(dot); }
    Value v;
    if (head.empty()) {
      if (auto_idx >= a.pos.size()) throw TemplateError("Replacement index " + std::to_string(auto_idx) + " out of range");
      v = a.pos[auto_idx++];
    } else if (std::all_of(head.begin(), head.end(), [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); })) {
      size_t idx = std::stoul(head);
      if (idx >= a.pos.size()) throw TemplateError("Replacement index " + head + " out of range");
      v = a.pos[idx];
    } else {
      bool found = false;
      for (const auto& kv : a.kw) if (kv.first == head) { v = kv.second; found = true; }
      if (!found) throw TemplateError("KeyError: " + py_str_repr(head));
    }
    if (!rest.empty()) {
      if (rest[0] != '.') throw TemplateError("indexing in str.format fields is not supported");
      v = in.get_attr(v, rest.substr(1));
    }
    out += v.to_str();
    i = e;
  }
  return out;
}

Value do_slice(const std::vector<uint32_t>* cps, const std::vector<Value>* items, bool tuple, int64_t n,
               const Value& start, const Value& stop, const Value& step) {
  auto as_idx = [](const Value& v, const char* what) -> int64_t {
    if (v.is_int() || v.is_bool()) return v.as_int();
    throw TemplateError(std::string("slice ") + what + " must be an integer or None");
  };
  int64_t st = step.is_none() ? 1 : as_idx(step, "step");
  if (st == 0) throw TemplateError("slice step cannot be zero");
  int64_t lo, hi;
  if (st > 0) {
    lo = start.is_none() ? 0 : as_idx(start, "start");
    hi = stop.is_none() ? n : as_idx(stop, "stop");
    if (lo < 0) lo = std::max<int64_t>(0, lo + n);
    if (hi < 0) hi = std::max<int64_t>(0, hi + n);
    lo = std::min(lo, n);
    hi = std::min(hi, n);
  } else {
    lo = start.is_none() ? n - 1 : as_idx(start, "start");
    hi = stop.is_none() ? -1 : as_idx(stop, "stop");
    if (!start.is_none() && lo < 0) lo = std::max<int64_t>(-1, lo + n);
    if (!stop.is_none() && hi < 0) hi = std::max<int64_t>(-1, hi + n);
    lo = std::min(lo, n - 1);
    hi = std::min(hi, n - 1);
  }
  std::vector<int64_t> idx;
  if (st > 0) for (int64_t i = lo; i < hi; i += st) idx.push_back(i);
  else for (int64_t i = lo; i > hi; i += st) idx.push_back(i);
  if (cps) {
    std::string out;
    for (int64_t i : idx) utf8_append(out, (*cps)[static_cast<size_t>(i)]);
    return Value::string(std::move(out));
  }
  std::vector<Value> out;
  out.reserve(idx.size());
  for (int64_t i : idx) out.push_back((*items)[static_cast<size_t>(i)]);
  return Value::list(std::move(out), tuple);
}

// Jinja's make_attrgetter: "a.b.0" walks attributes/items; digits are list indices.
Value attr_path(Interpreter& in, const Value& v, const std::string& path) {
  Value cur = v;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    if (digits) cur = in.get_item(cur, Value::integer(std::stoll(part)));
    else cur = in.get_item(cur, Value::string(part));
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return cur;
}

Value lower_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(map_cps(v.str(), cp_lower));
  return v;
}

std::vector<Value> sort_values(Interpreter& in, std::vector<Value> items, bool reverse, bool case_sensitive,
                               const Value& attribute) {
  std::vector<std::string> attrs;
  if (!attribute.is_none() && !attribute.is_undefined()) {
    std::string a = attribute.to_str();
    size_t pos = 0;
    while (true) {
      size_t c = a.find(',', pos);
      attrs.push_back(a.substr(pos, c == std::string::npos ? std::string::npos : c - pos));
      if (c == std::string::npos) break;
      pos = c + 1;
    }
  }
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t i = 0; i < items.size(); ++i) {
    Value k;
    if (attrs.empty()) k = lower_key(items[i], case_sensitive);
    else if (attrs.size() == 1) k = lower_key(attr_path(in, items[i], attrs[0]), case_sensitive);
    else {
      std::vector<Value> parts;
      for (const auto& a : attrs) parts.push_back(lower_key(attr_path(in, items[i], a), case_sensitive));
      k = Value::list(std::move(parts), true);
    }
    keyed.emplace_back(std::move(k), i);
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? values_less(y.first, x.first) : values_less(x.first, y.first);
  });
  std::vector<Value> out;
  for (auto& k : keyed) out.push_back(items[k.second]);
  return out;
}

Value json_filter(const Value& v, const CallArgs& a) {
  Params p(a, {"ensure_ascii", "indent", "separators", "sort_keys"}, "tojson");
  JsonDumpOptions opt;
  opt.ensure_ascii = p.flag(0, false);
  opt.sort_keys = p.flag(3, false);
  if (p.has(1) && !p.get(1).is_none()) {
    opt.has_indent = true;
    opt.item_sep = ",";
    if (p.get(1).is_string()) opt.indent = p.get(1).str();
    else {
      int64_t n = need_int(p.get(1), "tojson indent");
      if (n > 64) throw TemplateError("tojson indent too large");
      opt.indent = std::string(n > 0 ? static_cast<size_t>(n) : 0, ' ');
    }
  }
  if (p.has(2) && !p.get(2).is_none()) {
    std::vector<Value> seps = iterate(p.get(2));
    if (seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string())
      throw TemplateError("tojson separators must be a pair of strings");
    opt.item_sep = seps[0].str();
    opt.key_sep = seps[1].str();
  }
  std::string out;
  json_dump(v, opt, out);
  return Value::string(std::move(out));
}

double to_double_or(const Value& v, double dflt, bool* ok) {
  *ok = true;
  if (v.is_number()) return v.as_double();
  if (v.is_string()) {
    std::string s = py_strip(v.str(), Value::none(), true, true);
    std::string t;
    for (char c : s) if (c != '_') t.push_back(c);
    if (!t.empty()) {
      char* end = nullptr;
      double d = std::strtod(t.c_str(), &end);
      bool hex = t.find_first_of("xX") != std::string::npos;
      if (end && *end == 0 && !hex) return d;
    }
  }
  if (v.is_undefined()) fail_undefined(v);
  *ok = false;
  return dflt;
}

Value int_filter(const Value& v, const CallArgs& a) {
  Params p(a, {"default", "base"}, "int");
  Value dflt = p.has(0) ? p.get(0) : Value::integer(0);
  if (v.is_int()) return v;
  if (v.is_bool()) return Value::integer(v.as_int());
  if (v.is_float()) {
    double d = v.as_double();
    if (std::isnan(d) || std::isinf(d) || std::fabs(d) > 9.2e18) return dflt;
    return Value::integer(static_cast<int64_t>(d));
  }
  if (v.is_string()) {
    int64_t base = p.has(1) ? need_int(p.get(1), "int base") : 10;
    std::string s = py_strip(v.str(), Value::none(), true, true);
    std::string t;
    for (char c : s) if (c != '_') t.push_back(c);
    if (!t.empty() && (base == 10 || base == 16 || base == 8 || base == 2)) {
      errno = 0;
      char* end = nullptr;
      long long r = std::strtoll(t.c_str(), &end, static_cast<int>(base));
      if (end && *end == 0 && errno == 0) return Value::integer(r);
    }
    bool ok;
    double d = to_double_or(v, 0, &ok);
    if (ok && !std::isnan(d) && !std::isinf(d) && std::fabs(d) < 9.2e18) return Value::integer(static_cast<int64_t>(d));
    return dflt;
  }
  if (v.is_undefined()) fail_undefined(v);
  return dflt;
}

Value round_value(const Value& v, int64_t precision, const std::string& method) {
  if (v.is_undefined()) fail_undefined(v);
  if (!v.is_number()) throw TemplateError(std::string("round expects a number, got '") + v.type_name() + "'");
  if (method != "common" && method != "ceil" && method != "floor")
    throw TemplateError("method must be 'common', 'ceil' or 'floor'");
  if (method == "common") {
    if (!v.is_float()) return Value::integer(v.as_int());  // round(int, n) stays int
    double d = v.as_double();
    if (std::isnan(d) || std::isinf(d)) return v;
    if (precision >= 0 && precision <= 300) {
      // printf rounds the exact binary value half-to-even, like Python's correctly rounded round().
      std::vector<char> buf(420);
      std::snprintf(buf.data(), buf.size(), "%.*f", static_cast<int>(precision), d);
      return Value::floating(std::strtod(buf.data(), nullptr));
    }
    double m = std::pow(10.0, static_cast<double>(-precision));
    return Value::floating(std::nearbyint(d / m) * m);
  }
  double m = std::pow(10.0, static_cast<double>(precision));
  double d = v.as_double() * m;
  d = method == "ceil" ? std::ceil(d) : std::floor(d);
  return Value::floating(d / m);
}

std::string indent_filter(const std::string& s0, const Value& width, bool first, bool blank) {
  std::string ind;
  if (width.is_string()) ind = width.str();
  else {
    int64_t w = need_int(width, "indent width");
    if (w > 4096) throw TemplateError("indent width too large");
    ind = std::string(w > 0 ? static_cast<size_t>(w) : 0, ' ');
  }
  std::string s = s0 + "\n";
  auto lines = py_splitlines(s, false);
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + ind;
      rv += lines[i];
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    if (lines.size() > 1) {
      rv += "\n";
      for (size_t i = 1; i < lines.size(); ++i) {
        if (i > 1) rv += "\n";
        rv += lines[i].empty() ? lines[i] : ind + lines[i];
      }
    }
  }
  if (first) rv = ind + rv;
  return rv;
}

Value select_impl(Interpreter& in, const Value& seq, const CallArgs& a, bool attr_mode, bool keep_if) {
  std::vector<Value> items = iterate(seq);
  size_t k = 0;
  std::string attr;
  if (attr_mode) {
    if (a.pos.empty()) throw TemplateError("selectattr/rejectattr need an attribute name");
    attr = a.pos[0].to_str();
    k = 1;
  }
  std::string test;
  CallArgs targs;
  bool has_test = a.pos.size() > k;
  if (has_test) {
    test = need_str(a.pos[k], "select test name");
    if (!jinja::has_test(test)) throw TemplateError("no test named '" + test + "'");
    for (size_t i = k + 1; i < a.pos.size(); ++i) targs.pos.push_back(a.pos[i]);
    targs.kw = a.kw;
  }
  std::vector<Value> out;
  for (const auto& it : items) {
    Value x = attr_mode ? attr_path(in, it, attr) : it;
    bool r;
    if (has_test) {
      CallArgs c = targs;
      r = in.apply_test(test, x, c);
    } else {
      r = x.truthy();
    }
    if (r == keep_if) out.push_back(it);
  }
  return Value::list(std::move(out));
}

Value map_impl(Interpreter& in, const Value& seq, const CallArgs& a) {
  std::vector<Value> items = iterate(seq);
  std::vector<Value> out;
  const Value* attribute = nullptr;
  const Value* dflt = nullptr;
  for (const auto& kv : a.kw) {
    if (kv.first == "attribute") attribute = &kv.second;
    else if (kv.first == "default") dflt = &kv.second;
  }
  if (attribute) {
    for (const auto& it : items) {
      Value v = attr_path(in, it, attribute->to_str());
      if (v.is_undefined() && dflt) v = *dflt;
      out.push_back(v);
    }
    return Value::list(std::move(out));
  }
  if (a.pos.empty()) throw TemplateError("map requires a filter argument");
  std::string f = need_str(a.pos[0], "map filter name");
  if (!has_filter(f)) throw TemplateError("no filter named '" + f + "'");
  CallArgs fargs;
  for (size_t i = 1; i < a.pos.size(); ++i) fargs.pos.push_back(a.pos[i]);
  fargs.kw = a.kw;
  for (const auto& it : items) {
    CallArgs c = fargs;
    out.push_back(in.apply_filter(f, it, c));
  }
  return Value::list(std::move(out));
}

Value min_max(Interpreter& in, const Value& seq, const CallArgs& a, bool want_max) {
  Params p(a, {"case_sensitive", "attribute"}, want_max ? "max" : "min");
  std::vector<Value> items = iterate(seq);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  bool cs = p.flag(0, false);
  auto key = [&](const Value& v) {
    return lower_key(p.has(1) && !p.get(1).is_none() ? attr_path(in, v, p.get(1).to_str()) : v, cs);
  };
  size_t best = 0;
  Value bk = key(items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = key(items[i]);
    if (want_max ? values_less(bk, k) : values_less(k, bk)) { best = i; bk = k; }
  }
  return items[best];
}

using FilterFn = Value (*)(Interpreter&, const Value&, CallArgs&);

const std::unordered_map<std::string, FilterFn>& filter_table() {
  static const std::unordered_map<std::string, FilterFn> t = {
      {"abs", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "abs");
         if (v.is_undefined()) fail_undefined(v);
         if (v.is_float()) return Value::floating(std::fabs(v.as_double()));
         if (v.is_int() || v.is_bool()) {
           if (v.as_int() == INT64_MIN) throw TemplateError("integer overflow");
           return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
         }
         throw TemplateError(std::string("bad operand type for abs(): '") + v.type_name() + "'");
       }},
      {"attr", [](Interpreter& in, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"name"}, "attr");
         const std::string& name = need_str(p.get(0), "attr");
         // Unlike `.name`, the attr filter never falls back to item lookup.
         if (v.is_dict() && !is_method_name(v, name))
           return Value::undefined("'" + std::string(v.type_name()) + " object' has no attribute '" + name + "'");
         return in.get_attr(v, name);
       }},
      {"batch", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"linecount", "fill_with"}, "batch");
         int64_t n = need_int(p.get(0), "batch linecount");
         if (n <= 0) throw TemplateError("batch linecount must be positive");
         std::vector<Value> items = iterate(v), out, cur;
         for (auto& it : items) {
           cur.push_back(it);
           if (static_cast<int64_t>(cur.size()) == n) { out.push_back(Value::list(std::move(cur))); cur.clear(); }
         }
         if (!cur.empty()) {
           if (p.has(1) && !p.get(1).is_none())
             while (static_cast<int64_t>(cur.size()) < n) cur.push_back(p.get(1));
           out.push_back(Value::list(std::move(cur)));
         }
         return Value::list(std::move(out));
       }},
      {"capitalize", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "capitalize");
         return Value::string(py_capitalize(text(v)));
       }},
      {"center", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"width"}, "center");
         return Value::string(py_center(text(v), p.has(0) ? need_int(p.get(0), "center width") : 80, ' '));
       }},
      {"default", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"default_value", "boolean"}, "default");
         bool boolean = p.flag(1, false);
         if (v.is_undefined() || (boolean && !v.truthy())) return p.has(0) ? p.get(0) : Value::string("");
         return v;
       }},
      {"dictsort", [](Interpreter& in, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"case_sensitive", "by", "reverse"}, "dictsort");
         if (!v.is_dict()) throw TemplateError("dictsort expects a mapping");
         std::string by = p.has(1) ? need_str(p.get(1), "dictsort by") : "key";
         if (by != "key" && by != "value") throw TemplateError("You can only sort by either 'key' or 'value'");
         std::vector<Value> pairs;
         for (const auto& kv : v.dict_data().items) pairs.push_back(Value::list({kv.first, kv.second}, true));
         return Value::list(sort_values(in, std::move(pairs), p.flag(2, false), p.flag(0, false),
                                        Value::string(by == "key" ? "0" : "1")));
       }},
      {"escape", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "escape");
         return Value::string(html_escape(text(v)));
       }},
      {"first", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "first");
         std::vector<Value> items = iterate(v);
         if (items.empty()) return Value::undefined("No first item, sequence was empty.");
         return items.front();
       }},
      {"float", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"default"}, "float");
         bool ok;
         double d = to_double_or(v, 0.0, &ok);
         if (!ok) return p.has(0) ? p.get(0) : Value::floating(0.0);
         return Value::floating(d);
       }},
      {"format", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         if (!a.kw.empty() && !a.pos.empty()) throw TemplateError("can't handle positional and keyword arguments at the same time");
         Value args;
         if (!a.kw.empty()) {
           args = Value::dict();
           for (auto& kv : a.kw) args.dict_data().set(Value::string(kv.first), kv.second);
         } else {
           args = Value::list(a.pos, true);
         }
         return Value::string(percent_format(text(v), args));
       }},
      {"indent", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"width", "first", "blank"}, "indent");
         return Value::string(indent_filter(text(v), p.has(0) ? p.get(0) : Value::integer(4), p.flag(1, false), p.flag(2, false)));
       }},
      {"int", [](Interpreter&, const Value& v, CallArgs& a) -> Value { return int_filter(v, a); }},
      {"items", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "items");
         if (v.is_undefined()) return Value::list();
         if (!v.is_dict()) throw TemplateError("Can only get item pairs from a mapping.");
         std::vector<Value> out;
         for (const auto& kv : v.dict_data().items) out.push_back(Value::list({kv.first, kv.second}, true));
         return Value::list(std::move(out));
       }},
      {"join", [](Interpreter& in, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"d", "attribute"}, "join");
         std::string sep = p.has(0) ? text(p.get(0)) : "";
         std::string out;
         bool first = true;
         for (const auto& it : iterate(v)) {
           if (!first) out += sep;
           first = false;
           out += text(p.has(1) && !p.get(1).is_none() ? attr_path(in, it, p.get(1).to_str()) : it);
           in.check_size(out.size());
         }
         in.charge(out.size());
         return Value::string(std::move(out));
       }},
      {"last", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "last");
         std::vector<Value> items = iterate(v);
         if (items.empty()) return Value::undefined("No last item, sequence was empty.");
         return items.back();
       }},
      {"length", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "length");
         switch (v.kind()) {
           case Value::Kind::kUndefined: return Value::integer(0);
           case Value::Kind::kString: return Value::integer(static_cast<int64_t>(utf8_length(v.str())));
           case Value::Kind::kList: return Value::integer(static_cast<int64_t>(v.items().size()));
           case Value::Kind::kDict: return Value::integer(static_cast<int64_t>(v.dict_data().items.size()));
           default: throw TemplateError(std::string("object of type '") + v.type_name() + "' has no len()");
         }
       }},
      {"list", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "list");
         return Value::list(iterate(v));
       }},
      {"lower", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "lower");
         return Value::string(map_cps(text(v), cp_lower));
       }},
      {"map", [](Interpreter& in, const Value& v, CallArgs& a) -> Value { return map_impl(in, v, a); }},
      {"max", [](Interpreter& in, const Value& v, CallArgs& a) -> Value { return min_max(in, v, a, true); }},
      {"min", [](Interpreter& in, const Value& v, CallArgs& a) -> Value { return min_max(in, v, a, false); }},
      {"reject", [](Interpreter& in, const Value& v, CallArgs& a) -> Value { return select_impl(in, v, a, false, false); }},
      {"rejectattr", [](Interpreter& in, const Value& v, CallArgs& a) -> Value { return select_impl(in, v, a, true, false); }},
      {"replace", [](Interpreter& in, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"old", "new", "count"}, "replace");
         int64_t count = p.has(2) && !p.get(2).is_none() ? need_int(p.get(2), "replace count") : -1;
         return Value::string(py_replace(in, text(v), text(p.get(0)), text(p.get(1)), count));
       }},
      {"reverse", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "reverse");
         if (v.is_string()) {
           auto cps = utf8_decode(v.str());
           std::reverse(cps.begin(), cps.end());
           return Value::string(utf8_encode(cps, 0, cps.size()));
         }
         std::vector<Value> items = iterate(v);
         std::reverse(items.begin(), items.end());
         return Value::list(std::move(items));
       }},
      {"round", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"precision", "method"}, "round");
         Value r = round_value(v, p.has(0) ? need_int(p.get(0), "round precision") : 0,
                               p.has(1) ? need_str(p.get(1), "round method") : "common");
         // Jinja calls round(value, precision): a float comes back even for precision 0.
         return r;
       }},
      {"safe", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "safe");
         return v.is_string() ? v : Value::string(text(v));
       }},
      {"select", [](Interpreter& in, const Value& v, CallArgs& a) -> Value { return select_impl(in, v, a, false, true); }},
      {"selectattr", [](Interpreter& in, const Value& v, CallArgs& a) -> Value { return select_impl(in, v, a, true, true); }},
      {"sort", [](Interpreter& in, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"reverse", "case_sensitive", "attribute"}, "sort");
         return Value::list(sort_values(in, iterate(v), p.flag(0, false), p.flag(1, false),
                                        p.has(2) ? p.get(2) : Value::none()));
       }},
      {"string", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "string");
         return v.is_string() ? v : Value::string(text(v));
       }},
      {"sum", [](Interpreter& in, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"attribute", "start"}, "sum");
         Value acc = p.has(1) ? p.get(1) : Value::integer(0);
         for (const auto& it : iterate(v))
           acc = binary_op(in, "+", acc, p.has(0) && !p.get(0).is_none() ? attr_path(in, it, p.get(0).to_str()) : it);
         return acc;
       }},
      {"title", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "title");
         return Value::string(jinja_title(text(v)));
       }},
      {"tojson", [](Interpreter&, const Value& v, CallArgs& a) -> Value { return json_filter(v, a); }},
      {"trim", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"chars"}, "trim");
         return Value::string(py_strip(text(v), p.has(0) ? p.get(0) : Value::none(), true, true));
       }},
      {"unique", [](Interpreter& in, const Value& v, CallArgs& a) -> Value {
         Params p(a, {"case_sensitive", "attribute"}, "unique");
         bool cs = p.flag(0, false);
         std::vector<Value> out, seen;
         for (const auto& it : iterate(v)) {
           Value k = lower_key(p.has(1) && !p.get(1).is_none() ? attr_path(in, it, p.get(1).to_str()) : it, cs);
           bool dup = false;
           for (const auto& s : seen) if (values_equal(s, k)) { dup = true; break; }
           if (dup) continue;
           seen.push_back(k);
           out.push_back(it);
         }
         return Value::list(std::move(out));
       }},
      {"upper", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "upper");
         return Value::string(map_cps(text(v), cp_upper));
       }},
      {"wordcount", [](Interpreter&, const Value& v, CallArgs& a) -> Value {
         no_args(a, "wordcount");
         int64_t n = 0;
         bool in_word = false;
         for (uint32_t c : utf8_decode(text(v))) {
           bool w = cp_word(c);
           if (w && !in_word) ++n;
           in_word = w;
         }
         return Value::integer(n);
       }},
  };
  return t;
}

const std::unordered_map<std::string, std::string>& filter_aliases() {
  static const std::unordered_map<std::string, std::string> t = {
      {"d", "default"}, {"e", "escape"}, {"count", "length"}, {"forceescape", "escape"}};
  return t;
}

const std::string& resolve_filter(const std::string& name) {
  auto it = filter_aliases().find(name);
  return it == filter_aliases().end() ? name : it->second;
}

}  // namespace

bool has_filter(std::string_view name) {
  std::string n(name);
  return filter_table().count(resolve_filter(n)) > 0;
}

Value builtin_filter(Interpreter& in, const std::string& name, const Value& subject, CallArgs& args) {
  auto it = filter_table().find(resolve_filter(name));
  if (it == filter_table().end()) throw TemplateError("no filter named '" + name + "'");
  Value r = it->second(in, subject, args);
  if (r.is_string()) in.check_size(r.str().size());
  return r;
}

// ---------------------------------------------------------------- tests

namespace {
using TestFn = bool (*)(Interpreter&, const Value&, CallArgs&);

const Value& one_arg(const CallArgs& a, const char* name) {
  if (a.pos.size() != 1 || !a.kw.empty()) throw TemplateError(std::string("test '") + name + "' takes one argument");
  return a.pos[0];
}

int64_t int_for_parity(const Value& v) {
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_int() || v.is_bool()) return v.as_int();
  if (v.is_float()) return static_cast<int64_t>(std::fmod(v.as_double(), 2.0));
  throw TemplateError(std::string("unsupported operand type for %: '") + v.type_name() + "' and 'int'");
}

bool all_cased(const std::string& s, bool want_lower) {
  bool any = false;
  for (uint32_t c : utf8_decode(s)) {
    if (want_lower ? cp_is_upper(c) : cp_is_lower(c)) return false;
    if (want_lower ? cp_is_lower(c) : cp_is_upper(c)) any = true;
  }
  return any;
}

const std::unordered_map<std::string, TestFn>& test_table() {
  static const std::unordered_map<std::string, TestFn> t = {
      {"boolean", [](Interpreter&, const Value& v, CallArgs&) { return v.is_bool(); }},
      {"callable", [](Interpreter&, const Value& v, CallArgs&) { return v.is_callable(); }},
      {"defined", [](Interpreter&, const Value& v, CallArgs&) { return !v.is_undefined(); }},
      {"undefined", [](Interpreter&, const Value& v, CallArgs&) { return v.is_undefined(); }},
      {"none", [](Interpreter&, const Value& v, CallArgs&) { return v.is_none(); }},
      {"divisibleby", [](Interpreter&, const Value& v, CallArgs& a) {
         const Value& n = one_arg(a, "divisibleby");
         if (v.is_undefined()) fail_undefined(v);
         if (!v.is_number() || !n.is_number()) throw TemplateError("divisibleby expects numbers");
         if (v.is_float() || n.is_float()) {
           if (n.as_double() == 0) throw TemplateError("float modulo");
           return std::fmod(v.as_double(), n.as_double()) == 0;
         }
         if (n.as_int() == 0) throw TemplateError("integer division or modulo by zero");
         if (n.as_int() == -1) return true;
         return v.as_int() % n.as_int() == 0;
       }},
      {"eq", [](Interpreter&, const Value& v, CallArgs& a) { return values_equal(v, one_arg(a, "eq")); }},
      {"ne", [](Interpreter&, const Value& v, CallArgs& a) { return !values_equal(v, one_arg(a, "ne")); }},
      {"lt", [](Interpreter&, const Value& v, CallArgs& a) { return values_less(v, one_arg(a, "lt")); }},
      {"gt", [](Interpreter&, const Value& v, CallArgs& a) { return values_less(one_arg(a, "gt"), v); }},
      {"le", [](Interpreter&, const Value& v, CallArgs& a) { return !values_less(one_arg(a, "le"), v); }},
      {"ge", [](Interpreter&, const Value& v, CallArgs& a) { return !values_less(v, one_arg(a, "ge")); }},
      {"even", [](Interpreter&, const Value& v, CallArgs&) { return int_for_parity(v) % 2 == 0; }},
      {"odd", [](Interpreter&, const Value& v, CallArgs&) { return int_for_parity(v) % 2 != 0; }},
      {"escaped", [](Interpreter&, const Value&, CallArgs&) { return false; }},
      {"false", [](Interpreter&, const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); }},
      {"true", [](Interpreter&, const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); }},
      {"filter", [](Interpreter&, const Value& v, CallArgs&) { return v.is_string() && has_filter(v.str()); }},
      {"test", [](Interpreter&, const Value& v, CallArgs&) { return v.is_string() && has_test(v.str()); }},
      {"float", [](Interpreter&, const Value& v, CallArgs&) { return v.is_float(); }},
      {"integer", [](Interpreter&, const Value& v, CallArgs&) { return v.is_int(); }},
      {"number", [](Interpreter&, const Value& v, CallArgs&) { return v.is_number(); }},
      {"string", [](Interpreter&, const Value& v, CallArgs&) { return v.is_string(); }},
      {"mapping", [](Interpreter&, const Value& v, CallArgs&) { return v.is_dict(); }},
      // Jinja2's Undefined has __iter__, __len__ and __getitem__, so it counts as iterable and sequence.
      {"iterable", [](Interpreter&, const Value& v, CallArgs&) {
         return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
       }},
      {"sequence", [](Interpreter&, const Value& v, CallArgs&) {
         return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
       }},
      {"in", [](Interpreter&, const Value& v, CallArgs& a) { return contains(one_arg(a, "in"), v); }},
      {"lower", [](Interpreter&, const Value& v, CallArgs&) { return all_cased(v.to_str(), true); }},
      {"upper", [](Interpreter&, const Value& v, CallArgs&) { return all_cased(v.to_str(), false); }},
      {"sameas", [](Interpreter&, const Value& v, CallArgs& a) {
         const Value& o = one_arg(a, "sameas");
         if (v.kind() != o.kind()) return false;
         switch (v.kind()) {
           case Value::Kind::kUndefined: return false;
           case Value::Kind::kNone: return true;
           case Value::Kind::kBool: return v.as_bool() == o.as_bool();
           case Value::Kind::kList: return &v.items() == &o.items();
           case Value::Kind::kDict: case Value::Kind::kNamespace: return &v.dict_data() == &o.dict_data();
           case Value::Kind::kCallable: return &v.fn() == &o.fn();
           default: return values_equal(v, o);  // small ints/strings are interned in CPython; close enough
         }
       }},
  };
  return t;
}

const std::unordered_map<std::string, std::string>& test_aliases() {
  static const std::unordered_map<std::string, std::string> t = {
      {"equalto", "eq"}, {"==", "eq"}, {"!=", "ne"}, {"lessthan", "lt"}, {"<", "lt"}, {"greaterthan", "gt"},
      {">", "gt"}, {"<=", "le"}, {">=", "ge"}};
  return t;
}

const std::string& resolve_test(const std::string& name) {
  auto it = test_aliases().find(name);
  return it == test_aliases().end() ? name : it->second;
}
}  // namespace

bool has_test(std::string_view name) {
  std::string n(name);
  return test_table().count(resolve_test(n)) > 0;
}

bool builtin_test(Interpreter& in, const std::string& name, const Value& v, CallArgs& args) {
  auto it = test_table().find(resolve_test(name));
  if (it == test_table().end()) throw TemplateError("no test named '" + name + "'");
  return it->second(in, v, args);
}

// ---------------------------------------------------------------- methods

namespace {
const std::set<std::string> kStrMethods = {
    "capitalize", "center", "count", "endswith", "find", "format", "index", "isalnum", "isalpha", "isdigit",
    "isnumeric", "isdecimal", "islower", "isspace", "isupper", "join", "ljust", "lower", "lstrip", "replace",
    "rfind", "rjust", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "title", "upper",
    "zfill", "removeprefix", "removesuffix", "swapcase", "casefold"};
const std::set<std::string> kDictMethods = {"items", "keys", "values", "get", "copy"};
const std::set<std::string> kDictUnsafe = {"pop", "popitem", "setdefault", "update", "clear"};
const std::set<std::string> kListMethods = {"index", "count", "copy"};
const std::set<std::string> kListUnsafe = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"};

[[noreturn]] void unsafe(const Value& obj, const std::string& name) {
  throw TemplateError("access to attribute '" + name + "' of '" + obj.type_name() +
                      "' object is unsafe (the sandbox forbids modifying lists and dicts)");
}

bool prefix_test(const std::string& s, const Value& arg, bool ends) {
  auto check = [&](const Value& p) {
    const std::string& x = need_str(p, ends ? "endswith" : "startswith");
    if (x.size() > s.size()) return false;
    return ends ? s.compare(s.size() - x.size(), x.size(), x) == 0 : s.compare(0, x.size(), x) == 0;
  };
  if (arg.is_list() && arg.list_data().is_tuple) {
    for (const auto& p : arg.items()) if (check(p)) return true;
    return false;
  }
  return check(arg);
}

Value str_method(Interpreter& in, const std::string& s, const std::string& name, CallArgs& a) {
  if (name == "startswith" || name == "endswith") {
    Params p(a, {"prefix", "start", "end"}, name);
    if (p.has(1) || p.has(2)) {
      auto cps = utf8_decode(s);
      Value sl = slice(Value::string(s), p.has(1) ? p.get(1) : Value::none(), p.has(2) ? p.get(2) : Value::none(), Value::none());
      return Value::boolean(prefix_test(sl.str(), p.get(0), name == "endswith"));
    }
    return Value::boolean(prefix_test(s, p.get(0), name == "endswith"));
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    Params p(a, {"chars"}, name);
    return Value::string(py_strip(s, p.has(0) ? p.get(0) : Value::none(), name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    Params p(a, {"sep", "maxsplit"}, name);
    int64_t maxsplit = p.has(1) ? need_int(p.get(1), "maxsplit") : -1;
    return Value::list(py_split(s, p.has(0) ? p.get(0) : Value::none(), maxsplit, name == "rsplit"));
  }
  if (name == "upper") { no_args(a, name); return Value::string(map_cps(s, cp_upper)); }
  if (name == "lower" || name == "casefold") { no_args(a, name); return Value::string(map_cps(s, cp_lower)); }
  if (name == "swapcase") {
    no_args(a, name);
    return Value::string(map_cps(s, [](uint32_t c) { return cp_is_upper(c) ? cp_lower(c) : cp_upper(c); }));
  }
  if (name == "title") { no_args(a, name); return Value::string(py_title(s)); }
  if (name == "capitalize") { no_args(a, name); return Value::string(py_capitalize(s)); }
  if (name == "replace") {
    Params p(a, {"old", "new", "count"}, name);
    int64_t count = p.has(2) ? need_int(p.get(2), "replace count") : -1;
    return Value::string(py_replace(in, s, need_str(p.get(0), "replace"), need_str(p.get(1), "replace"), count));
  }
  if (name == "find" || name == "rfind" || name == "index") {
    Params p(a, {"sub", "start", "end"}, name);
    const std::string& sub = need_str(p.get(0), name);
    std::string hay = s;
    int64_t offset = 0;
    if (p.has(1) || p.has(2)) {
      // Work on the code-point slice, then shift the result back.
      Value start = p.has(1) ? p.get(1) : Value::none();
      hay = slice(Value::string(s), start, p.has(2) ? p.get(2) : Value::none(), Value::none()).str();
      if (!start.is_none()) {
        int64_t st = need_int(start, name);
        int64_t n = static_cast<int64_t>(utf8_length(s));
        if (st < 0) st = std::max<int64_t>(0, st + n);
        offset = std::min(st, n);
      }
    }
    size_t f = name == "rfind" ? hay.rfind(sub) : hay.find(sub);
    if (f == std::string::npos) {
      if (name == "index") throw TemplateError("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(offset + cp_index_of_byte(hay, f));
  }
  if (name == "count") {
    Params p(a, {"sub"}, name);
    return Value::integer(py_count(s, need_str(p.get(0), "count")));
  }
  if (name == "join") {
    Params p(a, {"iterable"}, name);
    std::string out;
    bool first = true;
    for (const auto& it : iterate(p.get(0))) {
      if (!first) out += s;
      first = false;
      out += need_str(it, "str.join");
      in.check_size(out.size());
    }
    return Value::string(std::move(out));
  }
  if (name == "format") return Value::string(brace_format(in, s, a));
  if (name == "center" || name == "ljust" || name == "rjust") {
    Params p(a, {"width", "fillchar"}, name);
    int64_t w = need_int(p.get(0), name);
    uint32_t fill = ' ';
    if (p.has(1)) {
      auto f = utf8_decode(need_str(p.get(1), name));
      if (f.size() != 1) throw TemplateError("The fill character must be exactly one character long");
      fill = f[0];
    }
    if (name == "center") return Value::string(py_center(s, w, fill));
    int64_t len = static_cast<int64_t>(utf8_length(s));
    if (w > (1 << 24)) throw TemplateError(name + " width too large");
    std::string pad;
    for (int64_t i = len; i < w; ++i) utf8_append(pad, fill);
    return Value::string(name == "ljust" ? s + pad : pad + s);
  }
  if (name == "zfill") {
    Params p(a, {"width"}, name);
    int64_t w = need_int(p.get(0), name);
    if (w > (1 << 24)) throw TemplateError("zfill width too large");
    int64_t len = static_cast<int64_t>(utf8_length(s));
    if (w <= len) return Value::string(s);
    std::string zeros(static_cast<size_t>(w - len), '0');
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) return Value::string(s.substr(0, 1) + zeros + s.substr(1));
    return Value::string(zeros + s);
  }
  if (name == "removeprefix" || name == "removesuffix") {
    Params p(a, {"affix"}, name);
    const std::string& x = need_str(p.get(0), name);
    if (name == "removeprefix") return Value::string(s.compare(0, x.size(), x) == 0 ? s.substr(x.size()) : s);
    if (x.size() <= s.size() && s.compare(s.size() - x.size(), x.size(), x) == 0)
      return Value::string(s.substr(0, s.size() - x.size()));
    return Value::string(s);
  }
  if (name == "splitlines") {
    Params p(a, {"keepends"}, name);
    std::vector<Value> out;
    for (auto& l : py_splitlines(s, p.flag(0, false))) out.push_back(Value::string(std::move(l)));
    return Value::list(std::move(out));
  }
  no_args(a, name);
  auto cps = utf8_decode(s);
  auto all = [&](bool (*f)(uint32_t)) {
    if (cps.empty()) return false;
    for (uint32_t c : cps) if (!f(c)) return false;
    return true;
  };
  if (name == "isalnum") return Value::boolean(all([](uint32_t c) { return cp_alpha(c) || cp_digit(c); }));
  if (name == "isalpha") return Value::boolean(all(cp_alpha));
  if (name == "isdigit" || name == "isnumeric" || name == "isdecimal") return Value::boolean(all(cp_digit));
  if (name == "isspace") return Value::boolean(all(is_py_space));
  if (name == "islower") return Value::boolean(all_cased(s, true));
  if (name == "isupper") return Value::boolean(all_cased(s, false));
  throw TemplateError("str." + name + " is not supported");
}
}  // namespace

bool is_method_name(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kString: return kStrMethods.count(name) > 0;
    case Value::Kind::kDict: {
      // Hot path (every message.field access): plain compares beat a tree lookup.
      static const char* const kAll[] = {"items", "keys", "values", "get", "copy",
                                         "pop", "popitem", "setdefault", "update", "clear"};
      for (const char* m : kAll)
        if (name == m) return true;
      return false;
    }
    case Value::Kind::kList: return kListMethods.count(name) > 0 || kListUnsafe.count(name) > 0;
    default: return false;
  }
}

bool builtin_method(Interpreter& in, const Value& obj, const std::string& name, CallArgs& a, Value* result) {
  switch (obj.kind()) {
    case Value::Kind::kString:
      if (!kStrMethods.count(name)) return false;
      *result = str_method(in, obj.str(), name, a);
      if (result->is_string()) in.check_size(result->str().size());
      return true;
    case Value::Kind::kDict: {
      if (kDictUnsafe.count(name)) unsafe(obj, name);
      if (!kDictMethods.count(name)) return false;
      const auto& d = obj.dict_data();
      if (name == "get") {
        Params p(a, {"key", "default"}, "get");
        const Value* v = d.find(p.get(0));
        *result = v ? *v : (p.has(1) ? p.get(1) : Value::none());
        return true;
      }
      no_args(a, name);
      if (name == "copy") {
        Value c = Value::dict();
        c.dict_data().items = d.items;
        *result = c;
        return true;
      }
      std::vector<Value> out;
      for (const auto& kv : d.items) {
        if (name == "items") out.push_back(Value::list({kv.first, kv.second}, true));
        else out.push_back(name == "keys" ? kv.first : kv.second);
      }
      *result = Value::list(std::move(out));
      return true;
    }
    case Value::Kind::kList: {
      if (kListUnsafe.count(name)) unsafe(obj, name);
      if (!kListMethods.count(name)) return false;
      if (name == "copy") {
        no_args(a, name);
        *result = Value::list(obj.items(), obj.list_data().is_tuple);
        return true;
      }
      Params p(a, {"value"}, name);
      int64_t n = 0;
      for (size_t i = 0; i < obj.items().size(); ++i) {
        if (!values_equal(obj.items()[i], p.get(0))) continue;
        if (name == "index") {
          *result = Value::integer(static_cast<int64_t>(i));
          return true;
        }
        ++n;
      }
      if (name == "index") throw TemplateError(p.get(0).repr() + " is not in list");
      *result = Value::integer(n);
      return true;
    }
    default: return false;
  }
}

// ---------------------------------------------------------------- globals

Value builtin_global(const std::string& name) {
  if (name == "range") {
    return Value::callable("range", [](Interpreter&, CallArgs& a) {
      if (!a.kw.empty()) throw TemplateError("range() takes no keyword arguments");
      if (a.pos.empty() || a.pos.size() > 3) throw TemplateError("range expected 1 to 3 arguments");
      int64_t start = 0, stop, step = 1;
      if (a.pos.size() == 1) stop = need_int(a.pos[0], "range");
      else {
        start = need_int(a.pos[0], "range");
        stop = need_int(a.pos[1], "range");
        if (a.pos.size() == 3) step = need_int(a.pos[2], "range");
      }
      if (step == 0) throw TemplateError("range() arg 3 must not be zero");
      // Same cap as jinja2.sandbox.MAX_RANGE.
      __int128 len = step > 0 ? (stop > start ? (static_cast<__int128>(stop) - start + step - 1) / step : 0)
                              : (start > stop ? (static_cast<__int128>(start) - stop - step - 1) / -step : 0);
      if (len > 100000)
        throw TemplateError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
      std::vector<Value> out;
      for (int64_t i = 0; i < static_cast<int64_t>(len); ++i) out.push_back(Value::integer(start + i * step));
      return Value::list(std::move(out));
    });
  }
  if (name == "namespace" || name == "dict") {
    bool ns = name == "namespace";
    return Value::callable(name, [ns](Interpreter& in, CallArgs& a) {
      Value v = ns ? in.make_namespace() : Value::dict();
      if (a.pos.size() > 1) throw TemplateError(std::string(ns ? "namespace" : "dict") + " expected at most 1 positional argument");
      if (a.pos.size() == 1) {
        const Value& src = a.pos[0];
        if (src.is_dict() || src.is_namespace()) {
          for (const auto& kv : src.dict_data().items) v.dict_data().set(kv.first, kv.second);
        } else {
          for (const auto& it : iterate(src)) {
            std::vector<Value> pair = iterate(it);
            if (pair.size() != 2) throw TemplateError("dictionary update sequence element has wrong length");
            v.dict_data().set(pair[0], pair[1]);
          }
        }
      }
      for (const auto& kv : a.kw) v.dict_data().set(Value::string(kv.first), kv.second);
      return v;
    });
  }
  if (name == "raise_exception") {
    return Value::callable("raise_exception", [](Interpreter&, CallArgs& a) -> Value {
      TemplateError e(a.pos.empty() ? std::string() : a.pos[0].to_str());
      e.from_raise_exception = true;
      throw e;
    });
  }
  if (name == "strftime_now") {
    return Value::callable("strftime_now", [](Interpreter&, CallArgs& a) {
      if (a.pos.size() != 1) throw TemplateError("strftime_now expects one format argument");
      const std::string& fmt = need_str(a.pos[0], "strftime_now");
      std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      std::vector<char> buf(256 + fmt.size() * 8);
      size_t n = fmt.empty() ? 0 : std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
      return Value::string(std::string(buf.data(), n));
    });
  }
  if (name == "joiner") {
    return Value::callable("joiner", [](Interpreter&, CallArgs& a) {
      Params p(a, {"sep"}, "joiner");
      std::string sep = p.has(0) ? p.get(0).to_str() : ", ";
      auto used = std::make_shared<bool>(false);
      return Value::callable("joiner", [sep, used](Interpreter&, CallArgs&) {
        if (!*used) {
          *used = true;
          return Value::string("");
        }
        return Value::string(sep);
      });
    });
  }
  return Value::undefined();
}

// ---------------------------------------------------------------- operators

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return {};
    case Value::Kind::kList: return v.items();
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& kv : v.dict_data().items) keys.push_back(kv.first);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> out;
      for (uint32_t c : utf8_decode(v.str())) {
        std::string s;
        utf8_append(s, c);
        out.push_back(Value::string(std::move(s)));
      }
      return out;
    }
    default: throw TemplateError(std::string("'") + v.type_name() + "' object is not iterable");
  }
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined: return false;
    case Value::Kind::kString:
      if (item.is_undefined()) fail_undefined(item);
      if (!item.is_string())
        throw TemplateError(std::string("'in <string>' requires string as left operand, not ") + item.type_name());
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const auto& x : container.items()) if (values_equal(x, item)) return true;
      return false;
    case Value::Kind::kDict: return container.dict_data().find(item) != nullptr;
    default:
      throw TemplateError(std::string("argument of type '") + container.type_name() + "' is not iterable");
  }
}

Value slice(const Value& v, const Value& start, const Value& stop, const Value& step) {
  if (v.is_undefined()) fail_undefined(v);
  if (v.is_string()) {
    auto cps = utf8_decode(v.str());
    return do_slice(&cps, nullptr, false, static_cast<int64_t>(cps.size()), start, stop, step);
  }
  if (v.is_list())
    return do_slice(nullptr, &v.items(), v.list_data().is_tuple, static_cast<int64_t>(v.items().size()), start, stop, step);
  throw TemplateError(std::string("'") + v.type_name() + "' object is not subscriptable");
}

namespace {
[[noreturn]] void bad_operands(const std::string& op, const Value& a, const Value& b) {
  throw TemplateError("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
}

Value repeat(Interpreter& in, const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    uint64_t total = static_cast<uint64_t>(seq.str().size()) * static_cast<uint64_t>(n);
    if (n > 0 && total / static_cast<uint64_t>(n) != seq.str().size()) throw TemplateError("string too large");
    in.check_size(total);
    in.charge(total);
    std::string out;
    out.reserve(total);
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return Value::string(std::move(out));
  }
  uint64_t total = static_cast<uint64_t>(seq.items().size()) * static_cast<uint64_t>(n);
  if (total > 1000000) throw TemplateError("list too large");
  in.charge(total);
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.items().begin(), seq.items().end());
  return Value::list(std::move(out), seq.list_data().is_tuple);
}
}  // namespace

Value binary_op(Interpreter& in, const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = a.to_str();
    std::string t = b.to_str();
    in.check_size(s.size() + t.size());
    in.charge(s.size() + t.size());
    return Value::string(s + t);
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  bool nums = a.is_number() && b.is_number();
  bool ints = nums && !a.is_float() && !b.is_float();
  if (op == "+") {
    if (ints) {
      int64_t r = 0;
      if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) throw TemplateError("integer overflow");
      return Value::integer(r);
    }
    if (nums) return Value::floating(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      in.check_size(a.str().size() + b.str().size());
      in.charge(a.str().size() + b.str().size());
      return Value::string(a.str() + b.str());
    }
    if (a.is_list() && b.is_list() && a.list_data().is_tuple == b.list_data().is_tuple) {
      in.charge(a.items().size() + b.items().size());
      std::vector<Value> out = a.items();
      out.insert(out.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(out), a.list_data().is_tuple);
    }
    if (a.is_string() || b.is_string())
      throw TemplateError(std::string("can only concatenate str (not \"") + (a.is_string() ? b : a).type_name() + "\") to str");
    bad_operands("+", a, b);
  }
  if (op == "-") {
    if (ints) {
      int64_t r = 0;
      if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) throw TemplateError("integer overflow");
      return Value::integer(r);
    }
    if (nums) return Value::floating(a.as_double() - b.as_double());
    bad_operands("-", a, b);
  }
  if (op == "*") {
    if (ints) {
      int64_t r = 0;
      if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) throw TemplateError("integer overflow");
      return Value::integer(r);
    }
    if (nums) return Value::floating(a.as_double() * b.as_double());
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) return repeat(in, a, b.as_int());
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) return repeat(in, b, a.as_int());
    bad_operands("*", a, b);
  }
  if (op == "/") {
    if (!nums) bad_operands("/", a, b);
    if (b.as_double() == 0) throw TemplateError("division by zero");
    return Value::floating(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) return Value::string(percent_format(a.str(), b));
    if (!nums) bad_operands(op, a, b);
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (y == 0) throw TemplateError("integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) {
        if (op == "%") return Value::integer(0);
        throw TemplateError("integer overflow");
      }
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) { --q; r += y; }
      return Value::integer(op == "//" ? q : r);
    }
    double x = a.as_double(), y = b.as_double();
    if (y == 0) throw TemplateError("float division by zero");
    double r = std::fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    if (op == "%") return Value::floating(r);
    return Value::floating(std::floor((x - r) / y + 0.0));
  }
  if (op == "**") {
    if (!nums) bad_operands("**", a, b);
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), e = b.as_int(), r = 1;
      while (e > 0) {
        if (e & 1) { if (__builtin_mul_overflow(r, base, &r)) throw TemplateError("integer overflow"); }
        e >>= 1;
        if (e > 0 && __builtin_mul_overflow(base, base, &base)) throw TemplateError("integer overflow");
      }
      return Value::integer(r);
    }
    if (a.as_double() == 0 && b.as_double() < 0) throw TemplateError("0.0 cannot be raised to a negative power");
    return Value::floating(std::pow(a.as_double(), b.as_double()));
  }
  throw TemplateError("unknown operator " + op);
}

}  // namespace dflash::tokenizer::jinja
