"""No package unpickles: every ``torch.load`` passes ``weights_only=True`` and nothing calls
``pickle.load``/``pickle.loads`` (the behaviour itself is tested with planted pickles in
tests/mosaic-cli/test_cli_untrusted_files.py; this keeps a new call site from slipping in)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = Path(__file__).resolve().parents[2] / "packages"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name):
                yield f"{owner.id}.{node.func.attr}", node


def test_every_torch_load_is_weights_only_and_nothing_unpickles() -> None:
    offenders = []
    sources = sorted(PACKAGES.rglob("*.py"))
    assert sources, PACKAGES
    for path in sources:
        for name, call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(PACKAGES)}:{call.lineno}"
            if name == "torch.load":
                flags = {kw.arg: kw.value for kw in call.keywords}
                value = flags.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    offenders.append(f"{where}: torch.load without weights_only=True")
            elif name in {"pickle.load", "pickle.loads", "pickle.Unpickler"}:
                offenders.append(f"{where}: {name}")
    assert not offenders, offenders
