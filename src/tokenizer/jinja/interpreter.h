// Tree-walking evaluator for the parsed template. Scoping follows jinja2: `for` bodies and macros
// get their own frame, `if` does not; macros close over the frames where they were defined.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/jinja/jinja.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/jinja/value.h"

namespace tern::jinja {

using Frame = std::unordered_map<std::string, Value>;
using Scope = std::vector<std::shared_ptr<Frame>>;

class Interpreter {
 public:
  Interpreter(const Limits& limits, const Options& options, Scope globals);

  std::string render(const Body& body);

  Value eval(const Expr& e);
  Value call(const Value& fn, Array& args, Kwargs& kwargs);
  void count_iterations(size_t n = 1);      // enforces max_loop_iterations
  void check_size(size_t bytes) const;      // enforces max_output_bytes for any built string
  const Limits& limits() const { return limits_; }
  const Options& options() const { return options_; }

 private:
  enum class Flow { Normal, Break, Continue };

  const Limits& limits_;
  const Options& options_;
  Scope scope_;
  std::string* out_ = nullptr;
  size_t iterations_ = 0;
  int call_depth_ = 0;

  Flow exec(const Body& body);
  Flow exec(const Stmt& s);
  Flow exec_for(const Stmt& s);
  std::string capture(const Body& body);
  void emit(const std::string& text);
  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value v);
  void assign_targets(const std::vector<std::string>& targets, const Value& v);
  Value make_macro(const Stmt& s);
  Value eval_binary(const std::string& op, const Value& a, const Value& b);
  Value eval_compare(const Expr& e);
  Value eval_call(const Expr& e);
  Value eval_slice(const Expr& e);
};

// Library of filters, tests and methods (filters.cpp, methods.cpp).
Value call_filter(Interpreter& in, const std::string& name, const Value& v, Array& args, Kwargs& kwargs);
bool call_test(Interpreter& in, const std::string& name, const Value& v, Array& args);
Value get_attr(const Value& obj, const std::string& name);  // `obj.name`: method first, then key
Value get_item(const Value& obj, const Value& key);          // `obj[key]`: key first, then method
std::vector<Value> iterate(const Value& v);                   // Python iteration order
bool contains(const Value& container, const Value& item);
Value arg(Array& args, Kwargs& kwargs, size_t pos, const char* name, Value def = Value());

// render() with extra global values (e.g. native functions such as strftime_now) beside the builtins.
std::string render_with_globals(std::string_view tmpl, const nlohmann::json& context, const Limits& limits,
                                const Options& options, const std::vector<std::pair<std::string, Value>>& extra);

}  // namespace tern::jinja
