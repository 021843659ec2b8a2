// tern serve: the OpenAI-compatible HTTP server (src/server) over one model.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "common.h"
#include "core/error.h"
#include "server/server.h"

namespace tern::cli {
namespace {

struct ServeOptions {
  ModelOptions model;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;
  std::string model_id;
  std::string kv_memory;
  int max_running = 64;
  int kv_block_size = 8;
  int max_queue = 64;
  std::string max_body = "8M";
  double drain_timeout = 30;
  bool no_prefix_cache = false;
};

// "512M", "2G", "1048576" -> bytes.
size_t parse_size(const std::string& s, const char* flag) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (const std::exception&) {
    fail("{} '{}': expected a size such as 512M or 2G", flag, s);
  }
  const std::string unit = s.substr(pos);
  double mul = 1;
  if (unit == "K" || unit == "k" || unit == "KiB") mul = 1024.0;
  else if (unit == "M" || unit == "MiB") mul = 1024.0 * 1024;
  else if (unit == "G" || unit == "GiB") mul = 1024.0 * 1024 * 1024;
  else if (!unit.empty()) fail("{} '{}': unknown unit '{}' (K, M, G)", flag, s, unit);
  TERN_CHECK(v > 0 && v * mul < 1e15, "{} '{}' out of range", flag, s);
  return static_cast<size_t>(v * mul);
}

void serve(const ServeOptions& o) {
  // SIGTERM and SIGINT are taken by one watcher thread (sigwait), never by the worker threads.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that went away is an error on its socket, not a signal

  EngineConfig ec = o.model.engine_config();
  ec.max_running = o.max_running;
  ec.prefix_caching = !o.no_prefix_cache;
  ec.kv_block_size = o.kv_block_size;
  if (!o.kv_memory.empty()) ec.kv_memory = parse_size(o.kv_memory, "--kv-memory");
  else ec.kv_memory_fraction = 0.1;
  auto engine = Engine::load(ec);
  const ModelSummary& s = engine->summary();
  server::ServerConfig sc{.host = o.host,
                          .port = o.port,
                          .api_key = o.api_key,
                          .model_id = o.model_id.empty() ? std::filesystem::path(s.path).stem().string() : o.model_id,
                          .max_running = o.max_running,
                          .max_queue = o.max_queue,
                          .max_body_bytes = parse_size(o.max_body, "--max-body")};
  server::Server server(*engine, sc);
  const int port = server.bind();
  std::fprintf(stderr,
               "tern serve: %s on http://%s:%d (model id '%s', %d threads, context %d, KV cache %.0f MiB = %zu tokens, "
               "up to %d sequences)\n",
               s.path.c_str(), o.host.c_str(), port, sc.model_id.c_str(), s.n_threads, s.n_ctx,
               static_cast<double>(s.kv_bytes) / (1 << 20), s.kv_bytes / std::max<size_t>(s.kv_bytes_per_token, 1),
               o.max_running);
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::fprintf(stderr, "tern serve: %s: draining (up to %.0f s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                 o.drain_timeout);
    server.stop(o.drain_timeout);
  });
  server.run();
  // run() also returns if listening fails; make sure the watcher ends.
  pthread_kill(watcher.native_handle(), SIGTERM);
  watcher.join();
  std::fprintf(stderr, "tern serve: stopped\n");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server");
  add_model_options(*cmd, o->model);
  add_speculative_options(*cmd, o->model);
  cmd->add_option("--host", o->host, "address to listen on");
  cmd->add_option("--port", o->port, "port (0: any free port)")->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' on /v1/* (health and metrics stay open)");
  cmd->add_option("--model-id", o->model_id, "the model's id in the API (default: the file name without .gguf)");
  cmd->add_option("--kv-memory", o->kv_memory, "KV cache size, e.g. 2G (default: 10% of available memory)");
  cmd->add_option("--kv-block-size", o->kv_block_size, "token slots per KV cache block")->check(CLI::Range(1, 256));
  cmd->add_option("--max-running", o->max_running, "sequences decoded together at most")->check(CLI::Range(1, 4096));
  cmd->add_option("--max-queue", o->max_queue, "requests waiting beyond the running ones before 429")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--max-body", o->max_body, "largest request body, e.g. 8M");
  cmd->add_option("--drain-timeout", o->drain_timeout, "seconds SIGTERM waits for running requests")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_flag("--no-prefix-cache", o->no_prefix_cache, "do not share KV blocks between requests with a common prefix");
  cmd->callback([o] { serve(*o); });
}

}  // namespace tern::cli
