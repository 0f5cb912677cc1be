"""Malformed presets: each produces one readable ConfigError report (path, line, hint), never a
traceback, and a preset with several problems reports all of them at once."""

from __future__ import annotations

import pytest

from mosaic.core.errors import ConfigError
from mosaic.runtime.testing.malformed_presets import MALFORMED
from mosaic.runtime.testing.tiny_training import TINY_PRESET, tiny_registry
from mosaic.runtime.training.manifest import parse_manifest

REGISTRY = tiny_registry()


@pytest.mark.parametrize(("kind", "text", "expected", "path"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_preset_gives_one_readable_report(
    kind: str, text: str, expected: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "package missing" must read the same whether or not mosaic-layers happens to be installed here.
    monkeypatch.setattr("mosaic.core.registry._is_installed", lambda distribution: False)
    with pytest.raises(ConfigError) as info:
        parse_manifest(text, REGISTRY, source="bad.yml")
    report = str(info.value)
    assert report.startswith("invalid configuration in bad.yml")
    assert expected in report
    assert any(problem.path.startswith(path) for problem in info.value.problems), report
    assert all(problem.line is not None for problem in info.value.problems), report


def test_at_least_twenty_kinds() -> None:
    assert len({m[0] for m in MALFORMED}) >= 20


def test_every_problem_reported_at_once_with_lines() -> None:
    text = (TINY_PRESET.replace("n_layers: 2", "n_layerz: 2").replace("lr: 0.01", "lr: fast")
            .replace("backend: torch", "backend: jax"))
    with pytest.raises(ConfigError) as info:
        parse_manifest(text, REGISTRY, source="bad.yml")
    paths = {problem.path for problem in info.value.problems}
    assert {"$.targets[0].model.n_layerz", "$.targets[0].trainer.lr", "$.targets[0].backend"} <= paths
    lines = {problem.path: problem.line for problem in info.value.problems}
    text_lines = text.splitlines()
    assert "n_layerz" in text_lines[lines["$.targets[0].model.n_layerz"] - 1]
    assert "lr: fast" in text_lines[lines["$.targets[0].trainer.lr"] - 1]
