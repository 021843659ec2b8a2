// The dynamic value a Jinja template computes with: Python-like semantics (truthiness, str(), ==,
// ordering) because parity with Python's jinja2 is the oracle (DESIGN.md, "Correctness oracles").
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tern::jinja {

class Value;
class Interpreter;

using Array = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;

// Dicts keep insertion order like Python's; lookup is linear because chat-template dicts are tiny.
struct Object {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // only namespace() objects accept `set ns.attr = ...`
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

// A callable: builtin function, bound method, macro or caller(). The interpreter is passed so
// that macros can render and limits apply inside calls.
struct Function {
  std::string name;
  std::function<Value(Interpreter&, Array& args, Kwargs& kwargs)> call;
};

class Value {
 public:
  enum class Kind { Undefined, None, Bool, Int, Float, String, Array, Object, Function };

  Value() = default;  // Undefined
  static Value undefined(std::string hint = {});
  static Value none();
  Value(bool b);
  Value(int64_t i);
  Value(int i) : Value(static_cast<int64_t>(i)) {}
  Value(double d);
  Value(std::string s);
  Value(const char* s) : Value(std::string(s)) {}
  Value(Array a);
  Value(std::shared_ptr<Object> o);
  Value(std::shared_ptr<Function> f);
  static Value from_json(const nlohmann::json& j);
  static Value from_json(const nlohmann::ordered_json& j);  // keeps the document's key order

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int || kind_ == Kind::Bool; }  // Python: bool is an int
  bool is_number() const { return is_int() || kind_ == Kind::Float; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }
  bool is_function() const { return kind_ == Kind::Function; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::Bool ? (b_ ? 1 : 0) : i_; }
  double as_double() const { return kind_ == Kind::Float ? f_ : static_cast<double>(as_int()); }
  const std::string& as_string() const { return s_; }  // also the hint of an Undefined
  const Array& as_array() const { return *a_; }
  Object& as_object() const { return *o_; }
  Function& as_function() const { return *fn_; }

  bool truthy() const;
  std::string str() const;   // Python str(): what {{ x }} prints
  std::string repr() const;  // Python repr(): how items print inside lists and dicts
  std::string type_name() const;
  nlohmann::json to_json() const;

 private:
  Kind kind_ = Kind::Undefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::string s_;
  std::shared_ptr<Array> a_;
  std::shared_ptr<Object> o_;
  std::shared_ptr<Function> fn_;
};

bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);  // <0, 0, >0; throws for unorderable types
std::string py_float_repr(double d);

// Code-point view of UTF-8 text: Python strings index, slice and count code points, not bytes.
std::vector<std::string> utf8_chars(std::string_view s);

struct JsonStyle {
  int indent = -1;           // <0: single line
  bool sort_keys = true;     // jinja2's tojson policy
  bool ensure_ascii = true;  // json.dumps default: non-ASCII as \uXXXX
  bool html_safe = true;     // jinja2 escapes < > & ' as \u003c ...
  std::string item_sep = ", ";
  std::string key_sep = ": ";
};
std::string to_json_text(const Value& v, const JsonStyle& style);

}  // namespace tern::jinja
