"""Operating-system confinement the sandbox child applies to itself before running untrusted code.

Standard library only: this module runs in a ``python3 -I -S`` child that cannot import the
toolkit. Each layer records itself in ``layers`` as ``{"active": bool, "detail": str}``; a layer
that cannot be applied raises ``LayerUnavailable`` when it is required and is recorded inactive
otherwise. Order matters: namespaces and mounts need root; then rlimits, no_new_privs and Landlock;
then declared modules are imported (still root, already confined); then privileges are dropped,
and finally the seccomp filter (which forbids everything before it) is installed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import sys
from collections.abc import Callable

import sbx_landlock
import sbx_seccomp

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 1, 4, 38, 39

OS_LAYERS = (
    "network_namespace",
    "pid_namespace",
    "mount_namespace",
    "rlimits",
    "drop_privileges",
    "no_new_privs",
    "landlock",
    "seccomp",
)


class LayerUnavailable(Exception):
    def __init__(self, layer: str, message: str) -> None:
        self.layer = layer
        super().__init__(f"{layer}: {message}")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _errno_text() -> str:
    err = ctypes.get_errno()
    return f"{errno.errorcode.get(err, err)} ({os.strerror(err)})"


def _record(layers: dict, required: set, name: str, ok: bool, detail: str) -> bool:
    layers[name] = {"active": ok, "detail": detail}
    if not ok and name in required:
        raise LayerUnavailable(name, detail)
    return ok


def _fork_and_mirror() -> None:
    """Fork; the parent waits for the child, mirrors its exit status and never returns."""
    parent = os.getppid()
    child = os.fork()
    if child == 0:
        return
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(125)
    for fd in (1, 2):
        os.close(fd)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(125)
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def enter_namespaces(request: dict, layers: dict) -> None:
    """Unshare network, mount/IPC/UTS and PID namespaces; with a PID namespace, fork its init and
    the tool process beneath it.

    Returns only in the process that will run the tool (pid 2 of the new namespace: pid 1 would
    ignore default-action signals such as SIGXCPU). The processes above it wait, mirror its exit
    status and never return. When the namespace's init exits the kernel kills everything left
    inside, so no descendant of the tool can outlive the call.
    """
    required = set(request["required_layers"])
    libc = _libc()
    for name, flags in (
        ("network_namespace", CLONE_NEWNET),
        ("mount_namespace", CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS),
    ):
        ok = libc.unshare(flags) == 0
        _record(layers, required, name, ok, "unshared" if ok else f"unshare failed: {_errno_text()}")
    if libc.unshare(CLONE_NEWPID) != 0:
        _record(layers, required, "pid_namespace", False, f"unshare failed: {_errno_text()}")
        return
    _fork_and_mirror()  # the caller stays outside the namespace
    _fork_and_mirror()  # pid 1: the namespace's reaper
    _record(
        layers,
        required,
        "pid_namespace",
        os.getpid() == 2,
        f"tool runs as pid {os.getpid()} under its own init in a new namespace",
    )


def _mount_scratch(request: dict, layers: dict, required: set) -> None:
    if not layers.get("mount_namespace", {}).get("active"):
        return
    libc = _libc()
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        _record(layers, required, "mount_namespace", False, f"making mounts private failed: {_errno_text()}")
        return
    limits = request["limits"]
    options = (
        f"size={limits['scratch_bytes']},nr_inodes={limits['scratch_inodes']},mode=0700,"
        f"uid={request['uid']},gid={request['gid']}"
    ).encode()
    if (
        libc.mount(b"tmpfs", request["scratch"].encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options)
        != 0
    ):
        _record(layers, required, "mount_namespace", False, f"scratch tmpfs mount failed: {_errno_text()}")
        return
    layers["mount_namespace"]["detail"] = (
        f"private mounts; scratch is a {limits['scratch_bytes']}-byte tmpfs, noexec"
    )


def _set_rlimits(limits: dict, layers: dict, required: set) -> None:
    cpu = int(limits["cpu_seconds"])
    table = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_AS: (limits["memory_bytes"],) * 2,
        resource.RLIMIT_FSIZE: (limits["file_bytes"],) * 2,
        resource.RLIMIT_NOFILE: (limits["open_files"],) * 2,
        resource.RLIMIT_NPROC: (limits["processes"],) * 2,
        resource.RLIMIT_CORE: (0, 0),
        resource.RLIMIT_MEMLOCK: (0, 0),
        resource.RLIMIT_MSGQUEUE: (0, 0),
    }
    try:
        for which, (soft, hard) in table.items():
            resource.setrlimit(which, (soft, hard))
    except (OSError, ValueError) as exc:
        _record(layers, required, "rlimits", False, f"setrlimit failed: {exc}")
        return
    _record(
        layers,
        required,
        "rlimits",
        True,
        f"cpu {cpu}s, address space {limits['memory_bytes']}, file {limits['file_bytes']}, "
        f"nofile {limits['open_files']}, nproc {limits['processes']}",
    )


def _drop_privileges(request: dict, layers: dict, required: set) -> None:
    uid, gid = request["uid"], request["gid"]
    if os.geteuid() != 0:
        _record(
            layers,
            required,
            "drop_privileges",
            os.geteuid() != 0 and os.getuid() != 0,
            f"already unprivileged (uid {os.getuid()})",
        )
        return
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        _record(layers, required, "drop_privileges", False, f"could not become {uid}:{gid}: {exc}")
        return
    try:
        os.setuid(0)
        regained = True
    except PermissionError:
        regained = False
    capabilities = _capabilities()
    ok = not regained and os.getresuid() == (uid,) * 3 and os.getgroups() == [] and capabilities == 0
    _record(
        layers,
        required,
        "drop_privileges",
        ok,
        f"uid {uid}, gid {gid}, no groups, capabilities {capabilities:#x}",
    )


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _capabilities() -> int:
    """Effective | permitted capability bits of this process (-1 if capget fails). /proc is already
    out of reach here, so ask the kernel directly."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if _libc().capget(ctypes.byref(header), data) != 0:
        return -1
    return (data[0].effective | data[0].permitted) | (data[1].effective | data[1].permitted) << 32


def confine(request: dict, layers: dict, preload: Callable[[], None]) -> None:
    """Apply every layer after the namespaces, in order, to the calling (single-threaded) process.

    ``preload`` runs once the file system (Landlock), network (namespace), resources (rlimits) and
    privilege escalation (no_new_privs) are already confined, but while the process is still root:
    the unprivileged user may be unable to read the standard library (an interpreter under /root),
    so declared modules are imported here. No tool code runs before every layer is in place.
    """
    required = set(request["required_layers"])
    libc = _libc()
    _mount_scratch(request, layers, required)
    read_only = sorted({p for p in sys.path if os.path.isdir(p)})
    try:
        ruleset, abi = sbx_landlock.prepare(
            read_only, request["scratch"], min_abi=request["landlock_min_abi"]
        )
    except OSError as exc:
        ruleset, abi = -1, 0
        _record(layers, required, "landlock", False, str(exc))
    _set_rlimits(request["limits"], layers, required)
    ok = libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 and libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    _record(layers, required, "no_new_privs", ok, "set" if ok else f"prctl failed: {_errno_text()}")
    if ruleset >= 0:
        try:
            sbx_landlock.restrict_self(ruleset)
            _record(
                layers,
                required,
                "landlock",
                True,
                f"ABI {abi}: read-only {', '.join(read_only)}; read-write scratch only; "
                f"tcp denied: {abi >= 4}; signals scoped: {abi >= 6}",
            )
        except OSError as exc:
            _record(layers, required, "landlock", False, str(exc))
    preload()
    _drop_privileges(request, layers, required)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.chdir(request["scratch"])
    os.closerange(3, 1 << 16)
    try:
        length = sbx_seccomp.install_filter(os.getpid())
        _record(layers, required, "seccomp", True, f"{length}-instruction BPF filter")
    except OSError as exc:
        _record(layers, required, "seccomp", False, str(exc))
