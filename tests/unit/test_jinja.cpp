// Unit tests for the sandboxed Jinja subset: each construct, each limit, malformed input.
// Parity with Python's jinja2 on real chat templates is tests/python/test_jinja_parity.py.
#include <gtest/gtest.h>

#include "core/error.h"
#include "tokenizer/jinja/chat_template.h"
#include "tokenizer/jinja/jinja.h"

using nlohmann::json;
using tern::jinja::Limits;
using tern::jinja::Options;

namespace {
std::string R(const std::string& t, const json& ctx = json::object(), Options o = {}) { return tern::jinja::render(t, ctx, Limits{}, o); }
std::string error_of(const std::string& t, const json& ctx = json::object(), Limits l = {}) {
  try {
    tern::jinja::render(t, ctx, l);
  } catch (const tern::Error& e) {
    return e.what();
  }
  return "<no error>";
}
}  // namespace

TEST(Jinja, OutputAndComments) {
  EXPECT_EQ(R("a{{ 1 + 2 }}b{# gone #}c"), "a3bc");
  EXPECT_EQ(R("{{ x }}|{{ y }}", {{"x", "hi"}}), "hi|");  // undefined prints empty
  EXPECT_EQ(R("{{ none }} {{ true }} {{ 1.0 }} {{ [1, 'a'] }} {{ {'k': 2} }}"), "None True 1.0 [1, 'a'] {'k': 2}");
}

TEST(Jinja, WhitespaceControl) {
  EXPECT_EQ(R("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(R("a\n  {% if true %}\nb\n  {% endif %}\nc"), "a\n  \nb\n  \nc");
  Options hf{.trim_blocks = true, .lstrip_blocks = true};
  EXPECT_EQ(R("a\n  {% if true %}\nb\n  {% endif %}\nc", json::object(), hf), "a\nb\nc");
  EXPECT_EQ(R("x\n", json::object()), "x");  // one trailing newline dropped, as jinja2
}

TEST(Jinja, IfElifElseAndOperators) {
  EXPECT_EQ(R("{% if x > 2 %}big{% elif x == 2 %}two{% else %}small{% endif %}", {{"x", 2}}), "two");
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 'a' ~ 1 }}"), "3 -4 2 1024 3.5 a1");
  EXPECT_EQ(R("{{ 1 < 2 < 3 }} {{ not 1 }} {{ 0 or 'd' }} {{ 1 and 2 }} {{ 'b' in 'abc' }} {{ 3 not in [1] }}"),
            "True False d 2 True True");
  EXPECT_EQ(R("{{ 'y' if x else 'n' }}{{ 'abc'[::-1] }}{{ [1,2,3][1:] }}{{ 'abc'[-1] }}", {{"x", true}}), "ycba[2, 3]c");
}

TEST(Jinja, ForLoops) {
  EXPECT_EQ(R("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
              "{{ loop.revindex }}|{% endfor %}", {{"xs", {"a", "b"}}}),
            "10TrueFalse22|21FalseTrue21|");
  EXPECT_EQ(R("{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }},{% endfor %}", {{"xs", {1, 2}}}), "-2,1-,");
  EXPECT_EQ(R("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {{"d", {{"a", 1}, {"b", 2}}}}), "a=1;b=2;");
  EXPECT_EQ(R("{% for i in range(6) if i is even %}{{ i }}{% endfor %}"), "024");
  EXPECT_EQ(R("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}"), "02");
}

TEST(Jinja, SetNamespaceMacroCall) {
  EXPECT_EQ(R("{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}"), "1231");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"), "6");
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ b }}{{ a }}{% set t %}in{{ a }}{% endset %}{{ t }}"), "21in1");
  EXPECT_EQ(R("{% macro m(n, p='!') %}<{{ n }}{{ p }}>{% endmacro %}{{ m('a') }}{{ m('b', p='?') }}"), "<a!><b?>");
  EXPECT_EQ(R("{% macro w() %}[{{ caller() }}]{% endmacro %}{% call w() %}body{% endcall %}"), "[body]");
  EXPECT_EQ(R("{% filter upper %}abc{% endfilter %}"), "ABC");
}

TEST(Jinja, Filters) {
  json ctx = {{"xs", {{{"n", 1}, {"k", "b"}}, {{"n", 2}, {"k", "A"}}}}, {"d", {{"b", 1}, {"a", "<'é'>"}}}};
  EXPECT_EQ(R("{{ ' x '|trim }}{{ 'ab'|length }}{{ 'aB'|upper }}{{ 'aB'|lower }}{{ 'hi there'|title }}{{ 'hI'|capitalize }}", ctx),
            "x2ABabHi ThereHi");
  EXPECT_EQ(R("{{ d|tojson }}", ctx), "{\"a\": \"\\u003c\\u0027\\u00e9\\u0027\\u003e\", \"b\": 1}");
  EXPECT_EQ(R("{{ [1,[2]]|tojson(indent=2) }}"), "[\n  1,\n  [\n    2\n  ]\n]");
  EXPECT_EQ(R("{{ 'aXa'|replace('a','b') }}{{ u|default('d') }}{{ ''|d('e', true) }}{{ [3,4]|first }}{{ [3,4]|last }}"), "bXbde34");
  EXPECT_EQ(R("{{ xs|map(attribute='n')|join(',') }} {{ xs|selectattr('n','equalto',2)|list|length }} {{ xs|rejectattr('n','odd')|map(attribute='k')|first }}", ctx),
            "1,2 1 A");
  EXPECT_EQ(R("{{ [3,1,2]|sort }}{{ ['b','A','a']|unique|list }}{{ [1,2]|reverse|list }}{{ '3'|int + 1 }}{{ '1.5'|float }}{{ -2|abs }}{{ 2.5|round }}", ctx),
            "[1, 2, 3]['b', 'A'][2, 1]41.522.0");
  EXPECT_EQ(R("{{ d|items|list|length }}{{ [0,1,2]|select|list }}{{ [0,1]|reject|list }}{{ '<a>'|e }}{{ 'a\nb'|indent(2) }}{{ 'a b c'|wordcount }}", ctx),
            "2[1, 2][0]&lt;a&gt;a\n  b3");
  EXPECT_EQ(R("{{ [1,2,3]|batch(2)|list }}{{ 'x'|string }}{{ [1,2]|count }}"), "[[1, 2], [3]]x2");
}

TEST(Jinja, TestsAndMethods) {
  EXPECT_EQ(R("{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ 1 is integer }}"
              "{{ {} is mapping }}{{ [] is iterable }}{{ [] is sequence }}{{ true is boolean }}{{ true is true }}{{ false is false }}",
              {{"x", 1}}),
            "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue");
  EXPECT_EQ(R("{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 2 is equalto 2 }}{{ 1 is in [1] }}{{ 1 is not none }}"),
            "TrueTrueTrueTrueTrueTrue");
  EXPECT_EQ(R("{{ ' a '.strip() }}{{ 'ab'.startswith('a') }}{{ 'ab'.endswith('a') }}{{ 'a,b'.split(',') }}{{ 'x'.upper() }}"
              "{{ d.get('q', 5) }}{{ d.keys()|list }}{{ d.values()|list }}{{ 'aa'.replace('a', 'b') }}{{ 'ab cd'.title() }}",
              {{"d", {{"k", 1}}}}),
            "aTrueFalse['a', 'b']X5['k'][1]bbAb Cd");
}

TEST(Jinja, UndefinedSemantics) {
  EXPECT_EQ(R("{% if u %}a{% else %}b{% endif %}{{ u|length }}{% for x in u %}x{% endfor %}{{ d.missing }}", {{"d", json::object()}}), "b0");
  EXPECT_NE(error_of("{{ u.attr }}").find("'u' is undefined"), std::string::npos);
  EXPECT_NE(error_of("{{ u + 1 }}"), "<no error>");
}

TEST(Jinja, RaiseException) { EXPECT_EQ(error_of("{{ raise_exception('bad role') }}"), "bad role"); }

TEST(Jinja, Limits) {
  Limits l{.max_recursion_depth = 50, .max_loop_iterations = 1000, .max_output_bytes = 1000, .max_template_bytes = 100000};
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += "{% if true %}";
  for (int i = 0; i < 200; ++i) deep += "{% endif %}";
  EXPECT_EQ(error_of(deep, json::object(), l), "template recursion depth exceeds 50");
  EXPECT_EQ(error_of("{{ " + std::string(200, '(') + "1" + std::string(200, ')') + " }}", json::object(), l), "template recursion depth exceeds 50");
  EXPECT_EQ(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", json::object(), l), "template recursion depth exceeds 50");
  EXPECT_EQ(error_of("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", json::object(), l),
            "template loop iterations exceed 1000");
  EXPECT_EQ(error_of("{% for i in range(10**12) %}{% endfor %}", json::object(), l), "template loop iterations exceed 1000");
  EXPECT_EQ(error_of("{% for i in range(900) %}xy{% endfor %}", json::object(), l), "template output exceeds 1000 bytes");
  EXPECT_EQ(error_of("{{ 'x' * 100000000000 }}", json::object(), l), "template output exceeds 1000 bytes");
  EXPECT_EQ(error_of(std::string(200000, 'a'), json::object(), l), "template size 200000 exceeds 100000 bytes");
}

TEST(Jinja, MalformedTemplatesThrow) {
  const char* bad[] = {"{% if x %}", "{% for x in y %}", "{{ x", "{% endif %}", "{{ 1 + }}", "{% bogus %}", "{{ 'abc }}",
                       "{{ x $ y }}", "{% if %}{% endif %}", "{% for in x %}{% endfor %}", "{# open", "{{ [1, 2 }}",
                       "{% include 'f' %}", "{{ x.__class__() }}", "{{ (1, 2 }}", "{% set %}", "{% macro %}", "{{ }}"};
  for (const char* t : bad) EXPECT_THROW(tern::jinja::render(t, json{{"x", 1}, {"y", json::array()}}), tern::Error) << t;
  EXPECT_EQ(error_of("ab\n  {% if x %}"), "template syntax error at line 2, column 13: unexpected end of template, expected '{% elif %}'");
}

TEST(Jinja, ApplyChatTemplate) {
  const char* chatml = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                       "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  json msgs = json::array({{{"role", "user"}, {"content", "hi"}}});
  EXPECT_EQ(tern::apply_chat_template(chatml, msgs, true, "<s>", "</s>"), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(tern::apply_chat_template("{{ bos_token }}{{ tools is none }}{{ strftime_now('%Y')|length }}{{ x }}", msgs, false, "<s>", "</s>",
                                      {{"x", "!"}}),
            "<s>True4!");
  EXPECT_THROW(tern::apply_chat_template("{{ raise_exception('no') }}", msgs, false, "", ""), tern::Error);
}
