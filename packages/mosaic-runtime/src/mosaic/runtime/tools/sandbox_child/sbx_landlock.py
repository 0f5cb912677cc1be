"""Landlock filesystem, network and IPC confinement through raw system calls (standard library only).

The process may afterwards read (not execute) the directories it is given read-only, read and
write beneath its scratch directory, and nothing else. From ABI 4 TCP bind/connect are denied;
from ABI 6 signals to processes outside the domain and abstract UNIX sockets are scoped away.
"""

from __future__ import annotations

import ctypes
import errno
import os

NR_CREATE_RULESET, NR_ADD_RULE, NR_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5

NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

FS_ABI1 = (1 << 13) - 1
READ_ONLY = READ_FILE | READ_DIR
SCRATCH = WRITE_FILE | READ_FILE | READ_DIR | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | TRUNCATE


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is unsupported or disabled."""
    result = _libc().syscall(
        NR_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION)
    )
    return int(result) if result > 0 else 0


def handled_fs(abi: int) -> int:
    rights = FS_ABI1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def prepare(
    read_only: list[str], scratch: str, *, min_abi: int = 1, executable: tuple[str, ...] | list[str] = ()
) -> tuple[int, int]:
    """Build the ruleset (paths are opened now, so call this while they are still reachable).
    ``executable`` paths may also be executed (an MCP server's interpreter and libraries).
    Returns (ruleset fd, ABI); pass them to ``restrict_self`` once no_new_privs is set."""
    abi = abi_version()
    if abi < min_abi:
        raise OSError(errno.ENOSYS, f"Landlock ABI {abi} is below the required {min_abi}")
    libc = _libc()
    fs = handled_fs(abi)
    attr = _RulesetAttr(
        fs,
        NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0,
    )
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(NR_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset failed: {errno.errorcode.get(err, '?')}")
    try:
        rules = [*((p, READ_ONLY) for p in read_only), *((p, READ_ONLY | EXECUTE) for p in executable)]
        for path, access in [*rules, (scratch, SCRATCH)]:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(access & fs, fd)
                if (
                    libc.syscall(
                        NR_ADD_RULE,
                        ctypes.c_int(ruleset),
                        ctypes.c_int(RULE_PATH_BENEATH),
                        ctypes.byref(rule),
                        ctypes.c_uint32(0),
                    )
                    != 0
                ):
                    err = ctypes.get_errno()
                    raise OSError(err, f"landlock_add_rule({path}) failed: {errno.errorcode.get(err, '?')}")
            finally:
                os.close(fd)
    except OSError:
        os.close(ruleset)
        raise
    return int(ruleset), abi


def restrict_self(ruleset: int) -> None:
    """Enforce a prepared ruleset on the calling thread and its future threads; closes it."""
    try:
        if _libc().syscall(NR_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self failed: {errno.errorcode.get(err, '?')}")
    finally:
        os.close(ruleset)
