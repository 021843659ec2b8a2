#include "tokenizer/jinja/interpreter.h"

#include <cmath>
#include <utility>

#include "core/error.h"

namespace tern::jinja {
namespace {

// Gives `slot` a new value until the enclosing block ends, then puts the old one back, also when an
// error unwinds the block.
template <class T>
class Swapped {
 public:
  Swapped(T& slot, T value) : slot_(slot), saved_(std::exchange(slot, std::move(value))) {}
  ~Swapped() { slot_ = std::move(saved_); }
  Swapped(const Swapped&) = delete;
  Swapped& operator=(const Swapped&) = delete;

 private:
  T& slot_;
  T saved_;
};

[[noreturn]] void fail_undefined(const Value& v) {
  fail("jinja: {}", v.as_string().empty() ? std::string("value is undefined") : v.as_string());
}

// Python ints are unbounded; ours are 64-bit, so overflow is an error rather than UB.
template <typename Op>
int64_t checked(int64_t x, int64_t y, Op op) {
  int64_t r = 0;
  TERN_CHECK(!op(x, y, &r), "jinja: integer overflow");
  return r;
}
bool add_ovf(int64_t x, int64_t y, int64_t* r) { return __builtin_add_overflow(x, y, r); }
bool sub_ovf(int64_t x, int64_t y, int64_t* r) { return __builtin_sub_overflow(x, y, r); }
bool mul_ovf(int64_t x, int64_t y, int64_t* r) { return __builtin_mul_overflow(x, y, r); }

// Python's slice index normalisation for a sequence of length n.
std::vector<int64_t> slice_indices(int64_t n, const Value& start, const Value& stop, const Value& step) {
  auto given = [](const Value& v) { return !v.is_undefined() && !v.is_none(); };
  int64_t st = given(step) ? step.as_int() : 1;
  TERN_CHECK(st != 0, "jinja: slice step cannot be zero");
  auto clamp = [&](const Value& v, int64_t def) {
    if (!given(v)) return def;
    TERN_CHECK(v.is_int(), "jinja: slice indices must be integers");
    int64_t i = v.as_int();
    if (i < 0) i += n;
    if (st > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  int64_t a = clamp(start, st > 0 ? 0 : n - 1), b = clamp(stop, st > 0 ? n : -1);
  std::vector<int64_t> out;
  for (int64_t i = a; st > 0 ? i < b : i > b; i += st) out.push_back(i);
  return out;
}

}  // namespace

Interpreter::Interpreter(const Limits& limits, const Options& options, Scope globals)
    : limits_(limits), options_(options), scope_(std::move(globals)) {}

std::string Interpreter::render(const Body& body) { return capture(body); }

void Interpreter::count_iterations(size_t n) {
  iterations_ += n;
  if (iterations_ > limits_.max_loop_iterations) fail("template loop iterations exceed {}", limits_.max_loop_iterations);
}

void Interpreter::check_size(size_t bytes) const {
  if (bytes > limits_.max_output_bytes) fail("template output exceeds {} bytes", limits_.max_output_bytes);
}

void Interpreter::emit(const std::string& text) {
  check_size(out_->size() + text.size());
  out_->append(text);
}

std::string Interpreter::capture(const Body& body) {
  std::string buf;
  Swapped<std::string*> redirect(out_, &buf);
  exec(body);
  return buf;
}

Value Interpreter::lookup(const std::string& name) const {
  for (auto it = scope_.rbegin(); it != scope_.rend(); ++it) {
    auto f = (*it)->find(name);
    if (f != (*it)->end()) return f->second;
  }
  return Value::undefined("'" + name + "' is undefined");
}

void Interpreter::assign(const std::string& name, Value v) { (*scope_.back())[name] = std::move(v); }

void Interpreter::assign_targets(const std::vector<std::string>& targets, const Value& v) {
  if (targets.size() == 1) {
    assign(targets[0], v);
    return;
  }
  std::vector<Value> items = iterate(v);
  TERN_CHECK(items.size() == targets.size(), "jinja: cannot unpack {} values into {} names", items.size(), targets.size());
  for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], items[i]);
}

Interpreter::Flow Interpreter::exec(const Body& body) {
  for (const auto& s : body) {
    Flow f = exec(*s);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  switch (s.kind) {
    case Stmt::Kind::Text: emit(s.text); break;
    case Stmt::Kind::Output: emit(eval(*s.expr).str()); break;
    case Stmt::Kind::If:
      for (const auto& [cond, body] : s.branches)
        if (eval(*cond).truthy()) return exec(body);
      return exec(s.else_body);
    case Stmt::Kind::For: return exec_for(s);
    case Stmt::Kind::Set: {
      Value v = eval(*s.expr);
      if (!s.text.empty()) {
        Value ns = lookup(s.targets[0]);
        TERN_CHECK(ns.is_object() && ns.as_object().is_namespace, "jinja: cannot assign attribute on non-namespace object");
        ns.as_object().set(s.text, std::move(v));
      } else {
        assign_targets(s.targets, v);
      }
      break;
    }
    case Stmt::Kind::SetBlock: assign(s.targets[0], Value(capture(s.body))); break;
    case Stmt::Kind::Macro: assign(s.text, make_macro(s)); break;
    case Stmt::Kind::CallBlock: {
      // caller() renders the block body in the scope of the call site.
      auto caller = std::make_shared<Function>();
      caller->name = "caller";
      Scope site = scope_;
      const Stmt* stmt = &s;
      caller->call = [site, stmt](Interpreter& in, Array& args, Kwargs& kwargs) {
        auto frame = std::make_shared<Frame>();
        for (size_t i = 0; i < stmt->targets.size(); ++i) {
          Value d = stmt->defaults[i] ? in.eval(*stmt->defaults[i]) : Value::undefined("'" + stmt->targets[i] + "' is undefined");
          (*frame)[stmt->targets[i]] = arg(args, kwargs, i, stmt->targets[i].c_str(), d);
        }
        Scope scope = site;
        scope.push_back(frame);
        Swapped<Scope> in_site(in.scope_, std::move(scope));
        return Value(in.capture(stmt->body));
      };
      const Expr& call = *s.expr;
      Value fn = eval(*call.args[0]);
      Array args;
      for (size_t i = 1; i < call.args.size(); ++i) args.push_back(eval(*call.args[i]));
      Kwargs kwargs;
      for (const auto& [k, v] : call.kwargs) kwargs.emplace_back(k, eval(*v));
      kwargs.emplace_back("caller", Value(caller));
      emit(this->call(fn, args, kwargs).str());
      break;
    }
    case Stmt::Kind::FilterBlock: {
      std::string body = capture(s.body);
      scope_.push_back(std::make_shared<Frame>(Frame{{" filter_body", Value(std::move(body))}}));
      std::string text;
      try {
        text = eval(*s.expr).str();
      } catch (...) {
        scope_.pop_back();
        throw;
      }
      scope_.pop_back();
      emit(text);
      break;
    }
    case Stmt::Kind::Break: return Flow::Break;
    case Stmt::Kind::Continue: return Flow::Continue;
  }
  return Flow::Normal;
}

Interpreter::Flow Interpreter::exec_for(const Stmt& s) {
  Value seq = eval(*s.expr);
  std::vector<Value> items = iterate(seq);
  scope_.push_back(std::make_shared<Frame>());
  struct Pop {
    Scope& scope;
    ~Pop() { scope.pop_back(); }
  } pop{scope_};
  if (s.cond) {  // `for x in xs if cond`: filtered before loop.length is known, as in jinja2
    std::vector<Value> kept;
    for (auto& item : items) {
      count_iterations();
      assign_targets(s.targets, item);
      if (eval(*s.cond).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    count_iterations();
    // jinja2 gives every iteration a fresh frame: a `set` in the body does not carry over.
    scope_.back() = std::make_shared<Frame>();
    assign_targets(s.targets, items[i]);
    auto loop = std::make_shared<Object>();
    loop->items = {{"index", Value(i + 1)},
                   {"index0", Value(i)},
                   {"revindex", Value(n - i)},
                   {"revindex0", Value(n - i - 1)},
                   {"first", Value(i == 0)},
                   {"last", Value(i == n - 1)},
                   {"length", Value(n)},
                   {"depth", Value(1)},
                   {"depth0", Value(0)},
                   {"previtem", i > 0 ? items[i - 1] : Value::undefined("there is no previous item")},
                   {"nextitem", i + 1 < n ? items[i + 1] : Value::undefined("there is no next item")}};
    auto cycle = std::make_shared<Function>();
    cycle->name = "loop.cycle";
    cycle->call = [i](Interpreter&, Array& args, Kwargs&) {
      TERN_CHECK(!args.empty(), "jinja: no items for cycling given");
      return args[static_cast<size_t>(i) % args.size()];
    };
    loop->items.emplace_back("cycle", Value(cycle));
    assign("loop", Value(loop));
    if (exec(s.body) == Flow::Break) break;
  }
  if (n == 0) exec(s.else_body);
  return Flow::Normal;
}

Value Interpreter::make_macro(const Stmt& s) {
  auto fn = std::make_shared<Function>();
  fn->name = s.text;
  const Stmt* stmt = &s;
  // The macro closes over the frames where it is defined, so it can see itself and call itself.
  // They are held weakly: the frame holding the macro would otherwise own it in a cycle (a leak).
  std::vector<std::weak_ptr<Frame>> defined_in(scope_.begin(), scope_.end());
  fn->call = [stmt, defined_in](Interpreter& in, Array& args, Kwargs& kwargs) {
    if (++in.call_depth_ > in.limits_.max_recursion_depth) {
      --in.call_depth_;
      fail("template recursion depth exceeds {}", in.limits_.max_recursion_depth);
    }
    struct Depth {
      int& d;
      ~Depth() { --d; }
    } depth{in.call_depth_};
    TERN_CHECK(args.size() <= stmt->targets.size(), "jinja: macro '{}' takes not more than {} argument(s)", stmt->text,
               stmt->targets.size());
    auto frame = std::make_shared<Frame>();
    for (const auto& [k, v] : kwargs) {
      bool known = k == "caller";
      for (const auto& t : stmt->targets) known |= t == k;
      TERN_CHECK(known, "jinja: macro '{}' takes no keyword argument '{}'", stmt->text, k);
      if (k == "caller") (*frame)["caller"] = v;
    }
    Scope scope;
    for (const auto& w : defined_in) {
      auto f = w.lock();
      TERN_CHECK(f != nullptr, "jinja: macro '{}' called outside the scope that defined it", stmt->text);
      scope.push_back(std::move(f));
    }
    scope.push_back(frame);
    Swapped<Scope> in_definition(in.scope_, std::move(scope));
    for (size_t i = 0; i < stmt->targets.size(); ++i) {
      Value d = stmt->defaults[i] ? in.eval(*stmt->defaults[i]) : Value::undefined("'" + stmt->targets[i] + "' is undefined");
      (*frame)[stmt->targets[i]] = arg(args, kwargs, i, stmt->targets[i].c_str(), d);
    }
    return Value(in.capture(stmt->body));
  };
  return Value(fn);
}

Value Interpreter::call(const Value& fn, Array& args, Kwargs& kwargs) {
  if (fn.is_undefined()) fail_undefined(fn);
  TERN_CHECK(fn.is_function(), "jinja: '{}' object is not callable", fn.type_name());
  return fn.as_function().call(*this, args, kwargs);
}

Value Interpreter::eval_call(const Expr& e) {
  Value fn = eval(*e.args[0]);
  Array args;
  for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
  Kwargs kwargs;
  for (const auto& [k, v] : e.kwargs) kwargs.emplace_back(k, eval(*v));
  return call(fn, args, kwargs);
}

Value Interpreter::eval_slice(const Expr& e) {
  Value obj = eval(*e.args[0]);
  Value parts[3];
  for (int k = 0; k < 3; ++k)
    if (e.args[k + 1]) parts[k] = eval(*e.args[k + 1]);
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_string()) {
    auto chars = utf8_chars(obj.as_string());
    std::string out;
    for (int64_t i : slice_indices(static_cast<int64_t>(chars.size()), parts[0], parts[1], parts[2])) out += chars[i];
    return Value(std::move(out));
  }
  TERN_CHECK(obj.is_array(), "jinja: '{}' object is not subscriptable", obj.type_name());
  const Array& a = obj.as_array();
  Array out;
  for (int64_t i : slice_indices(static_cast<int64_t>(a.size()), parts[0], parts[1], parts[2])) out.push_back(a[i]);
  return Value(std::move(out));
}

Value Interpreter::eval_binary(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = a.str() + b.str();
    check_size(s.size());
    return Value(std::move(s));
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  auto unsupported = [&]() -> Value {
    fail("jinja: unsupported operand type(s) for {}: '{}' and '{}'", op, a.type_name(), b.type_name());
  };
  if (a.is_number() && b.is_number()) {
    bool ints = a.is_int() && b.is_int();
    int64_t x = ints ? a.as_int() : 0, y = ints ? b.as_int() : 0;
    double fx = a.as_double(), fy = b.as_double();
    if (op == "+") return ints ? Value(checked(x, y, add_ovf)) : Value(fx + fy);
    if (op == "-") return ints ? Value(checked(x, y, sub_ovf)) : Value(fx - fy);
    if (op == "*") return ints ? Value(checked(x, y, mul_ovf)) : Value(fx * fy);
    if (op == "/") {
      TERN_CHECK(fy != 0, "jinja: division by zero");
      return Value(fx / fy);
    }
    if (op == "//" || op == "%") {
      TERN_CHECK(ints ? y != 0 : fy != 0, "jinja: integer division or modulo by zero");
      if (ints) {
        TERN_CHECK(!(x == INT64_MIN && y == -1), "jinja: integer overflow");
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          --q;
          m += y;
        }
        return op == "//" ? Value(q) : Value(m);
      }
      double m = std::fmod(fx, fy);
      if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
      return op == "//" ? Value(std::floor(fx / fy)) : Value(m);
    }
    if (op == "**") {
      if (ints && y >= 0) {
        int64_t acc = 1;
        for (int64_t k = 0; k < y; ++k) {
          acc = checked(acc, x, mul_ovf);
          if (acc == 0 || acc == 1) break;
        }
        return Value(acc);
      }
      return Value(std::pow(fx, fy));
    }
    return unsupported();
  }
  if (op == "+" && a.is_string() && b.is_string()) {
    check_size(a.as_string().size() + b.as_string().size());
    return Value(a.as_string() + b.as_string());
  }
  if (op == "+" && a.is_array() && b.is_array()) {
    Array out = a.as_array();
    out.insert(out.end(), b.as_array().begin(), b.as_array().end());
    return Value(std::move(out));
  }
  if (op == "*" && (a.is_string() || a.is_array()) && b.is_int() && !b.is_bool()) {
    int64_t n = std::max<int64_t>(0, b.as_int());
    size_t unit = a.is_string() ? a.as_string().size() : a.as_array().size() * sizeof(Value);
    if (unit != 0 && static_cast<uint64_t>(n) > limits_.max_output_bytes / unit) check_size(limits_.max_output_bytes + 1);
    if (a.is_string()) {
      std::string out;
      for (int64_t k = 0; k < n; ++k) out += a.as_string();
      return Value(std::move(out));
    }
    Array out;
    for (int64_t k = 0; k < n; ++k) out.insert(out.end(), a.as_array().begin(), a.as_array().end());
    return Value(std::move(out));
  }
  if (op == "*" && a.is_int() && (b.is_string() || b.is_array())) return eval_binary(op, b, a);
  return unsupported();
}

Value Interpreter::eval_compare(const Expr& e) {
  Value left = eval(*e.args[0]);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = eval(*e.args[i + 1]);
    const std::string& op = e.ops[i];
    bool r;
    if (op == "==") r = equals(left, right);
    else if (op == "!=") r = !equals(left, right);
    else if (op == "in") r = contains(right, left);
    else if (op == "not in") r = !contains(right, left);
    else {
      if (left.is_undefined()) fail_undefined(left);
      if (right.is_undefined()) fail_undefined(right);
      int c = compare(left, right);
      r = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
    }
    if (!r) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

Value Interpreter::eval(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::Literal: return e.value;
    case Expr::Kind::Name: return lookup(e.name);
    case Expr::Kind::Attr: {
      Value obj = eval(*e.args[0]);
      if (obj.is_undefined()) fail_undefined(obj);
      return get_attr(obj, e.name);
    }
    case Expr::Kind::Item: {
      Value obj = eval(*e.args[0]);
      Value key = eval(*e.args[1]);
      if (obj.is_undefined()) fail_undefined(obj);
      return get_item(obj, key);
    }
    case Expr::Kind::Slice: return eval_slice(e);
    case Expr::Kind::Call: return eval_call(e);
    case Expr::Kind::Filter: {
      Value v = eval(*e.args[0]);
      Array args;
      for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
      Kwargs kwargs;
      for (const auto& [k, x] : e.kwargs) kwargs.emplace_back(k, eval(*x));
      return call_filter(*this, e.name, v, args, kwargs);
    }
    case Expr::Kind::Test: {
      Value v = eval(*e.args[0]);
      Array args;
      for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
      return Value(call_test(*this, e.name, v, args) != e.negated);
    }
    case Expr::Kind::Neg:
    case Expr::Kind::Pos: {
      Value v = eval(*e.args[0]);
      if (v.is_undefined()) fail_undefined(v);
      TERN_CHECK(v.is_number(), "jinja: bad operand type for unary {}: '{}'", e.kind == Expr::Kind::Neg ? '-' : '+', v.type_name());
      if (e.kind == Expr::Kind::Pos) return v.is_bool() ? Value(v.as_int()) : v;
      if (v.is_int()) {
        TERN_CHECK(v.as_int() != INT64_MIN, "jinja: integer overflow");
        return Value(-v.as_int());
      }
      return Value(-v.as_double());
    }
    case Expr::Kind::Not: return Value(!eval(*e.args[0]).truthy());
    case Expr::Kind::Binary: return eval_binary(e.name, eval(*e.args[0]), eval(*e.args[1]));
    case Expr::Kind::Compare: return eval_compare(e);
    case Expr::Kind::And: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? eval(*e.args[1]) : a;
    }
    case Expr::Kind::Or: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? a : eval(*e.args[1]);
    }
    case Expr::Kind::Cond:
      if (eval(*e.args[0]).truthy()) return eval(*e.args[1]);
      return e.args[2] ? eval(*e.args[2]) : Value::undefined("the inline if-expression evaluated to false and no else section was defined");
    case Expr::Kind::List: {
      Array out;
      for (const auto& x : e.args) out.push_back(eval(*x));
      return Value(std::move(out));
    }
    case Expr::Kind::Dict: {
      auto o = std::make_shared<Object>();
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i]);
        o->set(k.str(), eval(*e.args[i + 1]));
      }
      return Value(o);
    }
  }
  fail("jinja: bad expression node");
}

}  // namespace tern::jinja
