"""Command output shown in docs/ is what the real commands print (run `python docs/regenerate.py`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _regenerate_module():
    spec = importlib.util.spec_from_file_location("docs_regenerate", DOCS / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REGENERATE = _regenerate_module()
CASES = [
    (path.name, command, shown)
    for path in sorted(DOCS.glob("*.md"))
    for command, shown in REGENERATE.blocks(path.read_text())
]


def test_docs_have_output_blocks() -> None:
    assert any(name == "plugins.md" for name, _, _ in CASES)


@pytest.mark.parametrize(("doc", "command", "shown"), CASES, ids=[f"{d}:{c}" for d, c, _ in CASES])
def test_shown_output_matches_the_real_command(doc: str, command: str, shown: str) -> None:
    assert REGENERATE.run_command(command) == shown, f"{doc} is stale: run python docs/regenerate.py"
