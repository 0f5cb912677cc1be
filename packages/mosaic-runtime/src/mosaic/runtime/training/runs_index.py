"""Reading many run directories back: the listing behind ``mosaic runs list`` and the comparison
behind ``mosaic runs show`` (final metrics, evaluation, provenance and a config diff)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from mosaic.core.errors import MosaicError, RunDirectoryError
from mosaic.runtime.training import provenance
from mosaic.runtime.training.run_dir import LATEST, RunDir
from mosaic.runtime.training.run_lock import is_locked
from mosaic.runtime.training.yaml_source import load_yaml

_MAX_CONFIG_BYTES = 8 * 1024 * 1024  # a resolved config is kilobytes; refuse to parse a planted giant


@attrs.frozen
class RunInfo:
    path: Path
    preset: str
    experiment: str | None
    status: str  # the summary's status, "running" while locked, "incomplete" when it never finished
    steps: int | None
    final_loss: float | None
    eval_token_accuracy: float | None
    latest: bool
    problem: str | None = None  # why the run could not be read, when it could not

    def as_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "path": str(self.path)}


def run_info(path: Path, *, latest: bool = False) -> RunInfo:
    run = RunDir(path)
    try:
        summary = run.read_summary()
        experiment = run.recorded_experiment() or summary.get("experiment")
    except MosaicError as exc:
        return RunInfo(path, path.parent.name, None, "damaged", None, None, None, latest, problem=str(exc))
    status = "running" if is_locked(path) else summary.get("status", "incomplete")
    final = summary.get("final") or {}
    evaluation = summary.get("eval") or {}
    return RunInfo(path=path, preset=path.parent.name, experiment=experiment, status=status,
                   steps=summary.get("steps"), final_loss=final.get("loss_total"),
                   eval_token_accuracy=evaluation.get("token_accuracy"), latest=latest)


def list_runs(root: Path, preset: str | None = None) -> list[RunInfo]:
    """Every run directory under ``root`` (``root/<preset>/<stamp>``), oldest first per preset."""
    root = Path(root)
    if not root.is_dir():
        raise RunDirectoryError(f"{root} is not a directory of runs")
    found = []
    for preset_dir in sorted(p for p in root.iterdir() if p.is_dir() and (preset is None or p.name == preset)):
        link = preset_dir / LATEST
        latest = link.resolve() if link.is_symlink() else None
        for path in sorted(p for p in preset_dir.iterdir() if p.is_dir() and not p.is_symlink()):
            if (path / "config.yaml").is_file():
                found.append(run_info(path, latest=latest is not None and path.resolve() == latest))
    return found


def _config(run: RunDir) -> dict[str, Any]:
    if run.config_path.stat().st_size > _MAX_CONFIG_BYTES:
        raise RunDirectoryError(f"{run.config_path} is larger than {_MAX_CONFIG_BYTES} bytes")
    document = load_yaml(run.config_text(), source=str(run.config_path)).data
    return document if isinstance(document, dict) else {}


def config_paths(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"targets[0].trainer.lr": 0.01, ...}``: every leaf of a config under its path."""
    if isinstance(value, dict):
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(config_paths(item, f"{prefix}.{key}" if prefix else str(key)))
        return found
    if isinstance(value, list):
        found = {}
        for index, item in enumerate(value):
            found.update(config_paths(item, f"{prefix}[{index}]"))
        return found
    return {prefix: value}


def config_diff(first: Path, second: Path) -> list[tuple[str, Any, Any]]:
    """``(key, first value, second value)`` for every config leaf whose values differ."""
    a = config_paths(_config(RunDir.existing(first)))
    b = config_paths(_config(RunDir.existing(second)))
    missing = object()
    rows = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key, missing), b.get(key, missing)
        if left != right:
            rows.append((key, None if left is missing else left, None if right is missing else right))
    return rows


def describe(path: Path) -> dict[str, Any]:
    """One run for ``mosaic runs show``: its status, final metrics, evaluation and provenance."""
    run = RunDir.existing(path)
    summary = run.read_summary()
    sessions = provenance.read(run)
    return {
        "run_dir": str(run.path),
        "experiment": run.recorded_experiment() or summary.get("experiment"),
        "status": "running" if is_locked(run.path) else summary.get("status", "incomplete"),
        "steps": summary.get("steps"),
        "final": summary.get("final") or {},
        "eval": summary.get("eval") or {},
        "provenance": sessions[-1] if sessions else None,
    }
