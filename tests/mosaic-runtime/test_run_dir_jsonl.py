"""The run directory's JSON-lines reader: any cut of the tail is a torn line, never an error; damage
anywhere else is an error naming the line; nothing is parsed unbounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.errors import RunDirectoryError
from mosaic.runtime.training.run_dir import MAX_LINE_CHARS, parse_jsonl

VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
RECORDS = st.lists(st.dictionaries(st.text(max_size=8), VALUES, min_size=1, max_size=5), min_size=1, max_size=6)
PATH = Path("metrics.jsonl")


def as_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


@settings(deadline=None)
@given(RECORDS, st.data())
def test_any_cut_of_the_file_reads_as_its_whole_records(records: list[dict], data: st.DataObject) -> None:
    text = as_jsonl(records)
    cut = data.draw(st.integers(min_value=0, max_value=len(text)))
    parsed, torn = parse_jsonl(PATH, text[:cut])
    complete = text[:cut].count("\n")
    assert parsed[:complete] == records[:complete]
    # the unterminated tail is either a whole record (only its newline was lost) or torn
    assert len(parsed) in (complete, complete + 1)
    assert torn == (len(parsed) == complete and text[:cut].rsplit("\n", 1)[-1].strip() != "")


@settings(deadline=None)
@given(RECORDS, st.integers(min_value=0, max_value=5), st.sampled_from(["garbage", "[1, 2]", '{"a": ', "42"]))
def test_a_damaged_line_before_the_last_is_an_error_naming_it(records: list[dict], index: int, bad: str) -> None:
    index = index % len(records)
    lines = [json.dumps(record) for record in records]
    lines[index] = bad
    text = "\n".join(lines) + "\n"
    with pytest.raises(RunDirectoryError, match=f"line {index + 1} is not a JSON record"):
        parse_jsonl(PATH, text)


def test_an_overlong_line_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(RunDirectoryError, match="line 2 is longer than"):
        parse_jsonl(PATH, '{"step": 1}\n{"x": "' + "a" * MAX_LINE_CHARS + '"}\n')
