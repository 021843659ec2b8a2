// Stop strings over streamed text: text is released only once it cannot be the start of a stop
// string, so a client never sees part of a stop sequence that is later cut off.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tern {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Adds newly decoded text; returns the text that is now safe to emit. After a stop string is
  // found, stopped() is true and the returned text ends right before it.
  std::string push(std::string_view text);
  // The held-back remainder at the end of generation (when no stop string matched).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace tern
