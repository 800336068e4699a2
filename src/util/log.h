// Leveled logging to stderr. Level from DFLASH_LOG (error|warn|info|debug) or set_log_level().
#pragma once

namespace dflash::util {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_message(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace dflash::util

#define DFLASH_LOG(level, ...)                                                        \
  do {                                                                                \
    if (static_cast<int>(level) <= static_cast<int>(::dflash::util::log_level()))     \
      ::dflash::util::log_message(level, __VA_ARGS__);                                \
  } while (0)
#define LOG_ERROR(...) DFLASH_LOG(::dflash::util::LogLevel::kError, __VA_ARGS__)
#define LOG_WARN(...) DFLASH_LOG(::dflash::util::LogLevel::kWarn, __VA_ARGS__)
#define LOG_INFO(...) DFLASH_LOG(::dflash::util::LogLevel::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) DFLASH_LOG(::dflash::util::LogLevel::kDebug, __VA_ARGS__)
