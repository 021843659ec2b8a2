// jinja2's builtin filters and tests that chat templates use, with jinja2's argument names and
// defaults (e.g. unique/sort compare strings case-insensitively unless told otherwise).
#include <algorithm>
#include <cfenv>
#include <cmath>

#include "core/error.h"
#include "tokenizer/jinja/interpreter.h"

namespace tern::jinja {
namespace {

std::string lower_ascii(std::string s) {
  for (auto& c : s)
    if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(std::tolower(c));
  return s;
}
std::string upper_ascii(std::string s) {
  for (auto& c : s)
    if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(std::toupper(c));
  return s;
}

// `attribute="a.b"` walks keys like jinja2's make_attrgetter; integer parts index lists.
Value attr_path(const Value& v, const Value& path) {
  if (path.is_int()) return get_item(v, path);
  Value cur = v;
  std::string p = path.str();
  size_t start = 0;
  for (;;) {
    size_t dot = p.find('.', start);
    std::string part = p.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    if (cur.is_undefined()) return cur;
    cur = digits ? get_item(cur, Value(static_cast<int64_t>(std::stoll(part)))) : get_item(cur, Value(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

Value sort_key(const Value& v, bool case_sensitive) {
  return !case_sensitive && v.is_string() ? Value(lower_ascii(v.as_string())) : v;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// select/reject/selectattr/rejectattr: args are (test name, test args...) or nothing (truthiness).
Array select(Interpreter& in, const Value& seq, Array& args, bool with_attr, bool keep) {
  size_t first = with_attr ? 1 : 0;
  TERN_CHECK(!with_attr || !args.empty(), "jinja: missing attribute for selectattr/rejectattr");
  Array out;
  for (const auto& item : iterate(seq)) {
    Value v = with_attr ? attr_path(item, args[0]) : item;
    bool ok;
    if (args.size() > first) {
      Array targs(args.begin() + static_cast<std::ptrdiff_t>(first) + 1, args.end());
      ok = call_test(in, args[first].str(), v, targs);
    } else {
      ok = v.truthy();
    }
    if (ok == keep) out.push_back(item);
  }
  return out;
}

double round_half_even(double x) {
  int saved = std::fegetround();
  std::fesetround(FE_TONEAREST);
  double r = std::nearbyint(x);
  std::fesetround(saved);
  return r;
}

}  // namespace

Value call_filter(Interpreter& in, const std::string& name, const Value& v, Array& args, Kwargs& kw) {
  auto need_string = [&](const Value& x) { return x.str(); };
  if (name == "default" || name == "d") {
    bool boolean = arg(args, kw, 1, "boolean", Value(false)).truthy();
    if (v.is_undefined() || (boolean && !v.truthy())) return arg(args, kw, 0, "default_value", Value(std::string()));
    return v;
  }
  if (name == "safe") return v;
  if (name == "string") return Value(v.str());
  if (name == "trim") {
    Array a{arg(args, kw, 0, "chars")};
    Kwargs none;
    return call_filter(in, "strip_method", Value(need_string(v)), a, none);
  }
  if (name == "strip_method") return get_attr(v, "strip").as_function().call(in, args, kw);
  if (name == "upper") return Value(upper_ascii(v.str()));
  if (name == "lower") return Value(lower_ascii(v.str()));
  if (name == "capitalize") return get_attr(Value(v.str()), "capitalize").as_function().call(in, args, kw);
  if (name == "title") {
    // jinja2 capitalises after spaces, '-', '(', '{', '[' and '<' (not str.title()).
    std::string s = v.str();
    bool start = true;
    for (auto& c : s) {
      if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(start ? std::toupper(c) : std::tolower(c));
      start = std::isspace(static_cast<unsigned char>(c)) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    }
    return Value(s);
  }
  if (name == "length" || name == "count") {
    if (v.is_string()) return Value(static_cast<int64_t>(utf8_chars(v.as_string()).size()));
    if (v.is_undefined()) return Value(0);
    TERN_CHECK(v.is_array() || (v.is_object() && !v.as_object().is_namespace), "jinja: object of type '{}' has no len()", v.type_name());
    return Value(static_cast<int64_t>(v.is_array() ? v.as_array().size() : v.as_object().items.size()));
  }
  if (name == "tojson") {
    JsonStyle st;
    Value indent = arg(args, kw, 0, "indent", Value::none());
    if (indent.is_int()) st.indent = static_cast<int>(indent.as_int());
    if (in.options().hf_tojson) {
      st.sort_keys = arg(args, kw, 99, "sort_keys", Value(false)).truthy();
      st.ensure_ascii = arg(args, kw, 99, "ensure_ascii", Value(false)).truthy();
      st.html_safe = false;
      Value seps = arg(args, kw, 99, "separators", Value::none());
      if (seps.is_array() && seps.as_array().size() == 2) {
        st.item_sep = seps.as_array()[0].str();
        st.key_sep = seps.as_array()[1].str();
      }
    }
    std::string s = to_json_text(v, st);
    in.check_size(s.size());
    return Value(std::move(s));
  }
  if (name == "replace") {
    std::string s = v.str(), from = arg(args, kw, 0, "old").str(), to = arg(args, kw, 1, "new").str();
    Value count = arg(args, kw, 2, "count", Value::none());
    int64_t left = count.is_int() ? count.as_int() : -1;
    std::string out;
    if (from.empty()) {  // Python inserts `to` around every character
      auto chars = utf8_chars(s);
      for (size_t i = 0; i <= chars.size(); ++i) {
        if (left != 0) {
          out += to;
          --left;
        }
        if (i < chars.size()) out += chars[i];
        in.check_size(out.size());
      }
      return Value(std::move(out));
    }
    size_t start = 0;
    for (size_t p; left != 0 && (p = s.find(from, start)) != std::string::npos; start = p + from.size(), --left) {
      out.append(s, start, p - start);
      out += to;
      in.check_size(out.size());
    }
    out.append(s, start);
    in.check_size(out.size());
    return Value(std::move(out));
  }
  if (name == "first" || name == "last") {
    std::vector<Value> items = iterate(v);
    if (items.empty()) return Value::undefined("no " + name + " item, sequence was empty");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    std::string sep = arg(args, kw, 0, "d", Value(std::string())).str(), out;
    Value attr = arg(args, kw, 1, "attribute", Value::none());
    bool first = true;
    for (const auto& x : iterate(v)) {
      if (!first) out += sep;
      out += attr.is_none() ? x.str() : attr_path(x, attr).str();
      first = false;
      in.check_size(out.size());
    }
    return Value(std::move(out));
  }
  if (name == "list") return Value(iterate(v));
  if (name == "int" || name == "float") {
    bool as_int = name == "int";
    Value def = arg(args, kw, 0, "default", as_int ? Value(0) : Value(0.0));
    if (v.is_number()) return as_int ? Value(v.is_int() ? v.as_int() : static_cast<int64_t>(std::trunc(v.as_double()))) : Value(v.as_double());
    if (!v.is_string()) return def;
    std::string s = v.as_string();
    char* end = nullptr;
    errno = 0;
    double d = std::strtod(s.c_str(), &end);
    if (s.empty() || end == s.c_str() || *end != 0 || errno != 0 || std::isspace(static_cast<unsigned char>(s[0]))) return def;
    if (!as_int) return Value(d);
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return def;
    return Value(static_cast<int64_t>(std::trunc(d)));
  }
  if (name == "abs") {
    TERN_CHECK(v.is_number(), "jinja: bad operand type for abs(): '{}'", v.type_name());
    if (v.is_int()) {
      TERN_CHECK(v.as_int() != INT64_MIN, "jinja: integer overflow");
      return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
    }
    return Value(std::fabs(v.as_double()));
  }
  if (name == "round") {
    TERN_CHECK(v.is_number(), "jinja: round() of '{}'", v.type_name());
    int64_t precision = arg(args, kw, 0, "precision", Value(0)).as_int();
    std::string method = arg(args, kw, 1, "method", Value("common")).str();
    double scale = std::pow(10.0, static_cast<double>(precision)), x = v.as_double() * scale;
    double r = method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : round_half_even(x);
    TERN_CHECK(method == "common" || method == "ceil" || method == "floor", "jinja: method must be common, ceil or floor");
    return Value(r / scale);
  }
  if (name == "items") {
    if (v.is_undefined()) return Value(Array{});
    TERN_CHECK(v.is_object(), "jinja: can only get item pairs from a mapping");
    Array none;
    Kwargs nokw;
    return get_attr(v, "items").as_function().call(in, none, nokw);
  }
  if (name == "selectattr" || name == "rejectattr") return Value(select(in, v, args, true, name == "selectattr"));
  if (name == "select" || name == "reject") return Value(select(in, v, args, false, name == "select"));
  if (name == "map") {
    Value attr = arg(args, kw, 99, "attribute", Value::none());
    Array out;
    for (const auto& x : iterate(v)) {
      if (!attr.is_none()) {
        Value got = attr_path(x, attr);
        out.push_back(got.is_undefined() ? arg(args, kw, 99, "default", got) : got);
      } else {
        TERN_CHECK(!args.empty(), "jinja: map requires a filter name or attribute=");
        Array fargs(args.begin() + 1, args.end());
        Kwargs fkw = kw;
        out.push_back(call_filter(in, args[0].str(), x, fargs, fkw));
      }
    }
    return Value(std::move(out));
  }
  if (name == "unique" || name == "sort") {
    bool cs = arg(args, kw, name == "sort" ? 1 : 0, "case_sensitive", Value(false)).truthy();
    Value attr = arg(args, kw, name == "sort" ? 2 : 1, "attribute", Value::none());
    auto key = [&](const Value& x) { return sort_key(attr.is_none() ? x : attr_path(x, attr), cs); };
    std::vector<Value> items = iterate(v);
    if (name == "sort") {
      bool reverse = arg(args, kw, 0, "reverse", Value(false)).truthy();
      std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
        return reverse ? compare(key(b), key(a)) < 0 : compare(key(a), key(b)) < 0;
      });
      return Value(std::move(items));
    }
    Array out, seen;
    for (const auto& x : items) {
      Value k = key(x);
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); })) {
        seen.push_back(k);
        out.push_back(x);
      }
    }
    return Value(std::move(out));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      auto chars = utf8_chars(v.as_string());
      std::string out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
      return Value(out);
    }
    std::vector<Value> items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value(std::move(items));
  }
  if (name == "escape" || name == "e" || name == "forceescape") return Value(html_escape(v.str()));
  if (name == "indent") {
    Value width = arg(args, kw, 0, "width", Value(4));
    bool first = arg(args, kw, 1, "first", Value(false)).truthy(), blank = arg(args, kw, 2, "blank", Value(false)).truthy();
    std::string ind = width.is_string() ? width.as_string() : std::string(static_cast<size_t>(std::max<int64_t>(0, width.as_int())), ' ');
    in.check_size(ind.size());
    std::string s = v.str() + "\n";
    std::vector<std::string> lines;
    for (size_t start = 0, p; (p = s.find('\n', start)) != std::string::npos; start = p + 1) lines.push_back(s.substr(start, p - start));
    std::string out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (blank || !lines[i].empty()) out += ind;
      out += lines[i];
      in.check_size(out.size());
    }
    return Value(first ? ind + out : out);
  }
  if (name == "wordcount") {
    std::string s = v.str();
    int64_t n = 0;
    bool in_word = false;
    for (unsigned char c : s) {
      bool w = std::isalnum(c) || c == '_' || c >= 0x80;
      if (w && !in_word) ++n;
      in_word = w;
    }
    return Value(n);
  }
  if (name == "batch") {
    int64_t size = arg(args, kw, 0, "linecount").as_int();
    TERN_CHECK(size > 0, "jinja: batch size must be positive");
    Value fill = arg(args, kw, 1, "fill_with", Value::none());
    Array out, cur;
    for (const auto& x : iterate(v)) {
      cur.push_back(x);
      if (static_cast<int64_t>(cur.size()) == size) out.push_back(Value(std::exchange(cur, {})));
    }
    if (!cur.empty()) {
      if (!fill.is_none())
        while (static_cast<int64_t>(cur.size()) < size) cur.push_back(fill);
      out.push_back(Value(std::move(cur)));
    }
    return Value(std::move(out));
  }
  if (name == "sum") {
    Value total = arg(args, kw, 1, "start", Value(0));
    Value attr = arg(args, kw, 0, "attribute", Value::none());
    for (const auto& x : iterate(v)) {
      Value y = attr.is_none() ? x : attr_path(x, attr);
      TERN_CHECK(y.is_number() && total.is_number(), "jinja: sum of non-numbers");
      total = total.is_int() && y.is_int() ? Value(total.as_int() + y.as_int()) : Value(total.as_double() + y.as_double());
    }
    return total;
  }
  if (name == "min" || name == "max") {
    std::vector<Value> items = iterate(v);
    if (items.empty()) return Value::undefined("no " + name + " item, sequence was empty");
    Value best = items[0];
    for (const auto& x : items)
      if ((name == "min") == (compare(sort_key(x, false), sort_key(best, false)) < 0)) best = x;
    return best;
  }
  fail("jinja: no filter named '{}'", name);
}

bool call_test(Interpreter& in, const std::string& name, const Value& v, Array& args) {
  auto a0 = [&]() -> const Value& {
    TERN_CHECK(!args.empty(), "jinja: test '{}' needs an argument", name);
    return args[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number() && !v.is_bool();
  if (name == "integer") return v.kind() == Value::Kind::Int;
  if (name == "float") return v.kind() == Value::Kind::Float;
  if (name == "mapping") return v.is_object() && !v.as_object().is_namespace;
  if (name == "iterable") return v.is_array() || v.is_string() || v.is_undefined() || (v.is_object() && !v.as_object().is_namespace);
  if (name == "sequence") return v.is_array() || v.is_string() || (v.is_object() && !v.as_object().is_namespace);
  if (name == "callable") return v.is_function();
  if (name == "lower") return v.is_string() && lower_ascii(v.as_string()) == v.as_string();
  if (name == "upper") return v.is_string() && upper_ascii(v.as_string()) == v.as_string();
  if (name == "odd" || name == "even") {
    TERN_CHECK(v.is_int(), "jinja: test '{}' needs an integer", name);
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    TERN_CHECK(v.is_int() && a0().is_int() && a0().as_int() != 0, "jinja: divisibleby needs non-zero integers");
    return v.as_int() % a0().as_int() == 0;
  }
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") return equals(v, a0());
  if (name == "ne" || name == "!=") return !equals(v, a0());
  if (name == "lt" || name == "lessthan" || name == "<") return compare(v, a0()) < 0;
  if (name == "le" || name == "<=") return compare(v, a0()) <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, a0()) > 0;
  if (name == "ge" || name == ">=") return compare(v, a0()) >= 0;
  if (name == "in") return contains(a0(), v);
  fail("jinja: no test named '{}'", name);
}

}  // namespace tern::jinja
