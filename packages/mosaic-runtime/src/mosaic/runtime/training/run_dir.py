"""The run directory (DESIGN §6): ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``,
``summary.json``, ``events.log``, ``run.json`` (which preset and experiment ran), ``provenance.json``
and a ``.lock`` while a process writes it; ``runs/<preset>/latest`` points at the newest run that
started. Everything is plain files so that other commands read runs back.

Appended JSON-lines files can end in a torn line (a kill or a full disk mid-write): readers skip it,
and a resume trims it before appending. Any other unreadable line is an error, never a guess.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mosaic.core.atomic import atomic_write_bytes, open_plain_file, read_plain_file
from mosaic.core.errors import ConfigError, ConfigProblem, NotPlainFileError, RunDirectoryError
from mosaic.runtime.training.yaml_source import MAX_PRESET_BYTES, decode_preset, load_yaml

_UTC = datetime.timezone.utc
LATEST = "latest"
RUN_RECORD = "run.json"
MAX_LINE_CHARS = 1_000_000
#: The most a run file (metrics, decisions, summary...) may hold when it is read whole.
MAX_RUN_FILE_BYTES = 1 << 30
#: The step fields of the run's JSON-lines records (metrics: step; lifecycle decisions: train_step).
STEP_KEYS = ("step", "train_step")


@contextlib.contextmanager
def writing(what: Path | str) -> Iterator[None]:
    """Turn an OS failure while writing ``what`` into one clear :class:`RunDirectoryError`."""
    try:
        yield
    except OSError as exc:
        raise RunDirectoryError(describe_os_error(exc, what)) from None
    except NotPlainFileError as exc:
        raise RunDirectoryError(f"cannot write {exc}") from None


def describe_os_error(exc: OSError, what: Path | str) -> str:
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "the file system is read-only",
        errno.ENOTDIR: "a path component is a file, not a directory",
        errno.EEXIST: "a file is in the way",
        errno.ELOOP: "it is a symbolic link, where the run keeps a plain file",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(what) else ""
    return f"cannot write {what}: {reason}{where}"


def parse_jsonl(path: Path, text: str) -> tuple[list[dict[str, Any]], bool]:
    """The records of a JSON-lines file and whether its last line is torn (unterminated and
    unparsable); a bad line anywhere else is a :class:`RunDirectoryError`."""
    lines = text.split("\n")
    records: list[dict[str, Any]] = []
    torn = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:  # a record is a few kilobytes; parse nothing unbounded
            raise RunDirectoryError(f"{path} line {number} is longer than {MAX_LINE_CHARS} characters; "
                                    "the file is damaged")
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
            record = None
        if isinstance(record, dict):
            for key in STEP_KEYS:  # what resume truncates by and the plots put on their x axis
                if key in record and type(record[key]) is not int:
                    raise RunDirectoryError(f"{path} line {number}: {key} is {record[key]!r}, not a step number; "
                                            "the file is damaged")
            records.append(record)
        elif number == len(lines):  # no newline after it: the write was cut short
            torn = True
        else:
            raise RunDirectoryError(f"{path} line {number} is not a JSON record; the file is damaged")
    return records, torn


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
        with writing(root):
            if Path(root).exists() and not Path(root).is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(root))
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

    @property
    def record_path(self) -> Path:
        return self.path / RUN_RECORD

    def write_record(self, *, preset: str, experiment: str) -> None:
        """Which preset and experiment this directory holds: readers default to that experiment."""
        self.write_json(self.record_path, {"preset": preset, "experiment": experiment})

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        """Replace ``path`` (a file of this run) with ``data`` as indented JSON, atomically."""
        self._atomic_text(path, json.dumps(_plain(data), indent=2, sort_keys=True) + "\n")

    def recorded_experiment(self) -> str | None:
        """The experiment this run trained: from ``run.json``, else (runs from before it existed) the
        ``start`` event of ``events.log``; None when neither says."""
        if self.record_path.is_file():
            try:
                record = json.loads(self._read_text(self.record_path))
            except (ValueError, RecursionError) as exc:
                raise RunDirectoryError(f"{self.record_path} is unreadable ({exc}); the file is damaged") from None
            experiment = record.get("experiment") if isinstance(record, dict) else None
            return experiment if isinstance(experiment, str) else None
        for event in self.read_jsonl(self.events_path):
            if event.get("event") == "start" and isinstance(event.get("experiment"), str):
                return event["experiment"]
        return None

    def experiment_for(self, requested: str | None) -> str | None:
        """The experiment a reader should rebuild: the one asked for, which must be the one this run
        trained (its checkpoints hold no other), or by default the recorded one."""
        recorded = self.recorded_experiment()
        if requested is not None and recorded is not None and requested != recorded:
            raise RunDirectoryError(
                f"{self.path} trained experiment {recorded!r}, not {requested!r}; its checkpoints hold no "
                f"other (drop --experiment, or pass --experiment {recorded})"
            )
        return requested or recorded

    def mark_latest(self) -> None:
        """Point ``<root>/<preset>/latest`` at this run, atomically (a new link renamed over the old)."""
        link = self.path.parent / LATEST
        temporary = self.path.parent / f".{LATEST}.{os.getpid()}.tmp"
        with writing(link):
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(self.path.name, target_is_directory=True)
            os.replace(temporary, link)

    def clean_stale_temporaries(self) -> list[Path]:
        """Remove the ``.NAME.XXXX.tmp`` files an interrupted atomic write left behind (call only
        while holding the run's lock: a live writer's temporary must not vanish)."""
        removed = []
        for directory in (self.path, self.checkpoints):
            if directory.is_dir():
                for stale in directory.glob(".*.tmp"):
                    with writing(stale):
                        stale.unlink(missing_ok=True)
                    removed.append(stale)
        return removed

    def write_config(self, resolved: dict[str, Any]) -> None:
        self._atomic_text(self.config_path, yaml.safe_dump(_plain(resolved), sort_keys=False))

    def config_text(self) -> str:
        """``config.yaml``'s text, read as a preset is: bounded in size and strictly UTF-8 (a
        :class:`ConfigError` names the file, line and byte of a damaged one)."""
        return decode_preset(self._read_bytes(self.config_path, MAX_PRESET_BYTES + 1), source=str(self.config_path))

    def written_fingerprint(self) -> str:
        """The fingerprint of ``config.yaml`` as written at training time: what the run's checkpoints
        and saved sessions carry, whatever defaults today's components would fill in."""
        return fingerprint(load_yaml(self.config_text(), source=str(self.config_path)).data)

    def append_metrics(self, record: dict[str, Any]) -> None:
        self.append_jsonl(self.metrics_path, record)

    def append_jsonl(self, path: Path, record: dict[str, Any]) -> None:
        line = (json.dumps(_plain(record), sort_keys=True, default=str) + "\n").encode("utf-8")
        with writing(path):
            # a log planted as a symlink must not be appended to outside the run directory, nor a
            # FIFO wait for a reader for ever
            descriptor = open_plain_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, line)
            finally:
                os.close(descriptor)

    def truncate_metrics_after(self, step: int) -> None:
        """On resume, drop records logged after the checkpoint so the file reads as one run."""
        self.truncate_jsonl_after(self.metrics_path, step, key="step")

    def truncate_jsonl_after(self, path: Path, step: int, *, key: str) -> None:
        """Drop the records of the JSON-lines file ``path`` whose ``key`` is past ``step`` (the resumed
        run writes them again), atomically; a missing file is left missing."""
        if not path.exists():
            return
        records, _torn = parse_jsonl(path, self._read_text(path))  # a torn last line is dropped here
        kept = [record for record in records if record.get(key, 0) <= step]
        self._atomic_text(path, "".join(json.dumps(record, sort_keys=True) + "\n" for record in kept))

    def read_jsonl(self, path: Path) -> list[dict[str, Any]]:
        if not path.exists():
            return []
        return parse_jsonl(path, self._read_text(path))[0]

    def read_metrics(self) -> list[dict[str, Any]]:
        return self.read_jsonl(self.metrics_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        self._atomic_text(self.summary_path, json.dumps(_plain(summary), indent=2, sort_keys=True) + "\n")

    def read_summary(self) -> dict[str, Any]:
        if not self.summary_path.exists():
            return {}
        try:
            summary = json.loads(self._read_text(self.summary_path))
        except (ValueError, RecursionError) as exc:
            raise RunDirectoryError(
                f"{self.summary_path} is unreadable ({exc}); the file is damaged: move it aside and run "
                "`mosaic eval` again to rewrite its evaluation"
            ) from None
        if not isinstance(summary, dict):
            raise RunDirectoryError(f"{self.summary_path} does not hold a JSON object; the file is damaged")
        for key in ("final", "eval"):
            if key in summary and summary[key] is not None and not isinstance(summary[key], dict):
                raise RunDirectoryError(f"{self.summary_path}: {key} is not a JSON object; the file is damaged")
        for key, kind, name in (("status", str, "a string"), ("experiment", str, "a string"), ("steps", int, "a count")):
            value = summary.get(key)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise RunDirectoryError(f"{self.summary_path}: {key} is not {name} ({value!r:.60}); the file is damaged")
        return summary

    def log_event(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.datetime.now(_UTC).isoformat(), "event": event, **fields}
        self.append_jsonl(self.events_path, record)

    @staticmethod
    def _read_text(path: Path) -> str:
        return RunDir._read_bytes(path, MAX_RUN_FILE_BYTES).decode("utf-8", errors="replace")

    @staticmethod
    def _read_bytes(path: Path, max_bytes: int) -> bytes:
        try:  # a FIFO or device planted under a run file's name would block or flood the read
            return read_plain_file(path, max_bytes)
        except NotPlainFileError as exc:
            raise RunDirectoryError(str(exc)) from None

    @staticmethod
    def _atomic_text(path: Path, text: str) -> None:
        with writing(path):
            atomic_write_bytes(path, text.encode("utf-8"))


def fingerprint(resolved: dict[str, Any]) -> str:
    """A stable hash of the resolved config, minus what may legitimately change on resume."""
    data = _plain(resolved)
    for target in data.get("targets", []):
        trainer = target.get("trainer", {})
        for key in ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "max_seconds",
                    "stop_at_accuracy",
                    "device", "threads", "loggers", "divergence_factor", "divergence_window",
                    "find_unused_parameters"):
            trainer.pop(key, None)
        target.pop("eval", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
