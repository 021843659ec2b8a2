#include "server/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "server/api_error.h"
#include "server/api_request.h"
#include "server/api_response.h"
#include "server/metrics.h"

namespace tern::server {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// An engine event copied out of the step thread (its views do not outlive the callback).
struct Event {
  int choice;
  bool has_token;
  TokenOut token;
  std::string text;
  bool finished;
  FinishReason finish;
  int32_t prompt_tokens, cached_prompt_tokens, generated_tokens;
  Clock::time_point at;
};

// Events of one HTTP request's choices, from the engine thread to the HTTP thread.
class Channel {
 public:
  void push(int choice, const RequestEvent& e) {
    Event ev{choice, e.has_token, {e.token, e.logprob, {e.top.begin(), e.top.end()}}, std::string(e.text), e.finished,
             e.finish, e.prompt_tokens, e.cached_prompt_tokens, e.generated_tokens, Clock::now()};
    std::lock_guard lock(m_);
    q_.push_back(std::move(ev));
    cv_.notify_all();
  }
  // Waits up to `timeout` for events and takes them all.
  void take(std::vector<Event>& out, std::chrono::milliseconds timeout) {
    std::unique_lock lock(m_);
    cv_.wait_for(lock, timeout, [&] { return !q_.empty(); });
    out.assign(std::make_move_iterator(q_.begin()), std::make_move_iterator(q_.end()));
    q_.clear();
  }
  std::atomic<bool> abandoned{false};  // the client went away: the sinks cancel

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Event> q_;
};

}  // namespace

struct Server::Impl {
  Engine& engine;
  ServerConfig config;
  ApiLimits limits;
  httplib::Server http;
  ServerMetrics metrics;
  std::atomic<int64_t> in_flight{0};
  int64_t capacity = 0;
  std::atomic<bool> draining{false};
  std::atomic<bool> quit{false};
  std::thread loop;
  std::atomic<uint64_t> next_id{0};
  int bound_port = -1;

  // Requests in flight, so that a drain that runs out of time can cancel them.
  std::mutex ids_mutex;
  std::vector<std::pair<RequestId, std::shared_ptr<Channel>>> live;

  Impl(Engine& e, const ServerConfig& c) : engine(e), config(c) {
    limits.model_id = c.model_id;
    capacity = static_cast<int64_t>(c.max_running) + c.max_queue;
  }

  // The engine's step loop.
  void run_loop() {
    while (!quit.load()) {
      try {
        if (!engine.step()) engine.wait_for_work(0.05);
      } catch (const std::exception& e) {
        // The batch's state is not to be trusted: end every request rather than leave clients waiting.
        log(LogLevel::Error, "engine step failed, cancelling every request: {}", e.what());
        try {
          engine.abort_all();
        } catch (const std::exception& e2) {
          log(LogLevel::Error, "cancelling after a failed step failed too: {}", e2.what());
        }
      }
    }
  }

  // One HTTP request's generation: its choices, their accumulated output, the admission slot.
  struct Job {
    Impl* server;
    ApiRequest req;
    std::shared_ptr<Channel> channel = std::make_shared<Channel>();
    std::vector<RequestId> ids;
    std::vector<ChoiceOut> choices;
    std::vector<char> started;  // per choice: first chunk sent (chat role delta)
    std::vector<Clock::time_point> first_token;
    Usage usage;
    size_t n_finished = 0;
    Clock::time_point arrival;
    std::unique_ptr<ResponseWriter> writer;
    std::string endpoint;

    ~Job() {
      // Whatever happened to the connection, nothing of this request stays in the engine.
      if (n_finished < choices.size()) abandon();
      {
        std::lock_guard lock(server->ids_mutex);
        std::erase_if(server->live, [&](const auto& p) { return p.second == channel; });
      }
      server->in_flight.fetch_sub(1);
    }
    void abandon() {
      channel->abandoned = true;
      for (RequestId id : ids) server->engine.cancel(id);
    }
    // Folds an event into the choice's state; for streaming, `delta` gets the part to send.
    void apply(const Event& e, ChoiceOut* delta) {
      ChoiceOut& c = choices[static_cast<size_t>(e.choice)];
      if (e.has_token) {
        if (c.tokens.empty()) {
          first_token[static_cast<size_t>(e.choice)] = e.at;
          server->metrics.time_to_first_token(std::chrono::duration<double>(e.at - arrival).count());
        }
        c.tokens.push_back(e.token);
        if (delta) delta->tokens.push_back(e.token);
      }
      c.text += e.text;
      if (delta) delta->text += e.text;
      if (e.finished) {
        c.finished = true;
        c.finish = e.finish;
        ++n_finished;
        usage.prompt_tokens += e.prompt_tokens;
        usage.cached_tokens += e.cached_prompt_tokens;
        usage.completion_tokens += e.generated_tokens;
        if (e.generated_tokens > 1)
          server->metrics.time_per_output_token(
              std::chrono::duration<double>(e.at - first_token[static_cast<size_t>(e.choice)]).count() /
              (e.generated_tokens - 1));
      }
    }
    bool done() const { return n_finished == choices.size(); }
  };

  static void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    res.set_content(error_body(e), "application/json");
  }

  bool authorised(const httplib::Request& req) const {
    if (config.api_key.empty()) return true;
    const std::string want = "Bearer " + config.api_key;
    const std::string& got = req.get_header_value("Authorization");
    // Compared in time independent of where they differ.
    unsigned diff = got.size() != want.size();
    for (size_t i = 0; i < want.size(); ++i) diff |= static_cast<unsigned>(want[i] ^ (i < got.size() ? got[i] : 0));
    return diff == 0;
  }

  void generate(Endpoint ep, const httplib::Request& hreq, httplib::Response& hres) {
    const auto arrival = Clock::now();
    const std::string endpoint = ep == Endpoint::ChatCompletions ? "chat_completions" : "completions";
    if (draining.load()) {
      metrics.rejected("draining");
      return send_error(hres, ApiError(503, "service_unavailable", "", "", "the server is shutting down"));
    }
    // The admission slot is taken before any parsing or tokenising.
    if (in_flight.fetch_add(1) >= capacity) {
      in_flight.fetch_sub(1);
      metrics.rejected("queue_full");
      return send_error(hres, ApiError(429, "rate_limit_error", "", "queue_full",
                                       fmt::format("the server is busy: {} requests in flight; retry later", capacity)));
    }
    auto job = std::make_shared<Job>();
    job->server = this;  // from here the Job's destructor returns the slot
    job->arrival = arrival;
    job->endpoint = endpoint;
    try {
      job->req = parse_api_request(ep, hreq.body, engine, limits);
    } catch (const ApiError& e) {
      metrics.rejected("invalid");
      metrics.request_done(endpoint, e.status);
      return send_error(hres, e);
    }
    const ApiRequest& req = job->req;
    const size_t n_choices = req.prompts.size() * static_cast<size_t>(req.n);
    job->choices.resize(n_choices);
    job->started.assign(n_choices, 0);
    job->first_token.resize(n_choices);
    for (size_t i = 0; i < n_choices; ++i) job->choices[i].index = static_cast<int>(i);
    const std::string id = fmt::format("{}-{:016x}", ep == Endpoint::ChatCompletions ? "chatcmpl" : "cmpl",
                                       next_id.fetch_add(1) * 0x9e3779b97f4a7c15ull ^ 0x5bd1e995u);
    const auto created = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
    job->writer = std::make_unique<ResponseWriter>(engine, req, id, config.model_id, created);

    std::random_device rd;
    try {
      for (size_t i = 0; i < n_choices; ++i) {
        GenerateRequest g = req.params;
        g.prompt = req.prompts[i / static_cast<size_t>(req.n)];
        g.sampling.seed = req.seeded ? req.params.sampling.seed + i % static_cast<size_t>(req.n)
                                     : (static_cast<uint64_t>(rd()) << 32 | rd());
        std::shared_ptr<Channel> ch = job->channel;
        const int choice = static_cast<int>(i);
        job->ids.push_back(engine.submit(std::move(g), [ch, choice](const RequestEvent& e) {
          ch->push(choice, e);
          return !ch->abandoned.load();
        }));
        std::lock_guard lock(ids_mutex);
        live.emplace_back(job->ids.back(), job->channel);
      }
    } catch (const Error& e) {
      metrics.request_done(endpoint, 400);
      return send_error(hres, ApiError(400, "invalid_request_error", "", "", e.what()));
    }

    if (!req.stream) {
      std::vector<Event> evs;
      while (!job->done()) {
        job->channel->take(evs, std::chrono::milliseconds(200));
        for (const Event& e : evs) job->apply(e, nullptr);
      }
      hres.set_content(dump(job->writer->complete(job->choices, job->usage)), "application/json");
      metrics.request_done(endpoint, 200);
      return;
    }

    hres.set_header("Cache-Control", "no-cache");
    hres.set_chunked_content_provider(
        "text/event-stream",
        [this, job](size_t, httplib::DataSink& sink) {
          std::vector<Event> evs;
          job->channel->take(evs, std::chrono::milliseconds(100));
          if (!sink.is_writable()) {
            job->abandon();  // the client has gone: free its blocks now
            return false;
          }
          std::string out;
          for (const Event& e : evs) {
            ChoiceOut delta;
            delta.index = e.choice;
            job->apply(e, &delta);
            if (!e.has_token && !e.finished && delta.text.empty()) continue;
            delta.finished = e.finished;
            delta.finish = e.finish;
            const bool first = !job->started[static_cast<size_t>(e.choice)];
            job->started[static_cast<size_t>(e.choice)] = 1;
            out += "data: " + dump(job->writer->chunk(delta, first)) + "\n\n";
          }
          if (job->done()) {
            if (job->req.include_usage) out += "data: " + dump(job->writer->usage_chunk(job->usage)) + "\n\n";
            out += "data: [DONE]\n\n";
          }
          if (!out.empty() && !sink.write(out.data(), out.size())) {
            job->abandon();
            return false;
          }
          if (job->done()) {
            sink.done();
            metrics.request_done(job->endpoint, 200);
          }
          return true;
        },
        [job](bool success) {
          if (!success) job->abandon();
        });
  }

  void routes() {
    http.set_payload_max_length(config.max_body_bytes);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (req.path.rfind("/v1/", 0) == 0 && !authorised(req)) {
        send_error(res, ApiError(401, "invalid_request_error", "", "invalid_api_key",
                                 "missing or incorrect API key (Authorization: Bearer ...)"));
        metrics.rejected("unauthorised");
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    // Errors httplib produces itself (unknown path, body too large, malformed request) in OpenAI's shape.
    http.set_error_handler([this](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 413) {
        metrics.rejected("body_too_large");
        res.status = 400;
        return send_error(res, ApiError(400, "invalid_request_error", "", "body_too_large",
                                        fmt::format("the request body is larger than {} bytes", config.max_body_bytes)));
      }
      send_error(res, ApiError(res.status, res.status == 404 ? "not_found_error" : "invalid_request_error", "", "",
                               res.status == 404 ? "no such endpoint" : fmt::format("HTTP error {}", res.status)));
    });
    http.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) { generate(Endpoint::Completions, q, r); });
    http.Post("/v1/chat/completions",
              [this](const httplib::Request& q, httplib::Response& r) { generate(Endpoint::ChatCompletions, q, r); });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& r) {
      const json m = {{"id", config.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "tern"},
                      {"max_model_len", engine.summary().n_ctx}};
      r.set_content(dump(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& r) {
      r.status = draining.load() ? 503 : 200;
      r.set_content(draining.load() ? R"({"status":"draining"})" : R"({"status":"ok"})", "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
      r.set_content(metrics.render(engine.metrics(), in_flight.load()), "text/plain; version=0.0.4");
    });
  }
};

Server::Server(Engine& engine, const ServerConfig& config) : impl_(std::make_unique<Impl>(engine, config)) {
  const int threads = config.http_threads > 0 ? config.http_threads
                                              : static_cast<int>(std::min<int64_t>(impl_->capacity + 8, 1024));
  impl_->http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  impl_->http.set_keep_alive_max_count(1000);
  impl_->routes();
}

Server::~Server() {
  impl_->quit = true;
  if (impl_->loop.joinable()) impl_->loop.join();
}

int Server::bind() {
  Impl& m = *impl_;
  if (m.config.port == 0) m.bound_port = m.http.bind_to_any_port(m.config.host);
  else m.bound_port = m.http.bind_to_port(m.config.host, m.config.port) ? m.config.port : -1;
  TERN_CHECK(m.bound_port > 0, "cannot listen on {}:{} (address in use or not available)", m.config.host, m.config.port);
  return m.bound_port;
}

int Server::port() const { return impl_->bound_port; }

void Server::run() {
  Impl& m = *impl_;
  m.loop = std::thread([&m] { m.run_loop(); });
  m.http.listen_after_bind();
  m.quit = true;
  m.loop.join();
}

void Server::stop(double drain_seconds) {
  Impl& m = *impl_;
  m.draining = true;
  const auto t0 = Clock::now();
  while (m.in_flight.load() > 0 && seconds_since(t0) < drain_seconds) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  {
    std::lock_guard lock(m.ids_mutex);
    for (auto& [id, ch] : m.live) {
      ch->abandoned = true;
      m.engine.cancel(id);
    }
  }
  // Let streams see their ends before the sockets close.
  const auto t1 = Clock::now();
  while (m.in_flight.load() > 0 && seconds_since(t1) < 2.0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  m.http.stop();
}

}  // namespace tern::server
