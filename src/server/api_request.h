// Parsing and validation of /v1/completions and /v1/chat/completions bodies. Everything a client
// sends is checked here, before the engine sees it: types, ranges, token ids, the context limit.
// Any fault throws ApiError (HTTP 400) naming the field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tern/engine.h"

namespace tern::server {

enum class Endpoint { Completions, ChatCompletions };

struct ApiRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::vector<std::vector<int32_t>> prompts;  // tokenised; completions may send several
  std::vector<std::string> prompt_texts;      // for echo
  GenerateRequest params;                     // prompt left empty: one per prompt and choice
  bool seeded = false;                        // `seed` given: choice j uses seed + j
  int n = 1;                                  // choices per prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool echo = false;           // completions: the prompt's text before the completion
  bool logprobs = false;       // report log-probabilities (params.top_logprobs alternatives)
};

struct ApiLimits {
  std::string model_id;  // the one model served; a request naming another is refused
  int max_n = 16;        // choices per request
  int max_prompts = 16;  // prompts per completions request
  int max_stop = 16;     // stop strings
};

ApiRequest parse_api_request(Endpoint endpoint, std::string_view body, const Engine& engine, const ApiLimits& limits);

}  // namespace tern::server
