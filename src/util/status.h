// Errors as values. Module boundaries return Status or Result<T>; exceptions never cross them.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace dflash::util {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,  // caller passed something malformed (bad flag, bad JSON, wrong shape)
  kNotFound,         // file, tensor or metadata key missing
  kCorrupt,          // file exists but its contents are inconsistent or truncated
  kUnsupported,      // valid input we do not handle (unknown dtype, architecture)
  kIo,               // the OS said no
  kOutOfRange,       // e.g. prompt longer than the context
  kInternal,
};

const char* error_code_name(ErrorCode c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool is_ok() const { return code_ == ErrorCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "corrupt: model.gguf: tensor 'blk.0.attn_q.weight' ends past the end of the file"
  std::string to_string() const;
  // Prefix context onto the message: st.with_context("loading draft model").
  Status with_context(const std::string& ctx) const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT
  Result(ErrorCode code, std::string msg) : v_(Status(code, std::move(msg))) {}

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

// Convenience constructors.
inline Status invalid_argument(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }
inline Status not_found(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
inline Status corrupt(std::string m) { return {ErrorCode::kCorrupt, std::move(m)}; }
inline Status unsupported(std::string m) { return {ErrorCode::kUnsupported, std::move(m)}; }
inline Status io_error(std::string m) { return {ErrorCode::kIo, std::move(m)}; }
inline Status out_of_range(std::string m) { return {ErrorCode::kOutOfRange, std::move(m)}; }
inline Status internal_error(std::string m) { return {ErrorCode::kInternal, std::move(m)}; }

// printf-style formatting into std::string.
std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// 'name' for error messages about untrusted input: non-printable bytes as \xNN, at most 200 bytes,
// so a message stays one printable line whatever the file contains.
std::string quote(std::string_view s);

}  // namespace dflash::util

#define DFLASH_CONCAT_INNER(a, b) a##b
#define DFLASH_CONCAT(a, b) DFLASH_CONCAT_INNER(a, b)

// Return early from a function returning Status/Result when `expr` (a Status) is not ok.
#define DFLASH_RETURN_IF_ERROR(expr)                     \
  do {                                                   \
    ::dflash::util::Status _st = (expr);                 \
    if (!_st.is_ok()) return _st;                        \
  } while (0)

// auto x = DFLASH_TRY(expr) is not portable; use: DFLASH_ASSIGN_OR_RETURN(auto x, expr);
#define DFLASH_ASSIGN_OR_RETURN(lhs, expr) \
  DFLASH_ASSIGN_OR_RETURN_IMPL(DFLASH_CONCAT(_res_, __LINE__), lhs, expr)
#define DFLASH_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.is_ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
