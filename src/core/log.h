// Minimal leveled logging to stderr. Level from TERN_LOG (error|warn|info|debug), default warn.
#pragma once

#include <fmt/format.h>

#include <cstdio>

namespace tern {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };

LogLevel log_level();
void set_log_level(LogLevel level);

template <typename... Args>
void log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (level > log_level()) return;
  static constexpr const char* kTags[] = {"error", "warn", "info", "debug"};
  fmt::print(stderr, "tern: {}: {}\n", kTags[static_cast<int>(level)], fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace tern
