"""Malformed presets: each produces one readable ConfigError report (path, line, hint), never a
traceback, and a preset with several problems reports all of them at once."""

from __future__ import annotations

import pytest
from train_tiny_components import TINY_PRESET, tiny_registry

from mosaic.core.errors import ConfigError
from mosaic.runtime.training.manifest import parse_manifest

REGISTRY = tiny_registry()


def replace(old: str, new: str) -> str:
    assert old in TINY_PRESET, old
    return TINY_PRESET.replace(old, new, 1)


# (kind, preset text, text the report must contain, path the report must name)
MALFORMED = [
    ("yaml syntax", "version: 2\nname: [unclosed\n", "YAML syntax error", "$"),
    ("not a mapping", "- version: 2\n", "a preset must be a mapping", "$"),
    ("missing version", replace("version: 2\n", ""), "required field missing (expected version: 2)", "$.version"),
    ("wrong version", replace("version: 2", "version: 1"), "expected version: 2, got 1", "$.version"),
    ("unknown top key", replace("targets:", "target:"), "did you mean 'targets'", "$.target"),
    ("targets not a list", "version: 2\nname: x\ntargets: {a: 1}\n", "non-empty list of targets", "$.targets"),
    ("targets empty", "version: 2\nname: x\ntargets: []\n", "non-empty list of targets", "$.targets"),
    ("missing section", replace("    objective:\n      type: objective.mosaic_event_prediction\n"
                                "      aux_opcode_weight: 0.5\n      aux_commitment_weight: 0.5\n"
                                "      aux_gate_weight: 0.1\n      aux_state_decay_weight: 0.01\n", ""),
     "required field missing", "$.targets[0].objective"),
    ("unknown target key", replace("    trainer:", "    trainr:"), "did you mean 'trainer'", "$.targets[0].trainr"),
    ("unknown component id", replace("type: model.tiny_lm", "type: model.tiny_llm"),
     "did you mean model.tiny_lm", "$.targets[0].model.type"),
    ("wrong component kind", replace("type: model.tiny_lm", "type: dataset.tiny_sequences"),
     "is not a model component", "$.targets[0].model.type"),
    ("missing type", replace("      type: model.tiny_lm\n", ""), "required: the model component",
     "$.targets[0].model.type"),
    ("unknown config key", replace("      n_layers: 2", "      n_layerz: 2"), "did you mean 'n_layers'",
     "$.targets[0].model.n_layerz"),
    ("string for int", replace("      n_layers: 2", "      n_layers: two"), "expected int",
     "$.targets[0].model.n_layers"),
    ("float for int", replace("      batch_size: 8", "      batch_size: 3.5"), "expected int",
     "$.targets[0].trainer.batch_size"),
    ("bool for float", replace("      lr: 0.01", "      lr: true"), "expected float",
     "$.targets[0].trainer.lr"),
    ("negative value", replace("      lr: 0.01", "      lr: -0.01"), "lr must be > 0", "$.targets[0].trainer"),
    ("unknown variable", replace("d_model: ${d_model}", "d_model: ${d_modle}"), "did you mean ${d_model}",
     "$.targets[0].model.d_model"),
    ("variable cycle", replace("  steps: 30\n", "  steps: ${later}\n  later: ${steps}\n"), "variable cycle",
     "$.vars."),
    ("unknown backend", replace("backend: torch", "backend: jax"), "unknown backend 'jax'",
     "$.targets[0].backend"),
    ("duplicate key", replace("      n_layers: 2", "      n_layers: 2\n      n_layers: 3"), "duplicate key",
     "$.targets[0].model.n_layers"),
    ("invalid literal", replace("      lr: 0.01", "      lr: 0.01\n      precision: fp8"),
     "precision must be one of fp32, bf16, got 'fp8'", "$.targets[0].trainer"),
    ("cross-field", replace("      batch_size: 8", "      batch_size: 8\n      grad_accum: 3"),
     "must be a multiple of grad_accum", "$.targets[0].trainer"),
    ("target type", replace("  - type: experiment", "  - type: sweep"), "unknown target type 'sweep'",
     "$.targets[0].type"),
    ("package missing", replace("type: model.tiny_lm", "type: model.mosaic_lm"),
     "model.mosaic_lm is provided by mosaic-layers — pip install mosaic-layers", "$.targets[0].model.type"),
    ("negative weight", replace("aux_opcode_weight: 0.5", "aux_opcode_weight: -0.5"),
     "aux_opcode_weight must be >= 0", "$.targets[0].objective"),
    ("section not mapping", replace("    curriculum:\n      type: curriculum.tiny_ramp", "    curriculum: fast"),
     "expected a mapping with 'type: curriculum.<name>'", "$.targets[0].curriculum"),
    ("schedule longer than the run", replace("      type: curriculum.tiny_ramp", "      type: curriculum.tiny_ramp\n"
                                             "      warmup_steps: 10\n      cooldown_steps: 20"),
     "warmup_steps (10) + cooldown_steps (20) leave no steps to ramp over in a run of trainer.steps=",
     "$.targets[0].curriculum.cooldown_steps"),
    ("eval dataset key", replace("        seed: 99", "        sed: 99"), "did you mean 'seed'",
     "$.targets[0].eval.dataset.sed"),
    ("name not string", replace("name: tiny", "name: [1, 2]"), "expected a string", "$.name"),
    ("eval not mapping", replace("      samples: 32", "      samples: [32]"), "expected int",
     "$.targets[0].eval.samples"),
]


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
