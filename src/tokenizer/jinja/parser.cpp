#include "tokenizer/jinja/parser.h"

#include <charconv>
#include <cstdlib>

#include "core/error.h"

namespace tern::jinja {
namespace {

using TK = Token::Kind;

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseLimits& limits) : toks_(std::move(tokens)), limits_(limits) {}

  Body run() {
    std::vector<std::string> end;
    Body body = parse_body({}, end);
    if (cur().kind != TK::Eof) error("unexpected '{% " + end_name_ + " %}'");
    return body;
  }

 private:
  std::vector<Token> toks_;
  size_t i_ = 0;
  const ParseLimits& limits_;
  int depth_ = 0;
  std::string end_name_;

  // Counts nesting so a template of 100k nested '(' or '{% if %}' fails cleanly, not by stack overflow.
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > p.limits_.max_depth) fail("template recursion depth exceeds {}", p.limits_.max_depth);
    }
    ~DepthGuard() { --p.depth_; }
  };

  const Token& cur() const { return toks_[i_]; }
  const Token& peek(size_t n = 1) const { return toks_[std::min(i_ + n, toks_.size() - 1)]; }
  void next() {
    if (i_ + 1 < toks_.size()) ++i_;
  }

  [[noreturn]] void error(const std::string& msg) const {
    fail("template syntax error at line {}, column {}: {}", cur().line, cur().col, msg);
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TK::Eof: return "end of template";
      case TK::VarEnd: return "'}}'";
      case TK::BlockEnd: return "'%}'";
      case TK::Text: return "template text";
      case TK::String: return "string literal";
      default: return "'" + t.text + "'";
    }
  }
  bool is_op(std::string_view op) const { return cur().kind == TK::Op && cur().text == op; }
  bool is_name(std::string_view n) const { return cur().kind == TK::Name && cur().text == n; }
  bool accept_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool accept_name(std::string_view n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  void expect_op(std::string_view op) {
    if (!accept_op(op)) error(fmt::format("expected '{}', got {}", op, describe(cur())));
  }
  std::string expect_name() {
    if (cur().kind != TK::Name) error("expected a name, got " + describe(cur()));
    std::string n = cur().text;
    next();
    return n;
  }
  void expect_block_end() {
    if (cur().kind != TK::BlockEnd) error("expected '%}', got " + describe(cur()));
    next();
  }

  ExprPtr make(Expr::Kind k) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = cur().line;
    return e;
  }

  // Parses statements until one of `ends` opens a block tag; leaves the cursor on that tag's name.
  Body parse_body(const std::vector<std::string>& ends, std::vector<std::string>& found) {
    DepthGuard guard(*this);
    Body body;
    for (;;) {
      const Token& t = cur();
      if (t.kind == TK::Eof) {
        if (!ends.empty()) error("unexpected end of template, expected '{% " + ends.front() + " %}'");
        return body;
      }
      if (t.kind == TK::Text) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::Text;
        s->text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.kind == TK::VarBegin) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::Output;
        s->line = t.line;
        next();
        s->expr = parse_tuple();
        if (cur().kind != TK::VarEnd) error("expected '}}', got " + describe(cur()));
        next();
        body.push_back(std::move(s));
      } else if (t.kind == TK::BlockBegin) {
        next();
        if (cur().kind != TK::Name) error("expected a tag name, got " + describe(cur()));
        std::string name = cur().text;
        for (const auto& e : ends)
          if (e == name) {
            found.assign(1, name);
            return body;
          }
        if (name.rfind("end", 0) == 0 || name == "elif" || name == "else") {
          if (ends.empty()) error("unexpected '{% " + name + " %}'");
          error("unexpected '{% " + name + " %}', expected '{% " + ends.front() + " %}'");
        }
        if (auto s = parse_statement(name)) body.push_back(std::move(s));
      } else {
        error("unexpected " + describe(t));
      }
    }
  }

  std::unique_ptr<Stmt> parse_statement(const std::string& name) {
    auto s = std::make_unique<Stmt>();
    s->line = cur().line;
    next();  // tag name
    std::vector<std::string> found;
    if (name == "if") {
      s->kind = Stmt::Kind::If;
      for (;;) {
        ExprPtr c = parse_tuple();
        expect_block_end();
        Body b = parse_body({"elif", "else", "endif"}, found);
        s->branches.emplace_back(std::move(c), std::move(b));
        next();
        if (found[0] == "elif") continue;
        if (found[0] == "else") {
          expect_block_end();
          s->else_body = parse_body({"endif"}, found);
          next();
        }
        break;
      }
    } else if (name == "for") {
      s->kind = Stmt::Kind::For;
      do {
        s->targets.push_back(expect_name());
      } while (accept_op(","));
      if (!accept_name("in")) error("expected 'in', got " + describe(cur()));
      s->expr = parse_tuple(/*no_cond=*/true);
      if (accept_name("if")) s->cond = parse_expression();
      if (accept_name("recursive")) error("recursive loops are not supported");
      expect_block_end();
      s->body = parse_body({"else", "endfor"}, found);
      next();
      if (found[0] == "else") {
        expect_block_end();
        s->else_body = parse_body({"endfor"}, found);
        next();
      }
    } else if (name == "set") {
      std::string first = expect_name();
      if (accept_op(".")) {
        s->text = expect_name();
        s->targets.push_back(first);
      } else {
        s->targets.push_back(first);
        while (accept_op(",")) s->targets.push_back(expect_name());
      }
      if (accept_op("=")) {
        s->kind = Stmt::Kind::Set;
        s->expr = parse_tuple();
      } else {
        if (!s->text.empty() || s->targets.size() != 1) error("expected '='");
        s->kind = Stmt::Kind::SetBlock;
        expect_block_end();
        s->body = parse_body({"endset"}, found);
        next();
      }
    } else if (name == "macro") {
      s->kind = Stmt::Kind::Macro;
      s->text = expect_name();
      parse_params(*s);
      expect_block_end();
      s->body = parse_body({"endmacro"}, found);
      next();
      if (cur().kind == TK::Name) next();  // `{% endmacro name %}`
    } else if (name == "call") {
      s->kind = Stmt::Kind::CallBlock;
      if (is_op("(")) parse_params(*s);
      s->expr = parse_expression();
      if (s->expr->kind != Expr::Kind::Call) error("expected a macro call");
      expect_block_end();
      s->body = parse_body({"endcall"}, found);
      next();
    } else if (name == "filter") {
      s->kind = Stmt::Kind::FilterBlock;
      // The rendered body is bound at run time to a name no template can spell (it has a space).
      auto placeholder = make(Expr::Kind::Name);
      placeholder->name = " filter_body";
      s->expr = parse_filters(std::move(placeholder), /*first_pipe_done=*/true);
      expect_block_end();
      s->body = parse_body({"endfilter"}, found);
      next();
    } else if (name == "break" || name == "continue") {
      s->kind = name == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue;
    } else if (name == "generation" || name == "endgeneration") {
      // transformers' AssistantTracker marks assistant spans; it has no effect on the text.
      expect_block_end();
      return nullptr;
    } else {
      --i_;
      error("unknown or unsupported tag '" + name + "'");
    }
    expect_block_end();
    return s;
  }

  void parse_params(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      s.targets.push_back(expect_name());
      s.defaults.push_back(accept_op("=") ? parse_expression() : nullptr);
      if (!accept_op(",")) break;
    }
    expect_op(")");
  }

  // Expressions ---------------------------------------------------------------------------------

  // A bare `a, b` (no brackets) is a tuple, which we represent as a list.
  ExprPtr parse_tuple(bool no_cond = false) {
    ExprPtr first = no_cond ? parse_or() : parse_expression();
    if (!is_op(",")) return first;
    auto list = make(Expr::Kind::List);
    list->args.push_back(std::move(first));
    while (accept_op(",")) {
      if (cur().kind == TK::VarEnd || cur().kind == TK::BlockEnd || is_op(")") || is_name("if")) break;
      list->args.push_back(no_cond ? parse_or() : parse_expression());
    }
    return list;
  }

  ExprPtr parse_expression() {
    DepthGuard guard(*this);
    ExprPtr e = parse_or();
    while (is_name("if")) {
      next();
      auto c = make(Expr::Kind::Cond);
      c->args.push_back(parse_or());  // condition
      c->args.push_back(std::move(e));
      c->args.push_back(accept_name("else") ? parse_expression() : nullptr);
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(Expr::Kind k, ExprPtr l, ExprPtr r, std::string op = {}) {
    auto e = make(k);
    e->name = std::move(op);
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (accept_name("or")) e = binary(Expr::Kind::Or, std::move(e), parse_and());
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (accept_name("and")) e = binary(Expr::Kind::And, std::move(e), parse_not());
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      auto e = make(Expr::Kind::Not);
      next();
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    for (;;) {
      std::string op;
      if (cur().kind == TK::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                   cur().text == ">" || cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().kind == TK::Name && peek().text == "in") {
        op = "not in";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Kind::Compare);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      next();
      e = binary(Expr::Kind::Binary, std::move(e), parse_concat(), op);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (accept_op("~")) e = binary(Expr::Kind::Binary, std::move(e), parse_math2(), "~");
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = cur().text;
      next();
      e = binary(Expr::Kind::Binary, std::move(e), parse_pow(), op);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (accept_op("**")) e = binary(Expr::Kind::Binary, std::move(e), parse_unary(true), "**");
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = make(is_op("-") ? Expr::Kind::Neg : Expr::Kind::Pos);
      next();
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    return with_filter ? parse_filters(std::move(e), false) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    auto lit = [&](Value v) {
      auto e = make(Expr::Kind::Literal);
      e->value = std::move(v);
      next();
      return e;
    };
    switch (t.kind) {
      case TK::Name: {
        if (t.text == "true" || t.text == "True") return lit(Value(true));
        if (t.text == "false" || t.text == "False") return lit(Value(false));
        if (t.text == "none" || t.text == "None") return lit(Value::none());
        auto e = make(Expr::Kind::Name);
        e->name = t.text;
        next();
        return e;
      }
      case TK::String: {
        std::string s;
        while (cur().kind == TK::String) {  // adjacent literals concatenate, as in Python
          s += cur().text;
          next();
        }
        auto e = make(Expr::Kind::Literal);
        e->value = Value(std::move(s));
        return e;
      }
      case TK::Int: {
        int64_t v = 0;
        auto r = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
        if (r.ec != std::errc()) error("integer literal out of range");
        return lit(Value(v));
      }
      case TK::Float: return lit(Value(std::strtod(t.text.c_str(), nullptr)));
      case TK::Op:
        if (t.text == "(") {
          next();
          if (accept_op(")")) return make_list({});
          ExprPtr e = parse_expression();
          if (is_op(",")) {
            std::vector<ExprPtr> items;
            items.push_back(std::move(e));
            while (accept_op(",") && !is_op(")")) items.push_back(parse_expression());
            e = make_list(std::move(items));
          }
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          next();
          std::vector<ExprPtr> items;
          while (!is_op("]")) {
            items.push_back(parse_expression());
            if (!accept_op(",")) break;
          }
          expect_op("]");
          return make_list(std::move(items));
        }
        if (t.text == "{") {
          auto e = make(Expr::Kind::Dict);
          next();
          while (!is_op("}")) {
            e->args.push_back(parse_expression());
            expect_op(":");
            e->args.push_back(parse_expression());
            if (!accept_op(",")) break;
          }
          expect_op("}");
          return e;
        }
        break;
      default: break;
    }
    error("unexpected " + describe(t));
  }

  ExprPtr make_list(std::vector<ExprPtr> items) {
    auto e = make(Expr::Kind::List);
    e->args = std::move(items);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    for (;;) {
      if (accept_op(".")) {
        auto a = make(Expr::Kind::Attr);
        if (cur().kind == TK::Int) {
          a->kind = Expr::Kind::Item;
          a->args.push_back(std::move(e));
          auto idx = make(Expr::Kind::Literal);
          idx->value = Value(static_cast<int64_t>(std::stoll(cur().text)));
          next();
          a->args.push_back(std::move(idx));
        } else {
          a->name = expect_name();
          a->args.push_back(std::move(e));
        }
        e = std::move(a);
      } else if (is_op("[")) {
        next();
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj) {
    ExprPtr parts[3];
    bool is_slice = false;
    for (int k = 0; k < 3; ++k) {
      if (!is_op(":") && !is_op("]")) parts[k] = parse_expression();
      if (k < 2 && accept_op(":")) {
        is_slice = true;
        continue;
      }
      break;
    }
    expect_op("]");
    auto e = make(is_slice ? Expr::Kind::Slice : Expr::Kind::Item);
    e->args.push_back(std::move(obj));
    if (!is_slice && !parts[0]) error("empty subscript");
    e->args.push_back(std::move(parts[0]));
    if (is_slice) {
      e->args.push_back(std::move(parts[1]));
      e->args.push_back(std::move(parts[2]));
    }
    return e;
  }

  void parse_args(Expr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (cur().kind == TK::Name && peek().kind == TK::Op && peek().text == "=") {
        std::string key = cur().text;
        next();
        next();
        e.kwargs.emplace_back(key, parse_expression());
      } else {
        if (!e.kwargs.empty()) error("positional argument follows keyword argument");
        e.args.push_back(parse_expression());
      }
      if (!accept_op(",")) break;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(Expr::Kind::Call);
    e->args.push_back(std::move(callee));
    parse_args(*e);
    return e;
  }

  ExprPtr parse_filters(ExprPtr e, bool first_pipe_done) {
    for (;;) {
      if (first_pipe_done || accept_op("|")) {
        first_pipe_done = false;
        auto f = make(Expr::Kind::Filter);
        f->name = expect_name();
        while (is_op(".")) {  // dotted filter names: keep jinja2's spelling
          next();
          f->name += "." + expect_name();
        }
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        next();
        auto t = make(Expr::Kind::Test);
        t->negated = accept_name("not");
        t->name = expect_name();
        t->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_args(*t);
        } else if ((cur().kind == TK::Name || cur().kind == TK::String || cur().kind == TK::Int ||
                    cur().kind == TK::Float || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          // jinja2 allows one bare argument: `x is divisibleby 3`, `x is sameas none`.
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }
};

}  // namespace

Body parse(std::vector<Token> tokens, const ParseLimits& limits) { return Parser(std::move(tokens), limits).run(); }

}  // namespace tern::jinja
