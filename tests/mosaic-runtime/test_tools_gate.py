"""The static AST gate (default-deny) and the display escaping of untrusted text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.runtime.tools.ast_gate import check_source, import_problem
from mosaic.runtime.tools.display import escape_control

GOOD = """
import math
from collections import Counter
def helper(xs):
    return [x * 2 for x in xs if x]
def run(text, n=3):
    counts = Counter(text.split())
    try:
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    except (KeyError, ValueError) as exc:
        raise ValueError(str(exc))
    total = sum(v for _, v in top)
    return {"top": top, "root": math.sqrt(total), "doubled": helper([1, 2]), "f": f"{total:>4}"}
"""


def test_plain_computation_passes():
    assert check_source(GOOD, frozenset({"math", "collections"})) == []


def test_every_problem_is_reported_not_just_the_first():
    source = """
import os
class Evil: pass
@staticmethod
def run():
    x = ().__class__
    y = "{0}".format(1)
    global z
    return eval("1")
"""
    problems = check_source(source, frozenset())
    text = "\n".join(problems)
    for expected in ("'os'", "ClassDef", "decorators", "'__class__'", "'format'", "Global", "'eval'"):
        assert expected in text, expected
    assert len(problems) >= 7


def test_introspection_and_dynamic_paths_are_refused():
    cases = {
        "gi_frame": "def run():\n    g = (i for i in [1])\n    return g.gi_frame\n",
        "tb_frame": "def run():\n    return 1\ndef f(t):\n    return t.tb_frame\n",
        "match": "def run():\n    match 1:\n        case int(real=r):\n            return r\n",
        "getattr": "def run():\n    return getattr(1, 'real')\n",
        "__builtins__": "def run():\n    return __builtins__\n",
        "vformat": "import string\ndef run():\n    return string.Formatter().vformat('{0}', [1], {})\n",
        "relative": "from . import x\ndef run():\n    return 1\n",
        "star": "from math import *\ndef run():\n    return 1\n",
        "async": "async def run():\n    return 1\n",
        "lambda dunder": "def run():\n    return (lambda: 1).__globals__\n",
    }
    for label, source in cases.items():
        assert check_source(source, frozenset({"math", "string"})), label


def test_undeclared_and_never_allowed_imports():
    assert any(
        "not declared" in p for p in check_source("import json\ndef run():\n    return 1\n", frozenset())
    )
    for module in ("os", "sys", "subprocess", "ctypes", "importlib", "pickle", "socket", "typing", "_thread"):
        assert import_problem(module), module
    assert import_problem("math") is None and import_problem("collections") is None


def test_entry_function_is_required_and_size_is_bounded():
    assert any("'run'" in p for p in check_source("x = 1\n", frozenset()))
    assert check_source("def run():\n    return 1\n" + "#" * 70_000, frozenset())
    assert any("syntax" in p for p in check_source("def run(:\n", frozenset()))


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_gate_never_crashes_and_returns_strings(source):
    problems = check_source(source, frozenset({"math"}))
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=100))
def test_escaped_text_has_no_control_characters(text):
    escaped = escape_control(text)
    assert all(ch.isprintable() or ch == " " for ch in escaped)
    if text.isprintable():
        assert escaped == text


def test_escape_makes_terminal_attacks_visible():
    assert escape_control("ok\x1b[2J\u202egnp.exe") == "ok\\x1b[2J\\u202egnp.exe"
    assert escape_control("a\nb", keep_newlines=True) == "a\nb"
    assert escape_control("a\nb") == "a\\x0ab"


UPDATE_WRAPPER = """
import functools, random
def run():
    functools.update_wrapper(run, random.shuffle, assigned=(), updated=('__globals__',))
    return "copied"
"""


def test_strings_that_name_interpreter_internals_are_refused():
    """Issue 17 (3): '__globals__' as a string reached random's module globals via update_wrapper."""
    problems = check_source(UPDATE_WRAPPER, frozenset({"functools", "random"}))
    assert any("'__globals__'" in p for p in problems), problems
    assert any("update_wrapper" in p for p in problems), problems
    for text in ("_os", "sys", "builtins", "__dict__", "f_globals", "gi_frame", "co_code", "x.__class__"):
        source = f"def run():\n    return {text!r}\n"
        assert check_source(source, frozenset()), text
    # ordinary text, including words that merely contain those names, stays allowed
    assert check_source("def run():\n    return ['system', 'sys admin', 'format', 'a_b', '_']\n", frozenset()) == []


def test_underscore_globals_and_internal_names_are_refused():
    for name in ("_os", "sys", "builtins"):
        assert check_source(f"def run():\n    return {name}\n", frozenset()), name
    assert check_source("def run(**_):\n    return [_ for _ in range(2)]\n", frozenset()) == []


def test_only_modules_with_a_curated_view_are_importable():
    """``timeit`` runs code with the real builtins and ``json.tool`` exposes pathlib: neither has a
    curated view, so neither may be declared, approved or not."""
    for name in ("timeit", "json.tool", "json.decoder", "doctest", "trace", "logging"):
        assert import_problem(name) is not None, name
    assert import_problem("json") is None and import_problem("time") is None
    assert check_source("from functools import wraps\ndef run():\n    return 1\n", frozenset({"functools"}))
