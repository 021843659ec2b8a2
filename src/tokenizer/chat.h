// Renders a model's chat template the way Hugging Face transformers does (trim_blocks and
// lstrip_blocks on, its tojson), with the model's BOS/EOS texts as variables.
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
