// Incremental detokenisation for streaming: token ids go in one at a time and only complete, valid
// UTF-8 comes out. A multi-byte character split over several tokens (byte-level BPE and <0xXX> byte
// fallback both do this) is held back until its last byte arrives, so a client never sees half a
// character. Invalid byte sequences come out as U+FFFD, never as raw bytes.
#pragma once

#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"

namespace tern {

class Detokenizer {
 public:
  // `tok` must outlive the Detokenizer.
  explicit Detokenizer(const Tokenizer& tok, bool render_special = false)
      : tok_(&tok), render_special_(render_special) {}

  // Adds one token; returns the text that became complete (often empty). Throws on a bad id.
  std::string feed(int32_t id);
  // End of stream: returns what is still held back (an incomplete tail becomes U+FFFD) and resets.
  std::string flush();

 private:
  const Tokenizer* tok_;
  bool render_special_;
  bool seen_text_ = false;  // SPM strips one leading space from the first text piece only
  std::string pending_;     // bytes of an incomplete trailing UTF-8 sequence
};

// Returns the longest prefix of `bytes` that cannot change when more bytes are appended: complete
// characters, with invalid sequences replaced by U+FFFD. The rest (at most 3 bytes of a character
// that may still be completed) is left in `bytes`.
std::string take_complete_utf8(std::string& bytes);

}  // namespace tern
