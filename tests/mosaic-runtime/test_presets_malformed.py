"""Malformed and hostile presets: each produces one readable ConfigError report (``$.path (line N)``
and a hint), never a traceback, never a hang, and ``run_preset`` of it writes nothing; a preset with
several problems reports all of them at once.

The cases run against the tiny test components plus, below, a model with a nested ``ffn`` mapping
(whose ``router`` is another mapping), a dataset that states what it provides and requires, and a
dataset whose samples cannot fit, so the nested, cross-component and preflight checks are covered
without the real component packages (tests/integration runs the same checks on the real ones).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from mosaic.core.component_slots import component_field
from mosaic.core.contract.compat import Capability, Head, Provided, Relation, Required
from mosaic.core.errors import ConfigError, DataError
from mosaic.core.registry import Component
from mosaic.core.validators import positive, reject
from mosaic.runtime.testing.malformed_presets import MALFORMED
from mosaic.runtime.testing.tiny_training import (
    TINY_PRESET,
    TinyLM,
    TinyLMConfig,
    TinySequenceConfig,
    TinySequences,
    tiny_registry,
)
from mosaic.runtime.training.manifest import load_manifest, parse_manifest
from mosaic.runtime.training.preflight import preflight
from mosaic.runtime.training.run import run_preset

# --- components with nested mappings and declared requirements --------------------------------------


@attrs.frozen
class SlotRouterConfig:
    n_experts: int = attrs.field(validator=positive)
    top_k: int = attrs.field(validator=positive)
    temperature: float = attrs.field(default=1.0, validator=positive)


@attrs.frozen
class SlotMixtureConfig:
    d_model: int = attrs.field(validator=positive)
    n_experts: int = attrs.field(default=4, validator=positive)
    top_k: int = attrs.field(default=1, validator=positive)
    router: dict[str, Any] = component_field("router", injected=("n_experts", "top_k"), default={"type": "router.slot"})

    def __attrs_post_init__(self) -> None:
        if self.top_k > self.n_experts:
            reject("top_k", f"must be <= n_experts ({self.n_experts}), got {self.top_k}")


@attrs.frozen
class SlotLMConfig:
    vocab_size: int = attrs.field(default=16, validator=positive)
    d_model: int = attrs.field(default=16, validator=positive)
    max_positions: int = attrs.field(default=64, validator=positive)
    commitment_head: bool = True
    ffn: dict[str, Any] | None = component_field("layer", injected=("d_model",))

    def provides(self) -> Iterator[Provided]:
        heads = {Head.OPCODES, Head.MEMORY, Head.STATE_BANK} | ({Head.COMMITMENT} if self.commitment_head else set())
        yield Provided(Capability.HEADS, frozenset(heads), "commitment_head")
        yield Provided(Capability.MEMORY_BUCKETS, 16, "d_model")

    def requires(self) -> Iterator[Required]:
        yield Required(Capability.VOCAB_SIZE, Relation.AT_LEAST, self.vocab_size, "vocab_size", "embedding covers data")
        yield Required(Capability.SAMPLE_LENGTH, Relation.AT_LEAST, self.max_positions, "max_positions",
                       "positions cover a sample")


@attrs.frozen
class SlotDataConfig:
    vocab_size: int = attrs.field(default=16, validator=positive)
    seq_len: int = attrs.field(default=12, validator=positive)
    mem_buckets: int = attrs.field(default=16, validator=positive)
    needed: int = attrs.field(default=0)  # tokens a sample needs; > seq_len cannot be built

    def provides(self) -> Iterator[Provided]:
        yield Provided(Capability.VOCAB_SIZE, self.vocab_size, "vocab_size")
        yield Provided(Capability.SAMPLE_LENGTH, self.seq_len, "seq_len")

    def requires(self) -> Iterator[Required]:
        yield Required(Capability.MEMORY_BUCKETS, Relation.EQUALS, self.mem_buckets, "mem_buckets", "same memory")


class SampleTooLong(DataError):
    parameter = "seq_len"


def build_slot_data(config: SlotDataConfig) -> TinySequences:
    if config.needed > config.seq_len:
        raise SampleTooLong(f"a sample needs {config.needed} tokens, seq_len leaves room for {config.seq_len}")
    return TinySequences(TinySequenceConfig(seq_len=config.seq_len, vocab_size=config.vocab_size))


REGISTRY = tiny_registry()
for _component in (
    Component("router.slot", lambda config: None, "test router", config=SlotRouterConfig),
    Component("layer.slot_mixture", lambda config: None, "test mixture", config=SlotMixtureConfig),
    Component("model.slot_lm", lambda config: TinyLM(TinyLMConfig(vocab_size=config.vocab_size)), "test model",
              config=SlotLMConfig),
    Component("dataset.slot_data", build_slot_data, "test data", config=SlotDataConfig),
):
    REGISTRY.add(_component)

SLOT_PRESET = """\
version: 2
name: slots
vars:
  n_experts: 4
targets:
  - type: experiment
    name: slots
    model:
      type: model.slot_lm
      vocab_size: 16
      max_positions: 64
      ffn:
        type: layer.slot_mixture
        n_experts: ${n_experts}
        top_k: 2
        router:
          type: router.slot
          temperature: 1.0
    objective:
      type: objective.mosaic_event_prediction
      aux_commitment_weight: 0.5
    dataset:
      type: dataset.slot_data
      vocab_size: 16
    trainer:
      steps: 4
      batch_size: 2
      warmup_steps: 0
      device: cpu
"""


def replace(old: str, new: str, base: str = TINY_PRESET) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


def slot(old: str, new: str) -> str:
    return replace(old, new, SLOT_PRESET)





def _laughs(levels: int = 9) -> str:
    text = 'version: 2\nname: x\nl0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for level in range(1, levels + 1):
        text += f"l{level}: &l{level} [" + ",".join([f"*l{level - 1}"] * 9) + "]\n"
    return text


def _variable_bomb(levels: int = 12) -> str:
    text = 'version: 2\nname: x\nvars:\n  v0: "xxxxxxxxxx"\n'
    for level in range(1, levels + 1):
        text += f'  v{level}: "' + f"${{v{level - 1}}}" * 10 + '"\n'
    return text + "targets: []\n"


TRAINER = "    trainer:\n"
#: (kind, file content, text the report must contain, path a problem must name, --set overrides)
HOSTILE: list[tuple[str, str | bytes, str, str, tuple[str, ...]]] = [
    # hostile YAML
    ("billion laughs", _laughs(), "aliases expand to more than", "$", ()),
    ("self-referencing alias", "version: 2\nname: x\ntargets: &t [*t]\n", "alias refers to the mapping or list",
     "$.targets[0]", ()),
    ("deep list nesting", "version: 2\nname: x\ntargets: " + "[" * 5000 + "]" * 5000 + "\n",
     "nested more than 64 levels deep", "$", ()),
    ("deep mapping nesting", "version: 2\nname: x\nvars: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
     "nested more than 64 levels deep", "$", ()),
    ("too many values", "version: 2\nname: x\nvars: {big: [" + "1," * 150_000 + "1]}\n", "more than 100,000 values",
     "$", ()),
    ("oversized file", "version: 2\nname: x\nnotes: '" + "x" * 1_100_000 + "'\n", "more than the limit of", "$", ()),
    ("merge key", "version: 2\nname: x\nvars: &v {a: 1}\ntargets:\n  - <<: *v\n", "merge keys (<<) are not supported",
     "$.targets[0]", ()),
    ("python name tag", replace("name: tiny", "name: !!python/name:os.system tiny"), "!!python/name:os.system",
     "$.name", ()),
    ("python object tag", replace("      size: 64", "      size: !!python/object/apply:os.system [id]"),
     "!!python/object/apply:os.system", "$.targets[0].dataset.size", ()),
    ("local tag", replace("      size: 64", "      size: !env SIZE"), "the YAML tag !env is not allowed",
     "$.targets[0].dataset.size", ()),
    ("binary tag", replace("name: tiny", "name: !!binary aGVsbG8="), "!!binary", "$.name", ()),
    ("set tag", replace("      size: 64", "      size: !!set {a, b}"), "!!set", "$.targets[0].dataset.size", ()),
    ("timestamp scalar", replace("name: tiny", "name: 2024-01-01"), "!!timestamp", "$.name", ()),
    ("name with a path", replace("name: tiny", "name: ../escape"), "is not a preset name", "$.name", ()),
    ("name ending in a newline", replace("name: tiny", 'name: "tiny\\n"'), "is not a preset name", "$.name", ()),
    ("non-UTF-8 byte", TINY_PRESET.replace("a tiny preset", "caf\xe9").encode("latin-1"), "not UTF-8: byte 0xe9",
     "$", ()),
    ("control character", replace("a tiny preset", "a tiny \x07 preset"), "character U+0007 is not allowed", "$",
     ()),
    ("two documents", TINY_PRESET + "---\nversion: 2\n", "YAML syntax error", "$", ()),
    ("400-digit step count", replace("  steps: 30", "  steps: " + "9" * 400), "integer of 400 digits is out of range",
     "$.vars.steps", ()),
    ("5000-digit integer", replace("      size: 64", "      size: " + "7" * 5000), "5000 digits",
     "$.targets[0].dataset.size", ()),
    ("integer over 2**63", replace("      size: 64", "      size: 9999999999999999999"), "out of range (|n| < 2**63)",
     "$.targets[0].dataset.size", ()),
    ("NaN float", replace("      lr: 0.01", "      lr: .nan"), "expected a finite number", "$.targets[0].trainer.lr", ()),
    ("infinite float", replace("      lr: 0.01", "      lr: .inf"), "expected a finite number",
     "$.targets[0].trainer.lr", ()),
    ("mapping as key", replace("      size: 64", "      ? [a, b]\n      : 64"), "keys must be strings",
     "$.targets[0].dataset", ()),
    ("null key", replace("      size: 64", "      ~: 64"), "keys must be strings, got NoneType", "$.targets[0].dataset", ()),
    ("variable expansion bomb", _variable_bomb(), "variables expand to more than", "$.vars.", ()),
    ("empty file", "", "a preset must be a mapping", "$", ()),
    ("scalar document", "just text\n", "a preset must be a mapping", "$", ()),
    # command-line overrides
    ("unknown --set variable", TINY_PRESET, "did you mean vars.d_model?", "--set", ("vars.d_modle=128",)),
    ("malformed --set key", TINY_PRESET, "malformed key", "--set", ("trainer..steps=5",)),
    ("--set without a value", TINY_PRESET, "expected KEY=VALUE", "--set", ("trainer.steps",)),
    ("--set past the list", TINY_PRESET, "no list item [5]", "--set", ("targets[5].trainer.steps=5",)),
    ("--set string for float", TINY_PRESET, "expected float", "$.targets[0].trainer.lr", ("trainer.lr=fast",)),
    ("--set 400-digit integer", TINY_PRESET, "integer of 400 digits is out of range", "--set",
     ("trainer.steps=" + "9" * 400,)),
    ("--set batch size past the bound", TINY_PRESET, "must be in [1, 1048576], got 99999999999",
     "$.targets[0].trainer.batch_size", ("trainer.batch_size=99999999999",)),
    ("--set python tag", TINY_PRESET, "the YAML tag !!python/name:os.system is not allowed", "--set",
     ("name=!!python/name:os.system x",)),
    # nested {type: ...} mappings, structured through the registry at read time
    ("nested zero experts", SLOT_PRESET, "must be > 0, got 0", "$.targets[0].model.ffn.n_experts",
     ("vars.n_experts=0",)),
    ("nested top_k over n_experts", slot("top_k: 2", "top_k: 5"), "must be <= n_experts (4), got 5",
     "$.targets[0].model.ffn.top_k", ()),
    ("nested router typo", slot("type: router.slot", "type: router.slott"), "did you mean router.slot?",
     "$.targets[0].model.ffn.router.type", ()),
    ("nested unknown key", slot("        top_k: 2", "        top_kk: 2"), "did you mean 'top_k'?",
     "$.targets[0].model.ffn.top_kk", ()),
    ("doubly nested unknown key", slot("temperature: 1.0", "temprature: 1.0"), "did you mean 'temperature'?",
     "$.targets[0].model.ffn.router.temprature", ()),
    ("doubly nested bad value", slot("temperature: 1.0", "temperature: -1.0"), "must be > 0, got -1.0",
     "$.targets[0].model.ffn.router.temperature", ()),
    ("nested wrong kind", slot("type: layer.slot_mixture", "type: router.slot"), "must name a layer.<name> component",
     "$.targets[0].model.ffn.type", ()),
    ("nested injected field", slot("        top_k: 2", "        top_k: 2\n        d_model: 8"),
     "must not be set here", "$.targets[0].model.ffn.d_model", ()),
    ("nested not a mapping", SLOT_PRESET, "expected a mapping, got str 'moe'", "$.targets[0].model.ffn",
     ("targets[0].model.ffn=moe",)),
    # model x dataset x objective
    ("model vocabulary smaller than the data's", slot("      vocab_size: 16\n      max_positions",
                                                       "      vocab_size: 8\n      max_positions"), "must be >= 16", "$.targets[0].model.vocab_size",
     ()),
    ("memory geometry mismatch", slot("      vocab_size: 16\n    trainer", "      vocab_size: 16\n      mem_buckets: 32\n"
                                      "    trainer"), "must be == 16",
     "$.targets[0].dataset.mem_buckets", ()),
    ("commitment weight without the head", slot("      max_positions: 64", "      max_positions: 64\n"
                                                "      commitment_head: false"), "missing {commitment}",
     "$.targets[0].objective.aux_commitment_weight", ()),
    ("model positions shorter than a sample", slot("max_positions: 64", "max_positions: 4"), "must be >= 12",
     "$.targets[0].model.max_positions", ()),
    # what only trying tells, before a run directory exists
    ("device tpu", slot("device: cpu", "device: tpu"), "must be one of auto, cpu, cuda, cuda:N, mps, got 'tpu'",
     "$.targets[0].trainer.device", ()),
    ("absent GPU index", slot("device: cpu", "device: cuda:99"), "requested but", "$.targets[0].trainer.device", ()),
    ("sample longer than its block", slot("      vocab_size: 16\n    trainer", "      vocab_size: 16\n      needed: 40\n"
                                          "    trainer"), "a sample needs 40 tokens", "$.targets[0].dataset.seq_len", ()),
]

CASES = [(kind, text, expected, path, ()) for kind, text, expected, path in MALFORMED] + HOSTILE


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a parse that loops (tests run in the main thread)."""

    def expire(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"no report within {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write_preset(tmp_path: Path, content: str | bytes) -> Path:
    preset = tmp_path / "bad.yml"
    preset.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return preset


@pytest.mark.parametrize(("kind", "content", "expected", "path", "overrides"), CASES, ids=[c[0] for c in CASES])
def test_malformed_preset_gives_one_readable_report_and_writes_nothing(
    kind: str, content: str | bytes, expected: str, path: str, overrides: tuple[str, ...], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "package missing" must read the same whether or not mosaic-layers happens to be installed here.
    monkeypatch.setattr("mosaic.core.registry._is_installed", lambda distribution: False)
    preset = write_preset(tmp_path, content)
    with deadline(20), pytest.raises(ConfigError) as info:  # what `mosaic presets validate` does
        preflight(load_manifest(str(preset), REGISTRY, overrides=overrides), REGISTRY)
    report = str(info.value)
    assert report.startswith(f"invalid configuration in {preset}"), report
    assert expected in report, report
    assert "Traceback" not in report
    assert any(problem.path == path or (path.endswith(".") and problem.path.startswith(path))
               for problem in info.value.problems), report
    assert all(problem.line is not None for problem in info.value.problems if problem.path.startswith("$")), report
    out = tmp_path / "runs"
    with deadline(20), pytest.raises(ConfigError):
        run_preset(str(preset), registry=REGISTRY, overrides=overrides, out=out, show_progress=False)
    assert not out.exists(), sorted(out.rglob("*"))


def test_at_least_sixty_distinct_kinds() -> None:
    kinds = [case[0] for case in CASES]
    assert len(kinds) == len(set(kinds)) and len(kinds) >= 60


def test_valid_slot_preset_passes_every_check(tmp_path: Path) -> None:
    # the cases above fail because of their one change, not because the base preset is broken
    manifest = load_manifest(str(write_preset(tmp_path, SLOT_PRESET)), REGISTRY)
    preflight(manifest, REGISTRY)
    assert manifest.experiments[0].model.config.ffn["router"] == {"type": "router.slot", "temperature": 1.0}


def test_cuda_without_a_gpu_is_rejected_before_anything_is_written(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    preset = write_preset(tmp_path, slot("device: cpu", "device: cuda"))
    with pytest.raises(ConfigError, match=r"\$\.targets\[0\]\.trainer\.device \(line \d+\): cuda requested but no CUDA"):
        run_preset(str(preset), registry=REGISTRY, out=tmp_path / "runs", show_progress=False)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="--device: cuda requested but no CUDA GPU"):
        run_preset(str(write_preset(tmp_path, SLOT_PRESET)), registry=REGISTRY, out=tmp_path / "runs",
                   device="cuda", show_progress=False)
    assert not (tmp_path / "runs").exists()


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


def test_a_model_that_cannot_be_built_on_meta_is_left_to_the_trainer(tmp_path: Path) -> None:
    registry = tiny_registry()

    def reads_values(config: SlotLMConfig) -> Any:
        import torch

        return torch.zeros(1).item()  # fails on the meta device, fine on a real one

    for component in (Component("model.reads_values", reads_values, "reads values", config=SlotLMConfig),
                      Component("dataset.slot_data", build_slot_data, "test data", config=SlotDataConfig)):
        registry.add(component)
    text = SLOT_PRESET.replace("type: model.slot_lm", "type: model.reads_values").replace(
        "      ffn:\n        type: layer.slot_mixture\n        n_experts: ${n_experts}\n        top_k: 2\n"
        "        router:\n          type: router.slot\n          temperature: 1.0\n", "")
    preflight(load_manifest(str(write_preset(tmp_path, text)), registry), registry)
