// tern's OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions (whole or streamed
// over SSE), /v1/models, /health and /metrics, in front of one Engine whose step loop runs on its
// own thread. Requests are validated before they reach the engine; a bounded number are admitted
// (429 beyond); a client that goes away cancels its request; stop() drains before exiting.
#pragma once

#include <memory>
#include <string>

#include "tern/engine.h"

namespace tern::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (see Server::port)
  std::string api_key;              // non-empty: /v1/* needs "Authorization: Bearer <key>"
  std::string model_id;             // the id /v1/models lists and requests must name (if they name one)
  int max_running = 64;             // the engine's running set (EngineConfig::max_running)
  int max_queue = 64;               // generation requests admitted beyond the running set; more get 429
  size_t max_body_bytes = 8 << 20;  // larger bodies are refused
  int http_threads = 0;             // 0: enough for every admitted request plus a few
};

class Server {
 public:
  Server(Engine& engine, const ServerConfig& config);
  ~Server();
  // Binds the socket; throws tern::Error naming the address on failure. Returns the bound port.
  int bind();
  int port() const;
  // Serves until stop(); blocks.
  void run();
  // Stops admitting (503), lets running requests finish for up to `drain_seconds`, cancels what is
  // left, and makes run() return. Safe to call from another thread.
  void stop(double drain_seconds);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::server
