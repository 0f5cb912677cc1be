"""Tool names that cannot impersonate each other.

A name must already be in Unicode NFKC form (so ``ａdd``, fullwidth, is refused rather than stored
beside ``add``), and two tools may not share a *skeleton*: the name with compatibility forms folded,
accents stripped, case folded and common cross-script look-alikes (Cyrillic ``а``, Greek ``ο``,
Latin ``ɑ``, ...) mapped to the ASCII letter they imitate, in the spirit of Unicode TR39's
confusable skeletons. The table covers the letters that look identical in ordinary fonts; names
are identifiers, so punctuation look-alikes cannot occur.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

_LOOKALIKES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k",
    "ӏ": "l", "м": "m", "н": "h", "о": "o", "р": "p", "ԛ": "q", "с": "c", "ѕ": "s", "т": "t",
    "у": "y", "ԝ": "w", "х": "x", "ԁ": "d", "ɡ": "g", "ү": "y", "ԍ": "g", "ո": "n", "ս": "u",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w", "ϲ": "c", "ϳ": "j", "μ": "u",
    # Latin look-alikes and digits
    "ɑ": "a", "ı": "i", "ȷ": "j", "ɩ": "i", "ℓ": "l", "ʟ": "l", "ɪ": "i", "ᴏ": "o", "ꞵ": "b",
    "0": "o", "1": "l",
}  # fmt: skip
_SEQUENCES = (("rn", "m"), ("vv", "w"))


def nfkc_problem(name: str) -> str | None:
    if unicodedata.normalize("NFKC", name) != name:
        return f"name: {name!r} is not in Unicode NFKC form (it would read as {unicodedata.normalize('NFKC', name)!r})"
    return None


def name_skeleton(name: str) -> str:
    """The form two names share when they look alike."""
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()
    mapped = "".join(_LOOKALIKES.get(char, char) for char in stripped)
    for sequence, replacement in _SEQUENCES:
        mapped = mapped.replace(sequence, replacement)
    return mapped


def name_problems(name: str, others: Iterable[str]) -> list[str]:
    """Why ``name`` may not be registered beside the tools named ``others``: not NFKC, or it looks
    like one of them."""
    problem = nfkc_problem(name)
    if problem:
        return [problem]
    skeleton = name_skeleton(name)
    return [
        f"name: {name!r} looks like the existing tool {other!r}"
        for other in sorted(others)
        if other != name and name_skeleton(other) == skeleton
    ]
