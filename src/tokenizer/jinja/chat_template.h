// Renders a model's chat template the way transformers' apply_chat_template does: trim_blocks and
// lstrip_blocks on, its tojson, and the variables templates expect (messages, bos/eos tokens,
// add_generation_prompt, raise_exception, strftime_now, tools = none unless given in `extra`).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "tokenizer/jinja/jinja.h"

namespace tern {

std::string apply_chat_template(std::string_view tmpl, const nlohmann::json& messages, bool add_generation_prompt,
                                std::string_view bos_token, std::string_view eos_token,
                                const nlohmann::json& extra = {}, const jinja::Limits& limits = {});

}  // namespace tern
