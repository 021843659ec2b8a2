// Log-probabilities for the API's `logprobs`: log-softmax of the model's logits (before penalties,
// temperature or truncation, as vLLM reports them by default).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tern/engine.h"

namespace tern {

// The log-probability of `chosen` and the `n_top` most likely tokens (most likely first, ties by id).
float token_logprobs(std::span<const float> logits, int32_t chosen, int n_top, std::vector<TokenLogprob>& top);

}  // namespace tern
