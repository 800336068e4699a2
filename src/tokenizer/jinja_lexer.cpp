// Lexer: splits template text into data and tag tokens, applying Jinja2's whitespace control as transformers
// configures it (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False).
// GCC 12 reports a false -Wrestrict inside libstdc++ for `"literal" + std::string&&` (GCC bug 105651).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wrestrict"
#endif
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "tokenizer/jinja_ast.h"
#include "tokenizer/jinja_error.h"

namespace dflash::tokenizer::jinja {
namespace {

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Length of a Python-whitespace character ending at s[end-1], or 0.
size_t space_len_before(const std::string& s, size_t end) {
  if (end == 0) return 0;
  unsigned char c = static_cast<unsigned char>(s[end - 1]);
  if (c < 0x80) return (is_ascii_space(static_cast<char>(c)) || (c >= 0x1C && c <= 0x1F)) ? 1 : 0;
  // Multi-byte: find the start of the sequence (at most 4 bytes back).
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  auto cps = utf8_decode(std::string_view(s).substr(start, end - start));
  if (cps.size() == 1 && is_py_space(cps[0])) return end - start;
  return 0;
}

size_t space_len_at(const std::string& s, size_t pos) {
  if (pos >= s.size()) return 0;
  unsigned char c = static_cast<unsigned char>(s[pos]);
  if (c < 0x80) return (is_ascii_space(static_cast<char>(c)) || (c >= 0x1C && c <= 0x1F)) ? 1 : 0;
  size_t n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
  if (pos + n > s.size()) return 0;
  auto cps = utf8_decode(std::string_view(s).substr(pos, n));
  if (cps.size() == 1 && is_py_space(cps[0])) return n;
  return 0;
}

void rstrip_py(std::string& s) {
  size_t end = s.size();
  size_t n;
  while ((n = space_len_before(s, end)) > 0) end -= n;
  s.erase(end);
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) {
    // Jinja2 normalises \r\n and \r to \n and drops one trailing newline.
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_.push_back('\n');
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_.push_back(source[i]);
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    while (pos < src_.size()) {
      size_t tag = find_tag(pos);
      std::string text = src_.substr(pos, tag - pos);
      if (tag == src_.size()) {
        emit_data(std::move(text), pos);
        break;
      }
      char kind = src_[tag + 1];  // '{', '%' or '#'
      char sign = tag + 2 < src_.size() ? src_[tag + 2] : 0;
      if (sign == '-') {
        rstrip_py(text);
      } else if (sign != '+' && (kind == '%' || kind == '#')) {
        lstrip_block(text, pos);
      }
      emit_data(std::move(text), pos);
      size_t body = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        pos = lex_comment(tag, body);
      } else if (kind == '{') {
        pos = lex_tag(tag, body, /*is_block=*/false);
      } else {
        pos = lex_tag(tag, body, /*is_block=*/true);
      }
    }
    Token eof{Token::Type::kEof, "", 0, 0, 0, 0};
    set_pos(eof, src_.size());
    tokens_.push_back(eof);
    return std::move(tokens_);
  }

 private:
  void set_pos(Token& t, size_t off) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), off);
    size_t line = static_cast<size_t>(it - line_starts_.begin());
    t.line = static_cast<int>(line);
    t.col = static_cast<int>(off - line_starts_[line - 1]) + 1;
  }
  [[noreturn]] void fail(const std::string& msg, size_t off) const {
    Token t;
    set_pos(t, off);
    throw TemplateError(msg, t.line, t.col);
  }

  size_t find_tag(size_t pos) const {
    for (size_t i = pos; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return src_.size();
  }

  void emit_data(std::string text, size_t off) {
    if (text.empty()) return;
    Token t{Token::Type::kData, std::move(text), 0, 0, 0, 0};
    set_pos(t, off);
    tokens_.push_back(std::move(t));
  }

  // lstrip_blocks: drop spaces/tabs between the start of the line and a block or comment tag.
  void lstrip_block(std::string& text, size_t text_off) const {
    size_t nl = text.rfind('\n');
    size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
    bool line_starting = text_off == 0 || src_[text_off - 1] == '\n';
    if (l_pos == 0 && !line_starting) return;
    if (l_pos >= text.size()) return;
    size_t p = l_pos;
    while (p < text.size()) {
      size_t n = space_len_at(text, p);
      if (n == 0) return;
      p += n;
    }
    text.resize(l_pos);
  }

  // After a block/comment end: '-' strips all following whitespace, '+' keeps it, else trim_blocks eats one \n.
  size_t after_block_end(size_t pos, char sign) const {
    if (sign == '-') {
      size_t n;
      while ((n = space_len_at(src_, pos)) > 0) pos += n;
    } else if (sign != '+' && pos < src_.size() && src_[pos] == '\n') {
      ++pos;
    }
    return pos;
  }

  size_t lex_comment(size_t tag, size_t body) {
    size_t end = src_.find("#}", body);
    if (end == std::string::npos) fail("missing end of comment tag", tag);
    char sign = (end > body && (src_[end - 1] == '-' || src_[end - 1] == '+')) ? src_[end - 1] : 0;
    return after_block_end(end + 2, sign);
  }

  size_t lex_tag(size_t tag, size_t pos, bool is_block) {
    Token begin{is_block ? Token::Type::kBlockBegin : Token::Type::kVarBegin, "", 0, 0, 0, 0};
    set_pos(begin, tag);
    tokens_.push_back(begin);
    size_t first_tok = tokens_.size();
    int depth = 0;
    while (true) {
      while (pos < src_.size() && is_ascii_space(src_[pos])) ++pos;
      if (pos >= src_.size()) fail(is_block ? "unexpected end of template: missing '%}'" :
                                              "unexpected end of template: missing '}}'", tag);
      if (depth == 0) {
        const char* close = is_block ? "%}" : "}}";
        char sign = 0;
        size_t p = pos;
        if (src_[p] == '-' || (is_block && src_[p] == '+')) { sign = src_[p]; ++p; }
        if (src_.compare(p, 2, close) == 0) {
          Token end{is_block ? Token::Type::kBlockEnd : Token::Type::kVarEnd, "", 0, 0, 0, 0};
          set_pos(end, pos);
          tokens_.push_back(end);
          pos = p + 2;
          if (!is_block) {
            if (sign == '-') pos = after_block_end(pos, '-');
            return pos;
          }
          // {% raw %}: everything up to {% endraw %} is data.
          if (tokens_.size() == first_tok + 2 && tokens_[first_tok].type == Token::Type::kName &&
              tokens_[first_tok].text == "raw") {
            tokens_.resize(first_tok - 1);
            return lex_raw(tag, after_block_end(pos, sign));
          }
          return after_block_end(pos, sign);
        }
      }
      pos = lex_one(pos, depth);
    }
  }

  size_t lex_raw(size_t tag, size_t pos) {
    size_t search = pos;
    while (true) {
      size_t t = src_.find("{%", search);
      if (t == std::string::npos) fail("missing end of raw directive", tag);
      size_t p = t + 2;
      char lsign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) lsign = src_[p++];
      while (p < src_.size() && is_ascii_space(src_[p])) ++p;
      if (src_.compare(p, 6, "endraw") != 0) { search = t + 2; continue; }
      p += 6;
      while (p < src_.size() && is_ascii_space(src_[p])) ++p;
      char rsign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) rsign = src_[p++];
      if (src_.compare(p, 2, "%}") != 0) { search = t + 2; continue; }
      std::string text = src_.substr(pos, t - pos);
      if (lsign == '-') rstrip_py(text);
      else if (lsign != '+') lstrip_block(text, pos);
      emit_data(std::move(text), pos);
      return after_block_end(p + 2, rsign);
    }
  }

  size_t lex_one(size_t pos, int& depth) {
    Token t{Token::Type::kOp, "", 0, 0, 0, 0};
    set_pos(t, pos);
    char c = src_[pos];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t e = pos;
      while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
      t.type = Token::Type::kName;
      t.text = src_.substr(pos, e - pos);
      tokens_.push_back(std::move(t));
      return e;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return lex_number(pos, t);
    if (c == '\'' || c == '"') return lex_string(pos, t);
    static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                 "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"};
    for (const char* op : kOps) {
      size_t n = std::strlen(op);
      if (src_.compare(pos, n, op) == 0) {
        if (n == 1 && (c == '(' || c == '[' || c == '{')) ++depth;
        if (n == 1 && (c == ')' || c == ']' || c == '}')) {
          if (depth == 0) fail(std::string("unexpected '") + c + "'", pos);
          --depth;
        }
        t.text = op;
        tokens_.push_back(std::move(t));
        return pos + n;
      }
    }
    fail(std::string("unexpected character '") + c + "' in tag", pos);
  }

  size_t lex_number(size_t pos, Token& t) {
    auto digits = [&](size_t p) {  // (\d+_)*\d+
      while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) ||
                                 (src_[p] == '_' && p + 1 < src_.size() &&
                                  std::isdigit(static_cast<unsigned char>(src_[p + 1])))))
        ++p;
      return p;
    };
    bool after_dot = !tokens_.empty() && tokens_.back().type == Token::Type::kOp && tokens_.back().text == ".";
    size_t e = digits(pos);
    bool is_float = false;
    if (!after_dot && e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      e = digits(e + 1);
      is_float = true;
    }
    if (!after_dot && e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t p = e + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) {
        e = digits(p);
        is_float = true;
      }
    }
    std::string num;
    for (size_t i = pos; i < e; ++i)
      if (src_[i] != '_') num.push_back(src_[i]);
    if (is_float) {
      t.type = Token::Type::kFloat;
      t.fval = std::strtod(num.c_str(), nullptr);
    } else {
      t.type = Token::Type::kInt;
      errno = 0;
      char* endp = nullptr;
      long long v = std::strtoll(num.c_str(), &endp, 10);
      if (errno == ERANGE) fail("integer literal too large", pos);
      t.ival = v;
    }
    t.text = num;
    tokens_.push_back(std::move(t));
    return e;
  }

  size_t lex_string(size_t pos, Token& t) {
    char q = src_[pos];
    size_t p = pos + 1;
    std::string out;
    auto hex = [&](size_t at, int n) -> long {
      if (at + n > src_.size()) return -1;
      long v = 0;
      for (int i = 0; i < n; ++i) {
        char h = src_[at + i];
        int d = std::isdigit(static_cast<unsigned char>(h)) ? h - '0'
                : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
      }
      return v;
    };
    while (true) {
      if (p >= src_.size()) fail("unterminated string literal", pos);
      char c = src_[p];
      if (c == q) break;
      if (c != '\\') { out.push_back(c); ++p; continue; }
      if (p + 1 >= src_.size()) fail("unterminated string literal", pos);
      char e = src_[p + 1];
      p += 2;
      switch (e) {
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case 'r': out.push_back('\r'); break;
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'v': out.push_back('\v'); break;
        case '\n': break;  // line continuation
        case 'x': case 'u': case 'U': {
          int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          long v = hex(p, n);
          if (v < 0 || v > 0x10FFFF) fail(std::string("invalid \\") + e + " escape in string literal", p - 2);
          utf8_append(out, static_cast<uint32_t>(v));
          p += n;
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = e - '0';
            for (int i = 0; i < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++i) v = v * 8 + (src_[p++] - '0');
            utf8_append(out, v);
          } else {
            out.push_back('\\');  // Python keeps unknown escapes verbatim
            out.push_back(e);
          }
      }
    }
    t.type = Token::Type::kString;
    t.text = std::move(out);
    tokens_.push_back(std::move(t));
    return p + 1;
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view source) { return Lexer(source).run(); }

}  // namespace dflash::tokenizer::jinja
