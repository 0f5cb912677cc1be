"""Escape attempts against the tool sandbox: every attack must be contained, with the language-level
layers (AST gate, restricted runtime) on AND off, and no process of a call may outlive it.

"Contained" means the attack's goal is not reached: the secret never appears in what comes back,
files outside the scratch directory are untouched, victims stay alive and untraced, listeners
receive nothing, and floods end in a typed error within the limits. With the language layers off
the tool runs with full builtins and free imports, so only the OS layers stand in the way.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import attrs
import pytest

from mosaic.core.errors import MosaicError
from mosaic.runtime.tools.sandbox import Sandbox, SandboxLimits, SandboxPolicy, surviving_processes

NOBODY = 65534
LIMITS = SandboxLimits(
    cpu_seconds=1,
    wall_seconds=3.0,
    memory_bytes=192 * 2**20,
    file_bytes=256 * 1024,
    scratch_bytes=1 * 2**20,
    scratch_inodes=64,
    open_files=32,
    processes=16,
    output_bytes=32 * 1024,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's OS layers are specified for root")


@attrs.define
class Arena:
    root: Path
    secret: str
    secret_path: Path
    outside: Path
    victim: subprocess.Popen
    environ_victim: subprocess.Popen
    tcp: socket.socket
    udp: socket.socket
    nobody_file: Path
    shared_file: Path
    root_only: Path

    def metadata(self) -> list:
        """Mode, owner, times and xattrs of the files outside scratch that the tool may not touch."""
        found = []
        for path in (self.nobody_file, self.shared_file, self.root_only, self.outside):
            st = path.stat()
            found.append((st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, sorted(os.listxattr(path))))
        return found

    def params(self) -> dict:
        return {
            "nobody_file": str(self.nobody_file),
            "shared_file": str(self.shared_file),
            "root_only": str(self.root_only),
            "secret_path": str(self.secret_path),
            "outside": str(self.outside),
            "victim": self.victim.pid,
            "environ_victim": self.environ_victim.pid,
            "parent": os.getpid(),
            "tcp_port": self.tcp.getsockname()[1],
            "udp_port": self.udp.getsockname()[1],
        }


@pytest.fixture(scope="module")
def arena():
    # World-readable/-writable on purpose: only the sandbox, not file permissions, may stop the attacks.
    root = Path(tempfile.mkdtemp(prefix="mosaic-arena-"))
    root.chmod(0o755)
    secret = "S3CRET-" + os.urandom(8).hex()
    secret_path = root / "secret.txt"
    secret_path.write_text(secret)
    secret_path.chmod(0o644)
    outside = root / "outside"
    outside.mkdir()
    outside.chmod(0o777)
    os.environ["MOSAIC_TEST_SECRET"] = secret
    as_nobody = {"user": NOBODY, "group": NOBODY}
    victim = subprocess.Popen(["sleep", "300"], **as_nobody)
    environ_victim = subprocess.Popen(["sleep", "300"], env={"MOSAIC_TEST_SECRET": secret}, **as_nobody)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    tcp.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    # Metadata targets: one the sandbox's uid owns, one it may write, one only root may read.
    nobody_file = root / "owned-by-nobody"
    nobody_file.write_text("n")
    nobody_file.chmod(0o644)
    os.chown(nobody_file, NOBODY, NOBODY)
    shared_file = root / "world-writable"
    shared_file.write_text("w")
    shared_file.chmod(0o666)
    root_only = root / "root-only"
    root_only.write_text("r" * 31337)
    root_only.chmod(0o600)
    for path in (nobody_file, shared_file, root_only):
        os.utime(path, ns=(10**18, 10**18))
    yield Arena(
        root, secret, secret_path, outside, victim, environ_victim, tcp, udp, nobody_file, shared_file, root_only
    )
    for proc in (victim, environ_victim):
        proc.kill()
        proc.wait()
    tcp.close()
    udp.close()
    os.environ.pop("MOSAIC_TEST_SECRET", None)
    shutil.rmtree(root, ignore_errors=True)


# Shared payload: given anything that reaches os (or open), try to read the secret and write outside.
PAYLOAD = """
def payload(o, secret_path, outside):
    got = []
    for attempt in (
        lambda: o.read(o.open(secret_path, o.O_RDONLY), 200).decode(),
        lambda: o.write(o.open(outside + "/pwned", o.O_WRONLY | o.O_CREAT, 0o666), b"x"),
        lambda: o.system("touch " + outside + "/pwned-system"),
        lambda: dict(o.environ),
    ):
        try:
            got.append(repr(attempt()))
        except BaseException as exc:
            got.append("blocked " + type(exc).__name__)
    return got
"""

# name -> (source, modules the tool declares). Declared modules are pre-imported by the child
# before it confines itself, so with the language layers off the attack really gets them.
ATTACKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "subclasses_walk": (
        PAYLOAD
        + """
def run(secret_path, outside, **_):
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            import_os = cls.__init__.__globals__
            class O: pass
            o = O()
            o.__dict__.update(import_os)
            return payload(o, secret_path, outside)
    return "no route"
""",
        (),
    ),
    "globals_walk": (
        """
def run(secret_path, **_):
    b = run.__globals__["__builtins__"]
    opener = b["open"] if isinstance(b, dict) else b.open
    return opener(secret_path).read()
""",
        (),
    ),
    "frame_walk": (
        PAYLOAD
        + """
def run(secret_path, outside, **_):
    def gen():
        yield g.gi_frame.f_back
    g = gen()
    frame = next(g)
    while frame is not None:
        if "os" in frame.f_globals:
            return payload(frame.f_globals["os"], secret_path, outside)
        frame = frame.f_back
    return "no route"
""",
        (),
    ),
    "traceback_walk": (
        PAYLOAD
        + """
def run(secret_path, outside, **_):
    try:
        1 / 0
    except Exception as exc:
        frame = exc.__traceback__.tb_frame
    while frame is not None:
        if "os" in frame.f_globals:
            return payload(frame.f_globals["os"], secret_path, outside)
        frame = frame.f_back
    return "no route"
""",
        (),
    ),
    "str_format": (
        """
import string
def run(**_):
    leak = "{0.__class__.__base__.__subclasses__}".format(())
    return leak + string.Formatter().vformat("{0.__globals__}", (run,), {})
""",
        ("string",),
    ),
    "decorator": (
        """
def grab(f):
    b = f.__globals__["__builtins__"]
    imp = b["__import__"] if isinstance(b, dict) else b.__import__
    stolen = imp("os").popen("cat /proc/1/environ").read()
    return lambda **_: stolen
@grab
def run(**_):
    return None
""",
        ("subprocess",),
    ),
    "match_pattern": (
        PAYLOAD
        + """
def run(secret_path, outside, **_):
    match ():
        case object(__class__=c):
            for cls in c.__base__.__subclasses__():
                if cls.__name__ == "_wrap_close":
                    class O: pass
                    o = O()
                    o.__dict__.update(cls.__init__.__globals__)
                    return payload(o, secret_path, outside)
    return "no route"
""",
        (),
    ),
    "import_os": (
        PAYLOAD
        + """
import os
def run(secret_path, outside, **_):
    return payload(os, secret_path, outside)
""",
        (),
    ),
    "import_subprocess": (
        """
import subprocess
def run(secret_path, outside, **_):
    return subprocess.run(["sh", "-c", "cat " + secret_path + "; touch " + outside + "/pwned-sub"],
                          capture_output=True).stdout.decode()
""",
        ("subprocess",),
    ),
    "import_ctypes": (
        """
import ctypes
def run(secret_path, **_):
    libc = ctypes.CDLL(None)
    return libc.system(b"cat " + secret_path.encode())
""",
        ("ctypes",),
    ),
    "importlib": (
        PAYLOAD
        + """
import importlib
def run(secret_path, outside, **_):
    return payload(importlib.import_module("os"), secret_path, outside)
""",
        ("importlib",),
    ),
    "pickle_gadget": (
        """
import pickle
def run(outside, **_):
    return pickle.loads(b"cos\\nsystem\\n(S'touch " + outside.encode() + b"/pwned-pickle'\\ntR.")
""",
        ("pickle",),
    ),
    "os_via_safe_module": (
        PAYLOAD
        + """
import random, json, string
def run(secret_path, outside, **_):
    for route in (lambda: random._os, lambda: json.decoder.re.enum.sys.modules["os"],
                  lambda: string._re.enum.sys.modules["os"]):
        try:
            return payload(route(), secret_path, outside)
        except AttributeError:
            continue
    return "no route"
""",
        ("random", "json", "string"),
    ),
    "read_secret_file": (
        PAYLOAD
        + """
def run(secret_path, outside, **_):
    import os
    return payload(os, secret_path, outside)
""",
        (),
    ),
    "read_secret_symlink": (
        """
import os
def run(secret_path, **_):
    os.symlink(secret_path, "link")
    return open("link").read()
""",
        (),
    ),
    "read_secret_hardlink": (
        """
import os
def run(secret_path, **_):
    os.link(secret_path, "hard")
    return open("hard").read()
""",
        (),
    ),
    "own_environment": (
        """
import os
def run(**_):
    return [dict(os.environ), open("/proc/self/environ", "rb").read().decode()]
""",
        (),
    ),
    "parent_environ": (
        """
import os
def run(parent, environ_victim, **_):
    out = []
    for pid in (os.getppid(), parent, environ_victim, 1):
        try:
            out.append(open(f"/proc/{pid}/environ", "rb").read().decode())
        except OSError as exc:
            out.append("blocked " + type(exc).__name__)
    return out
""",
        (),
    ),
    "write_outside_scratch": (
        """
def run(outside, **_):
    with open(outside + "/pwned", "w") as handle:
        handle.write("x")
    return "written"
""",
        (),
    ),
    "tcp_connect": (
        """
import socket
def run(tcp_port, **_):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    s.connect(("127.0.0.1", tcp_port))
    s.sendall(b"escaped")
    return "connected"
""",
        ("socket", "encodings.idna"),
    ),
    "udp_send": (
        """
import socket
def run(udp_port, **_):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"escaped", ("127.0.0.1", udp_port))
    return "sent"
""",
        ("socket",),
    ),
    "dns_lookup": (
        """
import socket
def run(**_):
    return [socket.getaddrinfo("example.com", 80), socket.gethostbyname("localhost")]
""",
        ("socket", "encodings.idna"),
    ),
    "exec_binary": (
        """
import os
def run(outside, **_):
    os.execv("/bin/sh", ["sh", "-c", "touch " + outside + "/pwned-exec"])
""",
        (),
    ),
    "kill_victim": (
        """
import os, signal
def run(victim, parent, **_):
    for pid in (victim, parent, -1):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    return "sent"
""",
        ("signal",),
    ),
    "ptrace_victim": (
        """
import ctypes
def run(victim, **_):
    libc = ctypes.CDLL(None, use_errno=True)
    return [libc.ptrace(16, victim, 0, 0), ctypes.get_errno()]
""",
        ("ctypes",),
    ),
    "fork_bomb": (
        """
import os
def run(**_):
    pids = []
    for _ in range(200):
        pid = os.fork()
        if pid == 0:
            os.setsid()
            import time
            time.sleep(600)
        pids.append(pid)
    return pids
""",
        ("time",),
    ),
    "thread_bomb": (
        """
import threading, time
def run(**_):
    threads = []
    while True:
        t = threading.Thread(target=time.sleep, args=(600,), daemon=True)
        t.start()
        threads.append(t)
""",
        ("threading", "time"),
    ),
    "memory_flood": (
        """
def run(**_):
    hog = []
    while True:
        hog.append(bytearray(16 * 2**20))
""",
        (),
    ),
    "cpu_flood": (
        """
def run(**_):
    n = 0
    while True:
        n += 1
""",
        (),
    ),
    "disk_flood": (
        """
def run(**_):
    i = 0
    while True:
        with open(f"f{i}", "wb") as handle:
            handle.write(bytes(200_000))
        i += 1
""",
        (),
    ),
    "fd_flood": (
        """
def run(**_):
    handles = []
    while True:
        handles.append(open(f"fd{len(handles) % 4}", "w"))
""",
        (),
    ),
    "output_flood": (
        """
import sys
def run(**_):
    sys.__stdout__.write("x" * 10_000_000)
    sys.__stdout__.flush()
    while True:
        print("y" * 100_000)
""",
        (),
    ),
    "ignore_signals": (
        """
import signal
def run(**_):
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        continue
""",
        ("signal",),
    ),
    "sleep_forever": (
        """
import time
def run(**_):
    time.sleep(10_000)
""",
        ("time",),
    ),
    "escape_session_then_sleep": (
        """
import os, time
def run(**_):
    try:
        os.setsid()
    except OSError:
        pass
    pid = os.fork()
    time.sleep(10_000)
""",
        ("time",),
    ),
    "update_wrapper_globals": (
        PAYLOAD
        + """
import functools, random
def run(secret_path, outside, **_):
    functools.update_wrapper(run, random.shuffle, assigned=(), updated=("__glo" + "bals__",))
    return payload(_os, secret_path, outside)
""",
        ("functools", "random"),
    ),
    "update_wrapper_direct": (
        """
import functools, random
def run(secret_path, outside, **_):
    functools.update_wrapper(run, random.shuffle, assigned=(), updated=("__glo" + "bals__",))
    _os.chmod(outside, 0o700)
    return _os.read(_os.open(secret_path, 0), 200).decode()
""",
        ("functools", "random"),
    ),
    "json_tool_pathlib": (
        """
import json.tool
def run(secret_path, outside, **_):
    p = json.tool.Path(outside) / "pwned-pathlib"
    p.write_text("x")
    return json.tool.Path(secret_path).read_text()
""",
        ("json.tool",),
    ),
    "timeit_real_builtins": (
        """
import timeit
def run(secret_path, **_):
    stmt = "r.append(open(" + repr(secret_path) + ").read())"
    r = []
    timeit.timeit(stmt, number=1, globals={"r": r})
    return r
""",
        ("timeit",),
    ),
    "metadata_writes": (
        """
import os
def run(nobody_file, shared_file, root_only, **_):
    out = []
    for attempt in (
        lambda: os.chmod(nobody_file, 0o777),
        lambda: os.utime(nobody_file, (0, 0)),
        lambda: os.utime(nobody_file, None),
        lambda: os.chown(nobody_file, 65534, 0),
        lambda: os.setxattr(nobody_file, "user.pwned", b"1"),
        lambda: os.setxattr(shared_file, "user.pwned", b"1"),
        lambda: os.setxattr(root_only, "trusted.pwned", b"1"),
        lambda: os.listxattr(shared_file),
    ):
        try:
            out.append(repr(attempt()))
        except OSError as exc:
            out.append("blocked " + str(exc.strerror))
    return out
""",
        (),
    ),
    "metadata_by_descriptor": (
        """
import os
def run(nobody_file, **_):
    fd = os.open(nobody_file, os.O_RDONLY)
    out = []
    for attempt in (lambda: os.fchmod(fd, 0o777), lambda: os.utime(fd, (0, 0)),
                    lambda: os.setxattr(fd, "user.pwned", b"1"), lambda: os.fchown(fd, 65534, 0)):
        try:
            out.append(repr(attempt()))
        except OSError as exc:
            out.append("blocked " + str(exc.strerror))
    return out
""",
        (),
    ),
    "host_processes": (
        """
import os
def run(victim, parent, **_):
    out = []
    for pid in (victim, parent, 1):
        try:
            out.append(("pid", pid, os.stat(f"/proc/{pid}").st_uid))
        except OSError as exc:
            out.append("blocked " + str(exc.strerror))
    try:
        out.append(sorted(os.listdir("/proc")))
    except OSError as exc:
        out.append("blocked " + str(exc.strerror))
    return out
""",
        (),
    ),
    "inotify_host_tmp": (
        """
import ctypes
def run(**_):
    libc = ctypes.CDLL(None, use_errno=True)
    out = []
    for call in (lambda: libc.inotify_init1(0), lambda: libc.syscall(253)):
        ctypes.set_errno(0)
        out.append([call(), ctypes.get_errno()])
    return out
""",
        ("ctypes",),
    ),
    "mount_table": (
        """
import ctypes
def run(**_):
    libc = ctypes.CDLL(None, use_errno=True)
    out = []
    for number in (458, 457):  # listmount, statmount
        buf = ctypes.create_string_buffer(4096)
        ctypes.set_errno(0)
        out.append([libc.syscall(number, buf, buf, 64, 0), ctypes.get_errno()])
    try:
        out.append(open("/proc/self/mountinfo").read())
    except OSError as exc:
        out.append("blocked " + str(exc.strerror))
    return out
""",
        ("ctypes",),
    ),
    "stat_outside_workdir": (
        """
import os
def run(root_only, secret_path, outside, **_):
    out = []
    for path in (root_only, secret_path, outside, "/etc/shadow", "/root", "/proc/1/root/etc"):
        try:
            st = os.stat(path)
            out.append([path, st.st_size, st.st_uid, st.st_mtime_ns])
        except OSError as exc:
            out.append("blocked " + str(exc.strerror))
    return out
""",
        (),
    ),
    "write_standard_library": (
        """
import os
def run(**_):
    target = os.path.join(os.path.dirname(os.__file__), "pwned_by_tool.py")
    with open(target, "w") as handle:
        handle.write("import os")
    return target
""",
        (),
    ),
    "eval_exec_compile": (
        """
def run(secret_path, **_):
    code = compile("open(p).read()", "x", "eval")
    exec("import os")
    return eval(code, {"p": secret_path})
""",
        (),
    ),
}


# With the language layers off, what the kernel-level layers answer (part of the outcome text):
# proof that the attack reached the OS and was stopped there, not by a missing module.
OS_EVIDENCE: dict[str, str | tuple[str, ...]] = {
    # seccomp: the metadata families are refused outright (EPERM), Landlock does not see them
    "metadata_writes": "'blocked Operation not permitted', " * 7 + "'blocked Operation not permitted'",
    "metadata_by_descriptor": ("No such file or directory", "Permission denied"),  # minimal root, else Landlock
    "inotify_host_tmp": "[[-1, 1], [-1, 1]]",
    "mount_table": "[[-1, 1], [-1, 1], 'blocked Permission denied']",
    "write_standard_library": ("Permission denied", "Read-only file system"),  # Landlock, read-only bind
    # a minimal root: only the standard library, scratch and the tool's own /proc exist
    "stat_outside_workdir": "'blocked No such file or directory', " * 3,
    # a fresh /proc of the tool's own PID namespace: host pids do not exist there
    "host_processes": "['blocked No such file or directory', 'blocked No such file or directory', ['pid', 1, 0], 'blocked Permission denied']",
    "exec_binary": "Operation not permitted",  # seccomp: execve
    "fork_bomb": "Operation not permitted",  # seccomp: clone without CLONE_THREAD
    "escape_session_then_sleep": "Operation not permitted",  # seccomp: setsid/fork
    "import_subprocess": "Operation not permitted",
    "tcp_connect": "Operation not permitted",  # seccomp: socket
    "udp_send": "Operation not permitted",
    "ptrace_victim": "[-1, 1]",  # ptrace -> EPERM
    "write_outside_scratch": ("No such file or directory", "Permission denied"),  # minimal root, else Landlock
    "read_secret_symlink": "Permission denied",  # Landlock (no MAKE_SYM)
    "read_secret_hardlink": ("No such file or directory", "cross-device link"),  # minimal root, else Landlock
    "own_environment": "Permission denied",  # Landlock: /proc
    "globals_walk": ("No such file or directory", "Permission denied"),  # minimal root, else Landlock
    "thread_bomb": "can't start new thread",  # RLIMIT_NPROC / RLIMIT_AS
    "memory_flood": "MemoryError",  # RLIMIT_AS
    # RLIMIT_CPU (soft SIGXCPU, hard SIGKILL) or, on a busy machine, the wall clock comes first;
    # test_tools_sandbox.py::test_cpu_time_limit checks RLIMIT_CPU alone.
    "cpu_flood": ("CPU time", "wall clock"),
    "ignore_signals": ("killed", "wall clock"),
    "disk_flood": "No space left on device",  # tmpfs scratch quota
    "fd_flood": "Too many open files",  # RLIMIT_NOFILE
    "output_flood": "output cap",  # parent supervision
    "sleep_forever": "wall clock",  # parent supervision
}


# With every layer on, what must stop these: the language layers themselves (gate or views), not the
# OS layers behind them.
LANGUAGE_EVIDENCE: dict[str, str] = {
    "update_wrapper_globals": "ToolRejectedError",
    "update_wrapper_direct": "ToolRejectedError",
    "json_tool_pathlib": "ToolRejectedError",
    "timeit_real_builtins": "ToolRejectedError",
}


def test_the_suite_has_at_least_25_attacks():
    assert len(ATTACKS) >= 25


def _nobody_processes() -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == NOBODY:
                    pids.add(int(entry))
            except OSError:
                continue
    return pids


def _traced(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    tracer = next(line for line in status.splitlines() if line.startswith("TracerPid:"))
    return int(tracer.split()[1]) != 0


@pytest.mark.parametrize("language_layers", [True, False], ids=["all-layers", "os-layers-only"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_contained(arena, attack, language_layers):
    source, allowed = ATTACKS[attack]
    metadata = arena.metadata()
    sessions: list[int] = []
    sandbox = Sandbox(SandboxPolicy(limits=LIMITS, language_layers=language_layers), on_start=sessions.append)
    before = _nobody_processes()
    started = time.monotonic()
    try:
        outcome = repr(sandbox.run(source, arena.params(), allowed_modules=allowed, name=attack).value)
    except MosaicError as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    elapsed = time.monotonic() - started

    assert arena.secret not in outcome, f"{attack} leaked the secret: {outcome[:300]}"
    assert not any(arena.outside.iterdir()), f"{attack} wrote outside the scratch directory"
    assert arena.metadata() == metadata, f"{attack} changed metadata outside the scratch directory"
    assert "31337, 0," not in outcome, f"{attack} read the metadata of a root-only file"
    assert not Path(os.path.dirname(os.__file__), "pwned_by_tool.py").exists(), f"{attack} wrote to the stdlib"
    assert str(arena.victim.pid) not in outcome.replace(f"'victim': {arena.victim.pid}", "")
    for victim in (arena.victim, arena.environ_victim):
        assert victim.poll() is None, f"{attack} killed a victim process"
        assert not _traced(victim.pid), f"{attack} attached to a victim process"
    assert os.getpid() and os.kill(os.getpid(), 0) is None
    with pytest.raises(BlockingIOError):
        arena.tcp.accept()
    with pytest.raises(BlockingIOError):
        arena.udp.recv(64)
    assert elapsed < LIMITS.wall_seconds + 2.0, f"{attack} was not stopped in time ({elapsed:.1f} s)"
    for session in sessions:
        assert surviving_processes(session) == [], f"{attack} left processes behind"
        assert not Path(f"/proc/{session}").exists()
    if "PYTEST_XDIST_WORKER" not in os.environ:  # a global view is only meaningful when run alone
        assert _nobody_processes() <= before, f"{attack} left processes running as nobody"
    if not language_layers and attack in OS_EVIDENCE:
        expected = OS_EVIDENCE[attack]
        expected = (expected,) if isinstance(expected, str) else expected
        assert any(e in outcome for e in expected), f"{attack}: unexpected outcome {outcome[:300]}"
    if language_layers and attack in LANGUAGE_EVIDENCE:
        assert outcome.startswith(LANGUAGE_EVIDENCE[attack]), f"{attack}: {outcome[:300]}"
    if language_layers and attack not in ("memory_flood", "cpu_flood"):
        assert (
            "ToolRejectedError" in outcome or "ToolFailedError" in outcome or "SandboxLimitError" in outcome
        )


def test_victims_are_reachable_without_the_sandbox(arena):
    """The containment checks above can fail: unconfined code does reach the targets."""
    assert arena.secret_path.read_text() == arena.secret
    assert arena.secret in Path(f"/proc/{arena.environ_victim.pid}/environ").read_bytes().decode()
    probe = socket.create_connection(("127.0.0.1", arena.tcp.getsockname()[1]), timeout=1)
    probe.close()
    time.sleep(0.05)
    connection, _ = arena.tcp.accept()
    connection.close()
    os.kill(arena.victim.pid, 0)
    assert signal.SIGKILL  # the victim is signalable by root; the sandbox runs as nobody
