"""The docs are true: command output shown in docs/ is what the real commands print, and result
tables are what docs/renderers/ render from the committed JSON in docs/results/."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
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
    for path in REGENERATE.pages()
    for command, shown in REGENERATE.blocks(path.read_text())
]
TABLES = [(path.name, name, shown) for path in REGENERATE.pages() for name, shown in REGENERATE.tables(path.read_text())]


def test_docs_have_output_blocks() -> None:
    assert any(name == "plugins.md" for name, _, _ in CASES)


@pytest.mark.parametrize(("doc", "command", "shown"), CASES, ids=[f"{d}:{c}" for d, c, _ in CASES])
def test_shown_output_matches_the_real_command(doc: str, command: str, shown: str) -> None:
    assert REGENERATE.run_command(command) == shown, f"{doc} is stale: run python docs/regenerate.py"


def test_result_tables_match_the_committed_json() -> None:
    stale = [f"{doc}: table {name}" for doc, name, shown in TABLES if REGENERATE.render_table(name) != shown]
    assert stale == [], "stale docs, run python docs/regenerate.py"


def test_check_mode_flags_a_stale_table_and_writes_nothing(tmp_path: Path) -> None:
    """``regenerate.py --check`` is what keeps docs honest: it must fail on a doctored table."""
    docs = tmp_path / "docs"
    (docs / "renderers").mkdir(parents=True)
    (docs / "results").mkdir()
    (docs / "regenerate.py").write_text((DOCS / "regenerate.py").read_text())
    (docs / "results" / "demo.json").write_text('{"accuracy": 0.5}')
    (docs / "renderers" / "demo.py").write_text(
        "import json\n\ndef render(results):\n"
        "    return f\"| accuracy | {json.loads((results / 'demo.json').read_text())['accuracy']} |\\n\"\n"
    )
    page = docs / "page.md"
    page.write_text("<!-- mosaic-table: demo -->\n| accuracy | 0.5 |\n<!-- /mosaic-table -->\n")
    check = [sys.executable, str(docs / "regenerate.py"), "--check"]
    assert subprocess.run(check, capture_output=True, text=True).returncode == 0
    page.write_text("<!-- mosaic-table: demo -->\n| accuracy | 0.9 |\n<!-- /mosaic-table -->\n")
    result = subprocess.run(check, capture_output=True, text=True)
    assert result.returncode == 1 and "page.md: table demo" in result.stderr
    assert "0.9" in page.read_text()
    subprocess.run([sys.executable, str(docs / "regenerate.py")], check=True, capture_output=True)
    assert "| accuracy | 0.5 |" in page.read_text()


def test_the_tool_definition_example_is_valid() -> None:
    """docs/tools.md's example definition passes validation and the builder's source gate."""
    import re

    from mosaic.runtime.tools.ast_gate import check_source
    from mosaic.runtime.tools.definition import ToolDefinition

    text = (DOCS / "tools.md").read_text()
    example = json.loads(re.search(r"```json\n(.*?)```", text, re.DOTALL)[1])
    definition = ToolDefinition.from_json_dict(example)
    assert definition.validate() == []
    assert not definition.requires_approval()
    assert check_source(definition.implementation, frozenset(definition.capabilities.allowed_imports)) == []


def _renderer(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_renderer_{name}", DOCS / "renderers" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_live_count_curve_reads_every_fixed_run_and_refuses_two_that_disagree(tmp_path: Path) -> None:
    """Fixed MoEs come from several ``--only-fixed`` runs: each file's counts join the curve, and a
    count trained in two files with other losses (seeded runs must agree) is an error, not a pick."""

    def rows(loss: float) -> list[dict[str, float]]:
        return [{"seed": 0, "val_loss": loss}]

    setup = {"steps": 10, "seeds": [0], "counts": [], "workers": 1}
    (tmp_path / "phase8.json").write_text(json.dumps({"results": {
        "setup": {"steps": 10, "seeds": [0], "n_live_start": 6}, "arms": {"chrono": rows(1.5)}, "fixed": {}}}))
    (tmp_path / "phase8_fixed.json").write_text(json.dumps({"results": {
        "setup": {**setup, "counts": [4]}, "fixed": {"4": rows(1.6)}}}))
    (tmp_path / "phase8_fixed_7.json").write_text(json.dumps({"results": {
        "setup": {**setup, "counts": [7]}, "fixed": {"7": rows(1.4)}}}))
    table = _renderer("phase8_live_counts").render(tmp_path)
    assert "| 4 | 1.6000 |" in table and "| 7 | 1.4000 |" in table and "--only-fixed 7 " in table
    (tmp_path / "phase8_fixed_4_again.json").write_text(json.dumps({"results": {
        "setup": {**setup, "counts": [4]}, "fixed": {"4": rows(1.7)}}}))
    with pytest.raises(ValueError, match="trained 4 live experts again"):
        _renderer("phase8_live_counts").render(tmp_path)
