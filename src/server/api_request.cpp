#include "server/api_request.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "server/api_error.h"

namespace tern::server {
namespace {

using json = nlohmann::json;

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  return v.type_name();
}

// Field accessors: absent or null means "use the default"; a wrong type or range is a 400.
const json* field(const json& body, const char* name) {
  const auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

bool get_bool(const json& body, const char* name, bool def) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_boolean()) bad_param(name, "'{}' must be a boolean, got {}", name, type_name(*v));
  return v->get<bool>();
}

int64_t get_int(const json& body, const char* name, int64_t def, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number_integer()) bad_param(name, "'{}' must be an integer, got {}", name, type_name(*v));
  const bool neg = v->is_number_unsigned() ? false : v->get<int64_t>() < 0;
  if (!neg && v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    bad_param(name, "'{}' must be in [{}, {}], got {}", name, lo, hi, v->dump());
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) bad_param(name, "'{}' must be in [{}, {}], got {}", name, lo, hi, x);
  return x;
}

float get_float(const json& body, const char* name, float def, double lo, double hi, bool lo_open = false) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number()) bad_param(name, "'{}' must be a number, got {}", name, type_name(*v));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x > hi || (lo_open ? x <= lo : x < lo))
    bad_param(name, "'{}' must be in {}{}, {}], got {}", name, lo_open ? "(" : "[", lo, hi, x);
  return static_cast<float>(x);
}

std::vector<int32_t> token_ids(const json& arr, const char* name, int64_t n_vocab) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const json& t : arr) {
    if (!t.is_number_integer()) bad_param(name, "'{}' token ids must be integers, got {}", name, type_name(t));
    const bool in_range = t.is_number_unsigned() ? t.get<uint64_t>() < static_cast<uint64_t>(n_vocab)
                                                 : t.get<int64_t>() >= 0 && t.get<int64_t>() < n_vocab;
    if (!in_range) bad_param(name, "token id {} in '{}' is outside the vocabulary of {}", t.dump(), name, n_vocab);
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return ids;
}

void parse_prompts(const json& body, const Engine& engine, const ApiLimits& limits, ApiRequest& r) {
  const json* p = field(body, "prompt");
  if (!p) bad_param("prompt", "'prompt' is required");
  const int64_t n_vocab = engine.summary().n_vocab;
  auto add_text = [&](const std::string& text) {
    r.prompts.push_back(engine.tokenize(text, /*add_special=*/true, /*parse_special=*/true));
    r.prompt_texts.push_back(text);
  };
  auto add_ids = [&](const json& arr) {
    r.prompts.push_back(token_ids(arr, "prompt", n_vocab));
    r.prompt_texts.push_back(engine.detokenize(r.prompts.back()));
  };
  if (p->is_string()) {
    add_text(p->get<std::string>());
  } else if (p->is_array() && !p->empty() && (*p)[0].is_number()) {
    add_ids(*p);
  } else if (p->is_array() && !p->empty()) {
    if (static_cast<int>(p->size()) > limits.max_prompts)
      bad_param("prompt", "at most {} prompts per request, got {}", limits.max_prompts, p->size());
    for (const json& e : *p) {
      if (e.is_string()) add_text(e.get<std::string>());
      else if (e.is_array()) add_ids(e);
      else bad_param("prompt", "'prompt' must be a string, an array of strings, or token ids, got an array of {}", type_name(e));
    }
  } else {
    bad_param("prompt", "'prompt' must be a non-empty string, array of strings, or array of token ids");
  }
  for (const auto& ids : r.prompts)
    if (ids.empty()) bad_param("prompt", "the prompt is empty");
}

void parse_messages(const json& body, const Engine& engine, ApiRequest& r) {
  const json* m = field(body, "messages");
  if (!m || !m->is_array() || m->empty()) bad_param("messages", "'messages' must be a non-empty array");
  if (!engine.has_chat_template())
    bad_param("messages", "the model has no chat template (tokenizer.chat_template); use /v1/completions");
  std::vector<ChatMessage> msgs;
  for (size_t i = 0; i < m->size(); ++i) {
    const json& e = (*m)[i];
    const std::string where = fmt::format("messages[{}]", i);
    if (!e.is_object()) bad_param(where, "'{}' must be an object", where);
    const json* role = field(e, "role");
    if (!role || !role->is_string()) bad_param(where + ".role", "'{}.role' must be a string", where);
    const std::string rs = role->get<std::string>();
    if (rs != "system" && rs != "user" && rs != "assistant" && rs != "developer" && rs != "tool")
      bad_param(where + ".role", "'{}.role' must be system, developer, user, assistant or tool, got '{}'", where, rs);
    std::string content;
    const json* c = field(e, "content");
    if (c && c->is_string()) {
      content = c->get<std::string>();
    } else if (c && c->is_array()) {
      // Content parts: only text is understood.
      for (size_t k = 0; k < c->size(); ++k) {
        const json& part = (*c)[k];
        const json* type = part.is_object() ? field(part, "type") : nullptr;
        const json* text = part.is_object() ? field(part, "text") : nullptr;
        if (!type || !type->is_string() || type->get<std::string>() != "text" || !text || !text->is_string())
          bad_param(fmt::format("{}.content[{}]", where, k), "only text content parts are supported");
        content += text->get<std::string>();
      }
    } else if (c || rs != "assistant") {
      bad_param(where + ".content", "'{}.content' must be a string or an array of text parts", where);
    }
    msgs.push_back({rs, std::move(content)});
  }
  std::string text;
  try {
    text = engine.apply_chat_template(msgs, /*add_generation_prompt=*/true);
  } catch (const Error& e) {
    bad_param("messages", "the chat template rejected the messages: {}", e.what());
  }
  r.prompts.push_back(engine.tokenize(text, /*add_special=*/false, /*parse_special=*/true));
  r.prompt_texts.push_back(std::move(text));
  if (r.prompts.back().empty()) bad_param("messages", "the rendered prompt is empty");
}

}  // namespace

std::string error_body(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", err}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

ApiRequest parse_api_request(Endpoint endpoint, std::string_view text, const Engine& engine, const ApiLimits& limits) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    // Parse again for the reason (invalid JSON or invalid UTF-8 inside a string).
    std::string why = "invalid JSON";
    try {
      const json again = json::parse(text);
    } catch (const json::exception& e) {
      why = e.what();
    }
    bad_param("", "the body is not valid JSON: {}", why);
  }
  if (!body.is_object()) bad_param("", "the body must be a JSON object");

  ApiRequest r;
  r.endpoint = endpoint;
  const bool chat = endpoint == Endpoint::ChatCompletions;
  if (const json* m = field(body, "model")) {
    if (!m->is_string()) bad_param("model", "'model' must be a string");
    if (m->get<std::string>() != limits.model_id)
      throw ApiError(400, "invalid_request_error", "model", "model_not_found",
                     fmt::format("the model '{}' does not exist; this server serves '{}'", m->get<std::string>(),
                                 limits.model_id));
  }
  // Features that are not implemented are refused rather than ignored.
  if (const json* s = field(body, "suffix"); s && !(s->is_string() && s->get<std::string>().empty()))
    bad_param("suffix", "'suffix' is not supported");
  if (const json* lb = field(body, "logit_bias"); lb && !(lb->is_object() && lb->empty()))
    bad_param("logit_bias", "'logit_bias' is not supported");
  if (const json* t = field(body, "tools"); t && !(t->is_array() && t->empty())) bad_param("tools", "'tools' is not supported");

  r.n = static_cast<int>(get_int(body, "n", 1, 1, limits.max_n));
  if (const json* b = field(body, "best_of"); b && !(b->is_number_integer() && b->get<int64_t>() == r.n))
    bad_param("best_of", "'best_of' other than n is not supported");
  r.stream = get_bool(body, "stream", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad_param("stream_options", "'stream_options' must be an object");
    if (!r.stream) bad_param("stream_options", "'stream_options' is only allowed with stream: true");
    r.include_usage = get_bool(*so, "include_usage", false);
  }

  // Sampling: OpenAI's defaults (temperature 1, nucleus off) rather than the CLI's.
  SamplingParams& s = r.params.sampling;
  s.temperature = get_float(body, "temperature", 1.0f, 0, 2);
  s.top_p = get_float(body, "top_p", 1.0f, 0, 1, /*lo_open=*/true);
  const int64_t top_k = get_int(body, "top_k", 0, -1, 1 << 30);
  s.top_k = top_k < 0 ? 0 : static_cast<int>(top_k);
  s.min_p = get_float(body, "min_p", 0.0f, 0, 1);
  s.presence_penalty = get_float(body, "presence_penalty", 0.0f, -2, 2);
  s.frequency_penalty = get_float(body, "frequency_penalty", 0.0f, -2, 2);
  s.repetition_penalty = get_float(body, "repetition_penalty", 1.0f, 0, 10, /*lo_open=*/true);
  if (field(body, "seed")) {
    s.seed = static_cast<uint64_t>(get_int(body, "seed", 0, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
    r.seeded = true;
  }
  r.params.ignore_eos = get_bool(body, "ignore_eos", false);
  r.params.priority = static_cast<int>(get_int(body, "priority", 0, -1000000, 1000000));

  if (const json* st = field(body, "stop")) {
    auto add = [&](const json& v) {
      if (!v.is_string() || v.get<std::string>().empty()) bad_param("stop", "'stop' entries must be non-empty strings");
      r.params.stop.push_back(v.get<std::string>());
    };
    if (st->is_string()) add(*st);
    else if (st->is_array()) {
      if (static_cast<int>(st->size()) > limits.max_stop) bad_param("stop", "at most {} stop strings, got {}", limits.max_stop, st->size());
      for (const json& v : *st) add(v);
    } else bad_param("stop", "'stop' must be a string or an array of strings");
  }

  if (chat) {
    r.logprobs = get_bool(body, "logprobs", false);
    const int64_t top = get_int(body, "top_logprobs", 0, 0, 20);
    if (field(body, "top_logprobs") && !r.logprobs) bad_param("top_logprobs", "'top_logprobs' requires logprobs: true");
    r.params.top_logprobs = r.logprobs ? static_cast<int>(top) : -1;
    if (field(body, "echo")) bad_param("echo", "'echo' is only for /v1/completions");
  } else {
    const json* lp = field(body, "logprobs");
    if (lp && lp->is_boolean()) bad_param("logprobs", "'logprobs' must be an integer in [0, 20] for /v1/completions");
    const int64_t top = get_int(body, "logprobs", -1, 0, 20);
    r.logprobs = top >= 0;
    r.params.top_logprobs = static_cast<int>(top);
    r.echo = get_bool(body, "echo", false);
  }

  // The prompt last: tokenising is the expensive part.
  if (chat) parse_messages(body, engine, r);
  else parse_prompts(body, engine, limits, r);

  const int64_t n_ctx = engine.summary().n_ctx;
  const char* max_name = chat && field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  const bool max_given = field(body, max_name) != nullptr;
  const int64_t max_tokens = get_int(body, max_name, chat ? 0 : 16, 1, n_ctx);
  size_t longest = 0;
  for (const auto& p : r.prompts) longest = std::max(longest, p.size());
  if (static_cast<int64_t>(longest) >= n_ctx)
    bad_param(chat ? "messages" : "prompt", "the prompt has {} tokens; this model's context is {} tokens", longest, n_ctx);
  if (max_given || !chat) {
    if (static_cast<int64_t>(longest) + max_tokens > n_ctx)
      bad_param(max_name,
                "this model's maximum context length is {} tokens, but {} were requested ({} in the prompt, {} to "
                "generate)",
                n_ctx, static_cast<int64_t>(longest) + max_tokens, longest, max_tokens);
    r.params.max_tokens = static_cast<int>(max_tokens);
  } else {
    r.params.max_tokens = static_cast<int>(n_ctx - static_cast<int64_t>(longest));  // chat default: the rest of the context
  }
  return r;
}

}  // namespace tern::server
