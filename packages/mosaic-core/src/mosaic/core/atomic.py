"""Crash-safe file replacement shared by checkpoints, run files, sessions, registries and audit
checkpoints: write a temporary file beside the target, fsync it, rename it over the target, then
fsync the directory so the rename itself survives a crash. A reader sees the old file or the new
one, never a torn one; a failed write leaves the old file untouched and no temporary behind.

Files appended to or locked in place (logs, locks) are opened with :func:`open_plain_file`, which
refuses what a hostile directory can plant there: a symbolic link (appending through it writes
outside the directory, truncating through it empties its target) and a FIFO (opening one for
writing waits for a reader for ever)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from mosaic.core.errors import NotPlainFileError


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


def _kind_of(file_mode: int) -> str:
    if stat.S_ISDIR(file_mode):
        return "a directory"
    if stat.S_ISFIFO(file_mode):
        return "a FIFO"
    if stat.S_ISSOCK(file_mode):
        return "a socket"
    return "a device"


def open_plain_file(path: Path | str, flags: int, mode: int = 0o644, *, follow_links: bool = False) -> int:
    """``os.open(path, flags, mode)`` for a regular file only: never through a symbolic link (unless
    ``follow_links``: a file that is only read may be linked to), never waiting on a FIFO (opened
    non-blocking, checked, then set blocking again). Raises :class:`NotPlainFileError` with a
    sentence that starts with the path."""
    try:
        descriptor = os.open(path, flags | (0 if follow_links else os.O_NOFOLLOW) | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotPlainFileError(f"{path} is a symbolic link, not a plain file") from None
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
            raise NotPlainFileError(f"{path} is not a regular file (a FIFO or a device)") from None
        raise NotPlainFileError(f"{path} cannot be opened ({exc.strerror or exc})") from None
    try:
        file_mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(file_mode):
            raise NotPlainFileError(f"{path} is not a regular file (it is {_kind_of(file_mode)})")
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def append_text(path: Path | str, text: str, *, mode: int = 0o644) -> None:
    """Append ``text`` (UTF-8) to the log ``path``, creating it: through :func:`open_plain_file`, so a
    symbolic link planted under the log's name is refused (appending through it would write outside
    the directory) and a FIFO is refused instead of waited on."""
    descriptor = open_plain_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        data = text.encode("utf-8")
        while data:
            data = data[os.write(descriptor, data):]
    finally:
        os.close(descriptor)


def read_plain_file(path: Path | str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path`` (a symbolic link to one is followed: reading through it
    writes nothing). A FIFO (which would block the read for ever), a device (``/dev/zero`` floods
    it), a directory or a file of more than ``max_bytes`` is a :class:`NotPlainFileError` whose
    message starts with the path."""
    descriptor = open_plain_file(path, os.O_RDONLY, follow_links=True)
    with os.fdopen(descriptor, "rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise NotPlainFileError(f"{path} is larger than {max_bytes:,} bytes")
    return data
