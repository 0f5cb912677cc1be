"""A minimal file-system root for the tool (standard library only; runs in the sandbox child).

Landlock decides who may *open* a file, not who may ``stat`` one, so on the host's root a tool
could learn the size, owner and times of root-only files. Inside its private mount namespace the
child therefore builds a new root on a small tmpfs holding only: the interpreter's standard-library
directories (bind mounts, read-only, no devices, no setuid), the scratch directory (its own
size-limited tmpfs, noexec), and a fresh /proc when the tool has its own PID namespace. It then
``pivot_root``s into it and detaches the old root, which leaves nothing else to name.
"""

from __future__ import annotations

import ctypes
import errno
import os

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 0x4000
MNT_DETACH = 2
NR_PIVOT_ROOT = 155
OLD_ROOT = ".old-root"


class RootError(OSError):
    pass


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise RootError(err, f"{what} failed: {errno.errorcode.get(err, err)}")


def _bind_read_only(libc: ctypes.CDLL, source: str, target: str) -> None:
    os.makedirs(target, exist_ok=True)
    _check(libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None), f"bind {source}")
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    _check(libc.mount(None, target.encode(), None, flags, None), f"read-only remount of {source}")


def build_root(base: str, read_only: list[str], scratch: str, scratch_options: bytes, fresh_proc: bool) -> list[str]:
    """Build the new root on ``base`` (an empty directory), pivot into it and return the names
    expected at its top level. ``read_only`` and ``scratch`` keep their paths inside it."""
    libc = _libc()
    _check(libc.mount(b"tmpfs", base.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,nr_inodes=4096,mode=0755"), "root tmpfs")
    for path in read_only:
        _bind_read_only(libc, path, base + path)
    os.makedirs(base + scratch, exist_ok=True)
    _check(
        libc.mount(b"tmpfs", (base + scratch).encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, scratch_options),
        "scratch tmpfs",
    )
    tops = {path.strip("/").split("/")[0] for path in [*read_only, scratch]}
    if fresh_proc:
        os.makedirs(base + "/proc", exist_ok=True)
        _check(libc.mount(b"proc", (base + "/proc").encode(), b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "proc")
        tops.add("proc")
    os.makedirs(f"{base}/{OLD_ROOT}", exist_ok=True)
    _check(libc.syscall(NR_PIVOT_ROOT, base.encode(), f"{base}/{OLD_ROOT}".encode()), "pivot_root")
    os.chdir("/")
    _check(libc.umount2(f"/{OLD_ROOT}".encode(), MNT_DETACH), "detaching the old root")
    os.rmdir(f"/{OLD_ROOT}")
    _check(libc.mount(None, b"/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None), "read-only root")
    return sorted(tops)


def root_is_minimal(expected: list[str]) -> bool:
    """The probe: the root holds exactly the expected entries (nothing of the host's)."""
    return sorted(os.listdir("/")) == expected
