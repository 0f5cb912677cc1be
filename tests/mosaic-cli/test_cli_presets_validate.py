"""`mosaic presets validate` turns each malformed preset into one readable report, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mosaic.cli.commands.presets import presets
from mosaic.runtime.testing.malformed_presets import MALFORMED
from mosaic.runtime.testing.tiny_training import tiny_registry

REGISTRY = tiny_registry()


@pytest.mark.parametrize(("kind", "text", "expected", "path"), MALFORMED[:12], ids=[m[0] for m in MALFORMED[:12]])
def test_cli_validate_reports_without_traceback(tmp_path, kind: str, text: str, expected: str, path: str) -> None:
    preset = tmp_path / "bad.yml"
    preset.write_text(text)
    result = CliRunner().invoke(presets, ["validate", "--no-estimate", str(preset)], obj={"registry": REGISTRY})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert expected in result.output
    assert isinstance(result.exception, SystemExit)
