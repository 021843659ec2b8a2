// render(): lex, parse, and run a template against a JSON context with the builtin globals.
#include "tokenizer/jinja/jinja.h"

#include "core/error.h"
#include "tokenizer/jinja/interpreter.h"

namespace tern::jinja {
namespace {

Value function(std::string name, std::function<Value(Interpreter&, Array&, Kwargs&)> fn) {
  auto f = std::make_shared<Function>();
  f->name = std::move(name);
  f->call = std::move(fn);
  return Value(f);
}

Frame builtins() {
  Frame g;
  g["range"] = function("range", [](Interpreter& in, Array& args, Kwargs&) {
    TERN_CHECK(!args.empty() && args.size() <= 3, "jinja: range expected 1 to 3 arguments, got {}", args.size());
    for (const auto& a : args) TERN_CHECK(a.is_int(), "jinja: range() argument must be an integer, not {}", a.type_name());
    int64_t start = args.size() > 1 ? args[0].as_int() : 0, stop = args.size() > 1 ? args[1].as_int() : args[0].as_int();
    int64_t step = args.size() > 2 ? args[2].as_int() : 1;
    TERN_CHECK(step != 0, "jinja: range() arg 3 must not be zero");
    // A range is materialised, so its length counts against the loop budget up front.
    long double len = step > 0 ? (static_cast<long double>(stop) - start + step - 1) / step
                               : (static_cast<long double>(start) - stop - step - 1) / -step;
    size_t n = len > 0 ? static_cast<size_t>(len) : 0;
    if (n > in.limits().max_loop_iterations) fail("template loop iterations exceed {}", in.limits().max_loop_iterations);
    Array out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) out.push_back(Value(start + static_cast<int64_t>(i) * step));
    return Value(std::move(out));
  });
  auto make_dict = [](bool ns) {
    return [ns](Interpreter&, Array& args, Kwargs& kwargs) {
      auto o = std::make_shared<Object>();
      o->is_namespace = ns;
      for (const auto& a : args) {
        TERN_CHECK(a.is_object(), "jinja: {}() positional argument must be a mapping", ns ? "namespace" : "dict");
        for (const auto& [k, v] : a.as_object().items) o->set(k, v);
      }
      for (const auto& [k, v] : kwargs) o->set(k, v);
      return Value(o);
    };
  };
  g["namespace"] = function("namespace", make_dict(true));
  g["dict"] = function("dict", make_dict(false));
  g["raise_exception"] = function("raise_exception", [](Interpreter&, Array& args, Kwargs& kwargs) -> Value {
    throw Error(arg(args, kwargs, 0, "message", Value("raise_exception called")).str());
  });
  return g;
}

}  // namespace

template <typename Json>
static std::string render_impl(std::string_view tmpl, const Json& context, const Limits& limits, const Options& options,
                               const std::vector<std::pair<std::string, Value>>& extra) {
  if (tmpl.size() > limits.max_template_bytes) fail("template size {} exceeds {} bytes", tmpl.size(), limits.max_template_bytes);
  TERN_CHECK(context.is_object() || context.is_null(), "jinja: template context must be a JSON object");
  Body body = parse(lex(tmpl, {.trim_blocks = options.trim_blocks, .lstrip_blocks = options.lstrip_blocks}),
                    {.max_depth = limits.max_recursion_depth});
  auto globals = std::make_shared<Frame>(builtins());
  for (const auto& [k, v] : extra) (*globals)[k] = v;
  if (context.is_object())
    for (auto it = context.begin(); it != context.end(); ++it) (*globals)[it.key()] = Value::from_json(it.value());
  Interpreter interp(limits, options, {globals});
  return interp.render(body);
}

std::string render_with_globals(std::string_view tmpl, const nlohmann::json& context, const Limits& limits,
                                const Options& options, const std::vector<std::pair<std::string, Value>>& extra) {
  return render_impl(tmpl, context, limits, options, extra);
}

std::string render(std::string_view tmpl, const nlohmann::json& context, const Limits& limits, const Options& options) {
  return render_impl(tmpl, context, limits, options, {});
}

std::string render(std::string_view tmpl, const nlohmann::ordered_json& context, const Limits& limits,
                   const Options& options) {
  return render_impl(tmpl, context, limits, options, {});
}

}  // namespace tern::jinja
