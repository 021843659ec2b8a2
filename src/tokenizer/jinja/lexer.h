// Splits template source into text and tag tokens, applying jinja2's whitespace control
// ({%- -%}, trim_blocks, lstrip_blocks) here so the parser never sees layout.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tern::jinja {

struct LexOptions {
  bool trim_blocks = false;    // drop the first newline after a block or comment tag
  bool lstrip_blocks = false;  // drop spaces/tabs before a block or comment tag that starts a line
};

struct Token {
  enum class Kind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, Int, Float, String, Op, Eof };
  Kind kind;
  std::string text;  // Text: the text; Name/Op: spelling; String: the unescaped value; numbers: digits
  int line = 1;
  int col = 1;
};

std::vector<Token> lex(std::string_view source, const LexOptions& options);

}  // namespace tern::jinja
