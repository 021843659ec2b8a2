// Attribute and item access, iteration, membership, and the few Python str/dict methods chat
// templates call. This whitelist is the sandbox: nothing else on a value is reachable.
#include <algorithm>

#include "core/error.h"
#include "tokenizer/jinja/interpreter.h"

namespace tern::jinja {
namespace {

const char* kWhitespace = " \t\n\r\f\v\x1c\x1d\x1e\x1f";

std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
  std::string set = chars.is_string() ? chars.as_string() : kWhitespace;
  size_t a = 0, b = s.size();
  if (left)
    while (a < b && set.find(s[a]) != std::string::npos) ++a;
  if (right)
    while (b > a && set.find(s[b - 1]) != std::string::npos) --b;
  return s.substr(a, b - a);
}

std::string ascii_map(std::string s, int (*f)(int)) {
  for (auto& c : s)
    if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(f(c));
  return s;
}

Value split(const std::string& s, const Value& sep, int64_t maxsplit) {
  Array out;
  if (!sep.is_string()) {  // runs of whitespace, no empty strings
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && std::string_view(kWhitespace).find(s[i]) != std::string_view::npos) ++i;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        out.push_back(Value(strip(s.substr(i), Value(), false, true)));
        break;
      }
      size_t j = i;
      while (j < s.size() && std::string_view(kWhitespace).find(s[j]) == std::string_view::npos) ++j;
      out.push_back(Value(s.substr(i, j - i)));
      i = j;
    }
    return Value(std::move(out));
  }
  const std::string& d = sep.as_string();
  TERN_CHECK(!d.empty(), "jinja: empty separator");
  size_t start = 0;
  for (size_t p; (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) && (p = s.find(d, start)) != std::string::npos;
       start = p + d.size())
    out.push_back(Value(s.substr(start, p - start)));
  out.push_back(Value(s.substr(start)));
  return Value(std::move(out));
}

bool affix(const std::string& s, const Value& x, bool prefix) {
  std::vector<Value> options = x.is_array() ? x.as_array() : std::vector<Value>{x};
  for (const auto& o : options) {
    TERN_CHECK(o.is_string(), "jinja: {}with first arg must be str or a tuple of str", prefix ? "starts" : "ends");
    const std::string& a = o.as_string();
    if (a.size() <= s.size() && (prefix ? s.compare(0, a.size(), a) : s.compare(s.size() - a.size(), a.size(), a)) == 0)
      return true;
  }
  return false;
}

std::string py_title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (auto& c : out) {
    bool alpha = std::isalpha(static_cast<unsigned char>(c));
    if (alpha) c = static_cast<char>(prev_cased ? std::tolower(c) : std::toupper(c));
    prev_cased = alpha;
  }
  return out;
}

Value call_method(Interpreter& in, const Value& self, const std::string& name, Array& args, Kwargs& kwargs) {
  if (self.is_object()) {
    const Object& o = self.as_object();
    if (name == "items") {
      Array out;
      for (const auto& [k, v] : o.items) out.push_back(Value(Array{Value(k), v}));
      return Value(std::move(out));
    }
    if (name == "keys" || name == "values") {
      Array out;
      for (const auto& [k, v] : o.items) out.push_back(name == "keys" ? Value(k) : v);
      return Value(std::move(out));
    }
    if (name == "get") {
      Value key = arg(args, kwargs, 0, "key");
      const Value* v = key.is_string() ? o.find(key.as_string()) : nullptr;
      return v ? *v : arg(args, kwargs, 1, "default", Value::none());
    }
  }
  const std::string& s = self.as_string();
  auto str_arg = [&](size_t pos, const char* n) {
    Value v = arg(args, kwargs, pos, n);
    TERN_CHECK(v.is_string(), "jinja: str.{}() argument must be str, not {}", name, v.type_name());
    return v.as_string();
  };
  if (name == "strip") return Value(strip(s, arg(args, kwargs, 0, "chars"), true, true));
  if (name == "lstrip") return Value(strip(s, arg(args, kwargs, 0, "chars"), true, false));
  if (name == "rstrip") return Value(strip(s, arg(args, kwargs, 0, "chars"), false, true));
  if (name == "upper") return Value(ascii_map(s, ::toupper));
  if (name == "lower") return Value(ascii_map(s, ::tolower));
  if (name == "title") return Value(py_title(s));
  if (name == "capitalize") return Value(s.empty() ? s : ascii_map(s.substr(0, 1), ::toupper) + ascii_map(s.substr(1), ::tolower));
  if (name == "split") {
    Value n = arg(args, kwargs, 1, "maxsplit", Value(-1));
    return split(s, arg(args, kwargs, 0, "sep"), n.as_int());
  }
  if (name == "splitlines") return split(s, Value("\n"), -1);
  if (name == "startswith") return Value(affix(s, arg(args, kwargs, 0, "prefix"), true));
  if (name == "endswith") return Value(affix(s, arg(args, kwargs, 0, "suffix"), false));
  if (name == "replace") {
    Array fargs{arg(args, kwargs, 0, "old"), arg(args, kwargs, 1, "new")};
    Value count = arg(args, kwargs, 2, "count");
    if (count.is_int() && count.as_int() >= 0) fargs.push_back(count);
    Kwargs none;
    return call_filter(in, "replace", self, fargs, none);
  }
  if (name == "find") {
    size_t p = s.find(str_arg(0, "sub"));
    return Value(p == std::string::npos ? int64_t{-1} : static_cast<int64_t>(utf8_chars(s.substr(0, p)).size()));
  }
  if (name == "count") {
    std::string sub = str_arg(0, "sub");
    if (sub.empty()) return Value(static_cast<int64_t>(utf8_chars(s).size() + 1));
    int64_t n = 0;
    for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
    return Value(n);
  }
  if (name == "join") {
    std::string out;
    bool first = true;
    for (const auto& v : iterate(arg(args, kwargs, 0, "iterable"))) {
      TERN_CHECK(v.is_string(), "jinja: sequence item: expected str instance, {} found", v.type_name());
      if (!first) out += s;
      out += v.as_string();
      first = false;
      in.check_size(out.size());
    }
    return Value(std::move(out));
  }
  fail("jinja: unsupported method '{}'", name);
}

bool has_method(const Value& v, const std::string& name) {
  static const char* dict_methods[] = {"items", "keys", "values", "get"};
  static const char* str_methods[] = {"strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize", "split",
                                      "splitlines", "startswith", "endswith", "replace", "find", "count", "join"};
  if (v.is_object() && !v.as_object().is_namespace)
    return std::any_of(std::begin(dict_methods), std::end(dict_methods), [&](const char* m) { return name == m; });
  if (v.is_string())
    return std::any_of(std::begin(str_methods), std::end(str_methods), [&](const char* m) { return name == m; });
  return false;
}

Value bound_method(const Value& self, const std::string& name) {
  auto fn = std::make_shared<Function>();
  fn->name = name;
  fn->call = [self, name](Interpreter& in, Array& args, Kwargs& kwargs) { return call_method(in, self, name, args, kwargs); };
  return Value(fn);
}

std::string object_desc(const Value& v) { return v.is_none() ? "None" : "'" + v.type_name() + " object'"; }

}  // namespace

Value arg(Array& args, Kwargs& kwargs, size_t pos, const char* name, Value def) {
  for (const auto& [k, v] : kwargs)
    if (k == name) return v;
  return pos < args.size() ? args[pos] : def;
}

Value get_attr(const Value& obj, const std::string& name) {
  if (has_method(obj, name)) return bound_method(obj, name);
  if (obj.is_object())
    if (const Value* v = obj.as_object().find(name)) return *v;
  return Value::undefined(object_desc(obj) + " has no attribute '" + name + "'");
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_object() && key.is_string()) {
    if (const Value* v = obj.as_object().find(key.as_string())) return *v;
    if (has_method(obj, key.as_string())) return bound_method(obj, key.as_string());
  }
  if ((obj.is_array() || obj.is_string()) && key.is_int()) {
    int64_t i = key.as_int();
    if (obj.is_array()) {
      int64_t n = static_cast<int64_t>(obj.as_array().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.as_array()[i];
    } else {
      auto chars = utf8_chars(obj.as_string());
      int64_t n = static_cast<int64_t>(chars.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value(chars[i]);
    }
  }
  if (key.is_string()) return get_attr(obj, key.as_string());
  return Value::undefined(object_desc(obj) + " has no element " + key.repr());
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::Array: return v.as_array();
    case Value::Kind::String: {
      std::vector<Value> out;
      for (auto& c : utf8_chars(v.as_string())) out.push_back(Value(std::move(c)));
      return out;
    }
    case Value::Kind::Object:
      if (!v.as_object().is_namespace) {
        std::vector<Value> out;
        for (const auto& [k, x] : v.as_object().items) out.push_back(Value(k));
        return out;
      }
      [[fallthrough]];
    default: fail("jinja: '{}' object is not iterable", v.type_name());
  }
}

bool contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    TERN_CHECK(item.is_string(), "jinja: 'in <string>' requires string as left operand, not {}", item.type_name());
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_object() && !container.as_object().is_namespace)
    return item.is_string() && container.as_object().find(item.as_string()) != nullptr;
  if (container.is_undefined()) return false;
  for (const auto& x : iterate(container))
    if (equals(x, item)) return true;
  return false;
}

}  // namespace tern::jinja
