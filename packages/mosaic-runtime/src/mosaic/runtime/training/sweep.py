"""Sweeps: a grid or random search over preset overrides and seeds, run one after another.

Optuna keeps the study (which parameter sets were tried, by whom, with what result) in a storage
URL, by default an SQLite file in the sweep directory, so several machines pointed at one database
share a sweep. One *trial* is one parameter set; inside it every seed is trained in turn and the
trial's value is the mean of the chosen metric over the seeds. The comparison table is written as
``sweep.json`` and ``sweep.md`` beside the study.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from mosaic.core.atomic import atomic_write_bytes
from mosaic.core.errors import MosaicError
from mosaic.core.validators import is_path_component

if TYPE_CHECKING:
    from mosaic.core.registry import Registry

DIRECTIONS = ("minimize", "maximize")
#: A study's name, which becomes the sweep's directory (``OUT/<preset>/sweeps/<name>/``).
#: distributions a random-search parameter may take: ``KEY=KIND:ARGS``
PARAM_KINDS = ("uniform", "loguniform", "int", "choice")


class SweepError(MosaicError):
    """A sweep that cannot start (bad grid, parameter or metric) or whose every trial failed."""


@attrs.frozen
class SweepParam:
    """One searched override: ``key`` (as ``--set`` takes it) and how its values are drawn."""

    key: str
    kind: str  # "grid" (values), or one of PARAM_KINDS
    values: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 0.0

    @classmethod
    def grid(cls, spec: str) -> SweepParam:
        """``trainer.lr=0.001,0.003`` -> a grid over those values."""
        key, values = _split_assignment(spec, "--grid")
        items = tuple(v.strip() for v in values.split(","))
        if not all(items):
            raise SweepError(f"--grid {spec!r}: empty value in the list (write KEY=V1,V2,...)")
        if len(set(items)) != len(items):
            raise SweepError(f"--grid {spec!r}: a value is listed twice")
        return cls(key=key, kind="grid", values=items)

    @classmethod
    def random(cls, spec: str) -> SweepParam:
        """``trainer.lr=loguniform:1e-4:1e-2``, ``vars.d_model=choice:32,64``, ``x=int:1:4``."""
        key, value = _split_assignment(spec, "--param")
        kind, _, args = value.partition(":")
        if kind not in PARAM_KINDS:
            raise SweepError(f"--param {spec!r}: unknown distribution {kind!r} (one of {', '.join(PARAM_KINDS)})")
        if kind == "choice":
            items = tuple(v.strip() for v in args.split(",") if v.strip())
            if not items:
                raise SweepError(f"--param {spec!r}: choice needs values, e.g. {key}=choice:a,b")
            return cls(key=key, kind=kind, values=items)
        bounds = args.split(":")
        try:
            low, high = (float(b) for b in bounds)
        except ValueError:
            raise SweepError(f"--param {spec!r}: {kind} needs LOW:HIGH numbers, e.g. {key}={kind}:1:4") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise SweepError(f"--param {spec!r}: need finite LOW < HIGH")
        if kind == "loguniform" and low <= 0:
            raise SweepError(f"--param {spec!r}: loguniform needs LOW > 0")
        if kind == "int" and not (low.is_integer() and high.is_integer()):
            raise SweepError(f"--param {spec!r}: int bounds must be whole numbers")
        return cls(key=key, kind=kind, low=low, high=high)

    def suggest(self, trial: Any) -> str:
        """Draw this parameter's value for an Optuna trial, as override text."""
        if self.kind in ("grid", "choice"):
            return str(trial.suggest_categorical(self.key, list(self.values)))
        if self.kind == "int":
            return str(trial.suggest_int(self.key, int(self.low), int(self.high)))
        return repr(trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform"))


@attrs.frozen
class SweepSpec:
    """What to sweep: a preset, fixed overrides, searched parameters, seeds and the metric."""

    preset: str
    params: tuple[SweepParam, ...]
    seeds: tuple[int, ...] = (0,)
    metric: str = "final.loss_total"
    direction: str = "minimize"
    trials: int | None = None  # None: the whole grid
    fixed: tuple[str, ...] = ()
    study_name: str = "sweep"
    storage: str | None = None  # None: SQLite in the sweep directory

    def __attrs_post_init__(self) -> None:
        if not self.params:
            raise SweepError("a sweep needs at least one --grid or --param")
        if not is_path_component(self.study_name, 64):
            raise SweepError(f"--study {self.study_name!r} is not a study name: letters, digits, '_', '.' and '-', "
                             "at most 64, starting with a letter or digit (it names the sweep's directory)")
        keys = [p.key for p in self.params]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise SweepError(f"{', '.join(twice)}: swept twice (give each key one --grid or --param)")
        kinds = {p.kind == "grid" for p in self.params}
        if len(kinds) > 1:
            raise SweepError("use either --grid (a grid search) or --param (a random search), not both")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SweepError("--seeds needs distinct seeds")
        if self.direction not in DIRECTIONS:
            raise SweepError(f"direction must be one of {DIRECTIONS}")
        if self.is_grid and self.trials is not None and self.trials > self.grid_size:
            raise SweepError(f"--trials {self.trials} is more than the grid's {self.grid_size} points")
        if not self.is_grid and self.trials is None:
            raise SweepError("a random search needs --trials N")

    @property
    def is_grid(self) -> bool:
        return self.params[0].kind == "grid"

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.values) for p in self.params) if self.is_grid else 0

    def first_overrides(self) -> list[str]:
        """One complete override list (each parameter's first or lowest value), for validation."""
        first = [f"{p.key}={p.values[0] if p.values else _lowest(p)}" for p in self.params]
        return [*self.fixed, *first, f"trainer.seed={self.seeds[0]}"]


def _lowest(param: SweepParam) -> str:
    return str(int(param.low)) if param.kind == "int" else repr(param.low)


def _split_assignment(spec: str, option: str) -> tuple[str, str]:
    key, sep, value = spec.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise SweepError(f"{option} {spec!r}: expected KEY=VALUES")
    return key.strip(), value.strip()


def metric_value(summary: Mapping[str, Any], path: str) -> float:
    """Look up ``final.loss_total`` / ``eval.answer_exact`` (dotted) in a run summary."""
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            available = sorted(k for k in node) if isinstance(node, Mapping) else []
            raise SweepError(f"metric {path!r}: no {part!r} in the run summary (there: {', '.join(available)})")
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise SweepError(f"metric {path!r} is not a number in the run summary: {node!r}")
    return float(node)


#: Trains one run: (overrides) -> summary. Injected so tests and embedding code can wrap it.
RunOne = Callable[[Sequence[str]], Mapping[str, Any]]


def run_sweep(spec: SweepSpec, *, out: Path, registry: Registry, run_one: RunOne | None = None,
              on_trial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the sweep and write ``sweep.json``/``sweep.md``; returns the comparison table."""
    try:
        import optuna
    except ImportError:
        raise SweepError("mosaic sweep needs Optuna: pip install 'mosaic-runtime[sweep]'") from None
    from mosaic.runtime.training.manifest import load_manifest
    from mosaic.runtime.training.run import run_preset

    # Fail before any run: the overrides must make a valid preset.
    manifest = load_manifest(spec.preset, registry, overrides=spec.first_overrides())
    sweep_dir = out / manifest.name / "sweeps" / spec.study_name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    runs_root = sweep_dir / "runs"
    if run_one is None:
        def run_one(overrides: Sequence[str]) -> Mapping[str, Any]:
            return run_preset(spec.preset, registry=registry, overrides=overrides, out=runs_root, show_progress=False)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = spec.storage or f"sqlite:///{(sweep_dir / 'study.db').resolve()}"
    if spec.is_grid:
        sampler: Any = optuna.samplers.GridSampler({p.key: list(p.values) for p in spec.params}, seed=0)
    else:
        sampler = optuna.samplers.RandomSampler(seed=0)
    # spec.direction is one of DIRECTIONS (checked when the spec was made); spelled out for optuna's type
    direction: Literal["minimize", "maximize"] = "maximize" if spec.direction == "maximize" else "minimize"
    try:
        study = optuna.create_study(study_name=spec.study_name, storage=storage, sampler=sampler,
                                    direction=direction, load_if_exists=True)
    except Exception as exc:  # noqa: BLE001 - a bad URL raises SQLAlchemy's, a driver's or optuna's own errors
        raise SweepError(f"cannot open the study's storage {storage!r}: {type(exc).__name__}: {exc}") from None

    def objective(trial: Any) -> float:
        assigned = {p.key: p.suggest(trial) for p in spec.params}
        values: list[float] = []
        for seed in spec.seeds:
            overrides = [*spec.fixed, *(f"{k}={v}" for k, v in assigned.items()), f"trainer.seed={seed}"]
            try:
                summary = run_one(overrides)
            except MosaicError as exc:
                # A run that fails (diverged, out of memory, bad combination) fails its trial only;
                # Optuna records a NaN value as a failed trial.
                trial.set_user_attr("error", f"seed {seed}: {exc}")
                return math.nan
            # A metric that is not in the summary is the sweep's mistake, not the trial's: stop.
            value = metric_value(summary, spec.metric)
            values.append(value)
            trial.set_user_attr(f"seed_{seed}", {"value": value, "run_dir": str(summary.get("run_dir", ""))})
        if on_trial is not None:
            on_trial({"number": trial.number, "params": assigned, "values": values})
        return statistics.fmean(values)

    n_trials = spec.trials if spec.trials is not None else spec.grid_size
    study.optimize(objective, n_trials=n_trials)
    table = comparison_table(study, spec)
    if not table["rows"]:
        reasons = "; ".join(f"trial {f['trial']}: {f['error']}" for f in table["failed"][:3])
        raise SweepError(f"every trial of sweep {spec.study_name!r} failed ({reasons})")
    atomic_write_bytes(sweep_dir / "sweep.json", (json.dumps(table, indent=2, sort_keys=True) + "\n").encode())
    atomic_write_bytes(sweep_dir / "sweep.md", render_markdown(table).encode())
    table["sweep_dir"] = str(sweep_dir)
    return table


def comparison_table(study: Any, spec: SweepSpec) -> dict[str, Any]:
    """Every finished trial with its per-seed values, mean and spread, best first."""
    import optuna

    rows, failed = [], []
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            per_seed = [trial.user_attrs[f"seed_{seed}"] for seed in spec.seeds if f"seed_{seed}" in trial.user_attrs]
            values = [entry["value"] for entry in per_seed]
            rows.append({
                "trial": trial.number,
                "params": {k: str(v) for k, v in trial.params.items()},
                "seeds": list(spec.seeds),
                "values": values,
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "run_dirs": [entry["run_dir"] for entry in per_seed],
            })
        elif trial.state == optuna.trial.TrialState.FAIL:
            failed.append({"trial": trial.number, "params": {k: str(v) for k, v in trial.params.items()},
                           "error": trial.user_attrs.get("error", "")})
    rows.sort(key=lambda row: row["mean"], reverse=spec.direction == "maximize")
    return {
        "preset": spec.preset,
        "study": spec.study_name,
        "metric": spec.metric,
        "direction": spec.direction,
        "keys": [p.key for p in spec.params],
        "rows": rows,
        "failed": failed,
    }


def render_markdown(table: Mapping[str, Any]) -> str:
    keys = list(table["keys"])
    header = ["trial", *keys, f"{table['metric']} (mean)", "std", "per seed"]
    lines = [
        f"# Sweep {table['study']} of {table['preset']}",
        "",
        f"{table['metric']}, {table['direction']}d; best first. Seeds: {', '.join(map(str, _seeds(table)))}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in table["rows"]:
        cells = [str(row["trial"]), *(row["params"].get(k, "") for k in keys), f"{row['mean']:.4f}",
                 f"{row['std']:.4f}", ", ".join(f"{v:.4f}" for v in row["values"])]
        lines.append("| " + " | ".join(cells) + " |")
    for entry in table["failed"]:
        lines.append(f"\nTrial {entry['trial']} failed ({entry['params']}): {entry['error']}")
    return "\n".join(lines) + "\n"


def _seeds(table: Mapping[str, Any]) -> list[int]:
    return sorted(set(itertools.chain.from_iterable(row["seeds"] for row in table["rows"])))

