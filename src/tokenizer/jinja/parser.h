// The template AST and the recursive-descent parser that builds it. Precedence follows jinja2's
// parser (ternary < or < and < not < compare < + - < ~ < * / // % < ** < unary < filters/tests).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/value.h"

namespace tern::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind { Literal, Name, Attr, Item, Slice, Call, Filter, Test, Neg, Pos, Not, Binary, Compare, And, Or, Cond, List, Dict };
  Kind kind;
  int line = 0;
  std::string name;            // Name / Attr / Filter / Test name; Binary operator
  Value value;                 // Literal
  std::vector<ExprPtr> args;   // operands, then positional arguments (Slice: obj, start, stop, step; null = omitted)
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // Compare: one operator between each pair of args
  bool negated = false;          // Test: `is not`
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class Kind { Text, Output, If, For, Set, SetBlock, Macro, CallBlock, FilterBlock, Break, Continue };
  Kind kind;
  int line = 0;
  std::string text;                  // Text; Set: namespace attribute (`set ns.attr`); Macro: name
  ExprPtr expr;                      // Output / Set value / For iterable / CallBlock call / FilterBlock filter
  ExprPtr cond;                      // For: `for x in y if cond`
  std::vector<std::pair<ExprPtr, Body>> branches;  // If: condition + body (elif included)
  Body body;                         // For / SetBlock / Macro / CallBlock / FilterBlock body
  Body else_body;                    // If else / For else
  std::vector<std::string> targets;  // For / Set / SetBlock names; Macro / CallBlock parameter names
  std::vector<ExprPtr> defaults;     // Macro / CallBlock parameter defaults (null = none)
};

struct ParseLimits {
  int max_depth = 256;  // nesting of blocks and expressions, so hostile input cannot overflow the stack
};

Body parse(std::vector<Token> tokens, const ParseLimits& limits);

}  // namespace tern::jinja
