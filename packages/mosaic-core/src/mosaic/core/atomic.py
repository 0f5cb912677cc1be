"""Crash-safe file replacement shared by checkpoints, run files, sessions, registries and audit
checkpoints: write a temporary file beside the target, fsync it, rename it over the target, then
fsync the directory so the rename itself survives a crash. A reader sees the old file or the new
one, never a torn one; a failed write leaves the old file untouched and no temporary behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path | str, write: Callable[[BinaryIO], None], *, mode: int = 0o644) -> Path:
    """Replace ``path`` with what ``write(file)`` writes, atomically; returns ``path``."""
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def atomic_write_bytes(path: Path | str, data: bytes, *, mode: int = 0o644) -> Path:
    def write(file: BinaryIO) -> None:
        file.write(data)

    return atomic_write(path, write, mode=mode)


def fsync_directory(directory: Path | str) -> None:
    """Make a rename in ``directory`` durable; some filesystems refuse fsync on directories, and
    there the rename is still atomic, only not yet durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
