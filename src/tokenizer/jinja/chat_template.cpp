#include "tokenizer/jinja/chat_template.h"

#include <ctime>

#include "core/error.h"
#include "tokenizer/jinja/interpreter.h"

namespace tern {
std::string apply_chat_template(std::string_view tmpl, const nlohmann::json& messages, bool add_generation_prompt,
                                std::string_view bos_token, std::string_view eos_token, const nlohmann::json& extra,
                                const jinja::Limits& limits) {
  TERN_CHECK(messages.is_array(), "chat template: messages must be a JSON array");
  TERN_CHECK(extra.is_null() || extra.is_object(), "chat template: extra variables must be a JSON object");
  nlohmann::json ctx = nlohmann::json::object();
  ctx["messages"] = messages;
  ctx["add_generation_prompt"] = add_generation_prompt;
  ctx["bos_token"] = std::string(bos_token);
  ctx["eos_token"] = std::string(eos_token);
  ctx["tools"] = nullptr;
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) ctx[it.key()] = it.value();
  // Templates such as Llama 3.1's print today's date through strftime_now (local time, as transformers).
  auto strftime_now = std::make_shared<jinja::Function>();
  strftime_now->name = "strftime_now";
  strftime_now->call = [](jinja::Interpreter&, jinja::Array& args, jinja::Kwargs& kwargs) {
    std::string format = jinja::arg(args, kwargs, 0, "format", jinja::Value("%Y-%m-%d")).str();
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    size_t n = std::strftime(buf, sizeof buf, format.c_str(), &tm);
    return jinja::Value(std::string(buf, n));
  };
  jinja::Options options{.trim_blocks = true, .lstrip_blocks = true, .hf_tojson = true};
  return jinja::render_with_globals(tmpl, ctx, limits, options, {{"strftime_now", jinja::Value(strftime_now)}});
}

}  // namespace tern
