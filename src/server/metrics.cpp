#include "server/metrics.h"

#include <fmt/format.h>

namespace tern::server {

void Histogram::observe(double x) {
  size_t i = 0;
  while (i < bounds_.size() && x > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += x;
  ++n_;
}

void Histogram::render(std::string& out, const char* name, const char* help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, n_, name, sum_, name, n_);
}

ServerMetrics::ServerMetrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      tpot_({0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1}) {}

void ServerMetrics::request_done(std::string_view endpoint, int status) {
  std::lock_guard lock(mutex_);
  ++requests_[fmt::format("{},{}", endpoint, status)];
}

void ServerMetrics::time_to_first_token(double s) {
  std::lock_guard lock(mutex_);
  ttft_.observe(s);
}

void ServerMetrics::time_per_output_token(double s) {
  std::lock_guard lock(mutex_);
  tpot_.observe(s);
}

void ServerMetrics::rejected(std::string_view why) {
  std::lock_guard lock(mutex_);
  ++rejected_[std::string(why)];
}

std::string ServerMetrics::render(const EngineMetrics& e, int64_t in_flight) const {
  std::string out;
  auto gauge = [&](const char* name, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  auto ratio = [](int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0; };
  gauge("tern_requests_running", "Sequences in the running batch.", static_cast<double>(e.running));
  gauge("tern_requests_waiting", "Sequences waiting for admission (new or preempted).", static_cast<double>(e.waiting));
  gauge("tern_http_requests_in_flight", "HTTP generation requests holding an admission slot.", static_cast<double>(in_flight));
  gauge("tern_kv_blocks_total", "KV cache blocks in the pool.", static_cast<double>(e.kv_blocks_total));
  gauge("tern_kv_blocks_used", "KV cache blocks referenced by sequences.", static_cast<double>(e.kv_blocks_used));
  gauge("tern_kv_blocks_cached", "KV cache blocks holding a prefix-cache entry (used or free).",
        static_cast<double>(e.kv_blocks_cached));
  gauge("tern_kv_block_size", "Token slots per KV cache block.", static_cast<double>(e.kv_block_size));
  gauge("tern_kv_tokens_held", "Token slots written in the referenced KV blocks (a shared block counts once).",
        static_cast<double>(e.kv_tokens_held));
  gauge("tern_kv_tokens_logical", "Tokens the sequences hold, each counting its shared prefix (above held: sharing).",
        static_cast<double>(e.kv_tokens_logical));
  gauge("tern_kv_slots_allocated", "Token slots in the blocks the sequences hold (paging waste = this minus tokens held).",
        static_cast<double>(e.kv_blocks_used * e.kv_block_size));
  counter("tern_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.",
          static_cast<double>(e.prefix_query_tokens));
  counter("tern_prefix_cache_hits_total", "Prompt tokens found in the prefix cache.", static_cast<double>(e.prefix_hit_tokens));
  gauge("tern_prefix_cache_hit_rate", "Prefix-cache hits over queries, in tokens.",
        ratio(e.prefix_hit_tokens, e.prefix_query_tokens));
  counter("tern_preemptions_total", "Sequences preempted (recomputed later) for lack of KV blocks.",
          static_cast<double>(e.preemptions));
  counter("tern_prompt_tokens_total", "Prompt tokens computed (prefix-cache hits excluded).", static_cast<double>(e.prompt_tokens));
  counter("tern_generation_tokens_total", "Tokens generated.", static_cast<double>(e.generated_tokens));
  counter("tern_engine_steps_total", "Forward passes of the step loop.", static_cast<double>(e.steps));
  counter("tern_spec_verify_passes_total", "Speculative decoding: sequence decodes that verified drafts.",
          static_cast<double>(e.spec_verify_passes));
  counter("tern_spec_draft_tokens_total", "Speculative decoding: tokens drafted.", static_cast<double>(e.spec_draft_tokens));
  counter("tern_spec_accepted_tokens_total", "Speculative decoding: drafted tokens the model accepted.",
          static_cast<double>(e.spec_accepted_tokens));
  gauge("tern_spec_acceptance_rate", "Speculative decoding: accepted over drafted tokens.",
        ratio(e.spec_accepted_tokens, e.spec_draft_tokens));
  gauge("tern_spec_tokens_per_pass", "Speculative decoding: tokens produced per verifying pass.",
        ratio(e.spec_emitted_tokens, e.spec_verify_passes));
  std::lock_guard lock(mutex_);
  out += "# HELP tern_http_requests_total HTTP requests answered, by endpoint and status.\n"
         "# TYPE tern_http_requests_total counter\n";
  for (const auto& [k, v] : requests_) {
    const size_t comma = k.find(',');
    out += fmt::format("tern_http_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", k.substr(0, comma),
                       k.substr(comma + 1), v);
  }
  out += "# HELP tern_requests_rejected_total Requests refused before reaching the engine, by reason.\n"
         "# TYPE tern_requests_rejected_total counter\n";
  for (const auto& [k, v] : rejected_) out += fmt::format("tern_requests_rejected_total{{reason=\"{}\"}} {}\n", k, v);
  ttft_.render(out, "tern_time_to_first_token_seconds", "Time from request arrival to its first token.");
  tpot_.render(out, "tern_time_per_output_token_seconds", "Mean time between a request's tokens after the first.");
  return out;
}

}  // namespace tern::server
