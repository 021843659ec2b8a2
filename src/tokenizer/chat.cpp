#include "tokenizer/chat.h"

#include "tokenizer/jinja/jinja.h"

namespace tern {

std::string render_chat(std::string_view chat_template, const Tokenizer& tokenizer, const nlohmann::json& messages,
                        bool add_generation_prompt) {
  auto special_text = [&](int32_t id) { return id >= 0 ? tokenizer.token_to_piece(id, true) : std::string(); };
  const nlohmann::json context = {{"messages", messages},
                                  {"add_generation_prompt", add_generation_prompt},
                                  {"bos_token", special_text(tokenizer.bos())},
                                  {"eos_token", special_text(tokenizer.eos())}};
  return jinja::render(chat_template, context, {}, {.trim_blocks = true, .lstrip_blocks = true, .hf_tojson = true});
}

}  // namespace tern
