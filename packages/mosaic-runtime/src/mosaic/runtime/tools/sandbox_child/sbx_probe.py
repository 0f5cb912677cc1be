"""Checks that each confinement layer took effect, run right after the layer is applied.

A kernel call that returns success is not proof: a seccomp filter, a Landlock domain, an rlimit or a
namespace is reported active only when these probes observe it from inside. Standard library only
(runs in the sandbox child).
"""

from __future__ import annotations

import ctypes
import os
import resource
from typing import Any

PR_GET_SECCOMP = 21
SECCOMP_MODE_FILTER = 2
NR_PERSONALITY = 135
PERSONALITY_QUERY = 0xFFFFFFFF
CAPABILITY_FIELDS = ("CapEff", "CapPrm", "CapAmb", "CapBnd", "CapInh")


def namespace_inode(kind: str) -> int:
    return os.stat(f"/proc/self/ns/{kind}").st_ino


def network_is_empty() -> bool:
    """No route leads anywhere: the IPv4 table is empty and IPv6 routes, if any, use only loopback.
    (Interfaces are not compared: a new namespace may hold down, unconfigured fallback tunnels such
    as ``sit0`` when their modules are loaded.)"""
    with open("/proc/self/net/route", "rb") as handle:
        ipv4 = handle.read().decode("ascii", "replace").splitlines()[1:]
    try:
        with open("/proc/self/net/ipv6_route", "rb") as handle:
            ipv6 = handle.read().decode("ascii", "replace").splitlines()
    except FileNotFoundError:  # IPv6 disabled
        ipv6 = []
    return not ipv4 and all(line.split()[-1] == "lo" for line in ipv6 if line.split())


def own_pid_namespace_only() -> bool:
    """Pid 2 under its own init, and /proc (freshly mounted) shows nothing but the two."""
    return os.getpid() == 2 and sorted(p for p in os.listdir("/proc") if p.isdigit()) == ["1", "2"]


def rlimits_hold(table: dict) -> bool:
    return all(resource.getrlimit(which) == tuple(limits) for which, limits in table.items())


def landlock_denies_root() -> bool:
    """The file-system root is outside every Landlock rule: opening it must be refused."""
    try:
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError:
        return True
    os.close(fd)
    return False


def seccomp_filtering(libc: ctypes.CDLL) -> bool:
    """The kernel reports filter mode, and a call on the deny list (personality query, harmless
    when allowed) fails with EPERM."""
    libc.syscall.restype = ctypes.c_long
    if libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != SECCOMP_MODE_FILTER:
        return False
    ctypes.set_errno(0)
    result = libc.syscall(NR_PERSONALITY, ctypes.c_ulong(PERSONALITY_QUERY))
    return result == -1 and ctypes.get_errno() == 1


def parse_status(text: str) -> dict[str, Any]:
    """Capability sets (hex, as ints) and the uid/gid lines (``Uids``/``Gids`` tuples) of a
    /proc/<pid>/status text."""
    found: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in CAPABILITY_FIELDS:
            found[key] = int(value.strip(), 16)
        elif key in ("Uid", "Gid"):
            found[key + "s"] = tuple(int(v) for v in value.split())
    return found


def read_status(fd: int) -> dict[str, Any]:
    """Re-read /proc/self/status through a descriptor opened before Landlock closed /proc."""
    return parse_status(os.pread(fd, 8192, 0).decode("ascii", "replace"))


def capability_problem(status: dict[str, Any], uid: int, gid: int) -> str | None:
    """Why the process is not an unprivileged ``uid``:``gid`` with every capability set empty."""
    missing = [field for field in CAPABILITY_FIELDS[:4] if field not in status]
    if missing:
        return f"/proc/self/status lacks {', '.join(missing)}"
    held = [f"{field}={status[field]:#x}" for field in CAPABILITY_FIELDS if status.get(field, 0)]
    if held:
        return "capabilities remain: " + ", ".join(held)
    if set(status.get("Uids", ())) != {uid} or set(status.get("Gids", ())) != {gid}:
        return f"uids {status.get('Uids')} gids {status.get('Gids')}, expected {uid}:{gid}"
    return None
