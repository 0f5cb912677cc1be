"""Metric loggers: the sinks a run's metric records go to (``logger.*`` components, DESIGN §3).

``logger.jsonl`` writes ``metrics.jsonl``, the run's own record that resume, ``plot`` and
``mosaic runs`` read back, so every run has it whatever its preset lists. ``logger.csv`` writes one
CSV per split; ``logger.tensorboard`` writes TensorBoard event files (``pip install
'mosaic-runtime[tensorboard]'``). A third party adds a sink (W&B, MLflow) through the
``register_loggers`` hook. An optional logger that fails is dropped with one warning; the run goes on
(an unregistered logger ID, a typo, is an error before the run starts).

A logger is built with no arguments and then used as::

    logger.open(run_path, resume_step=None | int)   # resume_step: drop anything logged after it
    logger.log(record)                              # {"step": int, "split": "train" | "eval", ...}
    logger.close()
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from mosaic.core.atomic import atomic_write_bytes
from mosaic.runtime.training.run_dir import RunDir

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry

log = structlog.get_logger("mosaic.runtime.loggers")

REQUIRED_LOGGER = "logger.jsonl"


class MetricLogger(Protocol):
    def open(self, run_path: Path, *, resume_step: int | None) -> None: ...

    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value, default=str)
        else:
            flat[name] = value
    return flat


class JsonlLogger:
    """``metrics.jsonl``: one JSON record per line; a resume trims records after its step."""

    def __init__(self) -> None:
        self.run: RunDir | None = None

    def open(self, run_path: Path, *, resume_step: int | None) -> None:
        self.run = RunDir(run_path)
        if resume_step is not None:
            self.run.truncate_metrics_after(resume_step)

    def log(self, record: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.append_metrics(record)

    def close(self) -> None:
        self.run = None


class CsvLogger:
    """``metrics_<split>.csv``, one per split, with a header row; a record that brings a new column
    rewrites its file with the wider header (rare: the columns settle after the first records)."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.columns: dict[str, list[str]] = {}

    def path(self, split: str) -> Path:
        if self.root is None:
            raise RuntimeError("CsvLogger used before open()")
        return self.root / f"metrics_{split}.csv"

    def open(self, run_path: Path, *, resume_step: int | None) -> None:
        self.root = Path(run_path)
        for existing in sorted(self.root.glob("metrics_*.csv")):
            split = existing.stem[len("metrics_"):]
            with existing.open(newline="", encoding="utf-8") as file:
                reader = csv.DictReader(file)
                rows = list(reader)
                self.columns[split] = list(reader.fieldnames or [])
            if resume_step is not None:
                rows = [row for row in rows if not row.get("step") or int(float(row["step"])) <= resume_step]
            self.rows[split] = rows
            self._rewrite(split)

    def log(self, record: dict[str, Any]) -> None:
        split = str(record.get("split", "train"))
        row = flatten({k: v for k, v in record.items() if k != "split"})
        rows = self.rows.setdefault(split, [])
        columns = self.columns.setdefault(split, [])
        rows.append(row)
        new = [name for name in row if name not in columns]
        if new:
            columns.extend(sorted(new) if columns else ["step", *sorted(n for n in new if n != "step")])
            self._rewrite(split)
            return
        with self.path(split).open("a", newline="", encoding="utf-8") as file:
            csv.DictWriter(file, fieldnames=columns).writerow(row)

    def _rewrite(self, split: str) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns[split])
        writer.writeheader()
        writer.writerows(self.rows[split])
        atomic_write_bytes(self.path(split), buffer.getvalue().encode("utf-8"))

    def close(self) -> None:
        self.root = None


class TensorBoardLogger:
    """TensorBoard scalars under ``tensorboard/`` (``<split>/<metric>``), through torch's
    ``SummaryWriter``, which needs the ``tensorboard`` package (the ``tensorboard`` extra)."""

    def __init__(self) -> None:
        self.writer: Any = None

    def open(self, run_path: Path, *, resume_step: int | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise RuntimeError(
                f"logger.tensorboard needs the tensorboard package ({exc}); "
                "pip install 'mosaic-runtime[tensorboard]'"
            ) from None
        # purge_step drops events past the resumed step, as metrics.jsonl is trimmed
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(Path(run_path) / "tensorboard"), purge_step=purge)

    def log(self, record: dict[str, Any]) -> None:
        split, step = record.get("split", "train"), int(record.get("step", 0))
        for name, value in flatten(record).items():
            if name not in ("step", "split") and isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value):
                    self.writer.add_scalar(f"{split}/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MetricSinks:
    """The loggers of one run: the required jsonl one fails loudly, an optional one is dropped with a
    warning (a full disk or a missing package must not cost the training run)."""

    def __init__(self, loggers: dict[str, MetricLogger]) -> None:
        self.loggers = dict(loggers)
        self.warnings: list[str] = []

    @classmethod
    def build(cls, logger_ids: tuple[str, ...], registry: Registry) -> MetricSinks:
        ids = [REQUIRED_LOGGER, *(i for i in logger_ids if i != REQUIRED_LOGGER)]
        for logger_id in ids:
            registry.get(logger_id)  # a misspelt ID is a config error (with did-you-mean), not a warning
        sinks = cls({})
        for logger_id in ids:
            if logger_id == REQUIRED_LOGGER:
                sinks.loggers[logger_id] = registry.build(logger_id)
                continue
            try:
                sinks.loggers[logger_id] = registry.build(logger_id)
            except Exception as exc:  # noqa: BLE001 - any failure of an optional sink is only a warning
                sinks.drop(logger_id, exc)
        return sinks

    def drop(self, logger_id: str, exc: BaseException) -> None:
        message = f"logger {logger_id} disabled: {type(exc).__name__}: {exc}"
        self.warnings.append(message)
        self.loggers.pop(logger_id, None)
        log.warning("logger_failed", logger=logger_id, error=f"{type(exc).__name__}: {exc}")

    def _each(self, action: str, *args: Any, **kwargs: Any) -> None:
        for logger_id, logger in list(self.loggers.items()):
            if logger_id == REQUIRED_LOGGER:
                getattr(logger, action)(*args, **kwargs)
                continue
            try:
                getattr(logger, action)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - see the class docstring
                self.drop(logger_id, exc)

    def open(self, run_path: Path, *, resume_step: int | None) -> None:
        self._each("open", run_path, resume_step=resume_step)

    def log(self, record: dict[str, Any]) -> None:
        self._each("log", record)

    def close(self) -> None:
        self._each("close")
