#include "core/log.h"

#include <cstdlib>
#include <cstring>

namespace tern {
namespace {

LogLevel level_from_env() {
  const char* s = std::getenv("TERN_LOG");
  if (!s) return LogLevel::Warn;
  if (!std::strcmp(s, "error")) return LogLevel::Error;
  if (!std::strcmp(s, "info")) return LogLevel::Info;
  if (!std::strcmp(s, "debug")) return LogLevel::Debug;
  return LogLevel::Warn;
}

LogLevel g_level = level_from_env();

}  // namespace

LogLevel log_level() { return g_level; }
void set_log_level(LogLevel level) { g_level = level; }

}  // namespace tern
