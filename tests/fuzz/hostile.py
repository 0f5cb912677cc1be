"""Strategies for hostile event input: JSON-like values with every shape that has broken parsers
(huge integers, lone surrogates, non-finite floats, deep nesting, wrong types, control bytes)."""

from __future__ import annotations

import json
import sys

from hypothesis import strategies as st

from mosaic.core.events.envelope import FIELD_NAMES

HUGE_INTEGERS = st.builds(lambda digits, sign: sign * 10 ** (digits - 1), st.integers(19, 6000), st.sampled_from([-1, 1]))
INTEGERS = st.integers() | HUGE_INTEGERS | st.integers(-(2**64), 2**64)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
# Any code point, lone surrogates included (valid in a Python str, not in UTF-8).
TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=40) | st.sampled_from(["", "\ud800", "x" * 300, "\n"])
SCALARS = st.none() | st.booleans() | INTEGERS | FLOATS | TEXT
KEYS = TEXT | st.sampled_from(sorted(FIELD_NAMES)) | INTEGERS | st.none()


def nested(depth: int, leaf: object) -> object:
    """A list nested ``depth`` deep around ``leaf`` (built iteratively: no recursion limit)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


JSON_LIKE = st.recursive(
    SCALARS | st.builds(nested, st.integers(60, 3000), SCALARS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
    | st.tuples(inner, inner) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)


#: Per field: usually a plausible value, sometimes anything at all.
PLAUSIBLE = {
    "type": st.text(min_size=1, max_size=12),
    "sender": st.text(min_size=1, max_size=12),
    "id": st.text(min_size=1, max_size=12),
    "commitment_id": st.none() | st.text(min_size=1, max_size=12),
    "payload": JSON_LIKE,
    "priority": INTEGERS,
    "budget_ms": st.none() | INTEGERS,
    "ts": FLOATS | INTEGERS,
    "commitment_delta": st.integers(-2, 2),
}
ENVELOPE_DICTS = st.one_of(
    st.fixed_dictionaries(
        {name: PLAUSIBLE[name] | JSON_LIKE for name in ("type", "payload", "sender")},
        optional={**{name: PLAUSIBLE[name] | JSON_LIKE for name in sorted(FIELD_NAMES - {"type", "payload", "sender"})},
                  "extra": JSON_LIKE},
    ),
    st.dictionaries(KEYS, JSON_LIKE, max_size=6),
    JSON_LIKE,
)

VALID_DICTS = st.fixed_dictionaries(
    {"type": st.text(min_size=1, max_size=8), "payload": st.none() | st.integers(-5, 5) | st.text(max_size=8),
     "sender": st.text(min_size=1, max_size=8)},
    optional={"priority": st.integers(-(2**63), 2**63 - 1), "commitment_delta": st.sampled_from([-1, 0, 1]),
              "commitment_id": st.text(min_size=1, max_size=8), "ts": st.floats(0, 2e9)},
)


def to_json_bytes(value: object) -> bytes:
    """JSON text of ``value`` (huge integers written out in full, NaN as the NaN literal) where
    Python can write it at all, as raw bytes (lone surrogates kept)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # the writer may spell out what the reader must refuse
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = "[unwritable]"
    finally:
        sys.set_int_max_str_digits(limit)
    return text.encode("utf-8", errors="surrogatepass")


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """``data`` with each (position, kind, byte) edit: replace, insert or delete one byte."""
    out = bytearray(data)
    for position, kind, byte in edits:
        if not out:
            out.append(byte)
            continue
        at = position % len(out)
        if kind == 0:
            out[at] = byte
        elif kind == 1:
            out.insert(at, byte)
        else:
            del out[at]
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 2), st.integers(0, 255)), max_size=6)
