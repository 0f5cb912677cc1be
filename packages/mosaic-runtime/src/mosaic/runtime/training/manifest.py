"""Presets (YAML manifests, ``version: 2``) -> validated experiments.

Every problem in a preset is collected and reported at once in one :class:`ConfigError`, each with
its ``$.targets[0].model.d_model`` path, its YAML line and, for unknown keys and IDs, a did-you-mean.
Component sections (``model``, ``objective``, ``dataset``, ``curriculum``) name their component with
``type:``; the rest of the mapping is structured into that component's config class through the
registry, so the runtime never imports the packages that provide them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from mosaic.core.component_slots import structure_nested, unknown_component_problem, unknown_key_problems
from mosaic.core.config import structure_config, unstructure_config
from mosaic.core.contract.compat import check_compatibility
from mosaic.core.errors import (
    ConfigError,
    ConfigProblem,
    MosaicError,
    UnknownComponentError,
)
from mosaic.core.validators import is_path_component
from mosaic.runtime.training.train_config import BudgetConfig, EvalConfig, TrainerConfig
from mosaic.runtime.training.variables import apply_overrides, resolve_variables
from mosaic.runtime.training.yaml_source import (
    MAX_PRESET_BYTES,
    YamlDocument,
    child_path,
    decode_preset,
    load_yaml,
)

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry

PRESET_VERSION = 2
#: A preset's name, which becomes a directory (``OUT/<name>/``): one safe path component.
TOP_KEYS = ("version", "name", "notes", "vars", "targets")
TARGET_KEYS = ("type", "name", "backend", "model", "objective", "dataset", "curriculum", "trainer", "eval",
               "budget")
REQUIRED_TARGET_KEYS = ("type", "name", "model", "objective", "dataset", "trainer")
COMPONENT_SECTIONS = {"model": "model", "objective": "objective", "dataset": "dataset", "curriculum": "curriculum"}
BACKENDS = ("torch",)


@attrs.frozen
class ComponentSpec:
    """A component named by a preset: its semantic ID and its structured config."""

    id: str
    config: Any
    raw: dict[str, Any]

    def build(self, registry: Registry) -> Any:
        return registry.build(self.id, self.config)


@attrs.frozen
class Experiment:
    """One validated ``type: experiment`` target."""

    name: str
    backend: str
    model: ComponentSpec
    objective: ComponentSpec
    dataset: ComponentSpec
    curricula: tuple[ComponentSpec, ...]
    trainer: TrainerConfig
    eval: EvalConfig | None
    budget: BudgetConfig | None
    eval_dataset: ComponentSpec | None


@attrs.frozen
class Manifest:
    name: str
    notes: str
    source: str
    resolved: dict[str, Any]
    experiments: tuple[Experiment, ...]
    #: ``$.path`` -> YAML line of the document the manifest was read from
    lines: dict[str, int] = attrs.field(factory=dict, eq=False, repr=False)

    def line_of(self, path: str) -> int | None:
        return YamlDocument(data=None, lines=self.lines, source=self.source).line_of(path)

    def experiment(self, name: str | None = None) -> Experiment:
        if name is None:
            return self.experiments[0]
        for experiment in self.experiments:
            if experiment.name == name:
                return experiment
        raise ConfigError(
            [ConfigProblem("$.targets", f"no experiment named {name!r}",
                           hint=f"known: {', '.join(e.name for e in self.experiments)}")],
            source=self.source,
        )


# --- finding the text ----------------------------------------------------------------------------


def preset_text(name_or_path: str, registry: Registry) -> tuple[str, str]:
    """``(yaml_text, source)`` of a preset file path or a registered ``preset.*`` name."""
    path = Path(name_or_path)
    try:
        is_path = path.suffix in {".yml", ".yaml"} or path.exists()
    except OSError:  # a name too long to be a file name (ENAMETOOLONG) is looked up as a preset name
        is_path = False
    if is_path:
        if not path.is_file():
            problem = "is not a regular file" if path.exists() else "does not exist"
            raise ConfigError([ConfigProblem("$", f"preset file {name_or_path} {problem}")], source=name_or_path)
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_PRESET_BYTES + 1)  # never more than the limit, whatever the size
        except OSError as exc:
            raise ConfigError([ConfigProblem("$", f"cannot read the preset: {exc.strerror or exc}")],
                              source=str(path)) from None
        return decode_preset(data, source=str(path)), str(path)
    component_id = name_or_path if name_or_path.startswith("preset.") else f"preset.{name_or_path}"
    text = registry.build(component_id)
    return text, component_id


def load_manifest(name_or_path: str, registry: Registry, *, overrides: Sequence[str] = ()) -> Manifest:
    text, source = preset_text(name_or_path, registry)
    return parse_manifest(text, registry, source=source, overrides=overrides)


def parse_manifest(text: str, registry: Registry, *, source: str = "<preset>",
                   overrides: Sequence[str] = ()) -> Manifest:
    document = load_yaml(text, source=source)
    return ManifestValidator(document, registry).validate(overrides)


# --- validation ----------------------------------------------------------------------------------


class ManifestValidator:
    """Collects every problem of one preset document, then raises them together."""

    def __init__(self, document: YamlDocument, registry: Registry) -> None:
        self.document = document
        self.registry = registry
        self.problems: list[ConfigProblem] = []

    def problem(self, path: str, message: str, hint: str | None = None) -> None:
        self.problems.append(ConfigProblem(path, message, line=self.document.line_of(path), hint=hint))

    def fail_if_problems(self) -> None:
        if self.problems:
            problems = sorted(self.problems, key=lambda p: (p.line or 0, p.path))
            raise ConfigError(problems, source=self.document.source)

    def validate(self, overrides: Sequence[str]) -> Manifest:
        data = self.document.data
        if not isinstance(data, dict):
            self.problem("$", f"a preset must be a mapping with keys {', '.join(TOP_KEYS)}, "
                              f"got {type(data).__name__}")
            self.fail_if_problems()
        data = copy.deepcopy(data)
        self.unknown_keys(data, TOP_KEYS, "$")
        version = data.get("version")
        if "version" not in data:
            self.problem("$.version", f"required field missing (expected version: {PRESET_VERSION})")
        elif version != PRESET_VERSION:
            self.problem("$.version", f"expected version: {PRESET_VERSION}, got {version!r}")
        for key in ("name", "notes"):
            if key in data and not isinstance(data[key], str):
                self.problem(f"$.{key}", f"expected a string, got {type(data[key]).__name__}")
        if "name" not in data:
            self.problem("$.name", "required field missing")
        try:
            data = apply_overrides(data, list(overrides))
            data = resolve_variables(data, source=self.document.source)
        except ConfigError as exc:
            for problem in exc.problems:
                self.problem(problem.path, problem.message, problem.hint)
            self.fail_if_problems()
        name = data.get("name")
        if isinstance(name, str) and not is_path_component(name, 128):
            self.problem("$.name", f"{name!r} is not a preset name: it names the runs' directory, so it is one path "
                                   "component of letters, digits, '_', '.' and '-' (at most 128), starting with a "
                                   "letter or digit")
        targets = data.get("targets")
        experiments: list[Experiment] = []
        if not isinstance(targets, list) or not targets:
            self.problem("$.targets", "expected a non-empty list of targets")
        else:
            for index, target in enumerate(targets):
                experiment = self.target(target, f"$.targets[{index}]")
                if experiment is not None:
                    experiments.append(experiment)
            names = [e.name for e in experiments]
            for name in {n for n in names if names.count(n) > 1}:
                self.problem("$.targets", f"two targets are named {name!r}")
        self.fail_if_problems()
        return Manifest(
            name=data["name"], notes=data.get("notes", ""), source=self.document.source,
            resolved=data, experiments=tuple(experiments), lines=self.document.lines,
        )

    def unknown_keys(self, mapping: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        for problem in unknown_key_problems(list(mapping), allowed, path):
            self.add(problem)

    def target(self, target: Any, path: str) -> Experiment | None:
        if not isinstance(target, dict):
            self.problem(path, f"expected a mapping, got {type(target).__name__}")
            return None
        self.unknown_keys(target, TARGET_KEYS, path)
        for key in REQUIRED_TARGET_KEYS:
            if key not in target:
                self.problem(child_path(path, key), "required field missing")
        if target.get("type", "experiment") != "experiment":
            self.problem(f"{path}.type", f"unknown target type {target.get('type')!r}", hint="expected 'experiment'")
        backend = target.get("backend", "torch")
        if backend not in BACKENDS:
            self.problem(f"{path}.backend", f"unknown backend {backend!r}", hint=f"expected one of {BACKENDS}")
        name = target.get("name")
        if "name" in target and not isinstance(name, str):
            self.problem(f"{path}.name", f"expected a string, got {type(name).__name__}")
        specs = {key: self.component(target[key], f"{path}.{key}", kind)
                 for key, kind in COMPONENT_SECTIONS.items() if key in target and key != "curriculum"}
        curricula = self.curricula(target.get("curriculum"), f"{path}.curriculum")
        trainer = self.plain(target.get("trainer"), TrainerConfig, f"{path}.trainer") if "trainer" in target else None
        if trainer is not None:
            self.check_schedules(target.get("curriculum"), curricula, trainer.steps, f"{path}.curriculum")
        evaluation = self.plain(target["eval"], EvalConfig, f"{path}.eval") if target.get("eval") is not None else None
        budget = self.plain(target["budget"], BudgetConfig, f"{path}.budget") if target.get("budget") is not None else None
        eval_dataset = None
        dataset_spec = specs.get("dataset")
        if evaluation is not None and dataset_spec is not None:
            merged = {"type": dataset_spec.id, **dataset_spec.raw, **evaluation.dataset}
            eval_dataset = self.component(merged, f"{path}.eval.dataset", "dataset")
        model, objective, dataset = specs.get("model"), specs.get("objective"), specs.get("dataset")
        if (self.problems or not isinstance(name, str) or model is None or objective is None or dataset is None
                or trainer is None):
            return None
        parts = {f"{path}.{key}": spec.config for key, spec in specs.items() if spec is not None}
        if eval_dataset is not None:
            parts[f"{path}.eval.dataset"] = eval_dataset.config
        for problem in check_compatibility(parts):
            self.add(problem)
        if self.problems:
            return None
        return Experiment(
            name=name, backend=backend, model=model, objective=objective,
            dataset=dataset, curricula=curricula or (), trainer=trainer, eval=evaluation,
            budget=budget, eval_dataset=eval_dataset,
        )

    def curricula(self, value: Any, path: str) -> tuple[ComponentSpec, ...] | None:
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        specs = []
        for index, item in enumerate(items):
            spec = self.component(item, child_path(path, index) if isinstance(value, list) else path, "curriculum")
            if spec is not None:
                specs.append(spec)
        return tuple(specs)

    def check_schedules(self, value: Any, curricula: tuple[ComponentSpec, ...] | None, steps: int,
                        path: str) -> None:
        """Each curriculum config that can (``check_total_steps``, see the curriculum protocol in
        mosaic-data) says whether its schedule fits the run: caught here, before a run directory is
        made, rather than at the first training step."""
        if not curricula or len(curricula) != (len(value) if isinstance(value, list) else 1):
            return  # a curriculum that failed validation is already reported
        for index, spec in enumerate(curricula):
            check = getattr(spec.config, "check_total_steps", None)
            if not callable(check):
                continue
            where = child_path(path, index) if isinstance(value, list) else path
            for problem in check(steps):
                self.problem(f"{where}.{problem.path}", problem.message, hint=problem.hint)

    def plain(self, value: Any, cls: type, path: str) -> Any:
        if isinstance(value, dict):
            fields = [f.name for f in attrs.fields(cls)]
            self.unknown_keys(value, fields, path)
            value = {k: v for k, v in value.items() if k in fields}
        try:
            return structure_config(value, cls, path=path)
        except ConfigError as exc:
            self.absorb(exc)
            return None

    def component(self, value: Any, path: str, kind: str) -> ComponentSpec | None:
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping with 'type: {kind}.<name>' and its settings, "
                               f"got {type(value).__name__}")
            return None
        component_id = value.get("type")
        if not isinstance(component_id, str):
            self.problem(f"{path}.type", f"required: the {kind} component to use",
                         hint=f"one of {', '.join(self.registry.ids(kind)) or 'none installed'}")
            return None
        if not component_id.startswith(f"{kind}."):
            self.problem(f"{path}.type", f"{component_id!r} is not a {kind} component",
                         hint=f"expected {kind}.<name>")
            return None
        try:
            config_cls = self.registry.get(component_id).load_config_class()
        except UnknownComponentError as exc:
            self.add(unknown_component_problem(exc, f"{path}.type"))
            return None
        except MosaicError as exc:
            self.problem(f"{path}.type", str(exc))
            return None
        raw = {k: v for k, v in value.items() if k != "type"}
        if config_cls is None:
            if raw:
                self.problem(path, f"{component_id} takes no settings, got {', '.join(sorted(raw))}")
            return ComponentSpec(id=component_id, config=None, raw=raw)
        fields = [f.name for f in attrs.fields(config_cls)]
        self.unknown_keys(raw, fields, path)
        known = {k: v for k, v in raw.items() if k in fields}
        try:
            config: Any = structure_config(known, config_cls, path=path)
        except ConfigError as exc:
            self.absorb(exc)
            return None
        # mappings that name further components (block.ffn, ffn.router, lifecycle) are checked now,
        # through the registry, not when the model is built after the run directory exists
        _nested, problems = structure_nested(config, self.registry, path=path)
        for problem in problems:
            self.add(problem)
        if problems:
            return None
        return ComponentSpec(id=component_id, config=config, raw=raw)

    def absorb(self, exc: ConfigError) -> None:
        for problem in exc.problems:
            self.add(problem)

    def add(self, problem: ConfigProblem) -> None:
        """Record ``problem`` at the line of its path in this document."""
        self.problem(problem.path, problem.message, problem.hint)


def resolved_yaml(manifest: Manifest) -> dict[str, Any]:
    """The fully resolved preset (defaults filled in), as written to ``config.yaml`` of a run."""
    targets = []
    for experiment in manifest.experiments:
        target: dict[str, Any] = {"type": "experiment", "name": experiment.name, "backend": experiment.backend}
        for key in ("model", "objective", "dataset"):
            spec: ComponentSpec = getattr(experiment, key)
            target[key] = {"type": spec.id, **(unstructure_config(spec.config) if spec.config is not None else {})}
        if experiment.curricula:
            target["curriculum"] = [
                {"type": c.id, **(unstructure_config(c.config) if c.config is not None else {})}
                for c in experiment.curricula
            ]
        target["trainer"] = unstructure_config(experiment.trainer)
        if experiment.eval is not None:
            target["eval"] = unstructure_config(experiment.eval)
        if experiment.budget is not None:
            target["budget"] = unstructure_config(experiment.budget)
        targets.append(target)
    return {"version": PRESET_VERSION, "name": manifest.name, "notes": manifest.notes, "targets": targets}
