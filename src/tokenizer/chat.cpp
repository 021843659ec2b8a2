#include "tokenizer/chat.h"

#include "tokenizer/jinja/chat_template.h"

namespace tern {

std::string render_chat(std::string_view chat_template, const Tokenizer& tokenizer, const nlohmann::json& messages,
                        bool add_generation_prompt) {
  auto special_text = [&](int32_t id) { return id >= 0 ? tokenizer.token_to_piece(id, true) : std::string(); };
  return apply_chat_template(chat_template, messages, add_generation_prompt, special_text(tokenizer.bos()),
                             special_text(tokenizer.eos()));
}

}  // namespace tern
