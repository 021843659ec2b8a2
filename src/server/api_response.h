// The JSON that /v1/completions and /v1/chat/completions answer with, whole or as SSE chunks, in
// OpenAI's shapes.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "server/api_request.h"
#include "tern/engine.h"

namespace tern::server {

// One generated token as reported: its id, log-probability and alternatives.
struct TokenOut {
  int32_t token = -1;
  float logprob = 0;
  std::vector<TokenLogprob> top;
};

// What one choice has produced so far (or in one streamed chunk).
struct ChoiceOut {
  int index = 0;
  std::string text;
  std::vector<TokenOut> tokens;
  bool finished = false;
  FinishReason finish = FinishReason::Length;
};

struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
};

std::string_view openai_finish_reason(FinishReason r);

class ResponseWriter {
 public:
  ResponseWriter(const Engine& engine, const ApiRequest& req, std::string id, std::string model, int64_t created)
      : engine_(engine), req_(req), id_(std::move(id)), model_(std::move(model)), created_(created) {}

  // A whole response.
  nlohmann::json complete(const std::vector<ChoiceOut>& choices, const Usage& usage) const;
  // One streamed chunk for one choice: a text delta (with its tokens' log-probabilities) and/or the
  // finish reason; `first` adds the chat role delta.
  nlohmann::json chunk(const ChoiceOut& delta, bool first) const;
  // The closing usage chunk (stream_options.include_usage).
  nlohmann::json usage_chunk(const Usage& usage) const;

 private:
  nlohmann::json logprobs(const std::vector<TokenOut>& tokens, size_t text_offset) const;
  nlohmann::json usage_json(const Usage& u) const;
  nlohmann::json head(const char* object) const;

  const Engine& engine_;
  const ApiRequest& req_;
  std::string id_, model_;
  int64_t created_;
};

// Serialises for the wire; invalid UTF-8 (a token that is part of a character) becomes U+FFFD.
std::string dump(const nlohmann::json& j);

}  // namespace tern::server
