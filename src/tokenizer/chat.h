// Renders a model's chat template (see jinja/chat_template.h) with the model's own BOS/EOS texts.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "tokenizer/tokenizer.h"

namespace tern {

// `messages`: a JSON array of {"role": ..., "content": ...} objects.
std::string render_chat(std::string_view chat_template, const Tokenizer& tokenizer, const nlohmann::json& messages,
                        bool add_generation_prompt);

}  // namespace tern
