"""Atomic checkpoints: written to a temporary file, fsynced, then renamed into place.

A checkpoint holds the model, optimizer and scheduler states, every RNG state, the step and data
position, a fingerprint of the resolved config, the model's resolved config as plain data and its
opcode table. Everything is tensors and plain containers: files load with ``weights_only=True``, so a
planted pickle is refused without running. Loading refuses a file
that is corrupt, from another config or recorded with a different opcode table.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import structlog
import torch

from mosaic.core.atomic import atomic_write, open_plain_file
from mosaic.core.config import unstructure_config
from mosaic.core.errors import CheckpointError, NotPlainFileError

log = structlog.get_logger("mosaic.runtime.checkpoint")

FORMAT = "mosaic-checkpoint/1"
NAME = re.compile(r"^step_(\d{8})\.pt$")
#: How far a checkpoint's zip entries may expand beyond its size (headers and padding; torch does not compress).
EXPANSION_FACTOR, EXPANSION_SLACK_BYTES = 2, 1 << 16
#: What a resume renames the unreadable checkpoints it fell back past to (no longer NAME).
UNREADABLE_SUFFIX = ".unreadable"


def model_config_data(spec: Any) -> dict[str, Any]:
    """A model's resolved config (a preset's ``ComponentSpec``) as plain data, ``{"type": id,
    **fields}``: what a checkpoint records so that it describes its model without the preset (and
    loads with ``weights_only=True``)."""
    return {"type": spec.id, **(unstructure_config(spec.config) if spec.config is not None else {})}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in ``directory``, oldest first: regular files only (a
    FIFO or device planted under a checkpoint's name would block or flood the loader)."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := NAME.fullmatch(p.name)) and p.is_file()]
    return sorted(found)


def save_checkpoint(directory: Path, step: int, payload: dict[str, Any], *, keep: int) -> Path:
    """Write ``payload`` atomically as ``step_<step>.pt`` and prune all but the newest ``keep``."""
    directory.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(directory, step)
    atomic_write(target, lambda file: torch.save({"format": FORMAT, "step": step, **payload}, file))
    for _, old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def refusal_reason(error: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused, out of its long advice text."""
    _, marker, detail = str(error).partition("WeightsUnpickler error:")
    reason = first_line(detail).split(" Please use", 1)[0] if marker and detail.strip() else ""
    return reason or "not a weights-only file"


def load_payload(path: Path, *, file_format: str, what: str, missing: str | None = None) -> dict[str, Any]:
    """A saved ``{"format": file_format, ...}`` dict, or a :class:`CheckpointError` naming ``what``
    (``"checkpoint"``, ``"session file"``...) and the file: missing (``missing`` overrides that
    message), not a regular file (a FIFO planted there would block the read for ever), corrupt, or
    some other kind of file."""
    try:
        descriptor = open_plain_file(path, os.O_RDONLY, follow_links=True)
    except NotPlainFileError as exc:
        if not os.path.lexists(path):
            raise CheckpointError(missing or f"{what} {path} does not exist") from None
        raise CheckpointError(f"{what} {exc}") from None
    with os.fdopen(descriptor, "rb") as file:
        check_expansion(file, path, what)
        file.seek(0)
        try:
            # Weights only: torch's restricted unpickler builds tensors and plain containers and
            # refuses every other global, so a planted pickle is an error here and never runs code.
            with warnings.catch_warnings():  # a foreign pickle protocol warns before it is refused
                warnings.simplefilter("ignore", UserWarning)
                payload = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            reason = refusal_reason(exc)
            if "global" in reason.lower():
                raise CheckpointError(f"{what} {path} holds objects other than tensors and plain data; it was "
                                      f"refused without running them ({reason})") from None
            raise CheckpointError(f"{what} {path} is corrupt: {reason}") from None
        except Exception as exc:  # noqa: BLE001 - torch.load raises many types for truncated or foreign files
            raise CheckpointError(f"{what} {path} is corrupt: {type(exc).__name__}: {first_line(str(exc))}") from None
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise CheckpointError(f"{what} {path} is not a {file_format} file")
    return payload


def check_expansion(file: BinaryIO, path: Path, what: str) -> None:
    """Refuse a torch zip whose entries expand far beyond the file: ``torch.save`` stores tensors
    uncompressed, so only a crafted file is compressed, and one of 20 MB could unpack to 20 GB."""
    try:
        size = os.fstat(file.fileno()).st_size
        with zipfile.ZipFile(file) as archive:
            expanded = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip: torch.load says what it is
    if expanded > EXPANSION_FACTOR * size + EXPANSION_SLACK_BYTES:
        raise CheckpointError(f"{what} {path} is corrupt: its entries expand to {expanded:,} bytes from a "
                              f"{size:,}-byte file (torch.save stores tensors uncompressed)")


def load_checkpoint(path: Path, *, config_fingerprint: str | None, opcode_table: list[str] | None) -> dict[str, Any]:
    """Read a checkpoint and check that it belongs to this run."""
    payload = load_payload(path, file_format=FORMAT, what="checkpoint")
    check_belongs(path, payload, config_fingerprint=config_fingerprint, opcode_table=opcode_table)
    return payload


def load_model_weights(model: torch.nn.Module, state: Any, path: Path) -> None:
    """``model.load_state_dict(state)``, or a :class:`CheckpointError` naming the checkpoint when its
    weights are not this model's (missing, unexpected or wrongly shaped entries, or not tensors)."""
    try:
        model.load_state_dict(state)
    except CheckpointError as exc:  # the model's own check of its extra state (an opcode table)
        detail = str(exc)
        named = detail.removeprefix("checkpoint ")  # "checkpoint does not record..." reads on after the path
        raise CheckpointError(f"checkpoint {path} {named}" if named != detail else f"checkpoint {path}: {detail}") from None
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())  # torch lists the entries on lines of their own
        detail = detail if len(detail) <= 400 else detail[:397] + "..."
        raise CheckpointError(f"checkpoint {path} does not match this model: {detail}") from None


def check_belongs(path: Path, payload: dict[str, Any], *, config_fingerprint: str | None,
                  opcode_table: list[str] | None) -> None:
    """Refuse a readable checkpoint written for another configuration or opcode table."""
    if config_fingerprint is not None and payload.get("config_fingerprint") != config_fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was written for a different configuration "
            f"(fingerprint {payload.get('config_fingerprint')} != {config_fingerprint}); "
            "resume with the run's own config.yaml"
        )
    recorded = payload.get("opcode_table")
    if opcode_table is not None and recorded is not None and list(recorded) != list(opcode_table):
        raise CheckpointError(
            f"checkpoint {path} was recorded with opcode table {recorded} but the installed plugins give "
            f"{opcode_table}; install the same opcode plugins to load it"
        )


def check_fields(path: Path, payload: dict[str, Any], step: int) -> None:
    """Refuse a checkpoint whose fields a resume could not use: a step other than its file name's, a
    negative sample count, random states the generators refuse, or state dicts that are not mappings.
    Each is a :class:`CheckpointError` (a corrupt file), raised before anything is restored."""

    def corrupt(reason: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} is corrupt: {reason}")

    recorded = payload.get("step")
    if type(recorded) is not int or recorded != step:
        raise corrupt(f"it records step {recorded!r}, its name says {step}")
    samples = payload.get("samples_seen")
    if type(samples) is not int or samples < 0:
        raise corrupt(f"samples_seen must be a count, got {samples!r}")
    for key in ("model", "optimizer", "scheduler"):
        if not isinstance(payload.get(key), dict):
            raise corrupt(f"{key} is not a state dict")
    rng = payload.get("rng")
    try:  # on scratch generators: the process's own are set only once everything has loaded
        random.Random().setstate(rng["python"])  # type: ignore[index]
        torch.Generator().set_state(rng["torch"])  # type: ignore[index]
    except (TypeError, ValueError, KeyError, RuntimeError, IndexError) as exc:
        raise corrupt(f"its random state does not restore ({type(exc).__name__})") from None


def set_aside_newer(directory: Path, step: int) -> list[Path]:
    """Rename the checkpoints newer than ``step`` (the unreadable ones a resume fell back past) to
    ``NAME.unreadable``: kept for inspection, but out of the count that pruning keeps, which would
    otherwise delete the good checkpoints the resumed run writes and keep the damaged ones."""
    moved = []
    for newer_step, path in list_checkpoints(directory):
        if newer_step > step:
            aside = path.with_name(path.name + UNREADABLE_SUFFIX)
            path.replace(aside)
            moved.append(aside)
    return moved


def latest_checkpoint(directory: Path) -> Path:
    found = list_checkpoints(directory)
    if not found:
        raise CheckpointError(f"no checkpoint in {directory}")
    return found[-1][1]


def load_newest_loadable(directory: Path, *, config_fingerprint: str | None,
                         opcode_table: list[str] | None) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that reads back, falling back past corrupt ones with a warning each
    (a crash or a full disk can damage the newest). A readable checkpoint from another
    configuration is an error, not skipped: an older one would not match either."""
    found = list_checkpoints(directory)
    if not found:
        raise CheckpointError(f"no checkpoint in {directory}")
    problems = []
    for step, path in reversed(found):
        try:
            payload = load_payload(path, file_format=FORMAT, what="checkpoint")
            check_fields(path, payload, step)
        except CheckpointError as exc:
            problems.append(str(exc))
            log.warning("checkpoint_unreadable", path=str(path), error=str(exc))
            continue
        check_belongs(path, payload, config_fingerprint=config_fingerprint, opcode_table=opcode_table)
        if problems:
            log.warning("checkpoint_fallback", used=str(path), skipped=len(problems))
        return path, payload
    raise CheckpointError(f"no loadable checkpoint in {directory}: " + "; ".join(problems))
