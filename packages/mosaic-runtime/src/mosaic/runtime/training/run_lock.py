"""One writer per run directory: an advisory ``flock`` on ``RUN/.lock``, held while a process trains.

The kernel drops a ``flock`` when its holder dies, so a lock left by a killed process (its pid still
written in the file) is stale by construction and the next process takes it over; no pid guessing
decides whether a directory is free. The file stays behind (unlinking it would let a late opener
lock a detached inode); it records who holds, or last held, the directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from mosaic.core.atomic import open_plain_file
from mosaic.core.errors import NotPlainFileError, RunDirectoryError, RunLockedError

LOCK_NAME = ".lock"
_MAX_LOCK_BYTES = 4096  # the holder record is a few dozen bytes; never read more


class RunLock:
    """The held lock of one run directory; ``release()`` (or process exit) frees it."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        if self._descriptor is None:
            return
        descriptor, self._descriptor = self._descriptor, None
        try:
            os.ftruncate(descriptor, 0)  # no holder recorded once free
        except OSError:
            pass  # the lock is freed by the close below all the same
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def _holder(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            record = json.loads(file.read(_MAX_LOCK_BYTES) or b"{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def acquire_run_lock(run_path: Path) -> RunLock:
    """Take ``run_path``'s lock or raise :class:`RunLockedError` naming the live holder."""
    path = Path(run_path) / LOCK_NAME
    try:
        # a .lock planted as a symlink must not make the truncation below empty its target
        descriptor = open_plain_file(path, os.O_RDWR | os.O_CREAT, 0o644)
    except NotPlainFileError as exc:
        raise RunDirectoryError(f"cannot lock run directory {run_path}: {exc}; a run's lock is a plain file "
                                "(remove it)") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        holder = _holder(path)
        who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')}" if holder else "another process"
        raise RunLockedError(
            f"run directory {run_path} is in use by {who}; wait for it to finish (or stop it) before "
            "resuming or writing this run again"
        ) from None
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, record, 0)
    except OSError as exc:
        os.close(descriptor)
        raise RunDirectoryError(f"cannot write the lock of run directory {run_path}: {exc.strerror or exc}") from None
    return RunLock(path, descriptor)


def is_locked(run_path: Path) -> bool:
    """Whether a live process holds ``run_path`` now (for ``mosaic runs list``)."""
    path = Path(run_path) / LOCK_NAME
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False
