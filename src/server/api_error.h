// An error answered in OpenAI's JSON shape: {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace tern::server {

struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, std::string type, std::string param, std::string code, const std::string& message)
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}
};

// HTTP 400 naming the request field at fault.
template <typename... Args>
[[noreturn]] void bad_param(std::string param, fmt::format_string<Args...> f, Args&&... args) {
  throw ApiError(400, "invalid_request_error", std::move(param), "", fmt::format(f, std::forward<Args>(args)...));
}

// The error's JSON body.
std::string error_body(const ApiError& e);

}  // namespace tern::server
