"""Tests of the example plugin, written with the MOSAIC plugin author kit.

The fixtures ``use_plugin`` and ``mosaic_registry`` come from ``mosaic.core.testing``, which
mosaic-core registers as a pytest plugin: no imports or conftest needed.
"""

from __future__ import annotations

import pytest

from mosaic.core.errors import ConfigError, DataError
from mosaic.core.testing import assert_plugin_ok
from mosaic_plugin_example import plugin


class AdjustableDataset:
    def __init__(self) -> None:
        self.levels: list[float] = []

    def set_difficulty(self, level: float) -> None:
        self.levels.append(level)


def test_plugin_meets_the_contract() -> None:
    assert_plugin_ok(plugin, "mosaic-plugin-example")


def test_registers_one_opcode_one_drive_one_curriculum_and_one_memory(use_plugin, mosaic_registry) -> None:
    record = use_plugin(plugin, "mosaic-plugin-example")
    assert record.components == {
        "curriculum": ["curriculum.staircase"],
        "drive": ["drive.boredom"],
        "memory": ["memory.outer_product"],
        "opcode": ["opcode.DAMPEN"],
    }


def test_boredom_drive_fires_only_below_its_band(use_plugin, mosaic_registry) -> None:
    from mosaic.core import HomeostaticLoop

    use_plugin(plugin, "mosaic-plugin-example")
    drive = mosaic_registry.build("drive.boredom", {"refractory_s": 0.0})
    loop = HomeostaticLoop([drive])
    assert loop.impulse({"input_novelty": 0.5}, now=0.0) is None
    impulse = loop.impulse({"input_novelty": 0.05}, now=1.0)
    assert impulse is not None and impulse.type == "Impulse"
    assert impulse.payload["drive"] == "boredom" and impulse.payload["deviation"] < 0


def test_dampen_opcode_halves_the_update(use_plugin, mosaic_registry) -> None:
    use_plugin(plugin, "mosaic-plugin-example")
    opcode = mosaic_registry.build("opcode.DAMPEN")
    assert opcode.name == "DAMPEN"
    assert opcode.value("output_scale") == 0.5
    assert opcode.value("read") == 0.0  # undeclared channels keep their defaults


def test_staircase_rises_in_equal_stairs(use_plugin, mosaic_registry) -> None:
    use_plugin(plugin, "mosaic-plugin-example")
    staircase = mosaic_registry.build("curriculum.staircase", {"stairs": 3})
    dataset = AdjustableDataset()
    metrics = [staircase.update(step, 90, dataset)["difficulty"] for step in (0, 29, 30, 59, 60, 90)]
    assert metrics == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    assert dataset.levels == metrics


def test_staircase_rejects_bad_config_and_unadjustable_datasets(use_plugin, mosaic_registry) -> None:
    use_plugin(plugin, "mosaic-plugin-example")
    with pytest.raises(ConfigError, match=r"\$.stairs"):
        mosaic_registry.build("curriculum.staircase", {"stairs": 1})
    staircase = mosaic_registry.build("curriculum.staircase", {})
    with pytest.raises(DataError, match="set_difficulty"):
        staircase.update(0, 10, object())
