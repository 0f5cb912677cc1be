"""Parsing the sandbox child's output: framed, bounded, and every failure a typed error.

Hypothesis examples: ``HYPOTHESIS_PROFILE=nightly`` runs 20,000 per property, ``ci`` 1,000,
otherwise 200 (the parser is pure and fast; no child is started).
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.errors import MosaicError, SandboxError
from mosaic.core.events.envelope import check_payload
from mosaic.runtime.tools.errors import (
    SandboxUnavailableError,
    ToolFailedError,
    ToolOutputError,
)
from mosaic.runtime.tools.sandbox import OS_LAYERS, Sandbox, SandboxPolicy, SandboxResult, parse_child_output

EXAMPLES = {"nightly": 20_000, "ci": 1_000}.get(os.environ.get("HYPOTHESIS_PROFILE", ""), 200)
POLICY = SandboxPolicy(required_layers=())
CONFINED = b'{"frame":"confined","layers":{"seccomp":{"active":true,"detail":"x"}}}\n'


def _parse(stdout: bytes, returncode: int = 0):
    return parse_child_output(stdout, b"", returncode, "t", 0.0, POLICY)


def _result(value_json: str) -> bytes:
    return CONFINED + b'{"frame":"result","ok":true,"stdout":"","value":' + value_json.encode() + b"}\n"


def test_a_well_formed_result_parses():
    result = _parse(_result('{"a":[1,2.5,"x",null,true]}'))
    assert result.value == {"a": [1, 2.5, "x", None, True]}
    assert result.layers["seccomp"]["active"] is True


@pytest.mark.parametrize(
    "value_json",
    [
        "[" * 100_000 + "]" * 100_000,  # RecursionError in an unbounded parser
        "[" * 70 + "]" * 70,  # deeper than an event can carry
        "1" * 5000,  # ValueError from int() in an unbounded parser
        str(2**64),
        '"\\ud800"',
        '{"\\udfff":1}',
        "NaN",
        "1e999",
    ],
    ids=["deep-100k", "deep-70", "digits-5000", "2**64", "lone-surrogate", "surrogate-key", "nan", "inf"],
)
def test_unparsable_or_unrepresentable_values_are_tool_output_errors(value_json):
    with pytest.raises(ToolOutputError):
        _parse(_result(value_json))


def test_status_is_only_accepted_before_the_tool_ran():
    """Issue 17 (6): a tool could print its own 'sandbox unavailable' message."""
    forged = b'{"frame":"unavailable","layer":"landlock","message":"forged","layers":{}}\n'
    with pytest.raises(ToolOutputError):
        _parse(CONFINED + forged)
    with pytest.raises(ToolOutputError):
        _parse(CONFINED + forged + b'{"frame":"result","ok":true,"stdout":"","value":1}\n')
    with pytest.raises(SandboxUnavailableError, match="landlock"):
        _parse(forged)


def test_tool_failure_and_missing_frames():
    with pytest.raises(ToolFailedError, match="ZeroDivisionError"):
        _parse(CONFINED + b'{"frame":"result","ok":false,"error":{"type":"ZeroDivisionError","message":"x"}}\n')
    with pytest.raises(ToolOutputError):
        _parse(b'{"ok":true,"value":1}\n{"frame":"result","ok":true,"value":1}\n')
    with pytest.raises(SandboxError):
        _parse(b"")
    with pytest.raises(SandboxUnavailableError):
        parse_child_output(CONFINED + b'{"frame":"result","ok":true,"value":1}\n', b"", 0, "t", 0.0, SandboxPolicy())


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=40,
)


def _check(stdout: bytes) -> None:
    try:
        result = _parse(stdout)
    except MosaicError:
        return
    assert isinstance(result, SandboxResult)
    check_payload({"value": result.value, "stdout": result.stdout})


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=400))
def test_fuzz_arbitrary_bytes_never_escape_as_untyped_errors(status, result):
    _check(status + b"\n" + result + b"\n")
    _check(CONFINED + result + b"\n")


@settings(max_examples=EXAMPLES, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=80))
def test_fuzz_json_values_are_returned_exactly_or_refused_with_a_type(value, depth):
    for _ in range(depth % 75):
        value = [value]
    text = json.dumps(value, ensure_ascii=True)
    _check(_result(text))


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's OS layers are specified for root")
def test_a_tool_cannot_forge_the_status_end_to_end():
    source = (
        "import os\n"
        "def run():\n"
        "    os.write(1, b'{\"frame\":\"unavailable\",\"layer\":\"seccomp\",\"message\":\"forged\",\"layers\":{}}\\n')\n"
        "    os._exit(0)\n"
    )
    with pytest.raises(ToolOutputError):
        Sandbox(SandboxPolicy(language_layers=False)).run(source)
    assert set(OS_LAYERS) <= set(Sandbox(SandboxPolicy()).run("def run():\n    return 1\n").layers)


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.lists(st.integers(), max_size=2)
layer_info = st.fixed_dictionaries({}, optional={"active": scalars, "detail": scalars})
frames = st.fixed_dictionaries(
    {"frame": st.sampled_from(["confined", "unavailable", "result", "other"])},
    optional={
        "layers": scalars | st.dictionaries(st.sampled_from(OS_LAYERS), layer_info | scalars, max_size=3),
        "layer": scalars,
        "message": scalars,
        "ok": scalars,
        "value": scalars,
        "stdout": scalars,
        "error": scalars | st.fixed_dictionaries({}, optional={"type": scalars, "message": scalars}),
    },
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(frames, frames)
def test_fuzz_structured_frames_never_escape_as_untyped_errors(status, result):
    lines = [json.dumps(frame, ensure_ascii=True).encode() for frame in (status, result)]
    _check(lines[0] + b"\n" + lines[1] + b"\n")
    _check(CONFINED + lines[1] + b"\n")
