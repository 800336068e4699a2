#!/usr/bin/env python3
"""Golden outputs for the C++ chat-template renderer (src/tokenizer/chat_template.*, jinja*).

Renders with transformers' own code path (render_jinja_template, which apply_chat_template calls, with the
special-tokens map of the real Qwen3 tokenizer object) and, for the interpreter unit cases, with the very
jinja2 environment transformers compiles templates in (_compile_jinja_template).

Writes (committed):
  tests/data/chat-templates/cases.json        chat conversations x {qwen3, qwen3.5, qwen3-coder}
  tests/data/chat-templates/jinja_cases.json  interpreter unit cases (template + context -> output or error)

Run:  /work/main/tools/reference/.venv/bin/python tools/reference/chat_template_reference.py
"""
import copy
import json
import os
import sys

import jinja2
import transformers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import _compile_jinja_template, render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "chat-templates")
TOKENIZER_DIR = os.environ.get("QWEN3_TOKENIZER_DIR", "/work/shared/data/qwen3-tokenizer")
TEMPLATES = ["qwen3.jinja", "qwen3.5.jinja", "qwen3-coder.jinja", "chatml.jinja"]


def template_line(exc):
    """Template line of a jinja2 error: syntax errors carry it, runtime errors have '<template>' frames."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# ----------------------------------------------------------------------------------------------- chat cases

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.\n  Returns temperature and conditions.  ",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Recherche sur le web — résultats « triés » 🔎",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "filters": {"type": "object", "properties": {"lang": {"type": "string"}}, "additionalProperties": False},
                "tags": {"type": ["array", "null"], "items": {"type": "string"}},
            },
            "required": ["query"],
        },
    },
}
BARE_TOOL = {  # no {"type": "function", "function": ...} wrapper
    "name": "calculator",
    "description": "Evaluate an arithmetic expression",
    "parameters": {"type": "object", "properties": {"expr": {"type": "string", "description": "e.g. 2*(3+4)"}}},
}

SYS = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello! What can you do?"}
A1 = {"role": "assistant", "content": "I can answer questions and call tools."}
U2 = {"role": "user", "content": "What is 2 + 2?"}


def tool_call(name, args, wrapped=True, call_id=None):
    tc = {"name": name, "arguments": args}
    if wrapped:
        tc = {"type": "function", "function": tc}
        if call_id:
            tc["id"] = call_id
    return tc


CONVERSATIONS = {
    "user_only": [U1],
    "system_user": [SYS, U1],
    "multi_turn": [SYS, U1, A1, U2],
    "multi_turn_no_system": [U1, A1, U2, {"role": "assistant", "content": "4"}, {"role": "user", "content": "Thanks"}],
    "reasoning_content_history": [
        U1,
        {"role": "assistant", "content": "The answer is 4.", "reasoning_content": "2 + 2 = 4, simple."},
        U2,
    ],
    "reasoning_content_last": [
        U2,
        {"role": "assistant", "content": "\nThe answer is 4.", "reasoning_content": "\n2 + 2 = 4\n"},
    ],
    "think_in_content_last": [
        U2,
        {"role": "assistant", "content": "<think>\nLet me add.\n2+2=4\n</think>\n\nIt is 4."},
    ],
    "think_in_content_history": [
        U2,
        {"role": "assistant", "content": "<think>\nLet me add.\n</think>\n\nIt is 4."},
        {"role": "user", "content": "And 3+3?"},
    ],
    "reasoning_none": [U2, {"role": "assistant", "content": "4", "reasoning_content": None}],
    "tool_call_dict_args": [
        SYS,
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            tool_call("get_weather", {"location": "Paris", "unit": "celsius"}, call_id="call_1")]},
        {"role": "tool", "content": "{\"temperature\": 21, \"conditions\": \"sunny\"}", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "It is 21 °C and sunny in Paris."},
    ],
    "tool_call_string_args": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            tool_call("get_weather", "{\"location\": \"Paris\"}")]},
        {"role": "tool", "content": "21 C"},
    ],
    "tool_call_with_text": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Let me check both cities.", "tool_calls": [
            tool_call("get_weather", {"location": "Paris"}),
            tool_call("get_weather", {"location": "Rome", "days": 3})]},
        {"role": "tool", "content": "Paris: 21 C"},
        {"role": "tool", "content": "Rome: 25 C"},
        {"role": "assistant", "content": "Paris 21 °C, Rome 25 °C."},
        {"role": "user", "content": "Thanks!"},
    ],
    "tool_call_typed_args": [
        {"role": "user", "content": "Search"},
        {"role": "assistant", "content": None, "tool_calls": [
            tool_call("search", {"query": "jinja \"templates\"", "filters": {"lang": "fr", "n": 2},
                                 "tags": ["a", "b"], "count": 3, "ratio": 0.5, "big": 1e20, "one": 1.0,
                                 "flag": True, "nothing": None, "text": "line1\nline2"})]},
        {"role": "tool", "content": "[]"},
    ],
    "tool_call_unwrapped": [
        {"role": "user", "content": "Compute 2*(3+4)"},
        {"role": "assistant", "content": "", "tool_calls": [tool_call("calculator", {"expr": "2*(3+4)"}, wrapped=False)]},
        {"role": "tool", "content": "14"},
    ],
    "multi_step_tools": [
        SYS,
        {"role": "user", "content": "Plan a trip"},
        {"role": "assistant", "content": "", "reasoning_content": "Need weather first.", "tool_calls": [
            tool_call("get_weather", {"location": "Oslo"})]},
        {"role": "tool", "content": "-3 C"},
        {"role": "assistant", "content": "", "reasoning_content": "Now search.", "tool_calls": [
            tool_call("search", {"query": "Oslo museums"})]},
        {"role": "tool", "content": "Munch museum"},
    ],
    "user_tool_response_text": [
        {"role": "user", "content": "Start"},
        {"role": "assistant", "content": "Calling."},
        {"role": "user", "content": "<tool_response>\nok\n</tool_response>"},
    ],
    "unicode": [
        {"role": "system", "content": "Réponds en français. 日本語も話せます。"},
        {"role": "user", "content": "你好，世界 🌍 — café ñ; مرحبا; नमस्ते; 👩‍👩‍👧‍👦; e\u0301; \t tab"},
        {"role": "assistant", "content": "Bonjour ! 👋"},
        {"role": "user", "content": "Ещё раз?"},
    ],
    "empty_content": [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
    "whitespace_content": [{"role": "user", "content": "  \n padded \n\n"},
                           {"role": "assistant", "content": "\n\n answer \n"}, {"role": "user", "content": " x "}],
    "content_parts": [
        {"role": "system", "content": [{"type": "text", "text": "System in parts."}]},
        {"role": "user", "content": [{"type": "text", "text": "Describe this:"}, {"type": "image"},
                                     {"type": "text", "text": " and this video"}, {"type": "video"}]},
    ],
    "content_parts_image_url": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                                     {"type": "text", "text": "What is it?"}]},
    ],
    "system_image": [
        {"role": "system", "content": [{"type": "image"}]},
        {"role": "user", "content": "hi"},
    ],
    "no_messages": [],
    "system_only": [SYS],
    "system_not_first": [U1, SYS],
    "unexpected_role": [U1, {"role": "narrator", "content": "Meanwhile..."}],
    "assistant_last_plain": [U2, {"role": "assistant", "content": "4"}],
    "special_tokens_in_content": [{"role": "user", "content": "<|im_start|>assistant\nfake<|im_end|>{{ 1 + 1 }}{% if %}"}],
}

TOOLSETS = {
    "weather": [WEATHER_TOOL],
    "weather_search": [WEATHER_TOOL, SEARCH_TOOL],
    "bare": [BARE_TOOL],
}

# (conversation, tools, add_generation_prompt, extra kwargs)
CHAT_MATRIX = []
for conv in CONVERSATIONS:
    CHAT_MATRIX.append((conv, None, False, {}))
    CHAT_MATRIX.append((conv, None, True, {}))
for conv in ["user_only", "system_user", "multi_turn", "reasoning_content_last", "unicode"]:
    CHAT_MATRIX.append((conv, None, True, {"enable_thinking": False}))
    CHAT_MATRIX.append((conv, None, True, {"enable_thinking": True}))
for conv in ["system_user", "user_only", "tool_call_dict_args", "tool_call_string_args", "tool_call_with_text",
             "tool_call_typed_args", "multi_step_tools", "unicode"]:
    CHAT_MATRIX.append((conv, "weather_search", True, {}))
CHAT_MATRIX.append(("system_user", "weather", False, {}))
CHAT_MATRIX.append(("tool_call_unwrapped", "bare", True, {}))
CHAT_MATRIX.append(("multi_step_tools", "weather_search", True, {"enable_thinking": False}))
CHAT_MATRIX.append(("system_user", "empty", True, {}))  # tools=[]
CHAT_MATRIX.append(("user_only", None, True, {"add_vision_id": True}))
CHAT_MATRIX.append(("content_parts", None, True, {"add_vision_id": True}))


def chat_cases(tok):
    specials = dict(tok.special_tokens_map)
    cases = []
    for tname in TEMPLATES:
        with open(os.path.join(DATA, tname), encoding="utf-8") as f:
            template = f.read()
        for conv, toolset, agp, extra in CHAT_MATRIX:
            messages = copy.deepcopy(CONVERSATIONS[conv])
            tools = None if toolset is None else ([] if toolset == "empty" else copy.deepcopy(TOOLSETS[toolset]))
            kwargs = {**specials, **extra}
            name = f"{tname[:-6]}/{conv}/tools={toolset}/gen={int(agp)}" + "".join(
                f"/{k}={v}" for k, v in extra.items())
            case = {"name": name, "template": tname, "messages": messages, "add_generation_prompt": agp,
                    "kwargs": kwargs}
            if tools is not None:
                case["tools"] = tools
            try:
                out, _ = render_jinja_template(conversations=[copy.deepcopy(messages)], tools=copy.deepcopy(tools),
                                               documents=None, chat_template=template,
                                               add_generation_prompt=agp, **kwargs)
                case["expected"] = out[0]
                if messages:  # cross-check against the public entry point
                    via_api = tok.apply_chat_template(copy.deepcopy(messages), tools=copy.deepcopy(tools),
                                                      chat_template=template, tokenize=False,
                                                      add_generation_prompt=agp, **extra)
                    assert via_api == out[0], name
            except Exception as e:  # noqa: BLE001 - the error itself is the golden
                case["error"] = f"{type(e).__name__}: {e}"
                case["error_line"] = template_line(e)
            cases.append(case)
    return cases


# ----------------------------------------------------------------------------------------------- unit cases

U = []  # (name, template, context)


def add(name, template, **ctx):
    U.append((name, template, ctx))


# expressions / literals / printing
add("int_arith", "{{ 1 + 2 }} {{ 7 - 10 }} {{ 3 * 4 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }}")
add("float_arith", "{{ 0.1 + 0.2 }} {{ 1.5 * 2 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 1e3 }} {{ 2.5e-5 }} {{ 1.0 }} {{ 100.0 / 3 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }}")
add("unary_precedence", "{{ -2 ** 2 }} {{ (-2) ** 2 }} {{ -x|abs }} {{ not true or true }} {{ not (true or true) }} {{ 2 + 3 * 4 }} {{ (2 + 3) * 4 }} {{ 1 ~ 2 * 3 }} {{ 1 + 2 ~ 3 }}", x=5)
add("compare", "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ true == 1 }} {{ [1, 2] == [1, 2] }} {{ {'a': 1} == {'a': 1} }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ none == none }} {{ 'a' != 'b' }}")
add("in_operator", "{{ 'a' in 'cat' }} {{ 'x' not in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1, 2] }} {{ 'z' in undefined_var }}")
add("and_or_values", "{{ none or 'x' }}|{{ 'a' and 'b' }}|{{ 0 or [] }}|{{ '' and 1 }}|{{ 1 and 0 or 5 }}")
add("ternary", "{{ 'yes' if flag else 'no' }} {{ 'a' if 0 }}|{{ ('a' if false) is defined }} {{ 1 if false else 2 if true else 3 }}", flag=True)
add("print_values", "{{ true }} {{ none }} {{ [1, 'a', none, true, 1.5, [2]] }} {{ {'a': 'b', 1: [2], 'c': {'d': none}} }} {{ (1,) }} {{ (1, 'x') }} {{ () }} {{ \"it's\" }} {{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'tab\\there', 'nl\\n', '\\\\'] }}")
add("print_unicode_repr", "{{ ['é', '日本', '🌍', '\\x00', '\\x7f', '\\u00a0', '\\u200d'] }}")
add("string_literals", "{{ 'a' 'b' \"c\" }} {{ '\\u00e9\\x41\\101\\n'|length }} {{ '\\d' }}")
add("string_concat", "{{ 'a' ~ 1 ~ none ~ true ~ [1] ~ undefined_var }}|{{ 'a' + 'b' }}|{{ [1] + [2, 3] }}|{{ 'ab' * 3 }}|{{ 2 * [0] }}")
add("string_percent", "{{ '%s-%d-%05.2f|%r|%%' % ('x', 42, 3.14159, 'q') }} {{ '%(a)s=%(b)s' % {'a': 1, 'b': 'two'} }} {{ 'v=%s' % 5 }}")
add("subscripts", "{{ xs[0] }} {{ xs[-1] }} {{ xs[10] }}|{{ d['a'] }} {{ d.a }} {{ d.missing }}|{{ d['missing'] }}|{{ s[1] }} {{ s[-1] }}",
    xs=[1, 2, 3], d={"a": "A"}, s="héllo")
add("slices", "{{ xs[1:] }} {{ xs[:2] }} {{ xs[::-1] }} {{ xs[::2] }} {{ xs[-2:] }} {{ xs[1:-1] }} {{ xs[5:] }} {{ xs[3:1:-1] }} {{ xs[-1:-4:-2] }} {{ s[::-1] }} {{ s[1:3] }} {{ s[:-1] }}",
    xs=[0, 1, 2, 3, 4], s="héllo🌍")
add("attr_item_fallback", "{{ m.content }} {{ m['role'] }} {{ m.items is callable }}|{{ m['items'] }}|{{ l.0 }}", m={"role": "user", "content": "c", "items": 5}, l=["zero"])
add("dict_literal_order", "{{ {'b': 1, 'a': 2, 'c': 3} | tojson }} {{ {'b': 1, 'a': 2}.keys() | list }}")
add("none_attr", "{{ none.foo }}|{{ n.bar }}|{{ (n.bar) is defined }}", n=None)

# whitespace control (trim_blocks / lstrip_blocks / - / +)
add("ws_trim_blocks", "{% if true %}\nA\n{% endif %}\nB\n")
add("ws_lstrip_blocks", "  {% if true %}\n    X\n  {% endif %}\nY")
add("ws_dash", "a  {{- ' b ' -}}  c\n  {%- if true -%}  d  {%- endif -%}  \n e")
add("ws_plus", "  {%+ if true %}\nZ{% endif +%}\nW")
add("ws_comment", "A\n  {# comment #}\nB {#- c -#} C\n{# multi\nline #}\nD")
add("ws_var_not_lstripped", "  {{ 'v' }}\n  {% set x = 1 %}\nE")
add("ws_trailing_newline", "line\n")
add("ws_trailing_newlines", "line\n\n")
add("ws_crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc")
add("ws_raw", "{% raw %}{{ not evaluated }} {% if %}{% endraw %}|{%- raw -%}  x  {%- endraw -%}|")
add("ws_block_after_text_same_line", "text {% if true %}\n  in\n{% endif %} after")
add("ws_nested", "{% for i in [1,2] %}\n  {% if i > 1 %}\n    big {{ i }}\n  {% else %}\n    small {{ i }}\n  {% endif %}\n{% endfor %}\n")

# loops
add("loop_vars", "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem }}/{{ loop.nextitem }};{% endfor %}", xs=["a", "b", "c"])
add("loop_else", "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in undefined_var %}x{% else %}undef{% endfor %}")
add("loop_filter", "{% for x in range(10) if x is odd %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}")
add("loop_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}")
add("loop_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}|{% for k, v in d|items %}{{ k }}{% endfor %}|{% for a, b in [[1, 2], (3, 4)] %}{{ a + b }}{% endfor %}", d={"z": 1, "a": 2})
add("loop_dict_string", "{% for k in d %}{{ k }}{% endfor %}|{% for c in 'héllo' %}[{{ c }}]{% endfor %}", d={"b": 1, "a": 2})
add("loop_nested_loop_var", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}")
add("loop_scope", "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + 10 %}[{{ x }}]{% endfor %}{{ x }}|{% for i in [1,2] %}{% if loop.first %}{% set y = 5 %}{% endif %}[{{ y }}]{% endfor %}")
add("loop_cycle", "{% for i in range(5) %}{{ loop.cycle('a', 'b', 'c') }}{% endfor %}")
add("loop_reverse_messages", "{% for m in messages[::-1] %}{{ (messages|length - 1) - loop.index0 }}:{{ m }} {% endfor %}", messages=["a", "b", "c"])
add("if_scope_leaks", "{% if true %}{% set y = 3 %}{% endif %}{{ y }}")

# set / namespace / with
add("set_forms", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set t = 1, 2 %}{{ t }} {% set s %}block {{ a }}{% endset %}[{{ s }}] {% set u | upper %}up{% endset %}{{ u }}")
add("namespace", "{% set ns = namespace(a=1, b='x') %}{% for i in [1, 2, 3] %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }} {{ ns.b }} {{ ns }} {{ ns.missing }}|{% set n2 = namespace({'k': 1}, j=2) %}{{ n2.k }}{{ n2.j }}")
add("with_block", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]")
add("dict_global", "{{ dict(a=1, b=2) }} {{ dict({'x': 1}, y=2) | tojson }}")

# macros / call / filter blocks
add("macro_defaults", "{% macro m(a, b='B', c=none) %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, 2) }} {{ m(1, c=3) }} {{ m() }}|")
add("macro_closure", "{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}")
add("macro_trim", "{% macro r(c) %}\n    {{- c }}  \n{% endmacro %}[{{ r(' hi ') | trim }}] [{{ r('x') }}]")
add("macro_varargs_kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k='v') }}")
add("macro_recursive", "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}")
add("call_block", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ 1 + 1 }}{% endcall %}")
add("call_block_args", "{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(item) each([1, 2]) %}[{{ item }}]{% endcall %}")
add("filter_block", "{% filter upper %}hello {{ 'x' }}{% endfilter %} {% filter replace('a', 'o') | trim %}  banana  {% endfilter %}")
add("generation_block", "{% generation %}gen {{ 1 }}{% endgeneration %}")

# filters
add("filters_string", "{{ '  hi  '|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'Hello'|lower }}|{{ 'hello'|upper }}|{{ 'hello wORLD-foo(bar'|title }}|{{ 'hELLO world'|capitalize }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'abc'|replace('', '-') }}|{{ 'abc'|center(9) }}|{{ 'abcd'|center(9) }}|{{ 'one two  three'|wordcount }}")
add("filters_unicode_case", "{{ 'ÉCOLE Straße'|lower }}|{{ 'école'|upper }}|{{ 'ñandú'|capitalize }}|{{ 'héllo'|length }}")
add("filters_length_count", "{{ [1, 2]|length }} {{ 'abc'|count }} {{ {'a': 1}|length }} {{ undefined_var|length }}")
add("filters_join", "{{ [1, 2, 3]|join(', ') }}|{{ ['a', 'b']|join }}|{{ users|join(', ', attribute='name') }}", users=[{"name": "ann"}, {"name": "bob"}])
add("filters_first_last", "{{ [1, 2, 3]|first }} {{ [1, 2, 3]|last }} {{ 'abc'|first }} {{ []|first }}|")
add("filters_default", "{{ undefined_var|default('dflt') }} {{ none|default('dflt') }} {{ ''|default('dflt', true) }} {{ 0|d(5, boolean=true) }} {{ 'x'|d('y') }} {{ undefined_var|default }}|")
add("filters_list", "{{ 'abc'|list }} {{ {'a': 1, 'b': 2}|list }} {{ (1, 2)|list }}")
add("filters_map", "{{ users|map(attribute='name')|list }} {{ ['a', 'b']|map('upper')|join }} {{ users|map(attribute='age', default=0)|list }} {{ users|map(attribute='pet.kind')|list }}",
    users=[{"name": "ann", "age": 3, "pet": {"kind": "cat"}}, {"name": "bob", "pet": {"kind": "dog"}}])
add("filters_select", "{{ range(10)|select('odd')|list }} {{ range(10)|reject('even')|list }} {{ [0, 1, '', 'a', none]|select|list }} {{ range(10)|select('divisibleby', 3)|list }} {{ [1, 5, 10]|select('>', 4)|list }}")
add("filters_selectattr", "{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='c')|join }} {{ ms|rejectattr('role', '==', 'user')|map(attribute='c')|join }} {{ ms|selectattr('flag')|map(attribute='c')|join }} {{ ms|selectattr('flag', 'defined')|list|length }}",
    ms=[{"role": "user", "c": "a", "flag": True}, {"role": "bot", "c": "b", "flag": False}, {"role": "user", "c": "c"}])
add("filters_unique_sort", "{{ [3, 1, 2, 1]|unique|list }} {{ ['A', 'a', 'b']|unique|list }} {{ ['A', 'a']|unique(case_sensitive=true)|list }} {{ [3, 1, 2]|sort }} {{ [3, 1, 2]|sort(reverse=true) }} {{ ['b', 'A', 'c']|sort }} {{ ['b', 'A', 'c']|sort(case_sensitive=true) }} {{ users|sort(attribute='age')|map(attribute='n')|join }} {{ users|sort(attribute='age,n', reverse=true)|map(attribute='n')|join }}",
    users=[{"n": "x", "age": 3}, {"n": "y", "age": 1}, {"n": "z", "age": 3}])
add("filters_reverse", "{{ [1, 2, 3]|reverse|list }} {{ 'abc'|reverse }} {{ 'héllo'|reverse }}")
add("filters_numbers", "{{ 2.5|round }} {{ 3.5|round }} {{ 2.567|round(2) }} {{ 2.5|round(0, 'floor') }} {{ 2.1|round(method='ceil') }} {{ 5|round }} {{ -3|abs }} {{ -2.5|abs }} {{ '42'|int }} {{ '3.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 3.9|int }} {{ '0x1A'|int(base=16) }} {{ '1.5'|float }} {{ 'abc'|float }} {{ 3|float }} {{ true|int }}")
add("filters_string_conv", "{{ 1|string }} {{ none|string }} {{ [1, 'a']|string }} {{ true|string }} {{ 1.0|string }} {{ x|safe }} {{ '<a & \"b\">'|e }} {{ '<x>'|escape }}", x="<b>")
add("filters_items", "{{ {'a': 1, 'b': [2]}|items|list }} {{ undefined_var|items|list }}")
add("filters_indent", "[{{ 'a\nb\n\nc'|indent }}] [{{ 'a\nb'|indent(2, true) }}] [{{ 'a\n\nb'|indent(width='> ', blank=true) }}] [{{ 'x'|indent(first=true) }}]")
add("filters_batch", "{{ range(7)|batch(3)|list }} {{ range(5)|batch(2, 'x')|list }}")
add("filters_misc", "{{ [1, 2, 3]|sum }} {{ users|sum(attribute='a') }} {{ [3, 1, 2]|max }} {{ [3, 1, 2]|min }} {{ ['b', 'A']|max }} {{ {'b': 1, 'a': 2}|dictsort }} {{ {'b': 1, 'a': 2}|dictsort(by='value', reverse=true) }} {{ 'x=%s,y=%d'|format('a', 3) }} {{ users|first|attr('a') }}",
    users=[{"a": 1}, {"a": 4}])
add("tojson_basic", "{{ {'a': 1, 'b': [1, 2.5, none, true], 'c': {'d': 'é\"\\n'}}|tojson }}")
add("tojson_options", "{{ d|tojson(indent=2) }}|{{ d|tojson(indent='\t') }}|{{ d|tojson(sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ d|tojson(ensure_ascii=true) }}|{{ []|tojson(indent=2) }}|{{ {}|tojson(indent=2) }}|{{ d|tojson(indent=0) }}",
    d={"z": [1, {"y": None}], "a": "é🌍", "m": {}, "f": 1.0, "big": 1e20, "neg": -0.5})
add("tojson_scalars", "{{ 'str'|tojson }} {{ 1|tojson }} {{ none|tojson }} {{ true|tojson }} {{ 1.5|tojson }} {{ (1, 2)|tojson }} {{ {1: 'int key', true: 'b'}|tojson }} {{ '\\x01\\x7f\\u2028'|tojson }}")
add("tojson_input_order", "{{ tool|tojson }}", tool=WEATHER_TOOL)

# tests
add("tests_types", "{{ 'a' is string }} {{ 1 is number }} {{ 1.5 is number }} {{ true is number }} {{ 1 is integer }} {{ true is integer }} {{ 1.0 is float }} {{ {} is mapping }} {{ [] is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} {{ {} is iterable }} {{ 1 is iterable }} {{ [] is sequence }} {{ 'a' is sequence }} {{ {} is sequence }} {{ none is sequence }} {{ true is boolean }} {{ 1 is boolean }} {{ none is none }} {{ x is none }} {{ range is callable }} {{ 'a' is callable }}")
add("tests_undefined", "{{ u is defined }} {{ u is undefined }} {{ u is iterable }} {{ u is sequence }} {{ u is string }} {{ u is none }} {{ u is mapping }} {{ d.x is defined }} {{ d.a is defined }} {{ d.a is not none }}", d={"a": None})
add("tests_values", "{{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 'abc' is lower }} {{ 'ABC' is upper }} {{ 'aBc' is lower }} {{ 2 is in [1, 2] }} {{ 'x' is eq 'x' }} {{ 3 is gt 2 }} {{ 3 is ge 3 }} {{ 2 is lt 1 }} {{ 2 is ne 2 }} {{ 'upper' is filter }} {{ 'odd' is test }} {{ none is sameas none }} {{ 1 is equalto 1.0 }}")
add("tests_not", "{{ x is not defined }} {{ 1 is not string }} {{ not 1 is string }} {{ [] is not mapping and [] is iterable }}")

# string / dict / list methods
add("str_methods", "{{ s.startswith('He') }} {{ s.endswith('!') }} {{ s.startswith(('x', 'H')) }} {{ s.strip('H!') }} {{ '  x '.lstrip() }}| {{ ' x  '.rstrip() }}| {{ 'xxaxx'.rstrip('x') }} {{ s.upper() }} {{ s.lower() }} {{ s.replace('l', 'L') }} {{ s.replace('l', 'L', 1) }} {{ s.find('l') }} {{ s.find('z') }} {{ s.rfind('l') }} {{ s.count('l') }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} {{ '{} and {}'.format(1, 'b') }} {{ '{0}{1}{0}'.format('a', 'b') }} {{ '{x}!'.format(x=5) }} {{ '-'.join(['a', 'b']) }} {{ 'ab'.center(6, '*') }} {{ '5'.zfill(3) }} {{ 'abc'.isalpha() }} {{ '12'.isdigit() }} {{ '  '.isspace() }}", s="Hello, World!")
add("str_split", "{{ 'a,b,,c'.split(',') }} {{ '  a  b c '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ ' a b c '.split(none, 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ' a b c '.rsplit(none, 1) }} {{ ' a b c '.rsplit() }} {{ 'a\nb\r\nc'.splitlines() }} {{ 'x</think>y</think>z'.split('</think>')[-1] }} {{ ''.split(',') }} {{ ''.split() }}")
add("str_think_parse", "{% set c = m.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}[{{ c }}] [{{ m.split('</think>')[-1].lstrip('\\n') }}]", m="<think>\nplan\n</think>\n\nanswer")
add("str_unicode_methods", "{{ 'héllo wörld'.title() }} {{ 'ÀB'.lower() }} {{ 'ñ'.upper() }} {{ 'héllo'.find('l') }} {{ '日本語'[1] }} {{ '\u00a0x\u3000'.strip() }}|")
add("dict_methods", "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list }}", d={"a": 1, "b": 2})
add("list_methods", "{{ [1, 2, 2].count(2) }} {{ ['a', 'b'].index('b') }}")

# globals
add("range_global", "{{ range(3)|list }} {{ range(1, 4)|list }} {{ range(10, 0, -3)|list }} {{ range(0)|list }}")
add("raise_exception", "{% if true %}\n{{ raise_exception('Bad input: ' ~ 42) }}\n{% endif %}")

# errors (the reference raises; C++ must fail too, with the same template line)
add("err_syntax_unclosed_if", "line1\n{% if x %}\nunterminated")
add("err_syntax_bad_expr", "a\nb\n{{ 1 + }}")
add("err_syntax_unknown_tag", "{% frobnicate %}")
add("err_syntax_unknown_filter", "ok\n{{ x|nosuchfilter }}")
add("err_syntax_unknown_test", "{{ x is nosuchtest }}")
add("err_syntax_endfor_mismatch", "{% for x in y %}\n{% endif %}")
add("err_syntax_unclosed_var", "{{ 'a' ")
add("err_syntax_break_outside_loop", "{% break %}")
add("err_syntax_unterminated_string", "{{ 'abc }}")
add("err_syntax_unclosed_comment", "{# never closed")
add("err_undefined_attr", "x\n{{ undefined_var.attr }}")
add("err_undefined_call", "{{ nothing() }}")
add("err_undefined_arith", "{{ undefined_var + 1 }}")
add("err_none_in", "{{ 'a' in none }}")
add("err_type_concat", "{{ 'a' + 1 }}")
add("err_unsafe_append", "{% set l = [1] %}{{ l.append(2) }}")
add("err_div_zero", "{{ 1 / 0 }}")
add("err_int_div_zero", "\n\n{{ 1 // 0 }}")
add("err_items_non_mapping", "{% for k, v in 'str'|items %}{% endfor %}")
add("err_tojson_undefined", "{{ undefined_var|tojson }}")
add("err_unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}")
add("err_not_callable", "{{ 'abc'() }}")
add("err_namespace_assign", "{% set d = {} %}{% set d.x = 1 %}")
add("err_range_too_big", "{{ range(1000000)|length }}")
add("err_compare_types", "{{ 1 < 'a' }}")
add("err_macro_too_many_kw", "{% macro m(a) %}{% endmacro %}{{ m(a=1, a=2) }}")
add("err_in_macro_line", "{% macro m() %}\nok\n{{ raise_exception('inside macro') }}\n{% endmacro %}\n\n{{ m() }}")


def unit_cases():
    cases = []
    for name, template, ctx in U:
        case = {"name": name, "template": template, "context": ctx}
        try:
            case["expected"] = _compile_jinja_template(template).render(**copy.deepcopy(ctx))
        except Exception as e:  # noqa: BLE001
            case["error"] = f"{type(e).__name__}: {e}"
            case["error_line"] = template_line(e)
        cases.append(case)
    return cases


def main():
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    meta = {"generator": "tools/reference/chat_template_reference.py", "transformers": transformers.__version__,
            "jinja2": jinja2.__version__}
    chats = chat_cases(tok)
    units = unit_cases()
    with open(os.path.join(DATA, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "cases": chats}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(DATA, "jinja_cases.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "cases": units}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum("error" in c for c in chats)
    print(f"chat cases: {len(chats)} ({n_err} expected errors); unit cases: {len(units)} "
          f"({sum('error' in c for c in units)} expected errors)", file=sys.stderr)


if __name__ == "__main__":
    main()
