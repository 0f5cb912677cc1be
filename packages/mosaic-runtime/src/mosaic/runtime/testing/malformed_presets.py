"""Malformed variants of ``TINY_PRESET``: one per kind of mistake a preset author makes, each with the
text its report must contain and the ``$.path`` it must name (shared by the runtime's parser tests
and the CLI's ``presets validate`` tests)."""

from __future__ import annotations

from mosaic.runtime.testing.tiny_training import TINY_PRESET


def _replace(old: str, new: str) -> str:
    if old not in TINY_PRESET:
        raise ValueError(f"TINY_PRESET has no {old!r} to replace")
    return TINY_PRESET.replace(old, new, 1)


# (kind, preset text, text the report must contain, path the report must name)
MALFORMED = [
    ("yaml syntax", "version: 2\nname: [unclosed\n", "YAML syntax error", "$"),
    ("not a mapping", "- version: 2\n", "a preset must be a mapping", "$"),
    ("missing version", _replace("version: 2\n", ""), "required field missing (expected version: 2)", "$.version"),
    ("wrong version", _replace("version: 2", "version: 1"), "expected version: 2, got 1", "$.version"),
    ("unknown top key", _replace("targets:", "target:"), "did you mean 'targets'", "$.target"),
    ("targets not a list", "version: 2\nname: x\ntargets: {a: 1}\n", "non-empty list of targets", "$.targets"),
    ("targets empty", "version: 2\nname: x\ntargets: []\n", "non-empty list of targets", "$.targets"),
    ("missing section", _replace("    objective:\n      type: objective.mosaic_event_prediction\n"
                                "      aux_opcode_weight: 0.5\n      aux_commitment_weight: 0.5\n"
                                "      aux_gate_weight: 0.1\n      aux_state_decay_weight: 0.01\n", ""),
     "required field missing", "$.targets[0].objective"),
    ("unknown target key", _replace("    trainer:", "    trainr:"), "did you mean 'trainer'", "$.targets[0].trainr"),
    ("unknown component id", _replace("type: model.tiny_lm", "type: model.tiny_llm"),
     "did you mean model.tiny_lm", "$.targets[0].model.type"),
    ("wrong component kind", _replace("type: model.tiny_lm", "type: dataset.tiny_sequences"),
     "is not a model component", "$.targets[0].model.type"),
    ("missing type", _replace("      type: model.tiny_lm\n", ""), "required: the model component",
     "$.targets[0].model.type"),
    ("unknown config key", _replace("      n_layers: 2", "      n_layerz: 2"), "did you mean 'n_layers'",
     "$.targets[0].model.n_layerz"),
    ("string for int", _replace("      n_layers: 2", "      n_layers: two"), "expected int",
     "$.targets[0].model.n_layers"),
    ("float for int", _replace("      batch_size: 8", "      batch_size: 3.5"), "expected int",
     "$.targets[0].trainer.batch_size"),
    ("bool for float", _replace("      lr: 0.01", "      lr: true"), "expected float",
     "$.targets[0].trainer.lr"),
    ("negative value", _replace("      lr: 0.01", "      lr: -0.01"), "must be > 0, got -0.01", "$.targets[0].trainer.lr"),
    ("unknown variable", _replace("d_model: ${d_model}", "d_model: ${d_modle}"), "did you mean ${d_model}",
     "$.targets[0].model.d_model"),
    ("variable cycle", _replace("  steps: 30\n", "  steps: ${later}\n  later: ${steps}\n"), "variable cycle",
     "$.vars."),
    ("unknown backend", _replace("backend: torch", "backend: jax"), "unknown backend 'jax'",
     "$.targets[0].backend"),
    ("duplicate key", _replace("      n_layers: 2", "      n_layers: 2\n      n_layers: 3"), "duplicate key",
     "$.targets[0].model.n_layers"),
    ("invalid literal", _replace("      lr: 0.01", "      lr: 0.01\n      precision: fp8"),
     "must be one of 'fp32', 'bf16', got 'fp8'", "$.targets[0].trainer.precision"),
    ("cross-field", _replace("      batch_size: 8", "      batch_size: 8\n      grad_accum: 3"),
     "must be a multiple of grad_accum (3), got 8", "$.targets[0].trainer.batch_size"),
    ("target type", _replace("  - type: experiment", "  - type: sweep"), "unknown target type 'sweep'",
     "$.targets[0].type"),
    ("package missing", _replace("type: model.tiny_lm", "type: model.mosaic_lm"),
     "model.mosaic_lm is provided by mosaic-layers — pip install mosaic-layers", "$.targets[0].model.type"),
    ("negative weight", _replace("aux_opcode_weight: 0.5", "aux_opcode_weight: -0.5"),
     "must be >= 0, got -0.5", "$.targets[0].objective.aux_opcode_weight"),
    ("section not mapping", _replace("    curriculum:\n      type: curriculum.tiny_ramp", "    curriculum: fast"),
     "expected a mapping with 'type: curriculum.<name>'", "$.targets[0].curriculum"),
    ("schedule longer than the run", _replace("      type: curriculum.tiny_ramp", "      type: curriculum.tiny_ramp\n"
                                             "      warmup_steps: 10\n      cooldown_steps: 20"),
     "warmup_steps (10) + cooldown_steps (20) leave no steps to ramp over in a run of trainer.steps=",
     "$.targets[0].curriculum.cooldown_steps"),
    ("eval dataset key", _replace("        seed: 99", "        sed: 99"), "did you mean 'seed'",
     "$.targets[0].eval.dataset.sed"),
    ("name not string", _replace("name: tiny", "name: [1, 2]"), "expected a string", "$.name"),
    ("eval not mapping", _replace("      samples: 32", "      samples: [32]"), "expected int",
     "$.targets[0].eval.samples"),
]
