"""Shared fixtures of mosaic-data's tests.

Hypothesis settings are explicit per test (``max_examples`` small by default, raised with
``HYPOTHESIS_PROFILE=ci``) rather than a global profile, so that running several packages' tests
together does not let one package's profile change another's.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def small_text(tmp_path: Path) -> Path:
    """A small UTF-8 text file with a known character set."""
    lines = [f"line {i}: the quick brown fox jumps over the lazy dog, naïve café {i % 7}\n" for i in range(200)]
    path = tmp_path / "corpus.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path
