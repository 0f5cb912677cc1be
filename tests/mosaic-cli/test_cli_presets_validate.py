"""`mosaic presets validate` turns each malformed preset into one readable report, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "mosaic-runtime"))

from test_presets_malformed import MALFORMED, REGISTRY

from mosaic.cli.commands.presets import presets


@pytest.mark.parametrize(("kind", "text", "expected", "path"), MALFORMED[:12], ids=[m[0] for m in MALFORMED[:12]])
def test_cli_validate_reports_without_traceback(tmp_path, kind: str, text: str, expected: str, path: str) -> None:
    preset = tmp_path / "bad.yml"
    preset.write_text(text)
    result = CliRunner().invoke(presets, ["validate", "--no-estimate", str(preset)], obj={"registry": REGISTRY})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert expected in result.output
    assert isinstance(result.exception, SystemExit)
