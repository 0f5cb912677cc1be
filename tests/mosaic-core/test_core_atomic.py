"""Atomic file replacement: a finished write replaces the file, a failed one leaves it untouched."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mosaic.core.atomic import atomic_write, atomic_write_bytes


def test_write_replaces_the_file_with_the_requested_mode(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"good")

    def half_then_crash(file) -> None:
        file.write(b"torn")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_read_plain_file_reads_regular_files_and_refuses_what_would_block_or_flood(tmp_path: Path) -> None:
    """Run files, registries, audit logs and keys are read through it: a FIFO planted under their
    name would block the reader for ever, /dev/zero would flood it, a directory would traceback."""
    import os

    from mosaic.core.atomic import read_plain_file
    from mosaic.core.errors import NotPlainFileError

    plain = tmp_path / "plain.json"
    plain.write_bytes(b"{}")
    link = tmp_path / "link.json"
    link.symlink_to(plain)
    assert read_plain_file(plain, 2) == b"{}" and read_plain_file(link, 10) == b"{}"  # reading a link writes nothing
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "dir").mkdir()
    for name, kind in (("fifo", "a FIFO"), ("zero", "a device"), ("dir", "a directory")):
        with pytest.raises(NotPlainFileError, match=rf"^{tmp_path / name} is not a regular file \(it is {kind}\)"):
            read_plain_file(tmp_path / name, 1 << 20)
    with pytest.raises(NotPlainFileError, match=rf"^{plain} is larger than 1 bytes"):
        read_plain_file(plain, 1)
    with pytest.raises(NotPlainFileError, match="cannot be opened"):
        read_plain_file(tmp_path / "missing", 10)
