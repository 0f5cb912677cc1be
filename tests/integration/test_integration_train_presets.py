"""The built-in presets against the real installed plugins: each validates, its samples fit, each
trains a couple of steps end to end, and a missing package is named in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from mosaic.core.errors import ConfigError
from mosaic.core.plugins import PluginHost, PluginSelection, get_registry
from mosaic.runtime.presets import BUILTIN_PRESETS
from mosaic.runtime.training.manifest import load_manifest
from mosaic.runtime.training.run import run_preset


@pytest.mark.parametrize("name", sorted(BUILTIN_PRESETS))
def test_builtin_preset_validates_and_its_samples_fit(name: str) -> None:
    registry = get_registry()
    manifest = load_manifest(name, registry)
    for experiment in manifest.experiments:
        assert experiment.budget is not None, "every built-in preset states its memory budget"
        dataset = experiment.dataset.build(registry)  # construction rejects samples that do not fit
        item = dataset[0]
        assert int((item["target_ids"] != -100).sum()) > 0
        assert experiment.eval_dataset is not None
        assert experiment.eval_dataset.config.split == "eval"


@pytest.mark.parametrize("name", ["mosaic_commitment", "mosaic_vm", "mosaic_gates", "mqar_mosaic", "mqar_transformer",
                                  "mosaic_memory_curriculum"])
def test_builtin_preset_trains_two_steps(tmp_path: Path, name: str) -> None:
    overrides = ["trainer.steps=2", "trainer.warmup_steps=1", "trainer.log_every=1", "eval.samples=4",
                 "eval.batch_size=4", "trainer.batch_size=2"]
    manifest = load_manifest(name, get_registry())
    for index, _curriculum in enumerate(manifest.experiments[0].curricula):
        overrides += [f"targets[0].curriculum[{index}].warmup_steps=0",
                      f"targets[0].curriculum[{index}].cooldown_steps=0"]
    if manifest.experiments[0].curricula and not isinstance(manifest.resolved["targets"][0]["curriculum"], list):
        overrides = [o.replace("curriculum[0]", "curriculum") for o in overrides]
    summary = run_preset(name, out=tmp_path, overrides=overrides, show_progress=False)
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert summary["eval"]["samples"] == 4


def test_missing_package_is_named_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mosaic.core.registry._is_installed", lambda distribution: False)  # as if uninstalled
    host = PluginHost(PluginSelection(disabled=frozenset({"mosaic-layers"})))
    host.load_entry_points()
    with pytest.raises(ConfigError, match="model.mosaic_lm is provided by mosaic-layers — pip install mosaic-layers"):
        load_manifest("mosaic_vm", host.registry)
