#include "server/api_response.h"

namespace tern::server {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string_view openai_finish_reason(FinishReason r) {
  switch (r) {
    case FinishReason::Stop:
    case FinishReason::Eos: return "stop";
    case FinishReason::Length:
    case FinishReason::Context: return "length";
    case FinishReason::Cancelled: return "abort";
  }
  return "stop";
}

json ResponseWriter::head(const char* object) const {
  return {{"id", id_}, {"object", object}, {"created", created_}, {"model", model_}};
}

json ResponseWriter::usage_json(const Usage& u) const {
  json j = {{"prompt_tokens", u.prompt_tokens},
            {"completion_tokens", u.completion_tokens},
            {"total_tokens", u.prompt_tokens + u.completion_tokens}};
  j["prompt_tokens_details"] = {{"cached_tokens", u.cached_tokens}};
  return j;
}

json ResponseWriter::logprobs(const std::vector<TokenOut>& tokens, size_t text_offset) const {
  if (req_.endpoint == Endpoint::ChatCompletions) {
    auto entry = [&](int32_t id, float lp) {
      const std::string t = engine_.token_text(id);
      return json{{"token", t}, {"logprob", lp}, {"bytes", std::vector<uint8_t>(t.begin(), t.end())}};
    };
    json content = json::array();
    for (const TokenOut& t : tokens) {
      json e = entry(t.token, t.logprob);
      json top = json::array();
      for (const TokenLogprob& a : t.top) top.push_back(entry(a.token, a.logprob));
      e["top_logprobs"] = std::move(top);
      content.push_back(std::move(e));
    }
    return {{"content", std::move(content)}};
  }
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  size_t off = text_offset;
  for (const TokenOut& t : tokens) {
    const std::string s = engine_.token_text(t.token);
    toks.push_back(s);
    lps.push_back(t.logprob);
    json top = json::object();
    for (const TokenLogprob& a : t.top) top[engine_.token_text(a.token)] = a.logprob;
    tops.push_back(std::move(top));
    offs.push_back(off);
    off += s.size();
  }
  return {{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

json ResponseWriter::complete(const std::vector<ChoiceOut>& choices, const Usage& usage) const {
  const bool chat = req_.endpoint == Endpoint::ChatCompletions;
  json j = head(chat ? "chat.completion" : "text_completion");
  json arr = json::array();
  for (const ChoiceOut& c : choices) {
    json e = {{"index", c.index}, {"finish_reason", openai_finish_reason(c.finish)}};
    std::string prefix;
    if (!chat && req_.echo) prefix = req_.prompt_texts[static_cast<size_t>(c.index / req_.n)];
    if (chat) e["message"] = {{"role", "assistant"}, {"content", c.text}};
    else e["text"] = prefix + c.text;
    e["logprobs"] = req_.logprobs ? logprobs(c.tokens, prefix.size()) : json(nullptr);
    arr.push_back(std::move(e));
  }
  j["choices"] = std::move(arr);
  j["usage"] = usage_json(usage);
  return j;
}

json ResponseWriter::chunk(const ChoiceOut& d, bool first) const {
  const bool chat = req_.endpoint == Endpoint::ChatCompletions;
  json j = head(chat ? "chat.completion.chunk" : "text_completion");
  json e = {{"index", d.index}};
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!d.text.empty() || !d.finished) delta["content"] = d.text;
    e["delta"] = std::move(delta);
  } else {
    std::string text = d.text;
    if (first && req_.echo) text = req_.prompt_texts[static_cast<size_t>(d.index / req_.n)] + text;
    e["text"] = std::move(text);
  }
  e["logprobs"] = req_.logprobs && !d.tokens.empty() ? logprobs(d.tokens, 0) : json(nullptr);
  e["finish_reason"] = d.finished ? json(openai_finish_reason(d.finish)) : json(nullptr);
  j["choices"] = json::array({std::move(e)});
  return j;
}

json ResponseWriter::usage_chunk(const Usage& usage) const {
  json j = head(req_.endpoint == Endpoint::ChatCompletions ? "chat.completion.chunk" : "text_completion");
  j["choices"] = json::array();
  j["usage"] = usage_json(usage);
  return j;
}

}  // namespace tern::server
