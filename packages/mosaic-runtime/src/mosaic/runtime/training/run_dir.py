"""The run directory (DESIGN §6): ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``,
``summary.json``, ``events.log``. Everything is plain files so that other commands read runs back."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from mosaic.core.atomic import atomic_write_bytes
from mosaic.core.errors import ConfigError, ConfigProblem

_UTC = datetime.timezone.utc


def _plain(value: Any) -> Any:
    """JSON/YAML-safe form (tuples -> lists, unknown objects -> str)."""
    return json.loads(json.dumps(value, default=str))


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, root: Path, preset_name: str) -> RunDir:
        stamp = datetime.datetime.now(_UTC).strftime("%Y%m%d-%H%M%S")
        base = Path(root) / preset_name / stamp
        base.parent.mkdir(parents=True, exist_ok=True)
        path, suffix = base, 1
        while True:  # mkdir is the atomic claim, so runs started in the same second never collide
            try:
                path.mkdir()
                break
            except FileExistsError:
                suffix += 1
                path = base.with_name(f"{stamp}-{suffix}")
        (path / "checkpoints").mkdir()
        return cls(path)

    @classmethod
    def existing(cls, path: Path) -> RunDir:
        run = cls(Path(path))
        if not run.config_path.is_file():
            raise ConfigError([ConfigProblem("RUN_DIR", f"{path} is not a run directory (no config.yaml)")])
        return run

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def events_path(self) -> Path:
        return self.path / "events.log"

    def write_config(self, resolved: dict[str, Any]) -> None:
        self._atomic_text(self.config_path, yaml.safe_dump(_plain(resolved), sort_keys=False))

    def config_text(self) -> str:
        return self.config_path.read_text(encoding="utf-8")

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics_path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(_plain(record), sort_keys=True) + "\n")

    def truncate_metrics_after(self, step: int) -> None:
        """On resume, drop records logged after the checkpoint so the file reads as one run."""
        self.truncate_jsonl_after(self.metrics_path, step, key="step")

    def truncate_jsonl_after(self, path: Path, step: int, *, key: str) -> None:
        """Drop the records of the JSON-lines file ``path`` whose ``key`` is past ``step`` (the resumed
        run writes them again), atomically; a missing file is left missing."""
        if not path.exists():
            return
        kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get(key, 0) <= step]
        self._atomic_text(path, "".join(line + "\n" for line in kept))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def write_summary(self, summary: dict[str, Any]) -> None:
        self._atomic_text(self.summary_path, json.dumps(_plain(summary), indent=2, sort_keys=True) + "\n")

    def read_summary(self) -> dict[str, Any]:
        if not self.summary_path.exists():
            return {}
        return json.loads(self.summary_path.read_text(encoding="utf-8"))

    def log_event(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.datetime.now(_UTC).isoformat(), "event": event, **fields}
        with self.events_path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(_plain(record), sort_keys=True) + "\n")

    @staticmethod
    def _atomic_text(path: Path, text: str) -> None:
        atomic_write_bytes(path, text.encode("utf-8"))


def fingerprint(resolved: dict[str, Any]) -> str:
    """A stable hash of the resolved config, minus what may legitimately change on resume."""
    data = _plain(resolved)
    for target in data.get("targets", []):
        trainer = target.get("trainer", {})
        for key in ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "max_seconds",
                    "device", "threads"):
            trainer.pop(key, None)
        target.pop("eval", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
