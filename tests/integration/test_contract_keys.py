"""Key names cross packages only as specs: no package spells a contract key as a string literal."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mosaic.core.contract import KEY_SPECS, keys

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "packages" / "mosaic-core" / "src" / "mosaic" / "core" / "contract"
#: the Done-when patterns of issue 15, plus every other spec'd key name
PATTERNS = (re.compile(r"^mosaic_teacher_"), re.compile(r"^mosaic_\w+_logits$"))


def string_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def key_literals(path: Path) -> list[str]:
    found = []
    for line, text in string_literals(path):
        if text in KEY_SPECS or any(pattern.match(text) for pattern in PATTERNS):
            found.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    return found


def test_no_key_literal_outside_the_contract() -> None:
    sources = [path for path in (ROOT / "packages").glob("*/src/**/*.py") if CONTRACT not in path.parents]
    assert sources
    offenders = [hit for path in sources for hit in key_literals(path)]
    assert offenders == [], "use mosaic.core.contract.keys instead of:\n" + "\n".join(offenders)


def test_the_scan_finds_a_literal(tmp_path: Path) -> None:
    global ROOT
    probe = tmp_path / "probe.py"
    probe.write_text('"""mosaic_teacher_opcode in a docstring is fine"""\nKEY = "mosaic_teacher_opcode"\n')
    saved, ROOT = ROOT, tmp_path
    try:
        assert key_literals(probe) == ["probe.py:2: 'mosaic_teacher_opcode'"]
    finally:
        ROOT = saved


def test_one_ignore_value_for_every_integer_label() -> None:
    ignores = {spec.ignore for spec in KEY_SPECS.values() if spec.dtype == "int64" and spec.ignore is not None}
    assert ignores == {keys.IGNORE_INDEX} == {-100}
    assert all(spec.pad == spec.ignore for spec in keys.TEACHER_KEYS if spec.dtype == "int64")
