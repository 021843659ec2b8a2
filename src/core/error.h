// Errors and input validation. TERN_CHECK stays in release builds (unlike assert): it is how
// untrusted input (model files, requests, templates) is rejected with a message that names the fault.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace tern {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace tern

#define TERN_CHECK(cond, ...)          \
  do {                                 \
    if (!(cond)) ::tern::fail(__VA_ARGS__); \
  } while (0)
