"""The real presets, checked whole before anything is written: nested ``{type: ...}`` mappings
(``block.ffn``, ``ffn.router``, ``lifecycle``) through the registry, the model x dataset x objective
requirements the real components declare, and what only trying tells (a block too small for a
sample). ``mosaic presets validate`` reports each as an error (non-zero exit), ``mosaic run`` leaves
no run directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from mosaic.core.component_slots import ComponentSlot
from mosaic.core.errors import ConfigError
from mosaic.core.plugins import PluginHost, PluginSelection, get_registry
from mosaic.core.registry import Component
from mosaic.core.validators import EachRule, OptionalRule, Rule
from mosaic.data.config import EventTraceConfig, MemoryCurriculumConfig, MQARConfig
from mosaic.layers.config import MosaicBlockConfig
from mosaic.runtime.training.manifest import load_manifest, preset_text
from mosaic.runtime.training.preflight import preflight

MOSAIC = str(Path(sys.executable).with_name("mosaic"))

# (preset, --set overrides, the one problem's path and line, text of its message)
MISTAKES = [
    # nested mappings: the issue's own example, at its own line
    ("phase8_moe", ["vars.n_experts=0"], "$.targets[0].model.block.ffn.n_experts (line 53)", "must be > 0, got 0"),
    ("phase8_moe", ["vars.top_k=9"], "$.targets[0].model.block.ffn.top_k (line 54)", "must be <= n_experts (8), got 9"),
    ("phase8_moe", ["targets[0].model.block.ffn.router.type=router.topkk"],
     "$.targets[0].model.block.ffn.router.type (line 56)", "did you mean router.topk?"),
    ("phase8_moe", ["targets[0].model.block.ffn.n_expert=4"], "$.targets[0].model.block.ffn.n_expert (line 52)",
     "did you mean 'n_experts'?"),
    ("phase8_moe", ["targets[3].model.block.ffn.router.chrono.k_max=-1"],
     "$.targets[3].model.block.ffn.router.chrono.k_max", "must be > 0.0, got -1"),
    ("phase8_moe", ["targets[3].model.block.ffn.router.chrono.lifecycle.slow_interval=0"],
     "$.targets[3].model.block.ffn.router.chrono.lifecycle.slow_interval", "must be >= 1, got 0"),
    ("phase8_moe", ["targets[3].model.lifecycle.type=layer.chrono_lifecyle"],
     "$.targets[3].model.lifecycle.type (line 240)", "did you mean layer.chrono_lifecycle?"),
    ("phase8_moe", ["targets[3].model.lifecycle.trigger=sometimes"], "$.targets[3].model.lifecycle.trigger (line 241)",
     "must be one of 'free_energy', 'adhoc', 'none', 'schedule', got 'sometimes'"),
    # model x dataset x objective
    ("mosaic_commitment", ["targets[0].model.block.commitment_head_enabled=false"],
     "$.targets[0].objective.aux_commitment_weight (line 58)", "trains the model's commitment head: missing {commitment}"),
    ("mosaic_commitment", ["targets[0].model.vocab_size=100"], "$.targets[0].model.vocab_size (line 35)",
     "must be >= 256 (the embedding must cover every token id the dataset emits), got 100"),
    ("mosaic_commitment", ["targets[0].dataset.mem_buckets=32"], "$.targets[0].dataset.mem_buckets",
     "must be == 64 (teacher buckets are computed for the model's memory"),
    ("mosaic_commitment", ["targets[0].dataset.mem_hashes=2"], "$.targets[0].dataset.mem_hashes",
     "must be == 1"),
    ("mqar_mosaic", ["targets[0].model.vocab_size=64"], "$.targets[0].model.vocab_size", "must be >= 8192"),
    ("mqar_transformer", ["targets[0].model.max_seq_len=16"], "$.targets[0].model.max_seq_len (line 23)",
     "must be >= 64 (the learned positions must cover the dataset's longest sample), got 16"),
    ("mqar_transformer", ["targets[0].objective.aux_state_decay_weight=0.1"],
     "$.targets[0].objective.aux_state_decay_weight", "missing {state_bank}"),
]


@pytest.mark.parametrize(("preset", "overrides", "where", "message"), MISTAKES,
                         ids=[f"{m[0]}:{m[1][0]}" for m in MISTAKES])
def test_nested_and_cross_component_mistakes_are_errors_at_read_time(
    preset: str, overrides: list[str], where: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_manifest(preset, get_registry(), overrides=overrides)
    rendered = [problem.render() for problem in info.value.problems]
    assert any(line.startswith(f"{where}: ") or line.startswith(f"{where} (line") for line in rendered), rendered
    assert any(message in line for line in rendered), rendered


def test_every_builtin_preset_reads_clean() -> None:
    registry = get_registry()
    for component_id in registry.ids("preset"):
        load_manifest(component_id, registry)  # no false alarm from the new checks


def test_a_block_too_small_for_a_sample_is_caught_before_the_run() -> None:
    registry = get_registry()
    manifest = load_manifest("mosaic_commitment", registry, overrides=["vars.block_size=64"])
    with pytest.raises(ConfigError) as info:
        preflight(manifest, registry)
    import mosaic.runtime.presets as presets

    text = (Path(presets.__file__).parent / "mosaic_commitment.yml").read_text().splitlines()
    line = next(n for n, row in enumerate(text, 1) if row.strip() == "block_size: ${block_size}")
    assert f"$.targets[0].dataset.block_size (line {line}): " in str(info.value), info.value
    assert "a sample does not fit" in str(info.value)


def test_memory_defaults_agree_between_model_and_datasets() -> None:
    block = MosaicBlockConfig()
    for config in (MQARConfig(), MemoryCurriculumConfig(), EventTraceConfig()):
        assert (config.mem_buckets, config.mem_hashes) == (block.mem_buckets, block.mem_hashes), config


def _write(tmp_path: Path, preset: str, old: str, new: str) -> Path:
    text, _source = preset_text(preset, get_registry())
    assert old in text
    path = tmp_path / "bad.yml"
    path.write_text(text.replace(old, new, 1))
    return path


def _mosaic(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([MOSAIC, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize(("preset", "old", "new", "where"), [
    ("phase8_moe", "n_experts: 8", "n_experts: 0", "$.targets[0].model.block.ffn.n_experts (line 53)"),
    ("mosaic_commitment", "commitment_head_enabled: true", "commitment_head_enabled: false",
     "$.targets[0].objective.aux_commitment_weight (line 58)"),
    ("mosaic_commitment", "block_size: 5888", "block_size: 64", "$.targets[0].dataset.block_size (line 68)"),
])
def test_installed_cli_validate_fails_and_run_writes_nothing(tmp_path: Path, preset: str, old: str, new: str,
                                                             where: str) -> None:
    bad = _write(tmp_path, preset, old, new)
    validated = _mosaic("presets", "validate", "--no-estimate", str(bad), cwd=tmp_path)
    assert validated.returncode == 1, validated
    assert f"FAIL {bad}" in validated.stdout and where in validated.stdout, validated.stdout
    assert "ok " not in validated.stdout and "Traceback" not in validated.stdout + validated.stderr
    ran = _mosaic("run", str(bad), "--out", str(tmp_path / "runs"), "--no-progress", cwd=tmp_path)
    assert ran.returncode != 0, ran
    assert where in ran.stdout + ran.stderr and "Traceback" not in ran.stdout + ran.stderr
    assert not (tmp_path / "runs").exists()


def test_factories_build_their_parts_from_the_registry_they_were_given(monkeypatch: pytest.MonkeyPatch) -> None:
    host = PluginHost(PluginSelection())
    host.load_entry_points()
    registry = host.registry
    registry.add(Component("router.only_here", "chronomoe.routers:build_topk_router", "a router no other registry has",
                           config="chronomoe.config:TopKRouterConfig"))

    def no_global_registry() -> None:
        raise AssertionError("a factory reached for the process-wide registry")

    monkeypatch.setattr("mosaic.core.plugins.get_registry", no_global_registry)
    ffn = {"type": "layer.moe", "n_experts": 2, "top_k": 1, "router": {"type": "router.only_here"}}
    block = {"d_model": 8, "state_k": 2, "state_dim": 4, "mem_buckets": 4, "mem_key_dim": 4, "mem_dim": 4,
             "reg_slots": 0, "ffn": ffn}
    model = registry.build("model.mosaic_lm", {"vocab_size": 16, "n_layers": 1, "block": block})
    assert type(model.blocks[0].mixer.ffn.router).__name__ == "TopKRouter"
    baseline = registry.build("model.transformer_baseline", {"vocab_size": 16, "d_model": 8, "n_heads": 2,
                                                             "n_layers": 1, "ffn": ffn})
    assert type(baseline.ffn_layers()[0].router).__name__ == "TopKRouter"


TOOLKIT = {"mosaic-core", "mosaic-layers", "mosaic-data", "chronomoe", "mosaic-runtime"}
#: the kinds a preset names, directly or nested (drives and tool builders are configured elsewhere)
PRESET_KINDS = {"model", "layer", "router", "dataset", "curriculum", "objective"}
VOCABULARY = (Rule, OptionalRule, EachRule, ComponentSlot)


def _config_classes(cls: type) -> Iterator[type]:
    yield cls
    for field in attrs.fields(attrs.resolve_types(cls)):
        if isinstance(field.type, type) and attrs.has(field.type):
            yield from _config_classes(field.type)


def test_every_preset_config_rule_of_the_toolkit_comes_from_the_one_vocabulary() -> None:
    # a rule outside mosaic.core.validators words its message its own way and names no field
    registry = get_registry()
    outside = []
    for component in registry:
        ours = component.provider in TOOLKIT and component.kind in PRESET_KINDS
        config = component.load_config_class() if ours else None
        for cls in _config_classes(config) if config is not None else ():
            outside += [f"{component.id}: {cls.__name__}.{f.name}" for f in attrs.fields(cls)
                        if f.validator is not None and not isinstance(f.validator, VOCABULARY)]
    assert outside == []
