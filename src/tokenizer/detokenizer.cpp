// Streaming UTF-8 assembly for Detokenizer.
#include "tokenizer/detokenizer.h"

namespace tern {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of a valid UTF-8 sequence starting at s[i]: >0 complete and valid, 0 valid so far but
// truncated at the end of s, -1 invalid (replace one byte and resynchronise).
int utf8_seq(std::string_view s, size_t i) {
  auto c = static_cast<uint8_t>(s[i]);
  int n;
  uint32_t min_cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) n = 2, min_cp = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, min_cp = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, min_cp = 0x10000;
  else return -1;
  uint32_t cp = c & (0x3F >> (n - 1));
  for (int k = 1; k < n; ++k) {
    if (i + k >= s.size()) return 0;
    auto b = static_cast<uint8_t>(s[i + k]);
    if ((b & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (b & 0x3F);
    // Reject overlong forms, surrogates and > U+10FFFF as soon as the second byte decides it, so an
    // impossible prefix is not held back waiting for bytes that cannot make it valid.
    if (k == 1) {
      if ((c == 0xE0 && b < 0xA0) || (c == 0xED && b > 0x9F) || (c == 0xF0 && b < 0x90) ||
          (c == 0xF4 && b > 0x8F))
        return -1;
    }
  }
  if (cp < min_cp) return -1;
  return n;
}

}  // namespace

std::string take_complete_utf8(std::string& bytes) {
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    int n = utf8_seq(bytes, i);
    if (n == 0) break;  // incomplete tail: keep it for the next token
    if (n < 0) {
      out += kReplacement;
      i += 1;
    } else {
      out.append(bytes, i, n);
      i += n;
    }
  }
  bytes.erase(0, i);
  return out;
}

std::string Detokenizer::feed(int32_t id) {
  std::string piece = tok_->token_to_piece(id, render_special_);
  if (piece.empty()) return {};
  if (!seen_text_ && tok_->strips_leading_space() && !tok_->is_special(id) && piece[0] == ' ')
    piece.erase(0, 1);
  seen_text_ = true;
  pending_ += piece;
  return take_complete_utf8(pending_);
}

std::string Detokenizer::flush() {
  std::string out = take_complete_utf8(pending_);
  if (!pending_.empty()) out += kReplacement;  // a character that never completed
  pending_.clear();
  seen_text_ = false;
  return out;
}

}  // namespace tern
