"""Operating-system confinement the sandbox child applies to itself before running untrusted code.

Standard library only: this module runs in a ``python3 -I -S`` child that cannot import the
toolkit. Each layer records itself in ``layers`` as ``{"active": bool, "detail": str}``, active
only when a probe (``sbx_probe``) has observed its effect after it was applied; a layer that cannot
be applied or verified raises ``LayerUnavailable`` when it is required and is recorded inactive
otherwise. Capabilities left in the tool's process refuse the call whatever is required. Order
matters: namespaces and mounts need root; then rlimits, no_new_privs and Landlock; then declared
modules are imported (still root, already confined); then privileges are dropped, and finally the
seccomp filter (which forbids everything before it) is installed.

``request["skip_layer_calls"]`` (tests only) names layers whose kernel call is skipped while the
rest, probe included, runs as usual: it is how the tests show that a layer which does not take
effect is reported unavailable.
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
import sbx_probe
import sbx_root
import sbx_seccomp

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 1, 4, 38, 39
PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 36, 47, 4

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


def _children(pid: int, proc_fd: int) -> list[int]:
    """Children of ``pid``, read through a descriptor of /proc opened before the root changed."""
    found = []
    for entry in os.listdir(proc_fd):
        if entry.isdigit():
            try:
                fd = os.open(f"{entry}/stat", os.O_RDONLY, dir_fd=proc_fd)
                try:
                    fields = os.read(fd, 4096).rpartition(b")")[2].split()
                finally:
                    os.close(fd)
            except OSError:
                continue
            if len(fields) > 1 and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _reap_descendants(proc_fd: int) -> None:
    """As a child subreaper: kill and reap every process reparented to us (descendants whose own
    parents exited, ``setsid`` or not), until none is left."""
    me = os.getpid()
    for _ in range(1000):
        for pid in _children(me, proc_fd):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def _fork_and_mirror(*, subreaper: bool = False) -> None:
    """Fork; the parent waits for the child, mirrors its exit status and never returns. As a
    ``subreaper`` it also kills every descendant left when the child ends (used when there is no
    PID namespace to do that)."""
    parent = os.getppid()
    libc = _libc()
    proc_fd = -1
    if subreaper:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        # The tool's side may pivot into a root without the host's /proc: keep a handle on it.
        proc_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        if proc_fd >= 0:
            os.close(proc_fd)
        return
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
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
    if subreaper:
        _reap_descendants(proc_fd)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def _skipped(request: dict, layer: str) -> bool:
    return layer in request.get("skip_layer_calls", ())


def enter_namespaces(request: dict, layers: dict) -> None:
    """Unshare network, mount/IPC/UTS and PID namespaces; with a PID namespace, fork its init and
    the tool process beneath it and mount a fresh /proc that shows only those two.

    Returns only in the process that will run the tool (pid 2 of the new namespace: pid 1 would
    ignore default-action signals such as SIGXCPU). The processes above it wait, mirror its exit
    status and never return. When the namespace's init exits the kernel kills everything left
    inside, so no descendant of the tool can outlive the call. Without a PID namespace the process
    above the tool is a child subreaper that kills whatever the tool left behind.
    """
    required = set(request["required_layers"])
    libc = _libc()
    for name, flags, kind in (
        ("network_namespace", CLONE_NEWNET, "net"),
        ("mount_namespace", CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS, "mnt"),
    ):
        if kind == "net" and request.get("network_granted"):  # an approved MCP server's network
            _record(layers, required, name, False, "not unshared: network granted by the approval")
            continue
        before = sbx_probe.namespace_inode(kind)
        called = _skipped(request, name) or libc.unshare(flags) == 0
        if not called:
            _record(layers, required, name, False, f"unshare failed: {_errno_text()}")
            continue
        moved = sbx_probe.namespace_inode(kind) != before
        if moved and kind == "net":
            moved = sbx_probe.network_is_empty()
        _record(layers, required, name, moved, "unshared" if moved else "unshare had no effect")
    if layers["mount_namespace"]["active"] and libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        _record(layers, required, "mount_namespace", False, f"making mounts private failed: {_errno_text()}")
    if _skipped(request, "pid_namespace") or libc.unshare(CLONE_NEWPID) != 0:
        detail = f"unshare failed: {_errno_text()}; a subreaper kills what the tool leaves behind"
        _record(layers, required, "pid_namespace", False, detail)
        _fork_and_mirror(subreaper=True)
        return
    _fork_and_mirror()  # the caller stays outside the namespace
    _fork_and_mirror()  # pid 1: the namespace's reaper
    # A fresh /proc, so that host processes are invisible (only with private mounts: a proc mount
    # must never propagate back to the host).
    fresh = layers["mount_namespace"]["active"] and (
        libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) == 0
    )
    ok = fresh and sbx_probe.own_pid_namespace_only()
    _record(
        layers,
        required,
        "pid_namespace",
        ok,
        f"tool runs as pid {os.getpid()} under its own init; fresh /proc: {fresh}",
    )


def _enter_minimal_root(request: dict, layers: dict, required: set) -> None:
    """Pivot into a root holding only the standard library (read-only), the scratch tmpfs and the
    tool's own /proc (``sbx_root``), so that nothing of the host can even be stat'ed."""
    if not layers.get("mount_namespace", {}).get("active"):
        return
    limits = request["limits"]
    options = (
        f"size={limits['scratch_bytes']},nr_inodes={limits['scratch_inodes']},mode=0700,"
        f"uid={request['uid']},gid={request['gid']}"
    ).encode()
    read_only = sorted({p for p in sys.path if os.path.isdir(p)})
    fresh_proc = bool(layers.get("pid_namespace", {}).get("active"))
    try:
        expected = sbx_root.build_root(request["scratch"], read_only, request["scratch"], options, fresh_proc)
    except OSError as exc:
        _record(layers, required, "mount_namespace", False, f"building the minimal root: {exc}")
        return
    if not sbx_root.root_is_minimal(expected):
        _record(layers, required, "mount_namespace", False, f"the new root shows {sorted(os.listdir('/'))}")
        return
    layers["mount_namespace"]["detail"] = (
        f"private mounts; minimal read-only root ({', '.join(expected)}); "
        f"scratch is a {limits['scratch_bytes']}-byte tmpfs, noexec"
    )


def _set_rlimits(request: dict, layers: dict, required: set) -> None:
    limits = request["limits"]
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
            if not _skipped(request, "rlimits"):
                resource.setrlimit(which, (soft, hard))
    except (OSError, ValueError) as exc:
        _record(layers, required, "rlimits", False, f"setrlimit failed: {exc}")
        return
    if not sbx_probe.rlimits_hold(table):
        _record(layers, required, "rlimits", False, "setrlimit returned but the limits do not hold")
        return
    _record(
        layers,
        required,
        "rlimits",
        True,
        f"cpu {cpu}s, address space {limits['memory_bytes']}, file {limits['file_bytes']}, "
        f"nofile {limits['open_files']}, nproc {limits['processes']}",
    )


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _clear_capabilities(libc: ctypes.CDLL) -> None:
    """Empty the bounding set (needs CAP_SETPCAP, so before setuid), the ambient set, and then
    effective/permitted/inheritable. Failures are left to the verification that follows."""
    for capability in range(64):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)  # EINVAL past the kernel's last: fine
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def _zero_capsets(libc: ctypes.CDLL) -> None:
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    libc.capset(ctypes.byref(header), (_CapData * 2)())


def _drop_privileges(request: dict, layers: dict, required: set, status_fd: int) -> None:
    """Become ``uid``:``gid`` with no groups and no capabilities, then verify it from
    /proc/self/status. A process still holding effective, permitted or ambient capabilities is
    refused whatever the policy requires: every other layer assumes an unprivileged tool."""
    uid, gid = request["uid"], request["gid"]
    libc = _libc()
    problem = None
    if not _skipped(request, "drop_privileges"):
        _clear_capabilities(libc)
        if os.geteuid() == 0:
            try:
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
            except OSError as exc:
                problem = f"could not become {uid}:{gid}: {exc}"
        _zero_capsets(libc)
    status = sbx_probe.read_status(status_fd)
    held = {field: status.get(field, -1) for field in ("CapEff", "CapPrm", "CapAmb")}
    if any(held.values()):
        raise LayerUnavailable(
            "drop_privileges",
            "the tool's process would hold capabilities "
            + ", ".join(f"{k}={v:#x}" for k, v in held.items() if v)
            + "; refusing to run",
        )
    problem = problem or sbx_probe.capability_problem(status, uid, gid)
    if problem is None:
        try:
            os.setuid(0)
            problem = "setuid(0) succeeded after the drop"
        except PermissionError:
            pass
    _record(
        layers,
        required,
        "drop_privileges",
        problem is None,
        problem or f"uid {uid}, gid {gid}, no groups; CapEff, CapPrm, CapAmb, CapBnd, CapInh verified 0",
    )


def confine(request: dict, layers: dict, preload: Callable[[], None]) -> None:
    """Apply every layer after the namespaces, in order, to the calling (single-threaded) process.

    ``preload`` (trusted: standard-library imports of the declared modules) runs first, while the
    whole file system is visible and the process is still root: the unprivileged user may be unable
    to read the standard library (an interpreter under /root), and extension modules load shared
    libraries that the minimal root does not contain. No tool code runs before every layer is in
    place.
    """
    required = set(request["required_layers"])
    libc = _libc()
    preload()
    status_fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)  # read after the drop
    _enter_minimal_root(request, layers, required)
    read_only = sorted({p for p in sys.path if os.path.isdir(p)})
    try:
        ruleset, abi = sbx_landlock.prepare(
            read_only, request["scratch"], min_abi=request["landlock_min_abi"]
        )
    except OSError as exc:
        ruleset, abi = -1, 0
        _record(layers, required, "landlock", False, str(exc))
    _set_rlimits(request, layers, required)
    called = _skipped(request, "no_new_privs") or libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    ok = called and libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    _record(layers, required, "no_new_privs", ok, "set" if ok else f"prctl failed: {_errno_text()}")
    if ruleset >= 0:
        try:
            if _skipped(request, "landlock"):
                os.close(ruleset)
            else:
                sbx_landlock.restrict_self(ruleset)
            if not sbx_probe.landlock_denies_root():
                raise OSError(0, "landlock_restrict_self returned but / is still readable")
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
    _drop_privileges(request, layers, required, status_fd)
    os.close(status_fd)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.chdir(request["scratch"])
    os.closerange(3, 1 << 16)
    try:
        length = len(sbx_seccomp.build_filter(os.getpid()))
        if not _skipped(request, "seccomp"):
            length = sbx_seccomp.install_filter(os.getpid())
        ok = sbx_probe.seccomp_filtering(libc)
        detail = f"{length}-instruction BPF filter" if ok else "filter installed but not in force"
        _record(layers, required, "seccomp", ok, detail)
    except OSError as exc:
        _record(layers, required, "seccomp", False, str(exc))
