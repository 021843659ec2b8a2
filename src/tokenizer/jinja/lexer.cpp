#include "tokenizer/jinja/lexer.h"

#include <cctype>

#include "core/error.h"
#include "core/utf8.h"

namespace tern::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
 public:
  Lexer(std::string_view src, const LexOptions& opt) : opt_(opt) {
    // jinja2 normalises newlines and drops one trailing newline (keep_trailing_newline=False).
    src_.reserve(src.size());
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == '\r') {
        src_ += '\n';
        if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
      } else {
        src_ += src[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> run() {
    size_t text_start = 0;
    while (pos_ < src_.size()) {
      size_t open = find_open(pos_);
      if (open == std::string::npos) break;
      char kind = src_[open + 1];  // '{', '%' or '#'
      char sign = open + 2 < src_.size() ? src_[open + 2] : 0;
      std::string text = src_.substr(text_start, open - text_start);
      if (sign == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (sign != '+' && kind != '{' && opt_.lstrip_blocks) {
        lstrip_line(text, text_start);
      }
      emit_text(text, text_start);
      size_t body = open + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        size_t close = src_.find("#}", body);
        if (close == std::string::npos) error_at(open, "unclosed comment");
        pos_ = close + 2;
        after_close(close > body && src_[close - 1] == '-', close > body && src_[close - 1] == '+', true);
      } else {
        add(kind == '{' ? Token::Kind::VarBegin : Token::Kind::BlockBegin, "", open);
        pos_ = body;
        lex_tag(kind == '{' ? '}' : '%', open);
      }
      text_start = pos_;
    }
    emit_text(src_.substr(text_start), text_start);
    add(Token::Kind::Eof, "", src_.size());
    return std::move(tokens_);
  }

 private:
  const LexOptions& opt_;
  std::string src_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;

  size_t find_open(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1))
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return std::string::npos;
  }

  // Tokens arrive in source order, so positions are tracked incrementally (linear, not quadratic).
  mutable size_t lc_at_ = 0;
  mutable int lc_line_ = 1, lc_col_ = 1;
  void line_col(size_t at, int& line, int& col) const {
    if (at < lc_at_) lc_at_ = 0, lc_line_ = 1, lc_col_ = 1;
    for (; lc_at_ < at && lc_at_ < src_.size(); ++lc_at_) {
      if (src_[lc_at_] == '\n') {
        ++lc_line_;
        lc_col_ = 1;
      } else {
        ++lc_col_;
      }
    }
    line = lc_line_;
    col = lc_col_;
  }

  [[noreturn]] void error_at(size_t at, std::string_view msg) const {
    int line, col;
    line_col(at, line, col);
    fail("template syntax error at line {}, column {}: {}", line, col, msg);
  }

  void add(Token::Kind k, std::string text, size_t at) {
    Token t{k, std::move(text)};
    line_col(at, t.line, t.col);
    tokens_.push_back(std::move(t));
  }

  void emit_text(const std::string& text, size_t at) {
    if (!text.empty()) add(Token::Kind::Text, text, at);
  }

  // lstrip_blocks: remove the spaces before a tag when nothing else precedes it on its line.
  void lstrip_line(std::string& text, size_t text_start) const {
    size_t nl = text.rfind('\n');
    size_t from = nl == std::string::npos ? 0 : nl + 1;
    bool line_start = nl != std::string::npos || text_start == 0 || src_[text_start - 1] == '\n';
    if (!line_start) return;
    for (size_t i = from; i < text.size(); ++i)
      if (!is_space(text[i])) return;
    text.resize(from);
  }

  void after_close(bool minus, bool plus, bool is_block) {
    if (minus) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
    } else if (!plus && is_block && opt_.trim_blocks && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
  }

  // Lexes expression tokens until the matching close (`}}` or `%}`) outside brackets.
  void lex_tag(char close_char, size_t open) {
    int depth = 0;
    for (;;) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
      if (pos_ >= src_.size()) error_at(open, close_char == '}' ? "unclosed '{{'" : "unclosed '{%'");
      char c = src_[pos_];
      auto closes_at = [&](size_t p) { return p + 1 < src_.size() && src_[p] == close_char && src_[p + 1] == '}'; };
      if (depth == 0 && (c == '-' || c == '+') && closes_at(pos_ + 1)) {
        add(close_char == '}' ? Token::Kind::VarEnd : Token::Kind::BlockEnd, "", pos_);
        pos_ += 3;
        after_close(c == '-', c == '+', close_char == '%');
        return;
      }
      if (depth == 0 && closes_at(pos_)) {
        add(close_char == '}' ? Token::Kind::VarEnd : Token::Kind::BlockEnd, "", pos_);
        pos_ += 2;
        after_close(false, false, close_char == '%');
        return;
      }
      size_t start = pos_;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
        add(Token::Kind::Name, src_.substr(start, pos_ - start), start);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number(start);
      } else if (c == '\'' || c == '"') {
        lex_string(start);
      } else {
        static const char* ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                    "=",  "(",  ")",  "[",  "]",  "{",  "}", ",", ".", ":", "|"};
        std::string op;
        for (const char* o : ops)
          if (src_.compare(pos_, std::char_traits<char>::length(o), o) == 0) {
            op = o;
            break;
          }
        if (op.empty()) error_at(pos_, fmt::format("unexpected character '{}'", c));
        if (op == "(" || op == "[" || op == "{") ++depth;
        if ((op == ")" || op == "]" || op == "}") && depth > 0) --depth;
        pos_ += op.size();
        add(Token::Kind::Op, op, start);
      }
    }
  }

  void lex_number(size_t start) {
    auto digits = [&] {
      while (pos_ < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
    };
    digits();
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      digits();
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t save = pos_++;
      if (pos_ < src_.size() && (src_[pos_] == '+' || src_[pos_] == '-')) ++pos_;
      if (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) {
        is_float = true;
        digits();
      } else {
        pos_ = save;
      }
    }
    std::string text;
    for (size_t i = start; i < pos_; ++i)
      if (src_[i] != '_') text += src_[i];
    add(is_float ? Token::Kind::Float : Token::Kind::Int, text, start);
  }

  void lex_string(size_t start) {
    char q = src_[pos_++];
    std::string out;
    for (;;) {
      if (pos_ >= src_.size()) error_at(start, "unterminated string literal");
      char c = src_[pos_++];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= src_.size()) error_at(start, "unterminated string literal");
      char e = src_[pos_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '0': out += '\0'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': break;  // line continuation
        case 'u':
        case 'x': {
          size_t n = e == 'u' ? 4 : 2;
          if (pos_ + n > src_.size()) error_at(pos_, "truncated escape in string literal");
          uint32_t cp = 0;
          for (size_t i = 0; i < n; ++i) {
            char h = src_[pos_ + i];
            if (!std::isxdigit(static_cast<unsigned char>(h))) error_at(pos_, "bad escape in string literal");
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
          }
          pos_ += n;
          append_utf8(out, cp);
          break;
        }
        default: out += '\\'; out += e;  // Python keeps unknown escapes verbatim
      }
    }
    add(Token::Kind::String, out, start);
  }
};

}  // namespace

std::vector<Token> lex(std::string_view source, const LexOptions& options) { return Lexer(source, options).run(); }

}  // namespace tern::jinja
