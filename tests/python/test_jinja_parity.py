"""Chat-template parity: tern's Jinja interpreter (tool_jinja) against Python's jinja2 rendering
with transformers' environment (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks)."""
import json

import gguf
import jinja2
import jinja2.sandbox
import pytest

import subprocess

from conftest import SOURCE_DIR, binary

TEMPLATES = SOURCE_DIR / "tests" / "fixtures" / "templates"
SYS = {"role": "system", "content": "You are a terse assistant."}
U1 = {"role": "user", "content": "Hello!"}
A1 = {"role": "assistant", "content": "Hi. How can I help?"}
U2 = {"role": "user", "content": "What is 2+2?"}

CONVERSATIONS = {
    "single_user": [U1],
    "system_user": [SYS, U1],
    "multi_turn": [U1, A1, U2],
    "system_multi_turn": [SYS, U1, A1, U2, {"role": "assistant", "content": "4"}],
    "empty_content": [{"role": "user", "content": ""}],
    "unicode": [SYS, {"role": "user", "content": "Grüße, 世界! 🎉 naïve café — ok"}],
    "special_chars": [{"role": "user", "content": "quotes \" ' \\ back\\slash <tag> & {{ x }} {% y %}\ttab\nnew\r\nline"}],
    "surrounding_space": [{"role": "user", "content": "  \n padded \t\n"}, {"role": "assistant", "content": " ok "}],
    "assistant_first": [A1, U1],
    "system_only": [SYS],
    "tool_message": [U1, {"role": "tool", "content": "{\"temp\": 21}"}],
    "empty": [],
    "two_systems": [SYS, U1, SYS],
}


class Result:
    def __init__(self, proc):
        # Bytes, not text mode: text mode would turn a rendered "\r\n" into "\n".
        self.returncode = proc.returncode
        self.stdout = proc.stdout.decode("utf-8")
        self.stderr = proc.stderr.decode("utf-8", "replace")


def run(args, timeout):
    return Result(subprocess.run([str(a) for a in args], capture_output=True, timeout=timeout))


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def jinja2_render(template: str, ctx: dict, hf_tojson: bool = False):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    if hf_tojson:  # transformers' replacement filter
        env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    try:
        return env.from_string(template).render(**ctx), None
    except Exception as e:  # noqa: BLE001 - any jinja2 failure must be a tern failure too
        return None, e


def tern_render(tmp_path, template: str, ctx: dict, hf_tojson: bool = False):
    tpath, cpath = tmp_path / "t.jinja", tmp_path / "ctx.json"
    tpath.write_text(template, encoding="utf-8", newline="")
    cpath.write_text(json.dumps(ctx), encoding="utf-8")
    args = [binary("tool_jinja"), tpath, cpath, "--trim-blocks", "--lstrip-blocks"]
    if hf_tojson:
        args.append("--hf-tojson")
    r = run(args, timeout=60)
    return r


def check(tmp_path, template, ctx, hf_tojson=False):
    want, err = jinja2_render(template, ctx, hf_tojson)
    got = tern_render(tmp_path, template, ctx, hf_tojson)
    if err is not None:
        assert got.returncode != 0, f"jinja2 raised {err!r} but tern printed {got.stdout!r}"
    else:
        assert got.returncode == 0, got.stderr
        assert got.stdout == want


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.jinja")))
@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_template_parity(tmp_path, template, conversation, add_generation_prompt):
    ctx = {"messages": CONVERSATIONS[conversation], "add_generation_prompt": add_generation_prompt,
           "bos_token": "<s>", "eos_token": "</s>", "tools": None}
    check(tmp_path, (TEMPLATES / template).read_text(encoding="utf-8"), ctx)


def test_default_model_template_matches_fixture(tmp_path, default_model):
    field = gguf.GGUFReader(default_model).fields["tokenizer.chat_template"]
    text = bytes(field.parts[field.data[0]]).decode("utf-8")
    assert text == (TEMPLATES / "smollm2.jinja").read_text(encoding="utf-8")
    for name, messages in CONVERSATIONS.items():
        check(tmp_path, text, {"messages": messages, "add_generation_prompt": True})


QWEN_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & 'today'",
                                                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                                 "required": ["city"]}}}]
QWEN_TOOL_CALL = [U1, {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "°C"}}}]},
    {"role": "tool", "content": "21"}, {"role": "tool", "content": "22"}]


@pytest.mark.parametrize("hf_tojson", [False, True])
def test_qwen_tools_tojson(tmp_path, hf_tojson):
    ctx = {"messages": QWEN_TOOL_CALL, "add_generation_prompt": True, "tools": QWEN_TOOLS}
    check(tmp_path, (TEMPLATES / "qwen2_5.jinja").read_text(encoding="utf-8"), ctx, hf_tojson)


CONSTRUCTS = [
    "{% for k, v in d.items() %}{{ loop.index }}{{ k }}={{ v }}{% if not loop.last %}, {% endif %}{% endfor %}",
    "{{ xs | map(attribute='n') | join(',') }} {{ xs | selectattr('n', 'even') | list | length }}",
    "{{ [3, 1, 2] | sort | reverse | list }} {{ 'abc'[::-1] }} {{ 'Hello World' | lower | title }}",
    "{% set ns = namespace(total=0) %}{% for x in xs %}{% set ns.total = ns.total + x.n %}{% endfor %}{{ ns.total }}",
    "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 1.5 * 2 }} {{ 1e-5 }} {{ 0.1 + 0.2 }}",
    "{{ d | tojson }} {{ d | tojson(indent=2) }} {{ 'x' if none is none else 'y' }} {{ undefined_var | default('dflt') }}",
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', punct='?') }}",
    "{% for i in range(5) if i is odd %}{{ i }}{{ loop.length }}{% else %}none{% endfor %}{% for x in [] %}{% else %}E{% endfor %}",
    "  {% if true %}\n    yes\n  {% endif %}\n{%- for i in range(2) -%}\n {{ i }} \n{%+ endfor %}",
    "{{ '  a b  '.strip().split(' ') }} {{ 'a,b'.split(',') | last }} {{ d.get('zz', 'no') }} {{ 'x' in 'xyz' }}",
    "{{ [1, 2, 2, 'A', 'a'] | unique | list }} {{ 'one two three' | wordcount }} {{ 3.7 | int }} {{ '4' | float }}",
    "{{ 'line1\nline2' | indent(2) }} {{ '<&>' | e }} {{ xs | first }} {{ [1,2,3] | batch(2) | list }}",
    "{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}{{ d.a.b }}",
    "{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}",
]


@pytest.mark.parametrize("index", range(len(CONSTRUCTS)))
@pytest.mark.parametrize("trim", [False, True])
def test_construct_parity(tmp_path, index, trim):
    ctx = {"d": {"b": 2, "a": "x<y>'z'", "u": "é"}, "xs": [{"n": 1}, {"n": 2}, {"n": 4}]}
    template = CONSTRUCTS[index]
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=trim, lstrip_blocks=trim,
                                                       extensions=["jinja2.ext.loopcontrols"])
    try:
        want, err = env.from_string(template).render(**ctx), None
    except Exception as e:  # noqa: BLE001
        want, err = None, e
    tpath, cpath = tmp_path / "t.jinja", tmp_path / "ctx.json"
    tpath.write_text(template, encoding="utf-8")
    cpath.write_text(json.dumps(ctx), encoding="utf-8")
    args = [binary("tool_jinja"), tpath, cpath] + (["--trim-blocks", "--lstrip-blocks"] if trim else [])
    got = run(args, timeout=60)
    if err is not None:
        assert got.returncode != 0, f"jinja2 raised {err!r} but tern printed {got.stdout!r}"
    else:
        assert got.returncode == 0, got.stderr
        assert got.stdout == want
