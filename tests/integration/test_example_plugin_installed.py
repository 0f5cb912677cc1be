"""With every package and the example plugin installed: discovery, building, and no torch on listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mosaic.core.plugins import PluginHost, PluginSelection


def mosaic(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSAIC_")}
    return subprocess.run([sys.executable, "-m", "mosaic.cli.main", *args], capture_output=True, text=True, env=env)


def installed_host() -> PluginHost:
    host = PluginHost(PluginSelection(strict=True))
    host.load_entry_points()
    return host


def test_every_builtin_plugin_loads_cleanly() -> None:
    host = installed_host()
    assert {r.name for r in host.records} >= {
        "mosaic-core", "mosaic-layers", "mosaic-data", "chronomoe", "mosaic-runtime", "mosaic-plugin-example",
    }
    assert host.failures == []


def test_example_plugin_is_listed_with_its_components() -> None:
    result = mosaic("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    (example,) = [p for p in json.loads(result.stdout) if p["name"] == "mosaic-plugin-example"]
    assert example["status"] == "loaded"
    assert example["components"]["opcode"] == ["opcode.DAMPEN"]
    assert example["components"]["curriculum"] == ["curriculum.staircase"]
    assert example["components"]["drive"] == ["drive.boredom"]


def test_registry_builds_each_example_component() -> None:
    registry = installed_host().registry
    assert registry.build("opcode.DAMPEN").value("output_scale") == 0.5
    assert registry.build("curriculum.staircase", {"stairs": 2}).level_at(10, 10) == 1.0
    assert registry.build("drive.boredom").metric == "input_novelty"


def test_v0_opcodes_are_registered_in_order() -> None:
    from mosaic.layers.isa import V0_OPCODES

    registry = installed_host().registry
    assert [registry.build(f"opcode.{op.name}").name for op in V0_OPCODES] == [
        "NOP", "READ_MEM", "WRITE_MEM", "CLEAR_MEM", "IDLE", "GATE_UP", "GATE_DOWN", "SCAN", "COMMIT", "RESPOND",
    ]


def test_listing_everything_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from mosaic.cli.main import cli\n"
        "for args in (['plugins', 'list', '--all'], ['components', 'list']):\n"
        "    cli.main(args, standalone_mode=False)\n"
        "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSAIC_")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "NO_TORCH"


def test_installing_an_opcode_plugin_changes_no_shipped_preset() -> None:
    """The example plugin registers opcode.DAMPEN; a preset's model gets it only when it asks."""
    from mosaic.layers.model import MosaicLM, MosaicLMConfig

    plain = MosaicLM(MosaicLMConfig(vocab_size=32, n_layers=1))
    assert "DAMPEN" not in plain.opcode_names
    asked = MosaicLM(MosaicLMConfig(vocab_size=32, n_layers=1, plugin_opcodes=True))
    assert asked.opcode_names[-1] == "DAMPEN"
