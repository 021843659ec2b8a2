// The server's Prometheus metrics: the engine's gauges and counters (read at scrape time) plus
// per-request latency histograms and counts that only the server sees.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tern/engine.h"

namespace tern::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double x);
  void render(std::string& out, const char* name, const char* help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); the last is +Inf
  double sum_ = 0;
  uint64_t n_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  void request_done(std::string_view endpoint, int status);
  void time_to_first_token(double seconds);
  void time_per_output_token(double seconds);
  void rejected(std::string_view why);  // 429 queue full, 503 draining, 400 ...
  std::string render(const EngineMetrics& e, int64_t in_flight) const;

 private:
  mutable std::mutex mutex_;
  Histogram ttft_, tpot_;
  std::map<std::string, uint64_t> requests_;  // "endpoint,status" -> count
  std::map<std::string, uint64_t> rejected_;
};

}  // namespace tern::server
