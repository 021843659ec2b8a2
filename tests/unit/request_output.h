// What the engine tests record of a request: its tokens, their log-probabilities, its text and why
// it ended, and the sink that records them.
#pragma once

#include <string>
#include <vector>

#include "tern/engine.h"

namespace tern::test_files {

struct Output {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::string text;
  FinishReason finish = FinishReason::Length;
  bool operator==(const Output&) const = default;
};

inline EventSink collect(Output& o) {
  return [&o](const RequestEvent& ev) {
    if (ev.has_token) o.tokens.push_back(ev.token), o.logprobs.push_back(ev.logprob);
    o.text += ev.text;
    if (ev.finished) o.finish = ev.finish;
    return true;
  };
}

}  // namespace tern::test_files
