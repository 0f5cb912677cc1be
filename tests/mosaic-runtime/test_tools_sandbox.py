"""Valid tools run in the sandbox and return results; the sandbox reports its layers and refuses to
run when a required layer is unavailable."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from mosaic.core.errors import SandboxError
from mosaic.runtime.tools.errors import (
    SandboxLimitError,
    SandboxUnavailableError,
    ToolFailedError,
    ToolRejectedError,
)
from mosaic.runtime.tools.module_views import MODULE_ATTRIBUTES
from mosaic.runtime.tools.sandbox import OS_LAYERS, Sandbox, SandboxLimits, SandboxPolicy

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's OS layers are specified for root")

SMALL = SandboxLimits(cpu_seconds=1, wall_seconds=4.0, output_bytes=8192)
WORDS = """
import collections, json, math
def run(text, top=2):
    counts = collections.Counter(text.split())
    print("counted", len(counts))
    return {"top": counts.most_common(top), "norm": math.sqrt(sum(v * v for v in counts.values())),
            "echo": json.loads(json.dumps([1, "two"]))}
"""


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox(SandboxPolicy(limits=SMALL))


def test_valid_tool_returns_its_result_and_output(sandbox):
    result = sandbox.run(WORDS, {"text": "a b a c a b"}, allowed_modules=("collections", "json", "math"))
    assert result.value == {"top": [["a", 3], ["b", 2]], "norm": pytest.approx(14**0.5), "echo": [1, "two"]}
    assert result.stdout == "counted 3\n"
    assert not result.stdout_truncated


def test_every_layer_is_reported_active(sandbox):
    result = sandbox.run("def run():\n    return 1\n")
    for layer in (*OS_LAYERS, "ast_gate", "restricted_runtime", "fresh_interpreter", "supervision"):
        assert result.layers[layer]["active"], layer
    assert "ABI" in result.layers["landlock"]["detail"]


def test_tool_can_use_its_scratch_directory_only_for_the_call(sandbox):
    source = (
        "def run():\n    with open('notes.txt', 'w') as f:\n        f.write('hello')\n"
        "    with open('notes.txt') as f:\n        return f.read()\n"
    )
    off = Sandbox(SandboxPolicy(limits=SMALL, language_layers=False))
    assert off.run(source).value == "hello"


def test_tool_exceptions_become_tool_failed_with_escaped_text(sandbox):
    with pytest.raises(ToolFailedError) as info:
        sandbox.run("def run():\n    raise ValueError('bad\\x1b[31m thing')\n")
    assert info.value.error_type == "ValueError"
    assert "\x1b" not in str(info.value) and "\\x1b" in str(info.value)


def test_results_must_be_json(sandbox):
    with pytest.raises(ToolFailedError, match="not JSON serializable"):
        sandbox.run("def run():\n    return {1, 2}\n")


def test_gate_rejections_list_every_problem(sandbox):
    with pytest.raises(ToolRejectedError) as info:
        sandbox.run("import os\ndef run():\n    return ().__class__\n")
    assert len(info.value.problems) == 2


def test_declared_module_views_hide_modules_and_string_getattr(sandbox):
    source = """
import random, operator, json
def reachable(get):
    try:
        get()
        return True
    except AttributeError:
        return False
def run():
    return [reachable(lambda: random.Random), reachable(lambda: operator.add),
            reachable(lambda: json.decoder), reachable(lambda: json.decoder.re),
            reachable(lambda: random.os), reachable(lambda: json.codecs)]
"""
    value = sandbox.run(source, allowed_modules=("random", "operator", "json")).value
    assert value == [True, True, False, False, False, False]
    with pytest.raises(ToolRejectedError):
        sandbox.run(
            "import operator\ndef run():\n    return operator.attrgetter('real')(1)\n",
            allowed_modules=("operator",),
        )


def test_print_output_is_capped(sandbox):
    result = sandbox.run("def run():\n    print('x' * 100000)\n    return 'done'\n")
    assert result.value == "done" and result.stdout_truncated
    assert len(result.stdout) <= SMALL.output_bytes


def test_wall_clock_limit(sandbox):
    with pytest.raises(SandboxLimitError):
        sandbox.run(
            "def run():\n    while True:\n        continue\n",
            limits=SandboxLimits(cpu_seconds=10, wall_seconds=0.5),
        )


def test_refuses_when_landlock_abi_is_insufficient():
    sandbox = Sandbox(SandboxPolicy(limits=SMALL, landlock_min_abi=99))
    with pytest.raises(SandboxUnavailableError) as info:
        sandbox.run("def run():\n    return 1\n")
    assert info.value.layer == "landlock"


def test_refuses_when_privileges_cannot_be_dropped():
    sandbox = Sandbox(SandboxPolicy(limits=SMALL, run_as=(0, 0)))
    with pytest.raises(SandboxUnavailableError) as info:
        sandbox.run("def run():\n    return 1\n")
    assert info.value.layer == "drop_privileges"


def test_optional_layer_is_reported_inactive_instead_of_refusing():
    required = frozenset(OS_LAYERS) - {"drop_privileges"}
    sandbox = Sandbox(SandboxPolicy(limits=SMALL, run_as=(0, 0), required_layers=required))
    result = sandbox.run("def run():\n    return 1\n")
    assert result.value == 1 and not result.layers["drop_privileges"]["active"]


def test_unknown_layers_are_a_policy_error():
    with pytest.raises(SandboxError):
        SandboxPolicy(required_layers={"landlok"})


def test_parallel_calls_do_not_interfere(sandbox):
    results, errors = {}, []

    def call(i):
        try:
            results[i] = sandbox.run("def run(i):\n    return i * i\n", {"i": i}).value
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == {i: i * i for i in range(4)}


def test_child_runs_isolated_without_the_parent_environment(sandbox):
    off = Sandbox(SandboxPolicy(limits=SMALL, language_layers=False))
    os.environ["MOSAIC_PARENT_ONLY"] = "1"
    try:
        value = off.run(
            "import os, sys\ndef run():\n    return [sorted(os.environ), sys.flags.isolated, "
            "os.getuid(), os.getpid(), sorted(os.listdir('.'))]\n"
        ).value
    finally:
        del os.environ["MOSAIC_PARENT_ONLY"]
    environ, isolated, uid, pid, listing = value
    assert "MOSAIC_PARENT_ONLY" not in environ and isolated == 1 and uid == 65534 and pid == 2
    assert listing == []
    assert Path(sys.executable).exists()


def test_oversized_requests_are_refused_before_starting_a_child(sandbox):
    from mosaic.core.errors import ToolError

    with pytest.raises(ToolError, match="limit is"):
        sandbox.run("def run(blob):\n    return len(blob)\n", {"blob": "x" * (5 * 2**20)})


def test_public_names_resolve_lazily():
    import mosaic.runtime.tools as tools

    for name in tools.__all__:
        assert getattr(tools, name) is not None


@pytest.mark.parametrize("ignore_sigxcpu", [False, True])
def test_cpu_time_limit_stops_a_spinning_tool(ignore_sigxcpu):
    sandbox = Sandbox(SandboxPolicy(language_layers=False))
    source = "import signal\ndef run():\n"
    if ignore_sigxcpu:
        source += "    signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
    source += "    while True:\n        continue\n"
    # A generous wall clock, so that only RLIMIT_CPU can stop it (soft: SIGXCPU, hard: SIGKILL).
    with pytest.raises(SandboxLimitError) as info:
        sandbox.run(source, allowed_modules=("signal",), limits=SandboxLimits(cpu_seconds=1, wall_seconds=30))
    assert info.value.limit == ("killed (CPU hard limit or memory)" if ignore_sigxcpu else "CPU time")


@pytest.fixture()
def no_gate(monkeypatch):
    """The restricted runtime alone: the static gate passes everything, as if it had been fooled."""
    import mosaic.runtime.tools.sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module, "check_source", lambda *a, **k: [])
    monkeypatch.setattr(sandbox_module, "import_problem", lambda name: None)


def test_module_views_hold_only_allow_listed_attributes(sandbox, no_gate):
    """Issue 17 (3): update_wrapper copied random's globals; json.tool exposed pathlib."""
    source = """
import functools, json, random, operator, string
def run():
    out = {}
    routes = {"update_wrapper": lambda: functools.update_wrapper, "wraps": lambda: functools.wraps,
              "json.tool": lambda: json.tool, "json.decoder": lambda: json.decoder,
              "random._os": lambda: random._os, "attrgetter": lambda: operator.attrgetter,
              "Formatter": lambda: string.Formatter, "random.shuffle": lambda: random.shuffle}
    for name, route in routes.items():
        try:
            route()
            out[name] = "reached"
        except AttributeError:
            out[name] = "blocked"
    return out
"""
    modules = ("functools", "json", "random", "operator", "string")
    result = sandbox.run(source, allowed_modules=modules)
    assert result.value == {
        "update_wrapper": "blocked",
        "wraps": "blocked",
        "json.tool": "blocked",
        "json.decoder": "blocked",
        "random._os": "blocked",
        "attrgetter": "blocked",
        "Formatter": "blocked",
        "random.shuffle": "reached",
    }


def test_modules_without_a_curated_view_do_not_import_even_if_declared(sandbox, no_gate):
    """Issue 17 (3): an approved ``import timeit`` ran code with the real builtins."""
    source = "import timeit\ndef run():\n    return timeit.timeit(\"__import__('os').getpid()\", number=1)\n"
    with pytest.raises(ToolFailedError, match="ImportError"):
        sandbox.run(source, allowed_modules=("timeit",))
    source = "import json.tool\ndef run():\n    return repr(json.tool.Path)\n"
    with pytest.raises(ToolFailedError, match="ImportError"):
        sandbox.run(source, allowed_modules=("json.tool",))


def test_update_wrapper_route_is_rejected_end_to_end(sandbox):
    source = """
import functools, random
def run():
    functools.update_wrapper(run, random.shuffle, assigned=(), updated=('__globals__',))
    return repr(_os)
"""
    with pytest.raises(ToolRejectedError, match="__globals__"):
        sandbox.run(source, allowed_modules=("functools", "random"))


def test_every_curated_module_works_inside_the_minimal_root(sandbox):
    """The views and the minimal root leave ordinary use intact, including C code that imports
    lazily through the tool's __import__ (datetime.strptime -> _strptime)."""
    source = """
import base64, bisect, cmath, collections, datetime, decimal, fractions, functools, hashlib, heapq
import itertools, json, math, operator, random, re, statistics, string, textwrap, time, unicodedata
def run():
    return [datetime.datetime.strptime("2024-01-02", "%Y-%m-%d").isoformat(), time.strptime("2024", "%Y")[0],
            hashlib.sha256(b"x").hexdigest()[:8], str(decimal.Decimal("1.1") * 2), statistics.median([1, 2, 3, 4]),
            random.Random(1).random() < 1, json.loads(json.dumps({"a": 1})), re.sub("a", "b", "aa"),
            textwrap.fill("a b", 1), unicodedata.name("a"), base64.b64encode(b"x").decode(),
            str(fractions.Fraction(1, 3)), list(itertools.islice(itertools.count(), 3)),
            functools.reduce(operator.add, [1, 2]), heapq.nsmallest(1, [3, 1]), bisect.bisect([1, 2], 1),
            string.Template("$x").substitute(x=1), math.isqrt(17), abs(cmath.sqrt(-1)),
            collections.Counter("aab").most_common(1)]
"""
    modules = tuple(sorted(MODULE_ATTRIBUTES))
    result = sandbox.run(source, allowed_modules=modules, limits=SandboxLimits(cpu_seconds=2, wall_seconds=8.0))
    assert result.value == [
        "2024-01-02T00:00:00", 2024, "2d711642", "2.2", 2.5, True, {"a": 1}, "bb", "a\nb",
        "LATIN SMALL LETTER A", "eA==", "1/3", [0, 1, 2], 3, [1], 1, "1", 4, 1.0, [["a", 2]],
    ]  # fmt: skip


def test_a_child_that_cannot_start_is_a_typed_error(tmp_path):
    """The event handler answers MosaicErrors with a ToolError event; an OSError would leave the
    model without a reply."""
    missing = Sandbox(SandboxPolicy(limits=SMALL, python=str(tmp_path / "no-python")))
    with pytest.raises(SandboxError, match="could not start"):
        missing.run("def run():\n    return 1\n")
