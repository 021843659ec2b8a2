// Sampling parameters, as users of llama.cpp and OpenAI's API know them.
#pragma once

#include <cstdint>

namespace tern {

struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy
  int top_k = 40;            // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repetition_penalty = 1.0f;  // CTRL-style, 1: off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int penalty_last_n = 64;   // how many recent tokens the penalties look at
  uint64_t seed = 0;
};

}  // namespace tern
